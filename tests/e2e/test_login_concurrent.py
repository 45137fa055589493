"""Several logins started in one browser (tabs) over real HTTP against the mock: each
finishes on its own, the state stays bound to the browser, and the number of pending
flows a browser holds is capped."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from login_harness import Stack, running_stack

CAP = 3
#: Many logins of the same test person from one address, by design.
NO_LOGIN_LIMITS = {"login_start:ip": "off", "login_start:person": "off"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("concurrent"),
        settings_overrides={"login_pending_flows_max": CAP, "ratelimit_limits": NO_LOGIN_LIMITS},
    ) as s:
        yield s


def _start(stack: Stack, browser: httpx.Client) -> str:
    """Start a login in ``browser`` and let TARA answer; the callback URL, not yet followed."""
    start = browser.get(stack.service + "/auth/login", follow_redirects=False)
    assert start.status_code == 302, start.text
    authorize = httpx.URL(start.headers["location"]).copy_merge_params({"autologin": "38001085718"})
    back = httpx.get(str(authorize), timeout=10)
    assert back.status_code in (302, 303)
    return str(back.headers["location"])


def _flow_cookies(browser: httpx.Client) -> list[str]:
    return [c.name for c in browser.cookies.jar if c.name.startswith("kroonika_flow")]


def _outcome(stack: Stack, r: httpx.Response) -> tuple[int, str | None]:
    login, _ = stack.login_events(r.headers["x-request-id"])
    return r.status_code, login.get("reason")


def test_two_tabs_both_finish_in_either_order(stack: Stack) -> None:
    """A second login started in the same browser does not break the first: the first
    tab's callback succeeds, then the second's."""
    with stack.browser(autologin=None) as b:
        first = _start(stack, b)
        second = _start(stack, b)
        assert len(_flow_cookies(b)) == 2
        assert _outcome(stack, b.get(first, follow_redirects=False)) == (302, None)
        assert len(_flow_cookies(b)) == 1
        assert _outcome(stack, b.get(second, follow_redirects=False)) == (302, None)
        assert _flow_cookies(b) == []


def test_a_tab_cannot_finish_another_browsers_login(stack: Stack) -> None:
    """Holding flow cookies of its own does not let a browser complete a login started
    in another browser (login CSRF): state_not_bound, and the victim's flow survives."""
    with stack.browser(autologin=None) as victim, stack.browser(autologin=None) as attacker:
        _start(stack, attacker)
        victims = _start(stack, victim)
        assert _outcome(stack, attacker.get(victims, follow_redirects=False)) == (
            400,
            "state_not_bound",
        )
        assert _outcome(stack, victim.get(victims, follow_redirects=False)) == (302, None)


def test_a_forged_flow_cookie_with_the_right_name_is_not_a_binding(stack: Stack) -> None:
    """A flow cookie named for the state but holding another value is state_not_bound."""
    with stack.browser(autologin=None) as b:
        url = _start(stack, b)
        (cookie,) = (c for c in b.cookies.jar if c.name.startswith("kroonika_flow_"))
        with stack.browser(autologin=None) as other:
            other.cookies.set(cookie.name, "0.forged", domain=cookie.domain, path="/auth")
            r = other.get(url, follow_redirects=False)
        assert f"{cookie.name}=0.forged" in r.request.headers["cookie"]
        assert _outcome(stack, r) == (400, "state_not_bound")
        assert _outcome(stack, b.get(url, follow_redirects=False)) == (302, None)


def test_the_pending_flows_of_a_browser_are_capped_oldest_first(stack: Stack) -> None:
    """Starting more logins than the cap drops the oldest pending one (its callback is
    state_not_bound); the browser never holds more than the cap; the newest finish."""
    with stack.browser(autologin=None) as b:
        urls = []
        for _ in range(CAP + 2):
            urls.append(_start(stack, b))
            stack.clock.advance(1)
            assert len(_flow_cookies(b)) <= CAP
        assert len(_flow_cookies(b)) == CAP
        assert _outcome(stack, b.get(urls[0], follow_redirects=False)) == (400, "state_not_bound")
        assert _outcome(stack, b.get(urls[1], follow_redirects=False)) == (400, "state_not_bound")
        assert _outcome(stack, b.get(urls[-1], follow_redirects=False)) == (302, None)
        assert _outcome(stack, b.get(urls[2], follow_redirects=False)) == (302, None)


def test_a_login_started_with_the_single_flow_cookie_of_before_still_finishes(
    stack: Stack,
) -> None:
    """A browser that started its login before the upgrade holds one ``kroonika_flow``
    cookie with the bare binding: its callback still completes, and the cookie goes."""
    with stack.browser(autologin=None) as b:
        url = _start(stack, b)
        (cookie,) = (c for c in b.cookies.jar if c.name.startswith("kroonika_flow_"))
        b.cookies.clear()
        binding = (cookie.value or "").partition(".")[2]
        b.cookies.set("kroonika_flow", binding, domain=cookie.domain, path="/auth")
        assert _outcome(stack, b.get(url, follow_redirects=False)) == (302, None)
        assert _flow_cookies(b) == []


def test_flow_cookies_with_names_the_service_cannot_write_do_not_break_a_login(
    stack: Stack,
) -> None:
    """More junk flow cookies than the cap, with names a Set-Cookie cannot carry (the
    service never wrote them, so it neither counts nor deletes them), and a callback
    whose state would name such a cookie: a normal start, and a 400, never a 500."""
    junk = "; ".join(f"kroonika_flow_a({i}=1" for i in range(CAP + 2))
    with stack.browser(autologin=None) as b:
        start = b.get(
            stack.service + "/auth/login", headers={"cookie": junk}, follow_redirects=False
        )
        assert start.status_code == 302, start.text
        r = b.get(
            stack.service + "/auth/callback?state=a(0xxxxxxxxxxxxx&code=c",
            headers={"cookie": "kroonika_flow_a(0xxxxxxxxxxxxx=1.x"},
        )
        assert (r.status_code, r.json()["reason"]) == (400, "state_unknown")


@pytest.mark.parametrize(
    "value", [b"9" * 5000, b"\xb2\xb3.binding", b"", b"no-dot", b"12.", b".binding"]
)
def test_an_unreadable_flow_cookie_does_not_break_a_login(stack: Stack, value: bytes) -> None:
    """A flow cookie the service did not write (a start time too long to be a number,
    a byte that reads as a superscript digit, no binding) neither breaks starting a
    login nor binds one."""
    with stack.browser(autologin=None) as b:
        start = b.get(
            stack.service + "/auth/login",
            headers={"cookie": b"kroonika_flow_junk=" + value},
            follow_redirects=False,
        )
        assert start.status_code == 302, start.text
        authorize = httpx.URL(start.headers["location"]).copy_merge_params(
            {"autologin": "38001085718"}
        )
        url = httpx.get(str(authorize), timeout=10).headers["location"]
        assert _outcome(stack, b.get(url, follow_redirects=False)) == (302, None)
