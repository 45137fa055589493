"""Alerting (AC7): rules that watch the trail raise ``alert.raise`` into the trail.

The :class:`AlertEvaluator` is a :class:`~kroonika.audit.sinks.Sink`: a
:class:`~kroonika.audit.sinks.SinkRunner` feeds it every stored event through its own
persisted cursor, so it survives restarts and misses nothing. For each event each
:class:`AlertRule` that matches it (type, field values) counts it under its key (the
fields named by ``key``: a source network, a pseudonym, a detail); when ``threshold``
events of one key fall within ``window_s`` the rule fires. A firing raises one
``alert.raise`` whose ``alert_id`` is derived from the rule and the id of the event
that fired it (:func:`alert_id_for`), so reading that event again (a crash between the
raise and the cursor commit) finds the id already raised and raises nothing.

Throttle: while an alert of a (rule, key) is open (not acknowledged) and younger than
the rule's window, further firings count as repeats of it instead of raising again.

The alert state is the trail itself: the raised alerts minus the acknowledged ones
(:class:`AlertBook`, built from the ``alert.*`` events). The evaluator learns its own
raises and every acknowledgement by reading them back; it never reacts to ``alert.*``
or ``response.*`` events with a rule (no loops).

A rule may name an automated first response (:class:`AlertResponse`, decision 0039):
the evaluator hands each alert of that rule to its :class:`Responder` once, when it
reads the alert's ``alert.raise`` back from the trail, unless the trail already holds
a ``response.action`` for it (a restart reads again) or the alert is older than the
response could still matter (``min(ttl_s, max_age_s)``: stale). The responder records
the ``response.action``; the book shows it with its alert. While the alert stays open
and repeats as the response runs out (within :func:`renewal_margin_s` of its
``expires_at``, or after), the evaluator asks the responder to renew it, once per
expiry: the renewal's ``response.action`` names the expiry it renews (``renews``).

A summary names the rule, the event type and the key, built only from values that are
pseudonymous or anonymised (an address is cut to its /24 or /48 here, whatever the
trail keeps), whitelisted character by character and never holding a personal code:
the pipeline's redaction is the safety net, not the plan.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import ipaddress
import logging
import re
import threading
import time
from collections import deque
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final, Literal, Protocol

import orjson

from kroonika.audit._errors import AuditUnavailable
from kroonika.audit._model import Actor, ActorType, Severity, Target
from kroonika.audit.catalogue import type_filter, type_matches
from kroonika.audit.personal_codes import contains_personal_code
from kroonika.audit.sinks._base import Item, Record, TransientSinkError

log = logging.getLogger("kroonika.audit.alerting")

#: The evaluator's cursor name: not a valid sink name, so no configured sink shares it.
EVALUATOR_NAME: Final = "@alerts"
#: Event types no rule may watch: the evaluator's own output and what answers it.
IGNORED_PREFIXES: Final = ("alert.", "response.")
ALERT_ID: Final = re.compile(r"^alr_[0-9a-f]{32}$")
#: The automated responses a rule may name (decision 0039).
RESPONSE_ACTIONS: Final = ("deny_network",)
#: Bounds of a response's ``ttl_s``: ten seconds to a week.
RESPONSE_TTL_S: Final = (10, 7 * 86400)
#: Results of a response that stands until its ``expires_at`` and may be renewed while
#: the alert repeats (decision 0039, 2026-11-28).
STANDING_RESULTS: Final = ("done", "renewed", "dry_run", "dry_run_renewal")
_SAFE: Final = re.compile(r"[^A-Za-z0-9._:/@+=-]")
_VALUE_MAX: Final = 64


@dataclass(frozen=True, slots=True)
class AlertResponse:
    """An automated first response to each alert of a rule (decision 0039):
    ``deny_network`` puts the alert's source network on the deny-list for ``ttl_s``
    seconds; ``dry_run`` records what it would do and does nothing."""

    action: str
    ttl_s: int = 900
    mode: Literal["enforce", "dry_run"] = "dry_run"

    def __post_init__(self) -> None:
        if self.action not in RESPONSE_ACTIONS:
            raise ValueError(f"response action {self.action!r}: one of {list(RESPONSE_ACTIONS)}")
        low, high = RESPONSE_TTL_S
        if not low <= self.ttl_s <= high:
            raise ValueError(f"response ttl_s must be {low}..{high}")
        if self.mode not in ("enforce", "dry_run"):
            raise ValueError(f"response mode {self.mode!r}: enforce or dry_run")


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One rule: which events (``types``: a type or a prefix ending at a dot, given with
    or without that dot, kept without; ``match``: dotted field path -> allowed values),
    how they are grouped (``key``: dotted paths), how many within ``window_s`` fire it
    (``threshold``) and the alert's severity."""

    name: str
    types: tuple[str, ...]
    severity: Severity = Severity.WARNING
    match: Mapping[str, frozenset[str]] = field(default_factory=dict)
    key: tuple[str, ...] = ()
    threshold: int = 1
    window_s: int = 3600
    response: AlertResponse | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,62}", self.name):
            raise ValueError(f"rule name {self.name!r}: lowercase letters, digits, _ . -")
        if not self.types:
            raise ValueError(f"rule {self.name}: types must name at least one event type")
        try:
            # A type nothing matches (a typo) never fires; `security.` is `security`.
            types = tuple(type_filter(t) for t in self.types)
        except ValueError as exc:
            raise ValueError(f"rule {self.name}: {exc}") from None
        if any((t + ".").startswith(IGNORED_PREFIXES) or t in ("alert", "response") for t in types):
            raise ValueError(f"rule {self.name}: alert and response events cannot be watched")
        object.__setattr__(self, "types", types)
        if not 1 <= self.threshold <= 100_000:
            raise ValueError(f"rule {self.name}: threshold must be 1..100000")
        if not 1 <= self.window_s <= 30 * 86400:
            raise ValueError(f"rule {self.name}: window_s must be 1..2592000")
        names_ip = any(path == "ip" or path.endswith(".ip") for path in self.key)
        if self.response is not None and self.response.action == "deny_network" and not names_ip:
            raise ValueError(
                f"rule {self.name}: deny_network needs an address in the key"
                " (such as source.ip): the alert must name a network"
            )

    def applies(self, doc: Mapping[str, Any]) -> bool:
        etype = str(doc.get("type", ""))
        if not type_matches(etype, self.types):
            return False
        return all(str(value_at(doc, path)) in allowed for path, allowed in self.match.items())

    def key_of(self, doc: Mapping[str, Any]) -> str:
        """The key as ``path=value`` pairs of safe values (absent fields are left out)."""
        parts = []
        for path in self.key:
            value = value_at(doc, path)
            if value is None or value == "":
                continue
            parts.append(f"{path.rsplit('.', 1)[-1]}={safe_value(path, value)}")
        return " ".join(parts)


def value_at(doc: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (``details.kind``, ``source.ip``), or None."""
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def safe_value(path: str, value: Any) -> str:
    """A value fit for a summary: an address as its /24 or /48 network, a personal code
    never, and nothing but ``[A-Za-z0-9._:/@+=-]`` (anything else becomes ``?``)."""
    text = str(value)
    if path.endswith(".ip") or path == "ip":
        try:
            ip = ipaddress.ip_address(text.split("/")[0])
            prefix = 24 if ip.version == 4 else 48
            text = str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
        except ValueError:
            text = "?"
    if contains_personal_code(text):
        return "[personal-code]"
    return _SAFE.sub("?", text)[:_VALUE_MAX]


def network_of(key: str) -> str | None:
    """The network an alert's key names (its ``ip=`` part, already cut to /24 or /48 by
    :func:`safe_value`), or None when the key names none."""
    for part in key.split(" "):
        name, _, value = part.partition("=")
        if name == "ip" and value:
            try:
                return str(ipaddress.ip_network(value, strict=False))
            except ValueError:
                return None
    return None


def renewal_margin_s(ttl_s: int) -> float:
    """How long before its expiry a denial may be renewed by a repeat: a tenth of
    ``ttl_s``, at most a minute (so a steady attack meets no gap between two)."""
    return min(60.0, ttl_s / 10)


def alert_id_for(rule: str, event_id: str) -> str:
    """The alert's id: the same rule and triggering event always give the same id."""
    digest = hashlib.sha256(f"kroonika.alert/1\x00{rule}\x00{event_id}".encode()).hexdigest()
    return "alr_" + digest[:32]


def default_rules() -> list[AlertRule]:
    """The rules in force unless configured otherwise (decision 0036)."""
    return [
        AlertRule(
            "security_anomaly",
            ("security.anomaly",),
            Severity.ERROR,
            key=("details.kind", "details.key_kind", "source.ip"),
        ),
        AlertRule(
            "threat_match",
            ("security.threat_match",),
            Severity.ERROR,
            key=("details.feed", "source.ip"),
        ),
        AlertRule(
            "sink_failure",
            ("audit.sink",),
            Severity.WARNING,
            match={"details.state": frozenset({"failed", "dead_letter"})},
            key=("details.sink", "details.state"),
        ),
        AlertRule(
            "audit_damage",
            ("audit.access",),
            Severity.CRITICAL,
            match={
                "details.action": frozenset({"verify"}),
                "details.result": frozenset({"damaged"}),
            },
            key=("details.action",),
        ),
        AlertRule(
            "policy_violations",
            ("security.policy_violation",),
            Severity.WARNING,
            key=("source.ip",),
            threshold=5,
            window_s=300,
        ),
        AlertRule(
            "idp_keys_expired",
            ("idp.keys",),
            Severity.ERROR,
            match={"details.state": frozenset({"expired"})},
            key=("details.state",),
        ),
    ]


def epoch(when: str) -> float:
    try:
        return datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


# --- the state: raised minus acknowledged ---------------------------------------------


@dataclass(slots=True)
class Alert:
    """One raised alert as the trail records it."""

    alert_id: str
    rule: str
    summary: str
    severity: str
    raised_at: str
    first_seen: str
    key: str = ""
    event_id: str = ""
    event_type: str = ""
    count: int = 1
    acknowledged_at: str | None = None
    acknowledged_by: str | None = None
    note: str | None = None
    repeats: int = 0
    #: the automated responses recorded for it (``response.action`` details): the first
    #: per action, then its renewals, one per expiry renewed (``renews``)
    responses: list[dict[str, Any]] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.acknowledged_at is None

    def apply_acknowledgement(self, doc: Mapping[str, Any]) -> None:
        """Take in an ``alert.acknowledge`` of this alert; the first one counts."""
        if not self.open:
            return
        details = doc.get("details") or {}
        actor = doc.get("actor") or {}
        self.acknowledged_at = str(doc.get("time", ""))
        self.acknowledged_by = actor.get("pseudonym") or actor.get("client_id")
        self.note = details.get("note")
        self.repeats = max(self.repeats, int(details.get("repeats", 0) or 0))

    def apply_response(self, doc: Mapping[str, Any]) -> None:
        """Take in a ``response.action`` of this alert: the first of an action, and one
        renewal per expiry it renews (``renews``); read twice, taken once."""
        details = doc.get("details") or {}
        action = str(details.get("action", ""))
        renews = details.get("renews")
        if any(r["action"] == action and r.get("renews") == renews for r in self.responses):
            return
        self.responses.append(
            {
                "action": action,
                "result": str(details.get("result", "")),
                "mode": details.get("mode"),
                "network": details.get("network"),
                "entry_id": details.get("entry_id"),
                "expires_at": details.get("expires_at"),
                "renews": renews,
                "at": str(doc.get("time", "")),
            }
        )

    def adopt(self, recorded: Alert) -> None:
        """Take in what the trail holds of this alert beyond what this copy knows (its
        responses, its acknowledgement), as if the events had been read."""
        for r in recorded.responses:
            if not any(
                m["action"] == r["action"] and m.get("renews") == r.get("renews")
                for m in self.responses
            ):
                self.responses.append(dict(r))
        if self.open and not recorded.open:
            self.acknowledged_at = recorded.acknowledged_at
            self.acknowledged_by = recorded.acknowledged_by
            self.note = recorded.note

    def responded(self, action: str) -> bool:
        """Whether the first response of ``action`` is recorded (renewals aside)."""
        return any(r["action"] == action and r.get("renews") is None for r in self.responses)

    def standing(self, action: str) -> dict[str, Any] | None:
        """The latest response of ``action`` if it still stands and can be renewed (done,
        renewed, or their dry runs, with an expiry); None after a skip or a failure (an
        analyst's removal, the database away): renewals end there."""
        mine = [r for r in self.responses if r["action"] == action]
        if not mine:
            return None
        latest = mine[-1]
        if latest["result"] not in STANDING_RESULTS or not isinstance(latest["expires_at"], int):
            return None
        return latest

    def responses_text(self) -> str:
        """The responses in one line (``deny_network done 81.2.69.0/24 al_...``), for
        the dashboard and the command line; empty when none was taken."""
        return "; ".join(
            " ".join(str(r[k]) for k in ("action", "result", "network", "entry_id") if r.get(k))
            for r in self.responses
        )

    def copy(self) -> Alert:
        """A copy that can change without changing this one."""
        twin = copy.copy(self)
        twin.responses = [dict(r) for r in self.responses]
        return twin

    def public(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "rule": self.rule,
            "summary": self.summary,
            "severity": self.severity,
            "state": "open" if self.open else "acknowledged",
            "raised_at": self.raised_at,
            "first_seen": self.first_seen,
            "key": self.key,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "count": self.count,
            "repeats": self.repeats,
            "acknowledged_at": self.acknowledged_at,
            "acknowledged_by": self.acknowledged_by,
            "note": self.note,
            "responses": [dict(r) for r in self.responses],
        }


class AlertBook:
    """The alerts in the order they were raised, from the ``alert.*`` events and the
    ``response.action`` events that answered them."""

    def __init__(self) -> None:
        self.alerts: dict[str, Alert] = {}

    def apply(self, doc: Mapping[str, Any]) -> Alert | None:
        """Take in one event; the alert it raised or acknowledged (None for others)."""
        etype = doc.get("type")
        details = doc.get("details") or {}
        alert_id = str(details.get("alert_id", ""))
        if etype == "alert.raise" and alert_id and alert_id not in self.alerts:
            alert = Alert(
                alert_id=alert_id,
                rule=str(details.get("rule", "")),
                summary=str(details.get("summary", "")),
                severity=str(doc.get("severity", "")),
                raised_at=str(doc.get("time", "")),
                first_seen=str(details.get("first_seen") or doc.get("time", "")),
                key=str(details.get("key", "")),
                event_id=str(details.get("event_id", "")),
                event_type=str(details.get("event_type", "")),
                count=int(details.get("count", 1) or 1),
            )
            self.alerts[alert_id] = alert
            return alert
        if etype == "alert.acknowledge" and alert_id in self.alerts:
            alert = self.alerts[alert_id]
            alert.apply_acknowledgement(doc)
            return alert
        if etype == "response.action" and alert_id in self.alerts:
            alert = self.alerts[alert_id]
            alert.apply_response(doc)
            return alert
        return None


def read_book(store: Any, *, since: float | None = None) -> AlertBook:
    """The alerts recorded in ``store`` (a pass over the ``alert.*`` and ``response.*``
    events of the blocks that hold one, found by the store's partial index: the others
    are not read); with ``since`` (a Unix time) only those stored from then on, found
    through the blocks' time index."""
    from kroonika.audit.query import time_bound as bound

    book = AlertBook()
    from_time = None if since is None else bound(datetime.fromtimestamp(since, UTC).isoformat())
    for block in store.blocks(from_time=from_time, holding_alerts=True):
        for body in block.records():
            if not _about_alerts(body):
                continue
            doc = orjson.loads(body)
            if from_time is None or str(doc.get("time", "")) >= from_time:
                book.apply(doc)
    return book


#: What marks a record of an alert or response event (canonical JSON: exact bytes).
_ALERT_BYTES: Final = (b'"type":"alert.', b'"type":"response.')


def _about_alerts(data: bytes) -> bool:
    return any(marker in data for marker in _ALERT_BYTES)


class LiveBook:
    """The alert state of ``store`` for a long-running process: the same
    :class:`AlertBook` as :func:`read_book`, built from the whole trail on first use and
    then kept up to date by reading only the blocks stored since the last call.

    Every block with a row id up to ``after_id`` has been applied, and ``seen`` holds
    the ids above it applied since. Each call reads the blocks above ``after_id``
    (an index range on the primary key) and applies those not seen, then moves
    ``after_id`` to the store's *settled* id taken before the read
    (:meth:`~kroonika.audit.store.sql.SqlAuditStore.settled_id`): on PostgreSQL a
    block's id is drawn at insert, so a block with a lower id than one already read can
    still commit (another instance's stream, a slow insert); it is above ``after_id``
    and read at the next call. The settled id is asked for only when a block above
    ``after_id`` exists (an idle store costs one index look-up and takes no lock).

    The trail stays the only truth: nothing is stored besides it, and a retention purge
    (a stream's ``audit_retained_bases`` size changes) makes the next call build the
    book from the trail again, as a fresh process would. Thread-safe: calls are
    serialised, and the alerts handed out never change."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._book = AlertBook()
        self._after_id = 0
        self._seen: set[int] = set()
        self._purged: dict[str, int] | None = None
        #: blocks read (whole reads and increments), for the benchmark and the tests
        self.blocks_read = 0
        self.rebuilds = 0

    def alerts(self) -> list[Alert]:
        """Every alert in the order raised, as the trail says now. The alerts are shared
        and never change once handed out (an acknowledgement replaces its alert with an
        acknowledged copy): callers read them, and copy one to change it."""
        with self._lock:
            self._refresh()
            return list(self._book.alerts.values())

    def get(self, alert_id: str) -> Alert | None:
        """One alert as the trail says now (a copy), None if it was never raised."""
        with self._lock:
            self._refresh()
            alert = self._book.alerts.get(alert_id)
            return None if alert is None else alert.copy()

    def _apply(self, doc: dict[str, Any]) -> None:
        details = doc.get("details")
        alert_id = details.get("alert_id") if isinstance(details, dict) else None
        current = self._book.alerts.get(str(alert_id))
        if current is not None and doc.get("type") in ("alert.acknowledge", "response.action"):
            self._book.alerts[current.alert_id] = current.copy()  # copy on write
        self._book.apply(doc)

    def _refresh(self) -> None:
        purged = self._store.purged_upto()
        if purged != self._purged:
            if self._purged is not None:
                self.rebuilds += 1
            self._book, self._after_id, self._seen = AlertBook(), 0, set()
            self._purged = purged
        if self._store.top_id() <= self._after_id:
            return  # nothing above the settled id: nothing new, and no lock taken
        settled = self._store.settled_id()  # before the read: all up to it is visible
        for block in self._store.blocks(after_id=self._after_id, batch=64, holding_alerts=True):
            rowid = block.rowid
            if rowid is None or rowid in self._seen:
                continue
            self.blocks_read += 1
            self._seen.add(rowid)
            if not _about_alerts(block.data):
                continue
            for body in block.records():
                if _about_alerts(body):
                    self._apply(orjson.loads(body))
        if settled > self._after_id:
            self._after_id = settled
            self._seen = {i for i in self._seen if i > settled}


class AckArbiter:
    """One acknowledgement of an alert at a time, across every process that shares the
    store: a PostgreSQL session advisory lock (on a dedicated connection, released by
    the server if the process dies) or, on SQLite, ``flock`` on a file beside the
    database (released by the kernel), keyed by the alert id. Whoever holds it reads
    the trail again, checks the alert is open and records ``alert.acknowledge`` before
    letting go: the second of two racing acknowledgements finds the first in the trail.
    Nothing is written besides the trail, so an acknowledgement that cannot be recorded
    leaves the alert open (fail closed) and a crash leaves no stale claim.

    Within one process the locks are re-entrant: callers serialise their own
    acknowledgements (the admin API holds an ``asyncio.Lock`` around this)."""

    KEY_PREFIX: Final = "@alert-ack/"
    #: The keys of the evaluators' raises, responses and renewals (decision 0039,
    #: 2026-11-28): an arbiter made with this prefix serialises those, not acknowledgements.
    ACT_PREFIX: Final = "@alert-act/"

    def __init__(
        self,
        engine: Any,
        *,
        wait_s: float = 10.0,
        poll_s: float = 0.01,
        prefix: str = KEY_PREFIX,
    ) -> None:
        from kroonika.audit.sinks._state import ownership_lock_for

        self._locks = ownership_lock_for(engine)
        self.wait_s = wait_s
        self.poll_s = poll_s
        self.prefix = prefix

    def acquire(self, alert_id: str) -> None:
        """Wait for the alert's lock (:class:`AckBusy` after ``wait_s``)."""
        key = self.prefix + alert_id
        deadline = time.monotonic() + self.wait_s
        while not self._locks.try_acquire(key):
            if time.monotonic() >= deadline:
                what = "acknowledgement" if self.prefix == self.KEY_PREFIX else "raise or response"
                raise AckBusy(f"another {what} of {alert_id} is still being recorded")
            time.sleep(self.poll_s)

    def release(self, alert_id: str) -> None:
        self._locks.release(self.prefix + alert_id)

    @contextmanager
    def held(self, alert_id: str) -> Iterator[None]:
        """The alert's lock for the ``with`` block (blocking: for threads and the CLI)."""
        self.acquire(alert_id)
        try:
            yield
        finally:
            self.release(alert_id)

    @asynccontextmanager
    async def holding(self, alert_id: str) -> AsyncIterator[None]:
        """The alert's lock for the ``async with`` block (waits in a thread)."""
        await asyncio.to_thread(self.acquire, alert_id)
        try:
            yield
        finally:
            await asyncio.to_thread(self.release, alert_id)

    def close(self) -> None:
        self._locks.close()


class AckBusy(AuditUnavailable):
    """The alert's acknowledgement lock was not had in time (another process holds it,
    or the store does not answer)."""


# --- the evaluator ----------------------------------------------------------------------

Emit = Callable[[Any], Any]  # AuditTrail.emit


class Responder(Protocol):
    """What carries out a rule's :class:`AlertResponse` (the service's
    :class:`~kroonika.alerting.AlertResponder`): acts at most once for the alert and
    records one ``response.action``; :class:`AuditUnavailable` when that cannot be
    recorded (it has undone what it did, and the evaluator tries again later)."""

    async def respond(self, rule: AlertRule, alert: Alert) -> dict[str, Any]:
        """The ``response.action`` details recorded."""
        ...

    async def renew(
        self, rule: AlertRule, alert: Alert, standing: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Renew the response ``standing`` (the alert's latest, about to expire) because
        the alert repeats: one ``response.action`` with ``renews`` = its expiry, or None
        (nothing recorded: the alert turned out acknowledged)."""
        ...


class AlertEvaluator:
    """A sink that raises alerts: see the module docstring. ``emit`` is the trail's
    ``emit``; ``store`` is read once at ``open`` (the alerts already raised, and the
    recent events of threshold rules already counted before the cursor). An event older
    than ``max_age_s`` when it is read raises nothing (``stale`` counts it): a first
    start on a long trail does not page anyone about last year.

    With ``live`` (the process's :class:`LiveBook`) it asks the whole trail before it
    raises, responds or renews, so taking over the stream of an instance that died or
    stopped before its cursor moved adds nothing that instance recorded; with
    ``arbiter`` (prefix :attr:`AckArbiter.ACT_PREFIX`) each such step holds the alert's
    lock across instances until its record is stored (decision 0039, 2026-11-28)."""

    def __init__(
        self,
        rules: Sequence[AlertRule],
        emit: Emit,
        *,
        store: Any = None,
        cursors: Any = None,
        clock: Callable[[], float] = time.time,
        max_age_s: float = 86400.0,
        name: str = EVALUATOR_NAME,
        responder: Responder | None = None,
        live: LiveBook | None = None,
        arbiter: AckArbiter | None = None,
    ) -> None:
        if max_age_s <= 0:
            raise ValueError("max_age_s must be positive")
        names = [r.name for r in rules]
        if len(set(names)) != len(names):
            raise ValueError(f"rule names must be unique: {names}")
        self.name = name
        self.rules = tuple(rules)
        self._by_name = {r.name: r for r in rules}
        self._responder = responder
        self._live = live
        self._arbiter = arbiter
        self._steps: dict[str, asyncio.Lock] = {}
        self._emit = emit
        self._store = store
        self._cursors = cursors
        self._clock = clock
        self.max_age_s = max_age_s
        self.book = AlertBook()
        self._seen: dict[tuple[str, str], deque[tuple[float, str]]] = {}
        self.raised = 0
        self.repeated = 0
        self.stale = 0
        self.responded = 0
        self.renewed = 0
        self.stale_responses = 0

    async def open(self) -> None:
        """Read what a restart must know: the alerts that can still matter and the
        threshold windows. An event older than ``max_age_s`` raises nothing, and an alert
        throttles only within its rule's window, so alerts raised before both (and an
        hour's margin for clocks) cannot change what this evaluator does: they are not
        read, and a start costs the recent trail, not the whole of it."""
        if self._store is not None:
            windows = max((r.window_s for r in self.rules), default=0)
            since = self._clock() - self.max_age_s - windows - 3600
            self.book = await asyncio.to_thread(read_book, self._store, since=since)
            await asyncio.to_thread(self._prime)

    def _prime(self) -> None:
        """Count the recent events that threshold rules saw before a restart (those
        before the cursor: the runner reads the others again)."""
        counting = [r for r in self.rules if r.threshold > 1]
        if not counting or self._cursors is None:
            return
        from kroonika.audit.query import Query, run_query
        from kroonika.audit.query import time_bound as bound

        window = max(r.window_s for r in counting)
        since = datetime.fromtimestamp(self._clock() - window, UTC).isoformat()
        types = tuple(sorted({t for r in counting for t in r.types}))
        query = Query(from_time=bound(since), types=types)
        cursors: dict[str, int] = {}
        for body in run_query(self._store, query):
            doc = orjson.loads(body)
            stream = str(doc.get("stream", ""))
            if stream not in cursors:
                cursors[stream] = self._cursors.get(self.name, stream)
            if int(doc.get("seq", 0)) <= cursors[stream]:
                for rule in counting:
                    if rule.applies(doc):
                        at = epoch(str(doc.get("time", "")))
                        self._count(rule, rule.key_of(doc), at, str(doc.get("id", "")))

    async def send(self, batch: Sequence[Item]) -> None:
        for position, item in enumerate(batch):
            if not isinstance(item, Record):
                continue
            try:
                await self.consider(item.doc)
            except AuditUnavailable as exc:
                raise TransientSinkError(
                    f"the trail cannot record an alert: {exc}", delivered=position
                ) from exc

    async def close(self) -> None:
        """Nothing to close."""

    async def consider(self, doc: Mapping[str, Any]) -> list[str]:
        """Evaluate one event; the ids of the alerts it raised."""
        etype = str(doc.get("type", ""))
        if etype.startswith(IGNORED_PREFIXES):
            self.book.apply(doc)
            if etype == "alert.raise":
                # its own raises are in the book already: look the alert up
                details = doc.get("details") or {}
                alert = self.book.alerts.get(str(details.get("alert_id", "")))
                if alert is not None:
                    await self._respond(alert, doc)
            return []
        raised: list[str] = []
        if self._clock() - epoch(str(doc.get("time", ""))) > self.max_age_s:
            # Old history (a first start on a long trail, a long outage): not news.
            self.stale += 1
            return raised
        for rule in self.rules:
            if not rule.applies(doc):
                continue
            key = rule.key_of(doc)
            at = epoch(str(doc.get("time", "")))
            count = self._count(rule, key, at, str(doc.get("id", "")))
            if count < rule.threshold:
                continue
            alert_id = alert_id_for(rule.name, str(doc.get("id", "")))
            if alert_id in self.book.alerts:
                continue  # raised before a restart: this event is read again
            current = self._open_alert(rule, key, at)
            if current is not None:
                # before counting it: a renewal the trail refuses retries this event
                await self._renew(rule, current, doc, at)
                current.repeats += 1
                self.repeated += 1
                continue
            if await self._alone(
                alert_id, partial(self._raise_once, rule, key, doc, alert_id, count)
            ):
                raised.append(alert_id)
        return raised

    async def _respond(self, alert: Alert, doc: Mapping[str, Any]) -> None:
        """Hand a raised alert to the responder, once: not when the trail already holds
        its ``response.action`` (read at ``open`` or since), not when the alert is older
        than ``min(ttl_s, max_age_s)`` (its response would come too late to matter, and
        the start reads responses only that far back)."""
        rule = self._by_name.get(alert.rule)
        if rule is None or rule.response is None or self._responder is None:
            return
        if alert.responded(rule.response.action):
            return  # done before (a restart, a cursor put back): never twice
        age = self._clock() - epoch(str(doc.get("time", "")))
        if age > min(rule.response.ttl_s, self.max_age_s):
            self.stale_responses += 1
            return
        step = partial(self._respond_once, self._responder, rule, rule.response, alert, doc)
        await self._alone(alert.alert_id, step)

    async def _respond_once(
        self,
        responder: Responder,
        rule: AlertRule,
        response: AlertResponse,
        alert: Alert,
        doc: Mapping[str, Any],
    ) -> bool:
        await self._catch_up(alert)
        if alert.responded(response.action):
            return False  # answered by another instance, or by this one before a stop
        self._took(doc, await responder.respond(rule, alert))
        self.responded += 1
        return True

    async def _renew(
        self, rule: AlertRule, alert: Alert, doc: Mapping[str, Any], at: float
    ) -> None:
        """A repeat of an open alert whose response stands: renew it when the repeat
        happened within :func:`renewal_margin_s` of the response's expiry or after it
        (the attack goes on as the denial runs out), once per expiry (a renewal names
        the expiry it renews; the book keeps one per expiry, read back or not). Not for a
        repeat read later than ``min(ttl_s, max_age_s)`` after it happened (stale)."""
        response = rule.response
        if response is None or self._responder is None or not alert.open:
            return
        standing = alert.standing(response.action)
        if standing is None:
            return
        if at < standing["expires_at"] - renewal_margin_s(response.ttl_s):
            return  # the response still holds
        if self._clock() - at > min(response.ttl_s, self.max_age_s):
            self.stale_responses += 1
            return
        step = partial(self._renew_once, self._responder, rule, response, alert, standing, doc)
        await self._alone(alert.alert_id, step)

    async def _renew_once(
        self,
        responder: Responder,
        rule: AlertRule,
        response: AlertResponse,
        alert: Alert,
        standing: dict[str, Any],
        doc: Mapping[str, Any],
    ) -> bool:
        await self._catch_up(alert)
        renews = standing["expires_at"]
        if not alert.open or any(
            r["action"] == response.action and r.get("renews") == renews for r in alert.responses
        ):
            return False  # acknowledged, or this expiry renewed already (another instance)
        details = await responder.renew(rule, alert, standing)
        if details is None:
            return False
        self._took(doc, details)
        self.renewed += 1
        return True

    async def _catch_up(self, alert: Alert) -> None:
        """Take in what the whole trail holds of ``alert`` now (with ``live``)."""
        recorded = await self._recorded(alert.alert_id)
        if recorded is not None:
            alert.adopt(recorded)

    def _took(self, doc: Mapping[str, Any], details: dict[str, Any]) -> None:
        """What the trail now holds (a ``response.action`` of ``details``, answering
        ``doc``); reading it back changes nothing."""
        self.book.apply(
            {"type": "response.action", "time": doc.get("time", ""), "details": details}
        )

    async def _raise_once(
        self, rule: AlertRule, key: str, doc: Mapping[str, Any], alert_id: str, count: int
    ) -> bool:
        recorded = await self._recorded(alert_id)
        if recorded is not None:
            # raised by another instance that read this stream before (it died or
            # stopped before its cursor moved): the trail has it, so it is not raised again
            self.book.alerts[alert_id] = recorded
            return False
        if alert_id in self.book.alerts:
            return False  # raised by this evaluator's step that a stop did not end
        await self._raise(rule, key, doc, alert_id, count)
        return True

    async def _alone(self, alert_id: str, step: Callable[[], Awaitable[bool]]) -> bool:
        """Run ``step`` (look at the trail, then raise, respond or renew and record) as
        one step per alert: one at a time in this process, across the instances of the
        store with ``arbiter`` (its lock held until the record is stored), and to its end
        even if this evaluator is stopped meanwhile: a stop cancels the runner's task, but
        an event handed to the trail is stored anyway, so the step must not let go of the
        alert before it is; whoever looks next, this evaluator's final pass or the
        instance that takes the stream over, finds it in the trail."""
        mutex = self._steps.setdefault(alert_id, asyncio.Lock())

        async def whole() -> bool:
            async with mutex:
                if self._arbiter is None:
                    return await step()
                async with self._arbiter.holding(alert_id):
                    return await step()

        try:
            return await asyncio.shield(asyncio.ensure_future(whole()))
        finally:
            if not mutex.locked():
                self._steps.pop(alert_id, None)

    async def _recorded(self, alert_id: str) -> Alert | None:
        """The alert as the whole trail holds it now, every stream (``live``), not only
        the streams this evaluator reads; None without a live book. Asked before this
        evaluator raises, responds or renews: an instance that read a stream before this
        one took it over (it died before its cursor moved) may have done it, after this
        one read the trail at its start."""
        if self._live is None:
            return None
        return await asyncio.to_thread(self._live.get, alert_id)

    def _count(self, rule: AlertRule, key: str, at: float, event_id: str) -> int:
        """Events of ``key`` within the window up to ``at``; an event counted before (a
        batch retried after the trail refused an alert) is not counted again."""
        if rule.threshold == 1:
            return 1
        seen = self._seen.setdefault((rule.name, key), deque())
        if all(eid != event_id for _, eid in seen):
            seen.append((at, event_id))
        while seen and seen[0][0] <= at - rule.window_s:
            seen.popleft()
        return len(seen)

    def _open_alert(self, rule: AlertRule, key: str, at: float) -> Alert | None:
        for alert in reversed(self.book.alerts.values()):
            if alert.rule == rule.name and alert.key == key:
                if alert.open and at - epoch(alert.first_seen) < rule.window_s:
                    return alert
                return None
        return None

    async def _raise(
        self, rule: AlertRule, key: str, doc: Mapping[str, Any], alert_id: str, count: int
    ) -> None:
        from kroonika.audit import events

        etype = str(doc.get("type", ""))
        summary = f"{rule.name}: {etype}" + (f" {key}" if key else "")
        if rule.threshold > 1:
            summary += f" ({count} within {rule.window_s}s)"
        first_seen = str(doc.get("time", ""))
        details: dict[str, Any] = {
            "rule": rule.name,
            "summary": summary,
            "alert_id": alert_id,
            "key": key,
            "event_id": str(doc.get("id", "")),
            "event_type": etype,
            "first_seen": first_seen,
            "count": count,
            "window_s": rule.window_s,
        }
        await self._emit(
            events.alert_raise(
                actor=Actor(type=ActorType.SYSTEM),
                target=Target("alert", alert_id),
                severity=rule.severity,
                **details,
            )
        )
        # What the trail now holds; reading it back changes nothing.
        self.book.apply(
            {
                "type": "alert.raise",
                "time": first_seen,
                "severity": rule.severity.value,
                "details": details,
            }
        )
        self.raised += 1
        log.info("alert %s raised by rule %s", alert_id, rule.name)


__all__ = [
    "ALERT_ID",
    "EVALUATOR_NAME",
    "RESPONSE_ACTIONS",
    "STANDING_RESULTS",
    "AckArbiter",
    "AckBusy",
    "Alert",
    "AlertBook",
    "AlertEvaluator",
    "AlertResponse",
    "AlertRule",
    "LiveBook",
    "Responder",
    "alert_id_for",
    "default_rules",
    "network_of",
    "read_book",
    "renewal_margin_s",
    "safe_value",
]
