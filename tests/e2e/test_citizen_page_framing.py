"""No HTML answer of the service may be framed by another site, and none runs an inline
style or script its CSP does not name by hash: the citizen's page ``/`` (which has a
logout button to be clicked through a frame) carries the dashboard's strict headers, as
do the login's failure page, the callback's hop page, the dashboard and the logout's
page for a browser (decision 0037, 2026-11-28 review framing). A logout a browser
submits once the session has ended gets a small page; a JSON client its JSON."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from admin_harness import AUDITOR, AdminStack, admin_stack, person_session
from dashboard_harness import chromium, log_in

__all__ = ["chromium"]  # the fixture, used by name

#: what Chromium sends when a person follows a link, a redirect or submits a form
NAVIGATION = {
    "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "sec-fetch-mode": "navigate",
}
CROSS_SITE = {"sec-fetch-site": "cross-site"}
FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminStack]:
    with admin_stack(Path(tmp_path_factory.mktemp("framing"))) as s:
        yield s


def _home_anonymous(stack: AdminStack) -> httpx.Response:
    return httpx.get(stack.url + "/", headers=NAVIGATION, timeout=30)


def _home_person(stack: AdminStack) -> httpx.Response:
    with person_session(stack, AUDITOR) as (browser, _):
        return browser.get(stack.url + "/", headers=NAVIGATION)


def _home_from_another_site(stack: AdminStack) -> httpx.Response:
    with person_session(stack, AUDITOR) as (browser, _):
        return browser.get(stack.url + "/", headers={**NAVIGATION, **CROSS_SITE})


def _login_failure(stack: AdminStack) -> httpx.Response:
    return httpx.get(
        stack.url + "/auth/callback?error=user_cancel&state=x", headers=NAVIGATION, timeout=30
    )


def _callback_hop(stack: AdminStack) -> httpx.Response:
    """TARA (another site) sends the browser back to a guarded page: the hop page."""

    def from_tara(request: httpx.Request) -> None:
        if request.url.path == "/auth/callback":
            request.headers.update(CROSS_SITE)

    with stack.stack.browser(autologin=AUDITOR) as browser:
        browser.event_hooks["request"].append(from_tara)
        r = browser.get(stack.url + "/auth/login?return_to=/admin/dashboard", headers=NAVIGATION)
    assert r.url.path == "/auth/callback", r.url
    return r


def _dashboard(stack: AdminStack) -> httpx.Response:
    with person_session(stack, AUDITOR) as (browser, _):
        return browser.get(stack.url + "/admin/dashboard", headers=NAVIGATION)


def _dashboard_refused(stack: AdminStack) -> httpx.Response:
    return httpx.get(stack.url + "/admin/dashboard", headers=NAVIGATION, timeout=30)


def _logout_after_the_end(stack: AdminStack) -> httpx.Response:
    with person_session(stack, AUDITOR) as (browser, csrf):
        return _log_out_twice(stack, browser, csrf)


def _log_out_twice(stack: AdminStack, browser: httpx.Client, csrf: str) -> httpx.Response:
    """Log out, then submit the page's form again with the ended session's cookie (another
    tab's page, or the Back button)."""
    name = stack.stack.services.cookies.session_name
    cookie = f"{name}={browser.cookies[name]}"
    assert browser.post(stack.url + "/auth/logout", headers={"x-csrf-token": csrf}).is_success
    assert name not in browser.cookies
    return browser.post(
        stack.url + "/auth/logout",
        headers={**NAVIGATION, **FORM, "cookie": cookie},
        content=f"csrf_token={csrf}",
    )


#: every HTML answer the service gives (the TARA mock is another service)
HTML_ANSWERS: dict[str, Callable[[AdminStack], httpx.Response]] = {
    "home-anonymous": _home_anonymous,
    "home-person": _home_person,
    "home-from-another-site": _home_from_another_site,
    "login-failure": _login_failure,
    "callback-hop": _callback_hop,
    "dashboard": _dashboard,
    "dashboard-refused": _dashboard_refused,
    "logout-after-the-end": _logout_after_the_end,
}


def _directives(csp: str) -> dict[str, str]:
    return {d.strip().split(" ", 1)[0]: d.strip() for d in csp.split(";") if d.strip()}


@pytest.mark.parametrize("case", HTML_ANSWERS)
def test_no_html_answer_can_be_framed_or_run_unhashed_inline_code(
    stack: AdminStack, case: str
) -> None:
    """``X-Frame-Options: DENY`` and ``frame-ancestors 'none'``; no ``'unsafe-inline'``;
    every inline ``<style>`` is named by its hash and there is no script."""
    r = HTML_ANSWERS[case](stack)
    assert r.headers["content-type"].startswith("text/html"), (r.status_code, r.text)
    assert r.headers["x-frame-options"] == "DENY"
    csp = r.headers["content-security-policy"]
    directives = _directives(csp)
    assert directives["frame-ancestors"] == "frame-ancestors 'none'"
    assert directives["default-src"] == "default-src 'none'"
    assert "unsafe-inline" not in csp
    assert "<script" not in r.text.lower()
    assert " style=" not in r.text.lower()
    for style in re.findall(r"<style>(.*?)</style>", r.text, flags=re.S):
        digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in directives["style-src"]


def test_the_home_page_keeps_its_logout_form_and_its_referrer(stack: AdminStack) -> None:
    """The strict policy still lets the page's form post to this service (``form-action
    'self'``) and keeps ``Referrer-Policy: same-origin`` (the logout's Origin), and the
    rest is the dashboard's: no caching, no sniffing."""
    from kroonika.web.routes_dashboard import HEADERS

    r = _home_person(stack)
    directives = _directives(r.headers["content-security-policy"])
    assert directives["form-action"] == "form-action 'self'"
    assert r.headers["referrer-policy"] == "same-origin"
    for name in ("cache-control", "x-content-type-options"):
        assert r.headers[name] == HEADERS[name]


def test_a_browser_logging_out_an_ended_session_gets_a_page(stack: AdminStack) -> None:
    """401 with a page that says the person is logged out and links to start again; the
    stale cookie is cleared as before, and the page names no secret."""
    name = stack.stack.services.cookies.session_name
    with person_session(stack, AUDITOR) as (browser, csrf):
        secret = browser.cookies[name]
        r = _log_out_twice(stack, browser, csrf)
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert 'id="logged-out"' in r.text
    assert 'href="/"' in r.text
    assert 'href="/auth/login"' in r.text
    assert "accept" in r.headers["vary"].lower()
    assert f"{name}=" in r.headers["set-cookie"]
    assert "Max-Age=0" in r.headers["set-cookie"] or "expires=" in r.headers["set-cookie"]
    for private in (secret, csrf, AUDITOR):
        assert private not in r.text


def test_a_browser_logging_out_with_a_stale_form_gets_a_page(stack: AdminStack) -> None:
    """The form of an older session (logged in again meanwhile): 403 as a page that sends
    the person to their page, and still the recorded CSRF refusal."""
    with person_session(stack, AUDITOR) as (browser, _):
        r = browser.post(
            stack.url + "/auth/logout",
            headers={**NAVIGATION, **FORM},
            content="csrf_token=from-an-older-page",
        )
        assert browser.get(stack.url + "/auth/session").status_code == 200  # still in
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert 'id="stale-form"' in r.text
    assert 'href="/"' in r.text
    violations = stack.events(
        types=("security.policy_violation",), correlation=r.headers["x-request-id"]
    )
    assert [v["details"]["policy"] for v in violations] == ["csrf_failed"]


@pytest.mark.parametrize("accept", [None, "application/json", "*/*"])
def test_a_json_client_logging_out_an_ended_session_gets_json(
    stack: AdminStack, accept: str | None
) -> None:
    """An API client (JSON asked for, or nothing said) gets the 401 JSON as before."""
    headers = {"accept": accept} if accept is not None else {}
    with person_session(stack, AUDITOR) as (browser, csrf):
        browser.post(stack.url + "/auth/logout", headers={"x-csrf-token": csrf})
        r = browser.post(stack.url + "/auth/logout", headers={**headers, "x-csrf-token": csrf})
    assert r.status_code == 401
    assert r.json()["error"] == "not_authenticated"


def test_chromium_does_not_render_the_home_page_in_another_sites_frame(
    stack: AdminStack, chromium: Any
) -> None:
    """In a real browser logged in: a document of another origin (a ``data:`` page,
    opaque) that frames ``/`` gets no page in the frame (no logout button to be
    clicked through it); the same page opened directly shows the button."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    log_in(stack, chromium, pick=AUDITOR)
    chromium.get(f'data:text/html,<iframe id="f" src="{stack.url}/"></iframe><p id="x">x</p>')
    frame = chromium.find_element(By.ID, "f")
    WebDriverWait(chromium, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )
    chromium.switch_to.frame(frame)
    WebDriverWait(chromium, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )
    framed = chromium.page_source
    assert chromium.find_elements(By.CSS_SELECTOR, 'form[action="/auth/logout"]') == []
    assert "Kroonika" not in framed
    chromium.switch_to.default_content()
    chromium.get(stack.url + "/")
    WebDriverWait(chromium, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, 'form[action="/auth/logout"] button')
    )
