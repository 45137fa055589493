"""Events put straight into a running service's trail for the dashboard tests, and the
hostile strings they carry."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
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
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: a valid personal code nobody gave a role
NOBODY = "50001010006"
#: the mock's autologin parameters that log NOBODY in (not a test identity: it needs names)
NOBODY_NAMES = {"autologin_given_name": "MARI", "autologin_family_name": "MAASIKAS"}


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


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Any]:
    """A fresh headless Chromium (its own profile) driven through the system chromedriver."""
    require_binary("Chromium", CHROMIUM)
    require_binary("chromedriver", CHROMEDRIVER)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1280,2000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def log_in(
    stack: AdminStack,
    driver: Any,
    *,
    pick: str | None = None,
    code: str = "",
    names: tuple[str, str] = ("MARI", "MAASIKAS"),
) -> None:
    """Log in through the mock's login page (as a person does: a radio button for a test
    identity, or a typed personal code and ``names``) and come back to the dashboard."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    clock = stack.stack.clock  # the service's manual clock, brought up to the mock's
    clock.advance(max(0.0, time.time() - clock()))
    driver.get(f"{stack.url}/auth/login?return_to={PATH}")
    assert "/oidc/authorize" in driver.current_url
    if pick is not None:
        driver.find_element(By.CSS_SELECTOR, f'input[name="identity"][value="{pick}"]').click()
    else:
        driver.find_element(By.CSS_SELECTOR, 'input[name="identity"][value="custom"]').click()
        driver.find_element(By.NAME, "personal_code").send_keys(code)
        driver.find_element(By.NAME, "given_name").send_keys(names[0])
        driver.find_element(By.NAME, "family_name").send_keys(names[1])
    driver.find_element(By.CSS_SELECTOR, 'button[name="action"][value="login"]').click()
    # the mock, the callback and the redirect back: wait until the browser is there
    WebDriverWait(driver, 30).until(lambda d: d.current_url == stack.url + PATH)
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def console_errors(driver: Any, *, allowed: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    return [
        e
        for e in driver.get_log("browser")
        if e["level"] in ("SEVERE", "ERROR") and not any(a in e["message"] for a in allowed)
    ]
