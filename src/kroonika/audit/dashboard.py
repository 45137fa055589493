"""What the security dashboard shows, read from the trail: open and recently acknowledged
alerts, counts of the last hour and the last day, and the trail's own health.

The alerts are the alert state the alert API lists (the service's
:class:`~kroonika.audit.alerting.LiveBook`): every open alert however old. For the rest,
one pass over the store's blocks, bounded by time through the blocks' indexed
``last_time``: blocks of the last day are read record by record (every record counts);
older blocks within the verification look-back are skipped unless their bytes hold a
verification record (the same byte sift :mod:`kroonika.audit.query` uses), so a large
trail costs one day of records plus an index range. Nothing is held beyond one block and
the counters.

An alert is an ``alert.raise`` (details ``alert_id``, ``rule``, ``summary``; its
severity is the event's) and is open until an ``alert.acknowledge`` with the same
``alert_id`` is stored, whichever writer stream either came from.

Everything here is *data*: strings are the stored values (a tampered or hostile store
may hold anything); whoever renders them escapes them. Addresses are shown as their
anonymised networks only (:func:`anonymised_source`), people by pseudonym only.
"""

from __future__ import annotations

import functools
import ipaddress
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import orjson

from kroonika.audit.alerting import Alert, read_book
from kroonika.audit.query import time_bound
from kroonika.audit.store._types import AuditStore

#: Byte strings that mark a record older than a day as one the dashboard needs: a
#: recorded verification (canonical JSON: no spaces, so these are exact).
_WANTED: Final = (b'"action":"verify"',)
#: The coarsest networks an address is shown as (as the ``anonymise_ip`` defaults).
IPV4_PREFIX: Final = 24
IPV6_PREFIX: Final = 48
#: How many sources, alerts and acknowledgements are listed at most.
TOP: Final = 10
ALERTS_SHOWN: Final = 100


@dataclass(slots=True)
class Window:
    """Counts over the records stored since ``since``."""

    label: str
    since: str
    events: int = 0
    by_category: Counter[tuple[str, str]] = field(default_factory=Counter)
    failed_logins: int = 0
    login_reasons: Counter[str] = field(default_factory=Counter)
    security: Counter[str] = field(default_factory=Counter)
    failure_sources: Counter[str] = field(default_factory=Counter)
    failure_actors: Counter[str] = field(default_factory=Counter)

    def add(self, doc: dict[str, Any]) -> None:
        """Count one parsed record."""
        self.count(facts(doc))

    def count(self, f: Facts) -> None:
        """Count one record's facts (see :func:`facts`)."""
        category, outcome, event_type, reason, source, pseudonym = f
        self.events += 1
        self.by_category[(category, outcome)] += 1
        if category == "security":
            self.security[event_type] += 1
        if outcome != "failure":
            return
        if event_type == "auth.login":
            self.failed_logins += 1
            self.login_reasons[reason or "unknown"] += 1
        if source is not None:
            self.failure_sources[source] += 1
        if pseudonym is not None:
            self.failure_actors[pseudonym] += 1


#: What a window counts of one record: category, outcome, type, reason, the source's
#: anonymised network and the actor's pseudonym (the last two only for a failure).
Facts = tuple[str, str, str, str, str | None, str | None]


def facts(doc: dict[str, Any]) -> Facts:
    """The figures of one record, taken once however many windows count it."""
    outcome = _text(doc.get("outcome"))
    source = pseudonym = None
    if outcome == "failure":
        src = doc.get("source")
        if isinstance(src, dict):
            source = anonymised_source(src.get("ip"), src.get("ip_prefix"))
        actor = doc.get("actor")
        if isinstance(actor, dict) and isinstance(actor.get("pseudonym"), str):
            pseudonym = actor["pseudonym"]
    return (
        _text(doc.get("category")),
        outcome,
        _text(doc.get("type")),
        _text(doc.get("reason")),
        source,
        pseudonym,
    )


@dataclass(frozen=True, slots=True)
class StreamHealth:
    """One writer stream: its size, its latest signed head and its latest checkpoint."""

    stream: str
    size: int
    head_time: str
    checkpoint_time: str | None
    checkpoint_size: int | None


@dataclass(frozen=True, slots=True)
class Verification:
    """The latest recorded run of the verifier (``audit.access`` with action verify)."""

    time: str
    result: str
    interface: str
    records: int | None


@dataclass(slots=True)
class Overview:
    generated: str
    verification_since: str
    open_alerts: list[Alert]
    open_total: int
    acknowledged: list[Alert]
    windows: list[Window]
    streams: list[StreamHealth]
    verification: Verification | None
    read: int  # records parsed to make this overview


def anonymised_source(ip: object, prefix: object = None) -> str | None:
    """An address as the network it is shown as: never finer than /24 (IPv4) or /48
    (IPv6), whatever the store holds (a deployment may keep full addresses)."""
    if not isinstance(ip, str):
        return None
    given = prefix if isinstance(prefix, int) and not isinstance(prefix, bool) else None
    return _network(ip, given)


@functools.lru_cache(maxsize=4096)
def _network(ip: str, prefix: int | None) -> str | None:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    widest = IPV4_PREFIX if address.version == 4 else IPV6_PREFIX
    bits = prefix if prefix is not None and 0 <= prefix <= widest else widest
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _stamp(moment: datetime) -> str:
    return time_bound(moment.isoformat().replace("+00:00", "Z"))


def _wanted(data: bytes) -> bool:
    return any(n in data for n in _WANTED)


def overview(
    store: AuditStore,
    now: datetime,
    *,
    alerts: Iterable[Alert] | None = None,
    alert_days: int = 30,
    windows: Iterable[tuple[str, timedelta]] = (
        ("1h", timedelta(hours=1)),
        ("24h", timedelta(days=1)),
    ),
) -> Overview:
    """Read the dashboard's figures from ``store`` as of ``now`` (an aware UTC time).

    ``alerts`` is the alert state (the service passes its process-wide
    :class:`~kroonika.audit.alerting.LiveBook`'s, the one ``GET /admin/alerts`` lists);
    without it the whole trail's ``alert.*`` events are read (:func:`read_book`). Every
    open alert is shown however old, and those acknowledged within the longest window.
    ``alert_days`` bounds how far back the last recorded verification is looked for."""
    if alerts is None:
        alerts = read_book(store).alerts.values()
    spans = sorted(windows, key=lambda w: w[1], reverse=True)
    counted = [Window(label, _stamp(now - span)) for label, span in spans]
    day_start = counted[0].since if counted else _stamp(now)
    verification_since = _stamp(now - timedelta(days=alert_days))
    start = min(verification_since, day_start)
    verification: Verification | None = None
    read = 0
    for block in store.blocks(from_time=start):
        whole = block.last_time >= day_start
        if not whole and not _wanted(block.data):
            continue
        for body in block.records():
            if not whole and not _wanted(body):
                continue
            doc = orjson.loads(body)
            read += 1
            t = _text(doc.get("time"))
            if t < start:
                continue
            if t >= day_start:
                f = facts(doc)
                for w in counted:
                    if t >= w.since:
                        w.count(f)
            if t < verification_since:
                continue
            event_type = doc.get("type")
            details = doc.get("details")
            details = details if isinstance(details, dict) else {}
            if (
                event_type == "audit.access"
                and details.get("action") == "verify"
                and (verification is None or t >= verification.time)
            ):
                returned = details.get("returned")
                verification = Verification(
                    time=t,
                    result=_text(details.get("result")),
                    interface=_text(details.get("interface")),
                    records=returned if isinstance(returned, int) else None,
                )
    alerts = list(alerts)
    open_alerts = sorted((a for a in alerts if a.open), key=lambda a: a.raised_at, reverse=True)
    recent = counted[0].since if counted else verification_since
    acknowledged = sorted(
        (a for a in alerts if not a.open and (a.acknowledged_at or "") >= recent),
        key=lambda a: a.acknowledged_at or "",
        reverse=True,
    )
    return Overview(
        generated=_stamp(now),
        verification_since=verification_since,
        open_alerts=open_alerts[:ALERTS_SHOWN],
        open_total=len(open_alerts),
        acknowledged=acknowledged[:TOP],
        windows=sorted(counted, key=lambda w: w.since, reverse=True),
        streams=stream_health(store),
        verification=verification,
        read=read,
    )


def stream_health(store: AuditStore) -> list[StreamHealth]:
    """Each stream's size and latest signed head, and its latest checkpoint (one indexed
    look-up per stream)."""
    out = []
    for name in sorted(store.streams()):
        state = store.stream_state(name)
        if state is None:
            continue
        cp = state.last_checkpoint
        out.append(
            StreamHealth(
                stream=name,
                size=state.size,
                head_time=state.head.time if state.head is not None else "",
                checkpoint_time=cp.time if cp is not None else None,
                checkpoint_size=cp.size if cp is not None else None,
            )
        )
    return out
