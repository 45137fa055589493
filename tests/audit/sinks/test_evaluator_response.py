"""Automated responses in the evaluator (decision 0039): a rule's response runs once per
alert, when the alert's ``alert.raise`` is read back; never again after a restart that
reads the trail again, never for a stale alert, never for a rule without one; the
book shows the responses with their alert."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from sink_kit import QUICK_RETRY, Kit, anomaly, drained, evaluator_of, make_kit, of_type

from kroonika.audit import (
    Actor,
    ActorType,
    AuditUnavailable,
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
    network_of,
    read_book,
    renewal_margin_s,
)
from kroonika.audit.sinks import CursorStore, SinkRunner

DENY = AlertResponse("deny_network", ttl_s=900, mode="enforce")


def rules(response: AlertResponse | None = DENY) -> list[AlertRule]:
    out = []
    for rule in default_rules():
        if rule.name == "security_anomaly":
            rule = AlertRule(rule.name, rule.types, rule.severity, key=rule.key, response=response)
        out.append(rule)
    return out


class RecordingResponder:
    """A responder that records its ``response.action`` in the trail and what it was
    asked (the real one, with the deny-list, is tested over HTTP in tests/e2e)."""

    def __init__(self, kit: Kit, *, refuse: int = 0, now: Callable[[], float] = time.time) -> None:
        self.kit = kit
        self.asked: list[str] = []
        self.renewals: list[tuple[str, int]] = []
        self.refuse = refuse
        self.now = now

    async def respond(self, rule: AlertRule, alert: Alert) -> dict[str, Any]:
        self.asked.append(alert.alert_id)
        if self.refuse:
            self.refuse -= 1
            raise AuditUnavailable("store down")
        details = {
            "action": "deny_network",
            "alert_id": alert.alert_id,
            "result": "dry_run",
            "rule": rule.name,
            "network": network_of(alert.key),
            "expires_at": int(self.now()) + (rule.response.ttl_s if rule.response else 0),
        }
        return self._record(alert, details)

    async def renew(
        self, rule: AlertRule, alert: Alert, standing: dict[str, Any]
    ) -> dict[str, Any] | None:
        renews = int(standing["expires_at"])
        self.renewals.append((alert.alert_id, renews))
        ttl = rule.response.ttl_s if rule.response else 0
        details = {
            "action": "deny_network",
            "alert_id": alert.alert_id,
            "result": "dry_run_renewal",
            "rule": rule.name,
            "network": network_of(alert.key),
            "renews": renews,
            "expires_at": max(int(self.now()), renews) + ttl,
        }
        return self._record(alert, details)

    def _record(self, alert: Alert, details: dict[str, Any]) -> dict[str, Any]:
        self.kit.trail.emit_sync(
            events.response_action(
                actor=Actor(ActorType.SYSTEM, client_id="automated:alert-response"),
                target=Target("alert", alert.alert_id),
                **details,
            )
        )
        return details


def evaluator(
    kit: Kit, responder: RecordingResponder, *, the_rules: list[AlertRule] | None = None, **kw: Any
) -> AlertEvaluator:
    return evaluator_of(kit, rules() if the_rules is None else the_rules, responder=responder, **kw)


run = drained


@pytest.mark.asyncio
async def test_an_alert_of_a_rule_with_a_response_is_answered_once(kit: Kit) -> None:
    """One anomaly: one alert, one response for it, naming the alert's network."""
    kit.trail.emit_sync(anomaly())
    responder = RecordingResponder(kit)
    ev = evaluator(kit, responder)
    await run(kit, ev)
    (alert,) = of_type(kit, "alert.raise")
    alert_id = alert["details"]["alert_id"]
    assert responder.asked == [alert_id]
    (action,) = of_type(kit, "response.action")
    assert action["details"]["alert_id"] == alert_id
    assert action["details"]["network"] == "81.2.69.0/24"
    assert ev.responded == 1


async def reread_responds_once(kit: Kit) -> None:
    kit.trail.emit_sync(anomaly())
    await (await run(kit, evaluator(kit, RecordingResponder(kit)))).stop()
    CursorStore(kit.store.engine).reset("@alerts", "web-1", 0, "2026-11-27T00:00:00.000000Z")
    again = RecordingResponder(kit)
    await (await run(kit, evaluator(kit, again))).stop()
    assert again.asked == []
    assert len(of_type(kit, "response.action")) == 1


@pytest.mark.asyncio
async def test_a_restart_that_reads_everything_again_does_not_respond_twice(kit: Kit) -> None:
    """The cursor put back to the start (a crash before it moved): the alert and its
    response.action are in the trail, so a new evaluator neither raises nor responds."""
    await reread_responds_once(kit)


@pytest.mark.asyncio
async def test_on_postgresql_a_restart_does_not_respond_twice(
    kit_factory: Any, fresh_postgres_url: str
) -> None:
    """The same on PostgreSQL (its cursor table, the alerts read at start)."""
    await reread_responds_once(kit_factory(fresh_postgres_url))


@pytest.mark.asyncio
@pytest.mark.postgres
async def test_a_takeover_by_an_instance_started_before_the_response_adds_nothing(
    kit_factory: Any, fresh_postgres_url: str
) -> None:
    """Two instances on one PostgreSQL trail. X raises the alert of
    its stream and records its response, then dies before its cursor moved; Y, whose
    evaluator started before both (its own reading knows neither), takes X's stream over
    and reads the anomaly and the alert.raise again: the trail already has them, so Y
    raises nothing and responds nothing (one alert.raise, one response.action)."""
    kit_x = kit_factory(fresh_postgres_url)
    kit_y = kit_factory(fresh_postgres_url, stream="web-2")
    x_asked, y_asked = RecordingResponder(kit_x), RecordingResponder(kit_y)
    # each as Alerting makes it: with the live book of its process
    x = evaluator(kit_x, x_asked, live=LiveBook(kit_x.store))
    y_runner = SinkRunner(
        kit_y.store,
        [evaluator(kit_y, y_asked, live=LiveBook(kit_y.store))],
        retry=QUICK_RETRY,
        ship_checkpoints=False,
    )
    await y_runner.drain()  # Y is running: it has read the trail (nothing yet)
    kit_x.trail.emit_sync(anomaly())
    await (await run(kit_x, x)).stop()
    assert len(x_asked.asked) == 1
    # X gone before its cursor moved: web-1 is read again from the start, by Y
    CursorStore(kit_x.store.engine).reset("@alerts", "web-1", 0, "2026-11-27T00:00:00.000000Z")
    try:
        await y_runner.drain()
    finally:
        await y_runner.stop()
    assert CursorStore(kit_y.store.engine).get("@alerts", "web-1") > 0  # Y read it
    assert y_asked.asked == []
    assert len(of_type(kit_x, "alert.raise")) == 1
    assert len(of_type(kit_x, "response.action")) == 1


class HeldResponder(RecordingResponder):
    """Stopped between its deny entry and its record: the record is on its way (handed
    to the trail, which stores it whatever happens to the caller) until ``go`` is set."""

    def __init__(self, kit: Kit) -> None:
        super().__init__(kit)
        self.entered, self.go = asyncio.Event(), asyncio.Event()

    async def respond(self, rule: AlertRule, alert: Alert) -> dict[str, Any]:
        self.entered.set()
        return await asyncio.shield(self._on_its_way(rule, alert))

    async def _on_its_way(self, rule: AlertRule, alert: Alert) -> dict[str, Any]:
        await self.go.wait()
        return await super().respond(rule, alert)


def instance(kit: Kit, responder: RecordingResponder, arbiter: AckArbiter) -> AlertEvaluator:
    """An evaluator as ``Alerting`` makes it: the live book of its process and the lock of
    each alert's step across the instances (``arbiter``)."""
    return evaluator(kit, responder, live=LiveBook(kit.store), arbiter=arbiter)


@pytest.mark.asyncio
@pytest.mark.postgres
async def test_an_instance_stopped_while_its_response_is_on_its_way_is_answered_once(
    kit_factory: Any, fresh_postgres_url: str
) -> None:
    """X is stopped between its deny entry and its record (its runner's task cancelled,
    its stream let go, the record still on its way); Y takes the stream over and reads
    the alert.raise while the record is not stored yet: Y waits for X's step on the
    alert, then finds X's record and adds none (one response.action)."""
    kit_x = kit_factory(fresh_postgres_url)
    kit_y = kit_factory(fresh_postgres_url, stream="web-2")
    x_asked, y_asked = HeldResponder(kit_x), RecordingResponder(kit_y)
    x_locks, y_locks = (
        AckArbiter(k.store.engine, prefix=AckArbiter.ACT_PREFIX) for k in (kit_x, kit_y)
    )
    kit_x.trail.emit_sync(anomaly())
    x_runner = SinkRunner(kit_x.store, [instance(kit_x, x_asked, x_locks)], retry=QUICK_RETRY)
    y_runner = SinkRunner(kit_y.store, [instance(kit_y, y_asked, y_locks)], retry=QUICK_RETRY)
    try:
        await x_runner.start()
        await asyncio.wait_for(x_asked.entered.wait(), 30)
        await x_runner.stop()
        taking_over = asyncio.create_task(y_runner.drain())
        await asyncio.sleep(1.0)  # Y reads web-1 meanwhile
        x_asked.go.set()
        await asyncio.wait_for(taking_over, 60)
    finally:
        await y_runner.stop()
        x_locks.close()
        y_locks.close()
    assert CursorStore(kit_y.store.engine).get("@alerts", "web-1") > 0  # Y read it
    assert y_asked.asked == []
    assert len(of_type(kit_x, "response.action")) == 1


@pytest.mark.asyncio
async def test_a_crash_between_the_raise_and_the_response_responds_after_the_restart(
    kit: Kit,
) -> None:
    """The alert raised, the process gone before its response: the next evaluator
    reads the alert.raise (after its cursor) and responds, once."""
    kit.trail.emit_sync(anomaly())
    await (await run(kit, evaluator(kit, RecordingResponder(kit), the_rules=rules(None)))).stop()
    assert len(of_type(kit, "alert.raise")) == 1
    CursorStore(kit.store.engine).reset("@alerts", "web-1", 0, "2026-11-27T00:00:00.000000Z")
    later = RecordingResponder(kit)
    await (await run(kit, evaluator(kit, later))).stop()
    assert len(later.asked) == 1
    assert len(of_type(kit, "alert.raise")) == 1


@pytest.mark.asyncio
async def test_a_refused_response_is_tried_again_and_recorded_once(kit: Kit) -> None:
    """The responder cannot record (AuditUnavailable): the batch is read again, the
    alert is answered on the next try, and once only."""
    kit.trail.emit_sync(anomaly())
    responder = RecordingResponder(kit, refuse=1)
    await run(kit, evaluator(kit, responder))
    assert len(responder.asked) == 2
    assert len(of_type(kit, "response.action")) == 1
    assert len(of_type(kit, "alert.raise")) == 1


@pytest.mark.asyncio
async def test_a_stale_alert_and_a_rule_without_a_response_get_none(kit: Kit) -> None:
    """An alert read later than its response's ttl_s is not answered (a block that would
    be over); a rule without a response is never answered."""
    kit.trail.emit_sync(anomaly())
    await (await run(kit, evaluator(kit, RecordingResponder(kit), the_rules=rules(None)))).stop()
    CursorStore(kit.store.engine).reset("@alerts", "web-1", 0, "2026-11-27T00:00:00.000000Z")
    late = RecordingResponder(kit)
    ev = evaluator(kit, late, clock=lambda: time.time() + DENY.ttl_s + 60)
    await (await run(kit, ev)).stop()
    assert late.asked == []
    assert ev.stale_responses == 1
    assert of_type(kit, "response.action") == []


def deny_recorded(kit: Kit, **details: Any) -> None:
    """A deny_network response.action of alert ``a`` in the trail."""
    kit.trail.emit_sync(
        events.response_action(
            actor=Actor(ActorType.SYSTEM),
            target=Target("alert", "a"),
            action="deny_network",
            alert_id="a",
            network="81.2.69.0/24",
            entry_id="al_0123456789abcdef",
            **details,
        )
    )


def test_the_book_shows_the_responses_of_an_alert(kit: Kit) -> None:
    """read_book and the live book carry a response.action with its alert, once each."""
    kit.trail.emit_sync(
        events.alert_raise(
            actor=Actor(ActorType.SYSTEM), target=Target("alert", "a"), rule="r", alert_id="a"
        )
    )
    live = LiveBook(kit.store)
    assert live.alerts()[0].responses == []
    for _ in range(2):  # the second is a duplicate: the first of an action counts
        deny_recorded(kit, result="done")
    for alert in (read_book(kit.store).alerts["a"], live.alerts()[0]):
        (response,) = alert.public()["responses"]
        assert response["result"] == "done"
        assert response["entry_id"] == "al_0123456789abcdef"
        assert alert.responses_text() == "deny_network done 81.2.69.0/24 al_0123456789abcdef"
    for _ in range(2):  # a renewal, and the same renewal again (one per expiry)
        deny_recorded(kit, result="renewed", expires_at=1_800_000_900, renews=1_800_000_000)
    for alert in (read_book(kit.store).alerts["a"], live.alerts()[0]):
        first, renewal = alert.public()["responses"]
        assert (first["renews"], renewal["renews"]) == (None, 1_800_000_000)
        assert alert.standing("deny_network") == alert.responses[1]
        assert alert.responses_text() == (
            "deny_network done 81.2.69.0/24 al_0123456789abcdef; "
            "deny_network renewed 81.2.69.0/24 al_0123456789abcdef"
        )


def test_deny_network_needs_an_address_in_the_key() -> None:
    """A rule whose key names no address cannot deny a network; bad values are refused."""
    with pytest.raises(ValueError, match="needs an address"):
        AlertRule("sinks", ("audit.sink",), key=("details.sink",), response=DENY)
    with pytest.raises(ValueError, match="one of"):
        AlertResponse("end_sessions")
    with pytest.raises(ValueError, match="ttl_s"):
        AlertResponse("deny_network", ttl_s=5)
    with pytest.raises(ValueError, match="mode"):
        AlertResponse("deny_network", mode="yes")  # type: ignore[arg-type]
    assert network_of("kind=brute_force key_kind=ip ip=81.2.69.0/24") == "81.2.69.0/24"
    assert network_of("kind=brute_force ip=?") is None
    assert network_of("sink=w state=failed") is None


# --- renewal while the attack goes on (decision 0039, 2026-11-28) -----------------------

SHORT = AlertResponse("deny_network", ttl_s=10, mode="enforce")


class MovingClock:
    """The time of the trail's events and of the evaluator, moved by the test."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t

    def ns(self) -> int:
        return int(self.t * 1_000_000_000)


def renewing(tmp_path: Any, url: str | None = None) -> tuple[Kit, MovingClock]:
    clock = MovingClock()
    kit = make_kit(url or f"sqlite:///{tmp_path / 'renew.db'}", tmp_path / "keys", clock=clock.ns)
    return kit, clock


def renewal_evaluator(kit: Kit, clock: MovingClock) -> tuple[AlertEvaluator, RecordingResponder]:
    responder = RecordingResponder(kit, now=clock)
    return evaluator(kit, responder, the_rules=rules(SHORT), clock=clock), responder


async def attacked(
    kit: Kit, clock: MovingClock
) -> tuple[AlertEvaluator, RecordingResponder, SinkRunner, dict[str, Any]]:
    """An anomaly read by a renewing evaluator: its alert and first response (the
    latter's details returned)."""
    ev, responder = renewal_evaluator(kit, clock)
    kit.trail.emit_sync(anomaly())
    runner = await run(kit, ev)
    (first,) = of_type(kit, "response.action")
    return ev, responder, runner, first["details"]


def renewals_of(kit: Kit) -> list[dict[str, Any]]:
    return [d["details"] for d in of_type(kit, "response.action") if "renews" in d["details"]]


@pytest.mark.asyncio
async def test_a_repeat_after_the_denial_expired_renews_it_once_per_ttl(tmp_path: Any) -> None:
    """An open alert repeats: while its denial holds nothing is renewed; a repeat within
    the margin of its expiry or after renews it once (renews names the expiry it
    extends); the repeats right after do not; a repeat after the renewed expiry renews
    again. Each renewal is in the alert's public form."""
    kit, clock = renewing(tmp_path)
    try:
        ev, responder, runner, first = await attacked(kit, clock)
        expires = first["expires_at"]
        clock.t += 2
        kit.trail.emit_sync(anomaly())  # the denial holds: a repeat, nothing renewed
        await runner.drain()
        assert responder.renewals == []
        assert ev.repeated == 1
        clock.t = expires + 1  # the attacker waited the denial out and comes back
        kit.trail.emit_sync(anomaly())
        kit.trail.emit_sync(anomaly())
        await runner.drain()
        (renewal,) = renewals_of(kit)
        assert renewal["renews"] == expires
        assert renewal["expires_at"] == int(clock.t) + SHORT.ttl_s
        assert ev.renewed == 1
        clock.t = renewal["expires_at"] - renewal_margin_s(SHORT.ttl_s) + 0.5
        kit.trail.emit_sync(anomaly())  # within the margin: renewed before it runs out
        await runner.drain()
        assert [r["renews"] for r in renewals_of(kit)] == [expires, renewal["expires_at"]]
        assert len(of_type(kit, "alert.raise")) == 1
        (alert,) = ev.book.alerts.values()
        shown = [(r["result"], r["renews"]) for r in alert.public()["responses"]]
        assert shown == [
            ("dry_run", None),
            ("dry_run_renewal", expires),
            ("dry_run_renewal", renewal["expires_at"]),
        ]
        assert (
            read_book(kit.store).alerts[alert.alert_id].public()["responses"]
            == (alert.public()["responses"])
        )
        await runner.stop()
    finally:
        kit.store.close()


@pytest.mark.asyncio
async def test_a_restart_does_not_renew_the_same_expiry_twice(tmp_path: Any) -> None:
    """The cursor put back after a renewal (a crash before it moved): the new evaluator
    reads the renewal with the alert and renews nothing more for the events read again."""
    await restart_renews_once(*renewing(tmp_path))


@pytest.mark.asyncio
async def test_on_postgresql_a_restart_does_not_renew_twice(
    tmp_path: Any, fresh_postgres_url: str
) -> None:
    """The same on PostgreSQL."""
    await restart_renews_once(*renewing(tmp_path, fresh_postgres_url))


async def restart_renews_once(kit: Kit, clock: MovingClock) -> None:
    try:
        _, _, runner, first = await attacked(kit, clock)
        clock.t = first["expires_at"] + 1
        kit.trail.emit_sync(anomaly())
        await runner.drain()
        await runner.stop()
        assert len(renewals_of(kit)) == 1
        CursorStore(kit.store.engine).reset("@alerts", "web-1", 0, "2026-11-27T00:00:00.000000Z")
        again, responder = renewal_evaluator(kit, clock)
        await (await run(kit, again)).stop()
        assert responder.asked == []
        assert responder.renewals == []
        assert len(renewals_of(kit)) == 1
    finally:
        kit.store.close()


@pytest.mark.asyncio
async def test_an_acknowledged_alert_is_not_renewed(tmp_path: Any) -> None:
    """An analyst acknowledged the alert: the attack coming back after the denial raises
    a new alert (with its own first response); the acknowledged one is never renewed."""
    kit, clock = renewing(tmp_path)
    try:
        _, responder, runner, first = await attacked(kit, clock)
        alert_id = first["alert_id"]
        kit.trail.emit_sync(
            events.alert_acknowledge(
                actor=Actor(ActorType.ADMIN, client_id="api-key/k1"),
                target=Target("alert", alert_id),
                alert_id=alert_id,
                justification="INC-1 taken over",
            )
        )
        clock.t = first["expires_at"] + 1
        kit.trail.emit_sync(anomaly())
        await runner.drain()
        await runner.stop()
        assert responder.renewals == []
        assert renewals_of(kit) == []
        assert len(of_type(kit, "alert.raise")) == 2
        assert [a for a in responder.asked if a == alert_id] == [alert_id]
    finally:
        kit.store.close()


@pytest.mark.asyncio
async def test_a_repeat_read_too_late_renews_nothing(tmp_path: Any) -> None:
    """A repeat read more than min(ttl_s, max_age_s) after it happened (a long outage of
    the evaluator) renews nothing: the attack it shows is over."""
    kit, clock = renewing(tmp_path)
    try:
        ev, responder, runner, first = await attacked(kit, clock)
        clock.t = first["expires_at"] + 1
        kit.trail.emit_sync(anomaly())
        clock.t += SHORT.ttl_s + 5  # read now, long after
        await runner.drain()
        await runner.stop()
        assert responder.renewals == []
        assert ev.stale_responses == 1
    finally:
        kit.store.close()


def test_the_service_s_evaluator_asks_the_live_book_of_its_process(tmp_path: Any) -> None:
    """``Alerting`` gives its evaluator the process's live book (the trail's alert state
    across every stream), which the takeover above relies on."""
    from kroonika.alerting import Alerting

    kit = make_kit(f"sqlite:///{tmp_path / 'audit.db'}", tmp_path / "keys")
    try:
        alerting = Alerting(kit.trail, kit.store, rules(None))
        assert alerting.evaluator is not None
        assert alerting.evaluator._live is alerting.book
    finally:
        kit.store.close()
