"""A request another site started (``Sec-Fetch-Site: cross-site``) with the session
cookie is refused before the session is read: no lookup, no ``last_seen_at`` touched, no
idle expiry slid. The admin and audit routes and the citizen's own ``/auth`` session
routes alike (decision 0037, 2026-11-28 review dash), and the citizen's list of tokens
(``/tokens/mine``, by the session's access-token cookie); the citizen's home page ``/``
is shown without the session (decision 0037, 2026-11-28 review crosssite2)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from admin_harness import (
    AUDITOR,
    AdminStack,
    admin_stack,
    assert_documented,
    openapi,
    person_session,
)
from dashboard_harness import chromium, log_in

from kroonika.sessions import SessionRecord
from kroonika.sessions._manager import secret_digest

__all__ = ["chromium"]  # the fixture, used by name

CROSS_SITE = {"sec-fetch-site": "cross-site"}
#: (method, path, sends the CSRF token): every route that reads the session cookie
#: and that a browser can be made to call from another site
GUARDED = [
    ("GET", "/admin/dashboard", False),
    ("GET", "/audit/events?limit=1", False),
    ("GET", "/auth/session", False),
    ("POST", "/auth/session/extend", True),
    ("GET", "/auth/sessions", False),
    ("POST", "/auth/logout", True),
    ("GET", "/tokens/mine", False),  # the session's access token (cookie kroonika_at)
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminStack]:
    with admin_stack(Path(tmp_path_factory.mktemp("cross-site-session"))) as s:
        yield s


def _record(stack: AdminStack, browser: httpx.Client) -> SessionRecord:
    services = stack.stack.services
    secret = browser.cookies[services.cookies.session_name]
    record = services.sessions.store.by_secret(secret_digest(secret))
    assert record is not None
    return record


@pytest.fixture
def lookups(stack: AdminStack, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each session lookup by cookie the service makes from now on (its digest)."""
    store = stack.stack.services.sessions.store
    seen: list[str] = []
    original: Callable[[str], Any] = store.by_secret

    def counted(digest: str) -> Any:
        seen.append(digest)
        return original(digest)

    monkeypatch.setattr(store, "by_secret", counted)
    return seen


@pytest.mark.parametrize(("method", "path", "csrf"), GUARDED)
def test_a_cross_site_request_does_not_read_or_touch_the_session(
    stack: AdminStack, lookups: list[str], method: str, path: str, csrf: bool
) -> None:
    """Refused with 403 before any lookup of the session: its last use and idle expiry
    stay as they were, and it still works from this site afterwards."""
    with person_session(stack, AUDITOR) as (browser, token):
        before = _record(stack, browser)
        stack.stack.clock.advance(30)
        lookups.clear()
        headers = {**CROSS_SITE, **({"x-csrf-token": token} if csrf else {})}
        r = browser.request(method, stack.url + path, headers=headers)
        assert r.status_code == 403, r.text
        assert lookups == []
        after = _record(stack, browser)
        assert (after.last_seen_at, after.idle_expires_at) == (
            before.last_seen_at,
            before.idle_expires_at,
        )
        assert after.ended_at is None
        # the same call from this site reads the session and marks it used
        assert browser.get(stack.url + "/auth/session").status_code == 200
        assert lookups != []
        assert _record(stack, browser).last_seen_at == before.last_seen_at + 30


@pytest.mark.parametrize("path", ["/auth/session", "/auth/sessions"])
def test_a_cross_site_session_read_is_a_recorded_csrf_refusal(stack: AdminStack, path: str) -> None:
    """The citizen's session routes refuse like the admin API: 403 ``csrf_failed`` with
    reason ``cross_site_request``, nothing of the session in the answer, one
    ``csrf_failed`` violation that names no one (the session was not read)."""
    with person_session(stack, AUDITOR) as (browser, _):
        r = browser.get(stack.url + path, headers=CROSS_SITE)
    assert r.status_code == 403, r.text
    body = r.json()
    assert (body["error"], body["reason"]) == ("csrf_failed", "cross_site_request")
    assert "csrf_token" not in body
    assert AUDITOR not in r.text
    (violation,) = stack.events(
        types=("security.policy_violation",), correlation=r.headers["x-request-id"]
    )
    assert violation["details"]["policy"] == "csrf_failed"
    assert violation["reason"] == "cross_site_request"
    assert violation["actor"]["type"] == "anonymous"
    assert_documented(openapi(stack), "GET", path, r)


@pytest.mark.parametrize("fetch_site", ["same-origin", "same-site", "none", None])
def test_the_session_is_read_from_this_site_a_bookmark_or_a_plain_client(
    stack: AdminStack, fetch_site: str | None
) -> None:
    """Only ``cross-site`` is refused: the service's own pages, a sibling site, a
    bookmark and a client without Fetch metadata read the session as before."""
    headers = {} if fetch_site is None else {"sec-fetch-site": fetch_site}
    with person_session(stack, AUDITOR) as (browser, _):
        r = browser.get(stack.url + "/auth/session", headers=headers)
    assert r.status_code == 200, r.text
    assert "csrf_token" in r.json()


def test_without_a_cookie_a_cross_site_request_is_not_authenticated(stack: AdminStack) -> None:
    """No cookie, nothing to protect: the answer is the usual 401."""
    r = httpx.get(stack.url + "/auth/session", headers=CROSS_SITE, timeout=30)
    assert r.status_code == 401
    assert r.json()["error"] == "not_authenticated"


def test_chromium_following_a_link_to_the_session_from_another_site_is_refused(
    stack: AdminStack, chromium: Any, lookups: list[str]
) -> None:
    """In a real browser logged in as the auditor: a link on a document of another origin
    (a ``data:`` page, opaque: cross-site) to ``/auth/session`` carries the Lax cookie
    and gets the 403 without the session being read or marked used; the same address
    typed (``Sec-Fetch-Site: none``) shows the session."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    log_in(stack, chromium, pick=AUDITOR)
    services = stack.stack.services
    secret = chromium.get_cookie(services.cookies.session_name)["value"]
    before = services.sessions.store.by_secret(secret_digest(secret))
    assert before is not None
    stack.stack.clock.advance(30)
    lookups.clear()
    chromium.get(f'data:text/html,<a id="go" href="{stack.url}/auth/session">session</a>')
    chromium.find_element(By.ID, "go").click()
    WebDriverWait(chromium, 30).until(lambda d: d.current_url == stack.url + "/auth/session")
    WebDriverWait(chromium, 30).until(lambda d: "cross_site_request" in d.page_source)
    assert "csrf_token" not in chromium.page_source
    assert lookups == []
    after = services.sessions.store.by_secret(secret_digest(secret))
    assert after is not None
    assert after.last_seen_at == before.last_seen_at
    refused = stack.events(types=("security.policy_violation",))
    assert any(e["reason"] == "cross_site_request" for e in refused)
    chromium.get(stack.url + "/auth/session")  # typed: Sec-Fetch-Site none
    WebDriverWait(chromium, 30).until(lambda d: "csrf_token" in d.page_source)
    assert services.sessions.store.by_secret(secret_digest(secret)).last_seen_at == (
        before.last_seen_at + 30
    )


@pytest.fixture
def token_reads(stack: AdminStack, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each read of the token store the service makes from now on (the method's name)."""
    store = stack.stack.app.state.tokens.service.store
    seen: list[str] = []
    for name in ("get", "page_for_subject"):
        original: Callable[..., Any] = getattr(store, name)

        def counted(*args: Any, _name: str = name, _original: Any = original, **kw: Any) -> Any:
            seen.append(_name)
            return _original(*args, **kw)

        monkeypatch.setattr(store, name, counted)
    return seen


def test_the_list_of_tokens_refuses_the_access_token_cookie_from_another_site(
    stack: AdminStack, token_reads: list[str]
) -> None:
    """``GET /tokens/mine`` opened from another site with the session's access-token
    cookie: 403 ``csrf_failed`` as an RFC 6749 error object, before the token is checked
    (no token store read, nothing of the list), one ``csrf_failed`` violation naming no
    one; the same list from this site and the token sent on purpose in ``Authorization``
    from anywhere are answered."""
    services = stack.stack.services
    with person_session(stack, AUDITOR) as (browser, _):
        token = browser.cookies[stack.stack.settings.token_session_cookie]
        browser.cookies.delete(services.cookies.session_name)  # the access token alone
        r = browser.get(stack.url + "/tokens/mine", headers=CROSS_SITE)
        assert r.status_code == 403, r.text
        assert token_reads == []
        assert r.json()["error"] == "csrf_failed"
        assert "cross_site_request" in r.json()["error_description"]
        assert "items" not in r.json()
        assert r.headers["cache-control"] == "no-store"
        assert_documented(openapi(stack), "GET", "/tokens/mine", r)
        (violation,) = stack.events(
            types=("security.policy_violation",), correlation=r.headers["x-request-id"]
        )
        assert violation["reason"] == "cross_site_request"
        assert violation["actor"]["type"] == "anonymous"
        cookie = stack.stack.settings.token_session_cookie
        assert violation["details"]["attempted"] == (
            f"GET /tokens/mine from another site with the access-token cookie {cookie}"
        )
        same_site = browser.get(stack.url + "/tokens/mine", headers={"sec-fetch-site": "none"})
        assert same_site.status_code == 200, same_site.text
        assert same_site.json()["items"]
        bearer = {**CROSS_SITE, "authorization": f"Bearer {token}"}
        assert browser.get(stack.url + "/tokens/mine", headers=bearer).status_code == 200


def test_the_token_list_refusal_names_each_cookie_it_carried(stack: AdminStack) -> None:
    """With both of the person's cookies the violation names both, by what they are."""
    with person_session(stack, AUDITOR) as (browser, _):
        r = browser.get(stack.url + "/tokens/mine", headers=CROSS_SITE)
    assert r.status_code == 403, r.text
    (violation,) = stack.events(
        types=("security.policy_violation",), correlation=r.headers["x-request-id"]
    )
    cookie = stack.stack.settings.token_session_cookie
    assert violation["details"]["attempted"] == (
        f"GET /tokens/mine from another site with the access-token cookie {cookie} "
        "and the session cookie"
    )


def test_a_link_from_another_site_to_the_home_page_shows_it_without_the_session(
    stack: AdminStack, lookups: list[str]
) -> None:
    """``/`` opened from another site with the session cookie: 200, the page without the
    person (no name, no personal code, no CSRF token, no sessions) and a link that opens
    it from here; the session is not looked up, its last use and idle expiry stay; from
    this site the same page shows the person and marks the session used."""
    with person_session(stack, AUDITOR) as (browser, csrf):
        before = _record(stack, browser)
        stack.stack.clock.advance(30)
        lookups.clear()
        r = browser.get(stack.url + "/", headers=CROSS_SITE)
        assert r.status_code == 200, r.text
        assert lookups == []
        assert 'id="open-here" href="/"' in r.text
        for private in (AUDITOR, csrf, before.ref, "/auth/logout", "/auth/login"):
            assert private not in r.text
        after = _record(stack, browser)
        assert (after.last_seen_at, after.idle_expires_at) == (
            before.last_seen_at,
            before.idle_expires_at,
        )
        assert (
            stack.events(
                types=("security.policy_violation",), correlation=r.headers["x-request-id"]
            )
            == []
        )  # following a link is no attack
        here = browser.get(stack.url + "/", headers={"sec-fetch-site": "same-origin"})
        assert AUDITOR in here.text
        assert csrf in here.text
        assert _record(stack, browser).last_seen_at == before.last_seen_at + 30


def test_without_a_cookie_another_site_gets_the_login_page(stack: AdminStack) -> None:
    """No session cookie, nothing to protect: ``/`` from another site offers the login."""
    r = httpx.get(stack.url + "/", headers=CROSS_SITE, timeout=30)
    assert r.status_code == 200
    assert "/auth/login?method=" in r.text


def test_chromium_following_links_to_the_home_page_and_the_token_list(
    stack: AdminStack, chromium: Any, lookups: list[str], token_reads: list[str]
) -> None:
    """In a real browser logged in as the auditor: a link on a document of another origin
    to ``/`` shows the page without the person and without reading the session; its
    "open here" link (same-origin) shows the person and marks the session used. A link
    to ``/tokens/mine`` gets the 403 without the token store being read."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    log_in(stack, chromium, pick=AUDITOR)
    services = stack.stack.services
    secret = chromium.get_cookie(services.cookies.session_name)["value"]
    assert chromium.get_cookie(stack.stack.settings.token_session_cookie) is not None
    before = services.sessions.store.by_secret(secret_digest(secret))
    assert before is not None
    stack.stack.clock.advance(30)
    lookups.clear()
    token_reads.clear()

    def follow(path: str) -> None:
        chromium.get(f'data:text/html,<a id="go" href="{stack.url}{path}">go</a>')
        chromium.find_element(By.ID, "go").click()
        WebDriverWait(chromium, 30).until(lambda d: d.current_url == stack.url + path)
        WebDriverWait(chromium, 30).until(
            lambda d: d.execute_script("return document.readyState") == "complete"
        )

    follow("/")
    assert chromium.find_elements(By.ID, "open-here")
    assert AUDITOR not in chromium.page_source
    assert lookups == []
    follow("/tokens/mine")
    assert "cross_site_request" in chromium.page_source
    assert '"items"' not in chromium.page_source
    assert token_reads == []
    assert lookups == []
    after = services.sessions.store.by_secret(secret_digest(secret))
    assert after is not None
    assert after.last_seen_at == before.last_seen_at
    follow("/")
    chromium.find_element(By.ID, "open-here").click()  # from this site: same-origin
    WebDriverWait(chromium, 30).until(lambda d: AUDITOR in d.page_source)
    assert services.sessions.store.by_secret(secret_digest(secret)).last_seen_at == (
        before.last_seen_at + 30
    )
