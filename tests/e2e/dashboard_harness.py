"""Events put straight into a running service's trail for the dashboard tests, and the
hostile strings they carry."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from admin_harness import AdminStack, admin_stack

from kroonika.audit import Actor, ActorType, AuditEvent, Outcome, Severity, Source, events

#: a personal code that must never be shown (the dashboard masks one in any stored text)
#: where the dashboard is
PATH = "/admin/dashboard"
CODE = "38001085718"
#: what a hostile alert summary holds: markup that would run a script if it were markup,
#: a forged second line, terminal colours, a bidi override, and a name in Estonian
HOSTILE = (
    '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
    "\r\nFORGED: all clear \x1b[31mRED\x1b[0m \u202eelif\u202c "
    "MARY ÄNN O’CONNEŽ-ŠUSLIK"
)
HOSTILE_RULE = 'rule"><b onmouseover="window.__pwned=3">x</b>'
FAILURE_NET = "203.0.113.0/24"


def emit(stack: AdminStack, batch: list[AuditEvent]) -> None:
    """Emit ``batch`` through the service's own running trail (its event loop)."""
    trail = stack.stack.services.audit.trail
    task = trail._task
    assert task is not None, "the trail is not running"
    asyncio.run_coroutine_threadsafe(trail.emit_many(batch), task.get_loop()).result(timeout=30)


def alert(alert_id: str, *, rule: str, summary: str, severity: Severity) -> AuditEvent:
    return events.alert_raise(
        actor=Actor(ActorType.SYSTEM),
        severity=severity,
        alert_id=alert_id,
        rule=rule,
        summary=summary,
    )


def acknowledge(alert_id: str, note: str) -> AuditEvent:
    return events.alert_acknowledge(
        actor=Actor(ActorType.ADMIN, subject="EE" + CODE, roles=("security",)),
        alert_id=alert_id,
        note=note,
    )


def failed_login(ip: str = "203.0.113.9") -> AuditEvent:
    return events.auth_login(
        outcome=Outcome.FAILURE,
        reason="id_token.expired",
        actor=Actor(ActorType.USER, subject="EE" + CODE),
        source=Source(ip=ip),
        method="idcard",
    )


def seed(stack: AdminStack) -> None:
    """Two open alerts (one hostile), one acknowledged, three failed logins from one
    network and two anomalies."""
    emit(
        stack,
        [
            alert("open-brute", rule="brute_force", summary="12 failures", severity=Severity.ALERT),
            alert(
                "open-hostile",
                rule=HOSTILE_RULE,
                summary=HOSTILE + f" EE{CODE}",
                severity=Severity.CRITICAL,
            ),
            alert("done-1", rule="sink_failed", summary="syslog down", severity=Severity.ERROR),
            acknowledge("done-1", "restarted rsyslog <b>now</b>"),
            *(failed_login() for _ in range(3)),
            *(events.security_anomaly(kind="brute_force", key_kind="ip") for _ in range(2)),
        ],
    )


def require_binary(name: str, path: str) -> None:
    """Skip when a program (Chromium) is not installed; fail instead in CI
    (``KROONIKA_REQUIRE_SERVICES=1``), so the browser test can never skip there."""
    if Path(path).exists():
        return
    message = f"{name} ({path}) is not installed: apt-get install chromium chromium-driver"
    if os.environ.get("KROONIKA_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} and KROONIKA_REQUIRE_SERVICES=1")
    pytest.skip(message)


@contextmanager
def seeded_stack(tmp_path: Path, **kw: Any) -> Iterator[AdminStack]:
    """The admin stack (``kw`` as :func:`admin_stack` takes) with :func:`seed`'s events
    in its trail, and only those alerts: the alert evaluator is off, or it would raise
    its own alerts for the seeded anomalies (decision 0036)."""
    overrides = {"alerts_enabled": False, **kw.pop("overrides", {})}
    with admin_stack(tmp_path, overrides=overrides, **kw) as stack:
        seed(stack)
        yield stack
