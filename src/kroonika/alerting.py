"""Alerting of this service, built from its settings (decision 0036).

- :func:`alert_rules` turns ``KROONIKA_ALERT_RULES`` into the rules in force: the
  built-in ones (:func:`~kroonika.audit.alerting.default_rules`) with what the setting
  changes, a built-in rule switched off with ``enabled=false``, and rules of its own.
  A rule that cannot work refuses to start the service (:class:`SettingsError`).
- :class:`Alerting` keeps the process-wide alert state
  (:class:`~kroonika.audit.alerting.LiveBook`) and the acknowledgement arbiter
  (:class:`~kroonika.audit.alerting.AckArbiter`), and runs the
  :class:`~kroonika.audit.alerting.AlertEvaluator` from a
  :class:`~kroonika.audit.sinks.SinkRunner` of its own (its cursor ``@alerts``), woken by
  the trail's commits. Fails open: an evaluator that cannot record an alert retries
  (with back-off) and never blocks the writer. It stops before the trail (it writes).

- :class:`AlertResponder` carries out a rule's automated first response (decision
  0039): ``deny_network`` puts the alert's network on the deny-list for the rule's
  ``ttl_s`` (a ``dry_run`` records what it would do) and records one
  ``response.action``. Fails closed like an admin change: a deny entry whose
  ``response.action`` cannot be recorded is removed again. While the open alert
  repeats as the denial runs out, it renews it (``renewed``, the entry's expiry
  extended), unless the alert was acknowledged or a person removed or changed the
  entry.

Delivery is the log shipping's: a sink with ``types=["alert"]`` (webhook, syslog) or
an ``smtp`` sink carries the ``alert.raise`` events like any other event.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from sqlalchemy.exc import SQLAlchemyError

from kroonika.audit import (
    Actor,
    ActorType,
    AuditTrail,
    AuditUnavailable,
    Severity,
    Target,
    events,
)
from kroonika.audit.alerting import (
    AckArbiter,
    Alert,
    AlertEvaluator,
    AlertResponse,
    AlertRule,
    LiveBook,
    default_rules,
    epoch,
    network_of,
)
from kroonika.audit.query import Query, run_query, time_bound
from kroonika.audit.sinks import CursorStore, RetryPolicy, SinkRunner
from kroonika.audit.store.sql import SqlAuditStore
from kroonika.settings import AlertRuleSettings, Settings, SettingsError
from kroonika.shipping import CommitWakeup
from kroonika.tokens import AccessListError, Entry, TokenService

log = logging.getLogger("kroonika.alerting")

#: Who made an automated response's deny entry (``created_by``, the events' actor).
RESPONSE_PRINCIPAL: Final = "automated:alert-response"
#: How far before the standing response a renewal reads the trail for an analyst's
#: change (an event stored a while after its time, by a slow instance, is still seen).
HISTORY_MARGIN_S: Final = 300.0


def _nothing() -> None:
    """No runner to wake."""


def _response(name: str, spec: AlertRuleSettings, base: AlertRule | None) -> AlertResponse | None:
    if spec.response is None:
        return base.response if base else None
    r = spec.response
    try:
        return AlertResponse(r.action, r.ttl_s, r.mode)  # type: ignore[arg-type]
    except ValueError as exc:
        raise SettingsError(f"KROONIKA_ALERT_RULES: rule {name}: {exc}") from None


def _rule(name: str, spec: AlertRuleSettings, base: AlertRule | None) -> AlertRule:
    if base is None and not spec.types:
        raise SettingsError(f"KROONIKA_ALERT_RULES: rule {name!r} is new and needs types")
    response = _response(name, spec, base)
    try:
        return AlertRule(
            name,
            tuple(spec.types) if spec.types else base.types,  # type: ignore[union-attr]
            Severity(spec.severity)
            if spec.severity
            else (base.severity if base else Severity.WARNING),
            match={k: frozenset(v) for k, v in spec.match.items()}
            if spec.match is not None
            else (dict(base.match) if base else {}),
            key=tuple(spec.key) if spec.key is not None else (base.key if base else ()),
            threshold=spec.threshold or (base.threshold if base else 1),
            window_s=spec.window_s or (base.window_s if base else 3600),
            response=response,
        )
    except ValueError as exc:
        raise SettingsError(f"KROONIKA_ALERT_RULES: {exc}") from None


def alert_rules(settings: Settings) -> list[AlertRule]:
    """The rules in force (built-in ones first, in their order)."""
    builtin = {r.name: r for r in default_rules()}
    rules: list[AlertRule] = []
    for name, base in builtin.items():
        spec = settings.alert_rules.get(name)
        if spec is None:
            rules.append(base)
        elif spec.enabled:
            rules.append(_rule(name, spec, base))
    for name, spec in settings.alert_rules.items():
        if name not in builtin and spec.enabled:
            rules.append(_rule(name, spec, None))
    return rules


#: Undoes an entry's change whose ``response.action`` could not be recorded.
Undo = Callable[[], Awaitable[None]]


def _database_away(alert: Alert, exc: SQLAlchemyError) -> str:
    log.warning("alert %s: deny_network failed (%s)", alert.alert_id, type(exc).__name__)
    return "failed:database_unavailable"


def _standing_since(alert: Alert, standing: dict[str, Any]) -> str:
    """When the standing response was made (the book's ``at``, its own or that of the
    alert's latest response of its action), else the alert's first event."""
    action = standing.get("action")
    latest = [r["at"] for r in alert.responses if r["action"] == action and r.get("at")]
    return str(standing.get("at") or (latest[-1] if latest else alert.first_seen))


def _keyed_on_other_than_ip(key: str) -> bool:
    """An anomaly about a person (``key_kind=person``: impossible travel, one person's
    failures) names the network it was last seen from: denying that network would
    lock out the victim, not the attacker."""
    kinds = [p.partition("=")[2] for p in key.split(" ") if p.startswith("key_kind=")]
    return any(k != "ip" for k in kinds)


class AlertResponder:
    """Carries out the rules' automated responses (a
    :class:`~kroonika.audit.alerting.Responder`). The evaluator calls :meth:`respond`
    once per alert, and :meth:`renew` when the open alert repeats as its denial runs
    out; each call records exactly one ``response.action`` (``action``, ``alert_id``,
    ``result``: ``done``, ``dry_run``, ``skipped:<why>``, plus the rule, the network,
    the entry and its expiry), with no personal data: the network is the alert key's
    anonymised /24 or /48.

    ``deny_network`` adds a deny-list entry for the alert's network through the token
    service (so its own ``access_list.add`` is recorded, and the entry is removed if
    that cannot be), expiring ``ttl_s`` after it acts, ``created_by``
    :data:`RESPONSE_PRINCIPAL`, its reason naming the rule and the alert. It is skipped
    for a key without a network, for an anomaly keyed by something else (a person) and
    for a network that holds a trusted proxy (denying it would lock out everyone behind
    the proxy). If the ``response.action`` cannot be recorded, the entry is removed
    again and :class:`AuditUnavailable` raised: the evaluator retries the alert later.
    After a crash between the entry and its ``response.action``, the next try finds
    the entry by its reason and records it as done instead of adding another. The
    business database away is recorded as ``failed:database_unavailable`` and not
    tried again (the alert is not held up). ``emit`` is the trail's ``emit``."""

    def __init__(
        self,
        service: TokenService,
        emit: Callable[[Any], Any],
        *,
        store: SqlAuditStore,
        trusted_proxies: Sequence[str] = (),
    ) -> None:
        self._service = service
        self._emit = emit
        self._store = store
        self._proxies = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]
        self.actor = Actor(ActorType.SYSTEM, client_id=RESPONSE_PRINCIPAL)

    @staticmethod
    def reason(rule: AlertRule, alert: Alert) -> str:
        """The deny entry's reason: it names the rule and the alert (and finds it again)."""
        return f"automated response to alert {alert.alert_id} (rule {rule.name})"

    @staticmethod
    def _details(rule: AlertRule, alert: Alert) -> tuple[AlertResponse, str | None, dict[str, Any]]:
        """The rule's response, the alert's network and what every record of it says."""
        response = rule.response
        if response is None:
            raise ValueError(f"rule {rule.name} has no response")
        network = network_of(alert.key)
        details: dict[str, Any] = {
            "action": response.action,
            "alert_id": alert.alert_id,
            "rule": rule.name,
            "mode": response.mode,
            "ttl_s": response.ttl_s,
        }
        if network is not None:
            details["network"] = network
        return response, network, details

    async def respond(self, rule: AlertRule, alert: Alert) -> dict[str, Any]:
        response, network, details = self._details(rule, alert)
        entry: Entry | None = None
        undo: Undo | None = None
        refusal = self._refusal(alert, network)
        if refusal is not None:
            details["result"] = refusal
        elif response.mode == "dry_run":
            details["result"] = "dry_run"
            details["expires_at"] = self._service.clock.now() + response.ttl_s  # would be
        elif network is not None:  # always: no network is refused above
            try:
                entry, details["result"] = await self._deny(rule, alert, network, response)
            except SQLAlchemyError as exc:
                # the business database away: recorded as failed, not tried again
                # (an analyst sees it with the alert and can deny by hand)
                details["result"] = _database_away(alert, exc)
            if entry is not None and details["result"] == "done":
                undo = self._remover(entry)
        return await self._record(alert, details, entry, undo)

    async def renew(
        self, rule: AlertRule, alert: Alert, standing: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Renew the standing response of an open alert that repeats as its denial runs
        out (decision 0039, 2026-11-28): the automated entry's expiry extended by
        ``ttl_s`` (from its expiry, or from now once it is over) through the list's
        update (``access_list.update``), or a new entry when the cleanup job removed the
        expired one; one ``response.action`` ``renewed`` with ``renews``, the expiry it
        renews. Not for an alert the trail shows acknowledged (None, nothing recorded);
        ``skipped:removed_by_analyst`` or ``skipped:changed_by_analyst`` when a person
        removed or changed the alert's entry (they let them in, or took it over). A
        dry run records ``dry_run_renewal``. Fails closed like :meth:`respond`: a change
        whose ``response.action`` cannot be recorded is put back. After a crash between
        the change and its record, the entry is found renewed and recorded, once."""
        response, network, details = self._details(rule, alert)
        renews = details["renews"] = int(standing["expires_at"])
        entry: Entry | None = None
        undo: Undo | None = None
        refusal = self._refusal(alert, network)
        try:
            mine = None if network is None else await self._mine(rule, alert, network)
            ids = {str(r["entry_id"]) for r in alert.responses if r.get("entry_id")}
            if mine is not None:
                ids.add(mine.id)
            acknowledged, taken = await asyncio.to_thread(
                self._history, alert, ids, _standing_since(alert, standing)
            )
            if acknowledged:
                return None  # an analyst took it over: the evaluator reads it soon
            if refusal is not None:
                details["result"] = refusal
            elif taken is not None:
                details["result"], details["entry_id"] = taken
            elif response.mode == "dry_run":
                details["result"] = "dry_run_renewal"
                now = self._service.clock.now()
                details["expires_at"] = max(now, renews) + response.ttl_s  # would be
            elif network is not None:  # always: no network is refused above
                entry, details["result"], undo = await self._extend(
                    rule, alert, network, response, mine, renews
                )
        except SQLAlchemyError as exc:
            details["result"] = _database_away(alert, exc)
        return await self._record(alert, details, entry, undo)

    def _refusal(self, alert: Alert, network: str | None) -> str | None:
        """Why the alert's network is not to be denied (``skipped:<why>``), or None."""
        if network is None:
            return "skipped:no_network"
        if _keyed_on_other_than_ip(alert.key):
            return "skipped:not_keyed_by_network"
        net = ipaddress.ip_network(network)
        if any(net.overlaps(p) for p in self._proxies):
            return "skipped:trusted_proxy"
        return None

    async def _record(
        self, alert: Alert, details: dict[str, Any], entry: Entry | None, undo: Undo | None
    ) -> dict[str, Any]:
        """Record the ``response.action``; if it cannot be, undo the entry's change."""
        if entry is not None:
            details["entry_id"] = entry.id
            details["expires_at"] = entry.expires_at
        try:
            await self._emit(
                events.response_action(
                    actor=self.actor,
                    target=Target("alert", alert.alert_id),
                    severity=Severity.WARNING if entry is not None else Severity.NOTICE,
                    **details,
                )
            )
        except AuditUnavailable:
            if undo is not None:
                await undo()
            raise
        log.info("alert %s: %s %s", alert.alert_id, details["action"], details["result"])
        return details

    async def _mine(self, rule: AlertRule, alert: Alert, network: str) -> Entry | None:
        """The alert's deny entry as the store holds it (found by its reason), or None."""
        existing = await asyncio.to_thread(self._existing, network)
        if existing is not None and existing.reason == self.reason(rule, alert):
            return existing
        return None

    def _history(
        self, alert: Alert, entry_ids: set[str], since: str
    ) -> tuple[bool, tuple[str, str] | None]:
        """What the trail says since the standing response (``since``, its time; the
        check that made it read what came before, and an entry is made by the first
        response), less :data:`HISTORY_MARGIN_S` for events stored late: whether the
        alert was acknowledged (in a stream the evaluator may not have read yet), and
        whether a person (an actor other than ``system``: an administrator, an API key)
        removed or changed one of its entries: ``(skipped:<why>, entry id)``. Bounded by
        the response's ``ttl_s``, not by the rule's window (up to 30 days)."""
        start = max(epoch(alert.first_seen), epoch(since) - HISTORY_MARGIN_S)
        query = Query(
            types=("alert.acknowledge", "access_list.remove", "access_list.update"),
            from_time=time_bound(datetime.fromtimestamp(start, UTC).isoformat()),
        )
        acknowledged, taken = False, None
        for body in run_query(self._store, query):
            doc = orjson.loads(body)
            details = doc.get("details") or {}
            if doc.get("type") == "alert.acknowledge":
                acknowledged = acknowledged or details.get("alert_id") == alert.alert_id
                continue
            target = str((doc.get("target") or {}).get("id", ""))
            if target in entry_ids and (doc.get("actor") or {}).get("type") != "system":
                how = "removed" if doc.get("type") == "access_list.remove" else "changed"
                taken = taken or (f"skipped:{how}_by_analyst", target)
        return acknowledged, taken

    async def _extend(
        self,
        rule: AlertRule,
        alert: Alert,
        network: str,
        response: AlertResponse,
        mine: Entry | None,
        renews: int,
    ) -> tuple[Entry | None, str, Undo | None]:
        if mine is not None:
            if mine.expires_at is None:
                return None, "skipped:changed_by_analyst", None  # made permanent
            if mine.expires_at > renews:
                return mine, "renewed", None  # renewed before a crash: recorded now, once
            now = self._service.clock.now()
            after = await self._service.list_update(
                mine.id,
                why=f"renewed: the attack goes on ({self.reason(rule, alert)})",
                actor=self.actor,
                expires_at=max(now, mine.expires_at) + response.ttl_s,
                undo_if_unaudited=True,
            )
            return after, "renewed", self._putter(mine)
        # gone (the cleanup job removed it once expired): a new one
        entry, result = await self._deny(rule, alert, network, response)
        if entry is None:
            return None, result, None
        return entry, "renewed", self._remover(entry)

    def _remover(self, entry: Entry) -> Undo:
        async def undo() -> None:
            await self._undo(entry)

        return undo

    def _putter(self, before: Entry) -> Undo:
        async def undo() -> None:
            """Give a renewed entry its expiry back (its response.action is not recorded)."""
            try:
                await self._service.list_put_back(
                    before, why="its response.action could not be recorded", actor=self.actor
                )
            except AuditUnavailable:
                pass  # put back; its access_list.update could not be recorded either
            except AccessListError:
                pass  # removed by hand meanwhile
            except SQLAlchemyError:
                log.error("deny entry %s stays renewed without its response.action", before.id)

        return undo

    async def _deny(
        self, rule: AlertRule, alert: Alert, network: str, response: AlertResponse
    ) -> tuple[Entry | None, str]:
        reason = self.reason(rule, alert)
        for _ in range(2):
            try:
                entry = await self._service.list_add(
                    "deny",
                    "ip",
                    network,
                    reason=reason,
                    created_by=RESPONSE_PRINCIPAL,
                    actor=self.actor,
                    expires_at=self._service.clock.now() + response.ttl_s,
                )
                return entry, "done"
            except AccessListError:
                pass  # the network is on the deny-list already: whose entry is it?
            existing = await asyncio.to_thread(self._existing, network)
            if existing is None:
                continue  # removed meanwhile: add it
            if existing.reason == reason:
                return existing, "done"  # added before a crash: recorded now, once
            if existing.live(self._service.clock.now()):
                return None, "skipped:already_denied"
            # an expired entry the cleanup job has not removed yet: replace it
            await self._service.list_remove(
                existing.id, why="expired; replaced by " + reason, actor=self.actor
            )
        return None, "skipped:already_denied"

    def _existing(self, network: str) -> Entry | None:
        for entry in self._service.lists.entries("deny", "ip"):
            if entry.value == network:
                return entry
        return None

    async def _undo(self, entry: Entry) -> None:
        """Remove an entry whose ``response.action`` was not recorded (fail closed)."""
        try:
            await self._service.list_remove(
                entry.id, why="its response.action could not be recorded", actor=self.actor
            )
        except AuditUnavailable:
            pass  # removed; its access_list.remove could not be recorded either
        except AccessListError:
            pass  # already gone (removed by hand meanwhile)
        except SQLAlchemyError:
            # left behind with its access_list.add recorded: an operator removes it
            log.error("deny entry %s stays without its response.action", entry.id)


class Alerting:
    """The alert evaluator of this service, or nothing when alerting is off."""

    def __init__(
        self,
        trail: AuditTrail,
        store: SqlAuditStore,
        rules: list[AlertRule],
        *,
        poll_interval: float = 0.5,
        retry: RetryPolicy | None = None,
        max_age_s: float = 86400.0,
        responder: AlertResponder | None = None,
    ) -> None:
        self.trail = trail
        #: the alert state every reader of this process shares (list, acknowledge,
        #: dashboard), kept up to date from the trail; built on first use
        self.book = LiveBook(store)
        #: one acknowledgement of an alert at a time across the instances of the store
        self.arbiter = AckArbiter(store.engine)
        self.evaluator: AlertEvaluator | None = None
        self.runner: SinkRunner | None = None
        #: one raise, response or renewal of an alert at a time across the instances
        self._acts: AckArbiter | None = None
        if rules:
            self._acts = AckArbiter(store.engine, prefix=AckArbiter.ACT_PREFIX)
            self.evaluator = AlertEvaluator(
                rules,
                trail.emit,
                store=store,
                cursors=CursorStore(store.engine),
                max_age_s=max_age_s,
                responder=responder,
                live=self.book,
                arbiter=self._acts,
            )
            self.runner = SinkRunner(
                store,
                [self.evaluator],
                batch_size=200,
                poll_interval=poll_interval,
                retry=retry,
                ship_checkpoints=False,
            )
        self._wakeup = CommitWakeup(trail, self.runner.notify if self.runner else _nothing)
        self._started = False

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        trail: AuditTrail,
        store: SqlAuditStore,
        tokens: TokenService | None = None,
    ) -> Alerting:
        """The service's alerting; ``tokens`` carries out the rules' responses (a rule
        with a response and no token service refuses to start)."""
        rules = alert_rules(settings) if settings.alerts_enabled else []
        responder = None
        if any(r.response is not None for r in rules):
            if tokens is None:
                raise SettingsError("KROONIKA_ALERT_RULES: a response needs the token service")
            responder = AlertResponder(
                tokens, trail.emit, store=store, trusted_proxies=settings.trusted_proxies
            )
        return cls(
            trail,
            store,
            rules,
            poll_interval=settings.audit_sink_poll_s,
            retry=RetryPolicy(maximum=max(0.5, settings.audit_sink_retry_max_s)),
            max_age_s=settings.alert_max_age_s,
            responder=responder,
        )

    def repeats(self) -> dict[str, int]:
        """Repeats counted by this instance since it started, per open alert."""
        if self.evaluator is None:
            return {}
        return {a.alert_id: a.repeats for a in self.evaluator.book.alerts.values() if a.repeats}

    async def start(self) -> None:
        runner = self.runner
        if runner is None or self._started:
            return
        self._wakeup.attach()
        await runner.start()
        self._started = True

    async def stop(self) -> None:
        """Stop evaluating: a short catch-up, then release the cursor's ownership (and
        the acknowledgement locks' connection)."""
        self.arbiter.close()
        runner = self.runner
        if runner is not None and self._started:
            self._started = False
            self._wakeup.detach()
            await runner.stop(drain=2.0)
        if self._acts is not None:
            self._acts.close()  # after the runner: its last steps hold their alerts' locks


__all__ = ["RESPONSE_PRINCIPAL", "AlertResponder", "Alerting", "alert_rules"]
