"""Two instances of the service (two app objects on one real PostgreSQL, each with its
own writer stream, sharing the business database, the audit store and the secrets)
acknowledging the same alerts at the same moment, many times over: exactly one
acknowledgement of each alert wins (200), the other gets 409 ``already_acknowledged``,
and the trail holds exactly one ``alert.acknowledge`` per alert. What one instance
raises or acknowledges, the other lists."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from admin_harness import AdminStack, admin_stack, refuse_events
from dashboard_harness import emit

from kroonika.audit import Actor, ActorType, AuditEvent, Severity, Target, events
from kroonika.audit.alerting import alert_id_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ROUNDS = 25


@pytest.fixture
def pair(tmp_path: Path, fresh_postgres_url: str) -> Iterator[tuple[AdminStack, AdminStack]]:
    shared = {"database_url": fresh_postgres_url}
    overrides = {"audit_store_url": fresh_postgres_url}
    with (
        admin_stack(tmp_path, overrides=overrides, **shared) as a,
        admin_stack(tmp_path, overrides=overrides, **shared) as b,
    ):
        assert a.stack.services.audit.trail.stream != b.stack.services.audit.trail.stream
        yield a, b


def _raise(n: int) -> tuple[str, AuditEvent]:
    alert_id = alert_id_for("race", f"event-{n}")
    return alert_id, events.alert_raise(
        actor=Actor(ActorType.SYSTEM),
        target=Target("alert", alert_id),
        severity=Severity.WARNING,
        alert_id=alert_id,
        rule="race",
        summary=f"race: n={n}",
    )


def _race(a: AdminStack, b: AdminStack, alert_id: str) -> list[httpx.Response]:
    """Both instances acknowledge ``alert_id`` at once (a barrier starts both calls)."""
    start = threading.Barrier(2)
    answers: list[httpx.Response] = []

    def ack(stack: AdminStack, who: str) -> None:
        start.wait()
        path = f"/admin/alerts/{alert_id}/acknowledge"
        answers.append(stack.call("POST", path, role="security", json={"note": who}))

    threads = [threading.Thread(target=ack, args=(s, w)) for s, w in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return answers


def test_of_two_racing_acknowledgements_exactly_one_wins(
    pair: tuple[AdminStack, AdminStack],
) -> None:
    """Each of many alerts acknowledged by both instances at once: one 200 and one 409
    ``already_acknowledged`` every time, one ``alert.acknowledge`` per alert in the
    trail, and both instances list every alert as acknowledged with the winner's note."""
    a, b = pair
    raised = [_raise(n) for n in range(ROUNDS)]
    emit(a, [event for _, event in raised])
    ids = [alert_id for alert_id, _ in raised]
    listed = b.call("GET", "/admin/alerts?limit=1000", role="auditor", why=None).json()
    assert {x["alert_id"] for x in listed["alerts"]} == set(ids)  # raised by the other one
    for alert_id in ids:
        answers = _race(a, b, alert_id)
        assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
        (lost,) = [r for r in answers if r.status_code == 409]
        assert lost.json()["error"] == "already_acknowledged"
    acks = Counter(e["details"]["alert_id"] for e in a.events(types=("alert.acknowledge",)))
    assert acks == Counter(dict.fromkeys(ids, 1))
    for stack in (a, b):
        listed = stack.call("GET", "/admin/alerts?state=all&limit=1000", role="auditor", why=None)
        assert {x["alert_id"]: x["state"] for x in listed.json()["alerts"]} == dict.fromkeys(
            ids, "acknowledged"
        )


def test_an_acknowledgement_the_trail_refuses_leaves_the_alert_open_for_the_other(
    pair: tuple[AdminStack, AdminStack], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fail closed: when A's trail refuses ``alert.acknowledge`` A answers 503, the alert
    stays open everywhere and A's lock is released: B acknowledges it at once."""
    a, b = pair
    alert_id, event = _raise(0)
    emit(a, [event])
    refuse_events(monkeypatch, a, "alert.acknowledge")
    path = f"/admin/alerts/{alert_id}/acknowledge"
    assert a.call("POST", path, role="security").status_code == 503
    for stack in (a, b):
        (listed,) = stack.call("GET", "/admin/alerts", role="auditor", why=None).json()["alerts"]
        assert listed["state"] == "open"
    assert b.call("POST", path, role="security").status_code == 200
    assert a.call("POST", path, role="security").status_code == 409
