"""A successful login per authentication method, over real HTTP with the mock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from login_harness import SUCCESS_STEPS, Stack, running_stack


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path) as s:
        yield s


@pytest.mark.parametrize(
    ("method", "code", "extra", "acr"),
    [
        ("idcard", "38001085718", {}, "high"),
        ("mid", "60001019906", {}, "high"),
        ("smartid", "40404040009", {}, "high"),
        (
            "eidas",
            "38001085718",
            {
                "autologin_method": "eidas",
                "autologin_given_name": "JAAK-KRISTJAN",
                "autologin_family_name": "JÕEORG",
                "autologin_acr": "substantial",
            },
            "substantial",
        ),
    ],
)
def test_login_with_each_method_creates_a_session(
    stack: Stack, method: str, code: str, extra: dict[str, str], acr: str
) -> None:
    """Login with a method ends on return_to with a session, one auth.login and all steps."""
    with stack.browser(autologin=code, **extra) as browser:
        landed = browser.get(stack.service + f"/auth/login?method={method}&return_to=/")
        assert landed.status_code == 200
        assert str(landed.url) == stack.service + "/"
        callback_rid = landed.history[-1].headers["x-request-id"]
        session = browser.get(stack.service + "/auth/session").json()
    assert session["method"] == method
    assert session["acr"] == acr
    assert session["subject"] == "EE" + code
    login, steps = stack.login_events(callback_rid)
    assert login["outcome"] == "success"
    assert login["details"]["method"] == method
    assert steps == SUCCESS_STEPS
    creates = stack.events(types=("session.create",), correlation=login["correlation"]["flow_id"])
    assert len(creates) == 1
    assert creates[0]["correlation"]["session_ref"] == login["correlation"]["session_ref"]
    assert session["id"] not in creates[0]["correlation"]["session_ref"]


def test_login_event_carries_the_names_encrypted_and_unchanged(stack: Stack) -> None:
    """Who logged in (personal code and TARA's names, ’ Ä Ž Š included) is in the auth.login
    event's encrypted pii exactly as TARA sent it, and nowhere in the clear."""
    with stack.browser(autologin="60001019906") as browser:
        landed = browser.get(stack.service + "/auth/login")
        assert landed.status_code == 200
    login, _ = stack.login_events(landed.history[-1].headers["x-request-id"])
    personal = stack.personal(login)
    assert personal is not None
    assert (personal["given_name"], personal["family_name"]) == (
        "MARY ÄNN",
        "O’CONNEŽ-ŠUSLIK TESTNUMBER",
    )
    assert personal["personal_code"] == "EE60001019906"
    clear = b"\n".join(stack.raw_events()).decode()
    assert "CONNE" not in clear
    assert "60001019906" not in clear


def _back_from_tara(stack: Stack, browser: httpx.Client, return_to: str, **headers: str) -> Any:
    """Start a login for ``return_to``, let the mock log someone in, and follow TARA's
    redirect to the callback with ``headers``, without following the callback's answer."""
    start = browser.get(
        stack.service + "/auth/login", params={"return_to": return_to}, follow_redirects=False
    )
    authorize = httpx.URL(start.headers["location"]).copy_merge_params({"autologin": "38001085718"})
    back = httpx.get(str(authorize), timeout=10)
    return browser.get(back.headers["location"], headers=headers, follow_redirects=False)


def test_a_login_back_from_another_site_opens_the_dashboard_from_this_site(stack: Stack) -> None:
    """In production TARA is another site: its redirect to the callback, and a 302 from
    there, reach the browser's next request as ``Sec-Fetch-Site: cross-site``, which the
    admin and audit routes refuse to a session cookie (decision 0037). A login that comes
    back from another site to an ``/admin`` or ``/audit`` page or the citizen's page ``/``
    therefore answers a page that moves on by itself (the next request is then
    same-origin); other targets and a same-site callback keep the 302."""
    with stack.browser() as browser:
        hop = _back_from_tara(
            stack, browser, "/admin/dashboard", **{"sec-fetch-site": "cross-site"}
        )
        assert hop.status_code == 200, hop.text
        assert hop.headers["content-type"].startswith("text/html")
        assert '<meta http-equiv="refresh" content="0;url=/admin/dashboard">' in hop.text
        assert "no-store" in hop.headers["cache-control"]
        assert browser.get(stack.service + "/auth/session").status_code == 200
    with stack.browser() as browser:
        same = _back_from_tara(
            stack, browser, "/admin/dashboard", **{"sec-fetch-site": "same-site"}
        )
        assert (same.status_code, same.headers["location"]) == (302, "/admin/dashboard")
    with stack.browser() as browser:  # the citizen's page reads the session from here only
        citizen = _back_from_tara(stack, browser, "/", **{"sec-fetch-site": "cross-site"})
        assert citizen.status_code == 200, citizen.text
        assert '<meta http-equiv="refresh" content="0;url=/">' in citizen.text
    with stack.browser() as browser:
        other = _back_from_tara(stack, browser, "/health", **{"sec-fetch-site": "cross-site"})
        assert (other.status_code, other.headers["location"]) == (302, "/health")
