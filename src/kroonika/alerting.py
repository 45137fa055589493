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

Delivery is the log shipping's: a sink with ``types=["alert."]`` (webhook, syslog) or
an ``smtp`` sink carries the ``alert.raise`` events like any other event.
"""

from __future__ import annotations

import logging

from kroonika.audit import AuditTrail, Severity
from kroonika.audit.alerting import (
    AckArbiter,
    AlertEvaluator,
    AlertRule,
    LiveBook,
    default_rules,
)
from kroonika.audit.sinks import CursorStore, RetryPolicy, SinkRunner
from kroonika.audit.store.sql import SqlAuditStore
from kroonika.settings import AlertRuleSettings, Settings, SettingsError
from kroonika.shipping import CommitWakeup

log = logging.getLogger("kroonika.alerting")


def _nothing() -> None:
    """No runner to wake."""


def _rule(name: str, spec: AlertRuleSettings, base: AlertRule | None) -> AlertRule:
    if base is None and not spec.types:
        raise SettingsError(f"KROONIKA_ALERT_RULES: rule {name!r} is new and needs types")
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
    ) -> None:
        self.trail = trail
        #: the alert state every reader of this process shares (list, acknowledge,
        #: dashboard), kept up to date from the trail; built on first use
        self.book = LiveBook(store)
        #: one acknowledgement of an alert at a time across the instances of the store
        self.arbiter = AckArbiter(store.engine)
        self.evaluator: AlertEvaluator | None = None
        self.runner: SinkRunner | None = None
        if rules:
            self.evaluator = AlertEvaluator(
                rules,
                trail.emit,
                store=store,
                cursors=CursorStore(store.engine),
                max_age_s=max_age_s,
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
    def from_settings(cls, settings: Settings, trail: AuditTrail, store: SqlAuditStore) -> Alerting:
        rules = alert_rules(settings) if settings.alerts_enabled else []
        return cls(
            trail,
            store,
            rules,
            poll_interval=settings.audit_sink_poll_s,
            retry=RetryPolicy(maximum=max(0.5, settings.audit_sink_retry_max_s)),
            max_age_s=settings.alert_max_age_s,
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
        if runner is None or not self._started:
            return
        self._started = False
        self._wakeup.detach()
        await runner.stop(drain=2.0)


__all__ = ["Alerting", "alert_rules"]
