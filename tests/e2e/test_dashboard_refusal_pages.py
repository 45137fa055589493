"""``GET /admin/dashboard`` refusals over real HTTP that the review of decision 0037
(dash2) added: a 429 is a page that reloads itself, and a cross-site read with the
session cookie is refused."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
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
from dashboard_harness import PATH, chromium, log_in

from kroonika.web.routes_dashboard import CSP

__all__ = ["chromium"]  # the fixture, used by name


def _limited(tmp_path: Path, limits: dict[str, str]) -> AbstractContextManager[AdminStack]:
    return admin_stack(tmp_path, overrides={"ratelimit_enabled": True, "ratelimit_limits": limits})


def _assert_busy_page(stack: AdminStack, r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CSP
    assert r.headers["cache-control"] == "no-store"
    retry = int(r.headers["retry-after"])
    assert retry >= stack.stack.services.settings.dashboard_refresh_s
    assert f'<meta http-equiv="refresh" content="{retry}">' in r.text
    assert "rate_limited" in r.text
    assert 'id="open-alerts"' not in r.text


@pytest.mark.parametrize(
    ("limits", "limit"),
    [
        ({"admin:person": "2/minute", "admin:ip": "off"}, "admin:person"),
        ({"admin:person": "off", "admin:ip": "2/minute"}, "admin:ip"),
    ],
    ids=["person", "ip"],
)
def test_a_429_on_the_dashboard_is_a_page_that_tries_again(
    tmp_path: Path, limits: dict[str, str], limit: str
) -> None:
    """Over either admin limit (the person's in the route, the address's in the
    middleware before routing) the dashboard answers a page with ``Retry-After`` and
    the same wait as its refresh; the call is recorded with its 429. The API next to
    it keeps its JSON 429."""
    with _limited(tmp_path, limits) as stack:
        for _ in range(2):
            assert stack.call("GET", PATH, role="auditor", why=None).status_code == 200
        r = stack.call("GET", PATH, role="auditor", why=None)
        _assert_busy_page(stack, r)
        assert limit in r.text
        assert_documented(openapi(stack), "GET", PATH, r)  # a page, as the document says
        (req,) = stack.events(types=("admin.request",), correlation=r.headers["x-request-id"])
        assert req["details"]["status"] == 429
        api = stack.call("GET", "/admin/alerts", role="auditor", why=None)
        assert api.status_code == 429
        assert api.json()["error"] == "rate_limited"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminStack]:
    with admin_stack(Path(tmp_path_factory.mktemp("cross-site"))) as s:
        yield s


def _refused_cross_site(stack: AdminStack, r: httpx.Response) -> None:
    """403, one ``csrf_failed`` violation (reason cross_site_request), the call recorded
    and nothing of the trail read. Neither names the analyst: the session is not looked
    up for another site's request (2026-11-28, review dash)."""
    assert r.status_code == 403, r.text
    rid = r.headers["x-request-id"]
    (violation,) = stack.events(types=("security.policy_violation",), correlation=rid)
    assert violation["details"]["policy"] == "csrf_failed"
    assert violation["reason"] == "cross_site_request"
    assert violation["actor"] == {"type": "anonymous"}
    (req,) = stack.events(types=("admin.request",), correlation=rid)
    assert req["details"]["status"] == 403
    assert (req["actor"], req["details"]["auth"]) == ({"type": "anonymous"}, "none")
    assert stack.events(types=("audit.access",), correlation=rid) == []


@pytest.mark.parametrize("path", [PATH, "/audit/events?limit=1", "/admin/alerts"])
def test_a_cross_site_read_with_the_session_cookie_is_refused(stack: AdminStack, path: str) -> None:
    """Another site's link loads the dashboard or the audit API with the analyst's
    SameSite=Lax cookie: refused (the page as a page, with a link that opens it from
    here; the API as JSON), and not recorded as the analyst's read."""
    with person_session(stack, AUDITOR) as (browser, _):
        r = browser.get(stack.url + path, headers={"sec-fetch-site": "cross-site"})
    _refused_cross_site(stack, r)
    if path == PATH:
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["content-security-policy"] == CSP
        assert "another site" in r.text
        assert f'<a id="open-here" href="{PATH}">' in r.text
    else:
        assert r.json()["error"] == "cross_site_request"


@pytest.mark.parametrize("fetch_site", ["same-origin", "same-site", "none", None])
@pytest.mark.parametrize("path", [PATH, "/audit/events?limit=1"])
def test_own_pages_bookmarks_and_other_clients_are_taken(
    stack: AdminStack, path: str, fetch_site: str | None
) -> None:
    """The service's own pages, a sibling site of the same domain, a bookmark or typed
    address (``none``) and a client that sends no Fetch metadata keep reading."""
    headers = {} if fetch_site is None else {"sec-fetch-site": fetch_site}
    with person_session(stack, AUDITOR) as (browser, _):
        r = browser.get(stack.url + path, headers=headers)
    assert r.status_code == 200, r.text
    (access,) = stack.events(types=("audit.access",), correlation=r.headers["x-request-id"])
    assert access["actor"]["roles"] == ["auditor"]


def test_an_api_key_is_not_a_cookie(stack: AdminStack) -> None:
    """An API key is sent on purpose by its holder: the header changes nothing."""
    r = stack.call(
        "GET",
        "/audit/events?limit=1",
        role="auditor",
        why=None,
        headers={"sec-fetch-site": "cross-site"},
    )
    assert r.status_code == 200, r.text


def test_chromium_following_a_link_from_another_site_gets_the_refusal(
    stack: AdminStack, chromium: Any
) -> None:
    """In a real browser logged in as the auditor: a link on a document of another origin
    (a ``data:`` page, opaque: cross-site) opens the dashboard with the Lax cookie and
    gets the 403 page; its link, a same-origin click, opens the dashboard."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    log_in(stack, chromium, pick=AUDITOR)
    chromium.get(f'data:text/html,<a id="go" href="{stack.url}{PATH}">dashboard</a>')
    chromium.find_element(By.ID, "go").click()
    WebDriverWait(chromium, 30).until(lambda d: d.current_url == stack.url + PATH)
    WebDriverWait(chromium, 30).until(lambda d: d.find_elements(By.TAG_NAME, "h1"))
    assert chromium.find_element(By.TAG_NAME, "h1").text == "403"
    assert "another site" in chromium.find_element(By.ID, "refusal").text
    chromium.find_element(By.ID, "open-here").click()
    WebDriverWait(chromium, 30).until(lambda d: d.find_elements(By.ID, "open-count"))
    assert chromium.title == "Kroonika security dashboard"
    refused = stack.events(types=("security.policy_violation",))
    assert any(e["reason"] == "cross_site_request" for e in refused)
