"""The alert evaluator: rules over the trail raise alert.raise once per (rule, key) and
window, never twice for one event (a restart reads it again), never for alert events."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sink_kit import HOSTILE, Kit, anomaly, drained, evaluator_of, of_type

from kroonika.audit import Actor, ActorType, AuditEvent, Outcome, Source, Target, events
from kroonika.audit.alerting import (
    AlertEvaluator,
    AlertRule,
    alert_id_for,
    default_rules,
    read_book,
    safe_value,
)
from kroonika.audit.sinks import CursorStore


def violation(ip: str) -> AuditEvent:
    return events.security_policy_violation(
        outcome=Outcome.FAILURE,
        reason="csrf_failed",
        actor=Actor(ActorType.ANONYMOUS),
        source=Source(ip=ip),
        policy="csrf",
        attempted="POST /admin/lists",
        decision="refused",
    )


def evaluator(kit: Kit, rules: list[AlertRule] | None = None) -> AlertEvaluator:
    return evaluator_of(kit, default_rules() if rules is None else rules)


run = drained


def raised(kit: Kit) -> list[dict[str, Any]]:
    return of_type(kit, "alert.raise")


@pytest.mark.asyncio
async def test_an_anomaly_raises_one_alert_with_its_severity_and_a_derived_id(kit: Kit) -> None:
    """security.anomaly gives one alert.raise: severity of the rule, id from rule and event."""
    sealed = kit.trail.emit_sync(anomaly())
    assert sealed is not None
    await run(kit, evaluator(kit))
    (alert,) = raised(kit)
    assert alert["severity"] == "error"
    assert alert["details"]["rule"] == "security_anomaly"
    assert alert["details"]["alert_id"] == alert_id_for("security_anomaly", sealed.id)
    assert alert["details"]["event_id"] == sealed.id
    assert "81.2.69.0/24" in alert["details"]["summary"]
    assert "81.2.69.142" not in alert["details"]["summary"]


@pytest.mark.asyncio
async def test_repeats_within_the_window_are_counted_not_raised(kit: Kit) -> None:
    """Three anomalies of one key: one alert, two repeats; another address: its own alert."""
    for _ in range(3):
        kit.trail.emit_sync(anomaly())
    kit.trail.emit_sync(anomaly(ip="1.1.1.1"))
    ev = evaluator(kit)
    await run(kit, ev)
    alerts = raised(kit)
    assert len(alerts) == 2
    first = ev.book.alerts[alerts[0]["details"]["alert_id"]]
    assert first.repeats == 2
    assert ev.repeated == 2


@pytest.mark.asyncio
async def test_an_acknowledged_alert_lets_the_next_firing_raise_again(kit: Kit) -> None:
    """After alert.acknowledge, the same key raises a new alert."""
    kit.trail.emit_sync(anomaly())
    ev = evaluator(kit)
    runner = await run(kit, ev)
    (first,) = raised(kit)
    kit.trail.emit_sync(
        events.alert_acknowledge(
            actor=Actor(ActorType.ADMIN), alert_id=first["details"]["alert_id"]
        )
    )
    kit.trail.emit_sync(anomaly())
    await runner.drain()
    assert len(raised(kit)) == 2


async def reread_raises_nothing(kit: Kit) -> None:
    """One alert; acknowledged (so no throttle holds a second back); the evaluator's
    cursor put back, as a crash between the raise and the cursor commit leaves it: a new
    evaluator reads the anomaly again and raises nothing."""
    kit.trail.emit_sync(anomaly())
    await (await run(kit, evaluator(kit))).stop()
    (first,) = raised(kit)
    kit.trail.emit_sync(
        events.alert_acknowledge(
            actor=Actor(ActorType.ADMIN), alert_id=first["details"]["alert_id"]
        )
    )
    CursorStore(kit.store.engine).reset("@alerts", "web-1", 0, "2026-11-27T00:00:00.000000Z")
    second = evaluator(kit)
    await (await run(kit, second)).stop()
    assert len(raised(kit)) == 1
    assert second.raised == 0


@pytest.mark.asyncio
async def test_a_crash_before_the_cursor_moved_does_not_raise_twice(kit: Kit) -> None:
    """A re-read of the triggering event finds its alert already raised (SQLite)."""
    await reread_raises_nothing(kit)


@pytest.mark.asyncio
async def test_alert_events_never_fire_a_rule(kit: Kit) -> None:
    """A rule cannot name alert.* types, and alert events the trail holds raise nothing."""
    with pytest.raises(ValueError, match="cannot be watched"):
        AlertRule("loop", ("alert.raise",))
    with pytest.raises(ValueError, match="cannot be watched"):
        AlertRule("loop", ("alert",))
    kit.trail.emit_sync(
        events.alert_raise(actor=Actor(ActorType.SYSTEM), rule="x", summary="s", alert_id="a")
    )
    ev = evaluator(kit, [AlertRule("all", ("audit", "security", "auth"))])
    await run(kit, ev)
    assert len(raised(kit)) == 1  # only the one written above
    assert ev.raised == 0


@pytest.mark.asyncio
async def test_policy_violations_raise_at_the_threshold_once(kit: Kit) -> None:
    """Five violations from one /24 within 300 s raise one alert; four from another none."""
    for n in range(7):
        kit.trail.emit_sync(violation(f"192.0.2.{n + 1}"))
    for n in range(4):
        kit.trail.emit_sync(violation(f"198.51.100.{n + 1}"))
    ev = evaluator(kit)
    await run(kit, ev)
    (alert,) = raised(kit)
    assert alert["details"]["rule"] == "policy_violations"
    assert alert["details"]["count"] == 5
    assert "192.0.2.0/24" in alert["details"]["summary"]
    assert ev.repeated == 2


@pytest.mark.asyncio
async def test_a_restart_keeps_counting_the_window(kit: Kit) -> None:
    """Three violations, a restart, two more: the threshold of five is still reached."""
    for n in range(3):
        kit.trail.emit_sync(violation(f"192.0.2.{n + 1}"))
    runner = await run(kit, evaluator(kit))
    await runner.stop()
    for n in range(2):
        kit.trail.emit_sync(violation(f"192.0.2.{n + 10}"))
    await run(kit, evaluator(kit))
    assert len(raised(kit)) == 1


@pytest.mark.asyncio
async def test_sink_failures_and_damage_found_by_verify_raise(kit: Kit) -> None:
    """audit.sink failed (not recovered) and audit.access verify damaged raise alerts."""
    sys = Actor(ActorType.SYSTEM)
    kit.trail.emit_sync(
        events.audit_sink(outcome=Outcome.FAILURE, actor=sys, sink="w", state="failed")
    )
    kit.trail.emit_sync(events.audit_sink(actor=sys, sink="w", state="recovered"))
    kit.trail.emit_sync(events.audit_access(actor=sys, action="verify", result="intact"))
    kit.trail.emit_sync(events.audit_access(actor=sys, action="verify", result="damaged"))
    await run(kit, evaluator(kit))
    rules = sorted(a["details"]["rule"] for a in raised(kit))
    assert rules == ["audit_damage", "sink_failure"]
    damage = next(a for a in raised(kit) if a["details"]["rule"] == "audit_damage")
    assert damage["severity"] == "critical"


@pytest.mark.asyncio
async def test_an_expired_idp_key_set_raises_and_a_stale_one_does_not(kit: Kit) -> None:
    """idp.keys expired (logins fail) raises an error alert; stale and recovered do not."""
    sys = Actor(ActorType.SYSTEM)
    for state in ("stale", "expired", "recovered"):
        failed = state != "recovered"
        kit.trail.emit_sync(
            events.idp_keys(
                outcome=Outcome.FAILURE if failed else Outcome.SUCCESS,
                actor=sys,
                state=state,
                kids=["k1"],
            )
        )
    await run(kit, evaluator(kit))
    (alert,) = raised(kit)
    assert alert["details"]["rule"] == "idp_keys_expired"
    assert alert["details"]["event_type"] == "idp.keys"
    assert alert["severity"] == "error"


@pytest.mark.asyncio
async def test_old_events_raise_nothing(kit: Kit) -> None:
    """An event older than max_age_s when first read is history, not an alert."""
    kit.trail.emit_sync(anomaly())

    async def emit(event: AuditEvent) -> Any:
        return kit.trail.emit_sync(event)

    late = AlertEvaluator(default_rules(), emit, clock=lambda: time.time() + 2 * 86400)
    await run(kit, late)
    assert raised(kit) == []
    assert late.stale == 1


def test_summary_values_hold_no_personal_code_or_control() -> None:
    """A key value is cut to safe characters; a personal code and full addresses never pass."""
    assert safe_value("details.policy", "EE38001085718") == "[personal-code]"
    assert safe_value("details.policy", HOSTILE).isascii()
    assert "\r" not in safe_value("details.policy", HOSTILE)
    assert "\x1b" not in safe_value("details.policy", HOSTILE)
    assert safe_value("source.ip", "2001:db8:1:2::5") == "2001:db8:1::/48"
    assert safe_value("source.ip", "not an ip") == "?"


def test_the_book_is_raised_minus_acknowledged(kit: Kit) -> None:
    """read_book: an alert is open until its alert.acknowledge, which names who and the note."""
    for n in ("a", "b"):
        kit.trail.emit_sync(
            events.alert_raise(
                actor=Actor(ActorType.SYSTEM),
                target=Target("alert", n),
                rule="r",
                summary="s",
                alert_id=n,
            )
        )
    kit.trail.emit_sync(
        events.alert_acknowledge(
            actor=Actor(ActorType.ADMIN, client_id="api-key/k1"), alert_id="a", note="seen"
        )
    )
    book = read_book(kit.store)
    assert [a.open for a in book.alerts.values()] == [False, True]
    assert book.alerts["a"].acknowledged_by == "api-key/k1"
    assert book.alerts["a"].note == "seen"


@pytest.mark.asyncio
async def test_a_batch_retried_after_the_trail_refused_counts_its_events_once(kit: Kit) -> None:
    """The trail refuses the alert once: the batch is read again, the violations before
    it are not counted twice, and the alert is raised once, at the fifth."""
    from kroonika.audit import AuditUnavailable

    for n in range(5):
        kit.trail.emit_sync(violation(f"192.0.2.{n + 1}"))
    refused = [1]

    async def emit(event: AuditEvent) -> Any:
        if refused[0]:
            refused[0] -= 1
            raise AuditUnavailable("store down")
        return kit.trail.emit_sync(event)

    ev = AlertEvaluator(
        default_rules(), emit, store=kit.store, cursors=CursorStore(kit.store.engine)
    )
    await run(kit, ev)
    (alert,) = raised(kit)
    assert alert["details"]["count"] == 5


@pytest.mark.asyncio
async def test_on_postgresql_a_restart_raises_nothing_again(
    kit_factory: Any, fresh_postgres_url: str
) -> None:
    """The same on PostgreSQL (advisory locks, its cursor table)."""
    await reread_raises_nothing(kit_factory(fresh_postgres_url))


@pytest.mark.asyncio
async def test_a_start_reads_only_the_alerts_that_can_still_matter(kit: Kit) -> None:
    """A restart reads the alerts raised within max_age_s and the rules' windows (plus
    an hour), not the whole trail: an older alert can neither be raised again (its event
    is stale) nor throttle (its window is over)."""
    kit.trail.emit_sync(anomaly())
    await run(kit, evaluator(kit))
    (alert,) = raised(kit)

    async def emit(event: AuditEvent) -> Any:
        return kit.trail.emit_sync(event)

    now = evaluator(kit)
    await now.open()
    assert list(now.book.alerts) == [alert["details"]["alert_id"]]
    later = AlertEvaluator(
        default_rules(),
        emit,
        store=kit.store,
        cursors=CursorStore(kit.store.engine),
        clock=lambda: time.time() + 3 * 86400,
    )
    await later.open()
    assert later.book.alerts == {}
    assert list(read_book(kit.store).alerts) == [alert["details"]["alert_id"]]  # all of it
