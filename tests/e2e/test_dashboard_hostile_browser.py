"""The dashboard attacked as a hostile user would, in a real headless Chromium: values
that reach the trail through the service's own doors (a user agent, an alert rule keyed
on it, an acknowledgement's note and justification) are shown as text on the dashboard
and in the JSON answers an analyst opens from the browser; no script runs, no element is made from
them, a long one does not push the page's columns out of sight; and a session that
lapsed or logged out while the page was open reads nothing more."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from admin_harness import AdminStack, admin_stack
from dashboard_harness import PATH, chromium, console_errors, log_in

from kroonika.admin import RoleStore
from kroonika.audit.personal_codes import check_digit
from poll_kit import wait_until

__all__ = ["chromium"]  # the fixture, used by name

#: a person who holds ``security`` and ``auditor`` (the mock takes letters, spaces,
#: hyphens and apostrophes in a name, as TARA gives them: names carry no markup)
_BASE = "4900101022"
ANALYST = _BASE + str(check_digit(_BASE))
NAMES = ("MARY ÄNN", "O’CONNEŽ-ŠUSLIK")
#: a user agent with markup, a script end inside what could be JSON, a javascript: URL,
#: a bidi override and a zero-width space (UTF-8 bytes: a header holds no controls)
AGENT = (
    'Mozilla/5.0 <script>window.__pwned=11</script>"><img src=x onerror=window.__pwned=12>'
    " javascript:window.__pwned=13 </script><!-- \u202eevil\u202c zero\u200bwidth"
).encode()
#: an acknowledgement's note: markup that closes the table, a link, a style, then a
#: long unbroken run (what a pasted log line or hash is); controls are refused there
NOTE = (
    '</td></tr></table><script>window.__pwned=21</script><a id="evil" '
    'href="javascript:window.__pwned=22">open</a><style>body{display:none}</style> ' + "W" * 1500
)
JUSTIFICATION = "INC-1234 <script>window.__pwned=41</script> checked"
RULES = {
    "agent_watch": {
        "types": ["security.policy_violation"],
        "key": ["source.user_agent"],
        "severity": "warning",
    }
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminStack]:
    """The admin stack with the alert evaluator on and one rule keyed on the user agent;
    the analyst holds ``security`` and ``auditor``."""
    tmp = Path(tmp_path_factory.mktemp("dashboard-hostile"))
    with admin_stack(tmp, overrides={"alert_rules": RULES}) as s:
        roles = RoleStore(s.stack.services.engine, clock=s.stack.services.clock)
        for role in ("security", "auditor"):
            roles.grant(ANALYST, role, by="test")
        yield s


def _raise_and_acknowledge(stack: AdminStack) -> str:
    """A caller without the role opens the dashboard with the hostile user agent (a
    policy violation the rule alerts on); the alert is acknowledged with the hostile
    note and justification. Returns the alert's id."""
    r = stack.call("GET", PATH, role="privacy", why=None, headers={"user-agent": AGENT})
    assert r.status_code == 403

    def raised() -> list[dict[str, Any]]:
        listed = stack.call("GET", "/admin/alerts?state=all", role="security", why=None)
        return [a for a in listed.json()["alerts"] if a["rule"] == "agent_watch"]

    assert wait_until(lambda: bool(raised()))
    (alert,) = raised()
    ack = stack.call(
        "POST",
        f"/admin/alerts/{alert['alert_id']}/acknowledge",
        role="security",
        why=None,
        json={"note": NOTE, "justification": JUSTIFICATION},
    )
    assert ack.status_code == 200, ack.text
    return str(alert["alert_id"])


@pytest.fixture(scope="module")
def alert_id(stack: AdminStack) -> str:
    return _raise_and_acknowledge(stack)


def _no_script_ran(driver: Any) -> None:
    """No payload set its flag, no element was made from a value, no dialog is open."""
    assert driver.execute_script("return window.__pwned === undefined") is True
    made = driver.execute_script(
        "return document.querySelectorAll("
        "'script, img, iframe, object, embed, a[href^=\"javascript\"], #evil').length"
    )
    assert made == 0
    assert len(driver.find_elements("tag name", "style")) <= 1


def test_hostile_values_from_real_requests_are_text_on_the_page(
    stack: AdminStack, alert_id: str, chromium: Any
) -> None:
    """The note, the summary of the rule keyed on the user agent and the justification's
    record are characters on the page, controls as escapes; no script ran."""
    from selenium.webdriver.common.by import By

    log_in(stack, chromium, code=ANALYST, names=NAMES)
    assert chromium.title == "Kroonika security dashboard"
    _no_script_ran(chromium)
    row = chromium.find_element(
        By.CSS_SELECTOR, f'#acknowledged-alerts tr[data-alert-id="{alert_id}"]'
    )
    cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
    note = cells[2]
    assert note.startswith("</td></tr></table><script>window.__pwned=21</script><a id=")
    assert "\u202e" not in chromium.page_source
    assert "\u200b" not in chromium.page_source
    assert cells[4] == "agent_watch"
    assert cells[5].startswith("agent_watch: security.policy_violation user_agent=Mozilla/5.0")
    assert console_errors(chromium) == []


def test_a_long_value_does_not_push_columns_out_of_sight(
    stack: AdminStack, alert_id: str, chromium: Any
) -> None:
    """A 1,500-character unbroken note wraps inside its cell: the page is no wider than
    the window, so the alert's rule, summary and time stay in view."""
    from selenium.webdriver.common.by import By

    log_in(stack, chromium, code=ANALYST, names=NAMES)
    width = chromium.execute_script("return document.documentElement.clientWidth")
    assert chromium.execute_script("return document.documentElement.scrollWidth") <= width
    row = chromium.find_element(
        By.CSS_SELECTOR, f'#acknowledged-alerts tr[data-alert-id="{alert_id}"]'
    )
    for cell in row.find_elements(By.TAG_NAME, "td"):
        box = cell.rect
        assert box["x"] + box["width"] <= width, cell.text[:40]


@pytest.mark.parametrize(
    "path",
    [
        "/admin/alerts?state=all",
        "/audit/events?type=alert.acknowledge",
        "/audit/events?type=security.policy_violation",
    ],
)
def test_json_answers_opened_in_the_browser_are_text(
    stack: AdminStack, alert_id: str, chromium: Any, path: str
) -> None:
    """An analyst who opens the alert list or a search in the browser (the session
    cookie) gets the stored values as JSON text: no document is made of them."""
    log_in(stack, chromium, code=ANALYST, names=NAMES)
    chromium.get(stack.url + path)
    assert chromium.execute_script("return document.contentType") == "application/json"
    text = chromium.execute_script("return document.body ? document.body.innerText : ''")
    assert "window.__pwned" in text  # the hostile values are there, as characters
    _no_script_ran(chromium)


def _dashboard_reads(stack: AdminStack) -> int:
    return len(
        [e for e in stack.events(types=("audit.access",)) if e["details"]["action"] == "dashboard"]
    )


def test_a_session_that_lapses_while_the_page_is_open_reads_nothing(
    stack: AdminStack, chromium: Any
) -> None:
    """The page reloads itself; once the session is idle past its limit the reload is
    the 401 page (no alert, no count), the session ends as ``idle`` and no
    ``audit.access`` is recorded for it."""
    from selenium.webdriver.common.by import By

    log_in(stack, chromium, code=ANALYST, names=NAMES)
    assert chromium.find_elements(By.ID, "open-alerts") or chromium.find_elements(
        By.ID, "open-count"
    )
    before = _dashboard_reads(stack)
    stack.stack.clock.advance(stack.stack.services.settings.session_idle_s + 1)
    chromium.refresh()  # what the page's own refresh does
    assert chromium.find_element(By.TAG_NAME, "h1").text == "401"
    assert chromium.find_elements(By.ID, "open-count") == []
    assert chromium.find_element(By.LINK_TEXT, "Log in through TARA")
    assert _dashboard_reads(stack) == before
    ended = stack.events(types=("session.terminate",))
    assert any(e.get("reason") == "idle" or e["details"].get("reason") == "idle" for e in ended)


def test_a_logged_out_session_reads_nothing(stack: AdminStack, chromium: Any) -> None:
    """Logged out with the citizen's page's button (its form once sent ``Origin: null``,
    refused as another origin's), the dashboard's next load is the 401 page and the old
    cookie value read through plain HTTP is refused too."""
    from selenium.webdriver.common.by import By

    log_in(stack, chromium, code=ANALYST, names=NAMES)
    cookies = {c["name"]: c["value"] for c in chromium.get_cookies()}
    chromium.get(stack.url + "/")
    chromium.find_element(By.CSS_SELECTOR, 'form[action="/auth/logout"] button').click()
    # the form's answer sends the browser back to the page, logged out
    assert wait_until(lambda: "Logi sisse" in chromium.page_source), chromium.page_source
    assert chromium.current_url == stack.url + "/"
    before = _dashboard_reads(stack)
    chromium.get(stack.url + PATH)
    assert chromium.find_element(By.TAG_NAME, "h1").text == "401"
    replay = httpx.get(stack.url + PATH, cookies=cookies, timeout=30)
    assert replay.status_code == 401
    feed = httpx.get(stack.url + "/admin/alerts", cookies=cookies, timeout=30)
    assert feed.status_code == 401
    assert _dashboard_reads(stack) == before
