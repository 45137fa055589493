"""The dashboard in a real headless Chromium: a person logs in through the TARA mock's
login page, opens the dashboard and sees the alerts and counts put in the trail; hostile
strings are text (no script ran); a person without a role gets 403; the console stays
free of errors (a CSP refusal would be one). Chromium and chromedriver are the Debian
packages ``.ci/run`` installs: missing, the test skips by hand and fails in CI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from admin_harness import AUDITOR, AdminStack
from dashboard_harness import (
    CODE,
    FAILURE_NET,
    NOBODY,
    PATH,
    chromium,
    console_errors,
    log_in,
    seeded_stack,
)

__all__ = ["chromium"]  # the fixture, used by name


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminStack]:
    with seeded_stack(Path(tmp_path_factory.mktemp("dashboard-browser"))) as s:
        yield s


def _cells(driver: Any, table_id: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [c.text for c in driver.find_elements(By.CSS_SELECTOR, f"#{table_id} td")]


def test_an_auditor_sees_the_alerts_and_counts(
    stack: AdminStack, chromium: Any, tmp_path: Path
) -> None:
    """Logged in through the mock, the auditor sees both open alerts, the acknowledged
    one, the failed logins and their network; the console has no error."""
    from selenium.webdriver.common.by import By

    log_in(stack, chromium, pick=AUDITOR)
    assert chromium.title == "Kroonika security dashboard"
    assert chromium.find_element(By.ID, "open-count").text == "2"
    rows = chromium.find_elements(By.CSS_SELECTOR, "#open-alerts tbody tr")
    ids = [r.get_attribute("data-alert-id") for r in rows]
    assert ids == ["open-hostile", "open-brute"] or ids == ["open-brute", "open-hostile"]
    acked = chromium.find_elements(By.CSS_SELECTOR, "#acknowledged-alerts tbody tr")
    assert [r.get_attribute("data-alert-id") for r in acked] == ["done-1"]
    assert "restarted rsyslog <b>now</b>" in _cells(chromium, "acknowledged-alerts")
    assert chromium.find_element(By.ID, "failed-logins-1h").text == "3"
    sources = _cells(chromium, "sources-24h")
    assert sources[sources.index(FAILURE_NET) + 1] == "3"
    assert "Generated" in chromium.find_element(By.ID, "generated").text
    chromium.save_screenshot(str(tmp_path / "dashboard.png"))
    assert (tmp_path / "dashboard.png").stat().st_size > 0
    assert console_errors(chromium) == []


def test_hostile_strings_are_text_and_no_script_runs(stack: AdminStack, chromium: Any) -> None:
    """The summary's markup is shown as characters: no element was made from it and the
    payloads that would set ``window.__pwned`` never ran; no personal code is shown."""
    from selenium.webdriver.common.by import By

    log_in(stack, chromium, pick=AUDITOR)
    row = chromium.find_element(By.CSS_SELECTOR, 'tr[data-alert-id="open-hostile"]')
    summary = row.find_element(By.CSS_SELECTOR, "td.summary").text
    assert summary.startswith('<script>window.__pwned=1</script><img src=x onerror="')
    assert "FORGED: all clear" in summary
    assert "MARY ÄNN O’CONNEŽ-ŠUSLIK" in summary
    assert row.find_elements(By.CSS_SELECTOR, "script, img, b") == []
    assert 'rule"><b onmouseover=' in row.text
    assert chromium.find_elements(By.CSS_SELECTOR, "script, img") == []
    assert chromium.execute_script("return window.__pwned === undefined") is True
    assert CODE not in chromium.page_source
    assert console_errors(chromium) == []


def test_a_person_without_a_role_gets_403(stack: AdminStack, chromium: Any) -> None:
    """A citizen with no role logs in and is refused the dashboard with a 403 page that
    shows none of the trail; the refusal is recorded."""
    from selenium.webdriver.common.by import By

    log_in(stack, chromium, code=NOBODY)
    assert chromium.find_element(By.TAG_NAME, "h1").text == "403"
    assert "needs one of the roles" in chromium.find_element(By.ID, "refusal").text
    assert chromium.find_elements(By.ID, "open-alerts") == []
    refused = [
        e
        for e in stack.events(types=("admin.request",))
        if e["details"]["route"] == PATH
        and e["details"]["status"] == 403
        and not e["actor"].get("roles")
    ]
    assert refused
    # the browser reports the refused document itself; nothing else may fail
    assert console_errors(chromium, allowed=("status of 403",)) == []
