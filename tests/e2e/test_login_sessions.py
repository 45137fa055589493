"""Sessions after a real login: extend, idle expiry, logout, end one, end all, the cap."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from login_harness import Stack, running_stack


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path, settings_overrides={"session_max_per_person": 3}) as s:
        yield s


def _logged_in(stack: Stack, code: str = "38001085718") -> tuple[httpx.Client, dict[str, Any]]:
    b = stack.browser(autologin=code)
    assert b.get(stack.service + "/auth/login").status_code == 200
    return b, b.get(stack.service + "/auth/session").json()


def _terminations(stack: Stack) -> list[dict[str, Any]]:
    return stack.events(types=("session.terminate",))


def test_extend_slides_idle_expiry_up_to_absolute(stack: Stack) -> None:
    """Extend moves expiry to now + idle and emits session.extend."""
    b, s = _logged_in(stack)
    with closing(b):
        stack.clock.advance(600)
        r = b.post(
            stack.service + "/auth/session/extend", headers={"x-csrf-token": s["csrf_token"]}
        )
        assert r.status_code == 200
        assert r.json()["expires_at"] == s["expires_at"] + 600
    ext = stack.events(types=("session.extend",))
    assert len(ext) == 1
    assert ext[0]["details"]["expires_at"] == s["expires_at"] + 600


def test_extend_without_csrf_token_is_refused(stack: Stack) -> None:
    """Extend without the CSRF token answers 403."""
    b, _ = _logged_in(stack)
    with closing(b):
        assert b.post(stack.service + "/auth/session/extend").status_code == 403
    assert stack.events(types=("session.extend",)) == []


@pytest.mark.parametrize(
    ("path", "request_kw"),
    [
        ("/auth/session/extend", {"headers": [(b"x-csrf-token", b"\xe9t\xe9")]}),
        (
            "/auth/logout",
            {
                "content": b"csrf_token=%C3%A4",
                "headers": {"content-type": "application/x-www-form-urlencoded"},
            },
        ),
    ],
)
def test_non_ascii_csrf_token_is_refused_not_a_crash(
    stack: Stack, path: str, request_kw: dict[str, Any]
) -> None:
    """A CSRF token with non-ASCII characters (header or form) is a 403 and a violation."""
    b, _ = _logged_in(stack)
    with closing(b):
        r = b.post(stack.service + path, **request_kw)
        assert (r.status_code, r.json()["error"]) == (403, "csrf_failed")
        assert b.get(stack.service + "/auth/session").status_code == 200
    refused = stack.events(types=("security.policy_violation",))
    assert [e["reason"] for e in refused] == ["csrf_failed"]
    assert stack.events(types=("session.extend", "auth.logout")) == []


def test_idle_session_is_ended_with_an_event_when_found(stack: Stack) -> None:
    """After the idle timeout the next request finds the session, ends it (idle) and 401s."""
    b, _ = _logged_in(stack)
    with closing(b):
        stack.clock.advance(stack.settings.session_idle_s + 1)
        assert b.get(stack.service + "/auth/session").status_code == 401
    ends = _terminations(stack)
    assert [e["reason"] for e in ends] == ["idle"]


@pytest.mark.parametrize("where", ["/auth/session", "/auth/sessions"])
def test_a_lapsed_session_found_by_a_request_has_its_tokens_revoked(
    stack: Stack, where: str
) -> None:
    """A session that a request finds lapsed (and ends) loses its session access token
    there and then: once ended, no job looks at it again, and its token must not outlive
    it. Both ways a request finds lapsed sessions: its own cookie, and the list of the
    person's sessions."""
    old, _ = _logged_in(stack)
    old.close()
    stack.clock.advance(1)
    b, s = _logged_in(stack)
    with closing(b):
        stack.clock.advance(stack.settings.session_idle_s - 60)
        extended = b.post(  # the second browser's session stays live
            stack.service + "/auth/session/extend", headers={"x-csrf-token": s["csrf_token"]}
        )
        assert extended.status_code == 200
        stack.clock.advance(61)
        if where == "/auth/session":
            # the first browser's cookie, presented again after its idle time
            got = httpx.get(
                stack.service + where, cookies=old.cookies, timeout=10, follow_redirects=False
            )
            assert got.status_code == 401
        else:
            assert b.get(stack.service + where).status_code == 200
    (ended,) = _terminations(stack)
    assert ended["reason"] == "idle"
    revoked = stack.events(types=("token.revoke",))
    assert [(e["details"]["why"], e["details"]["count"]) for e in revoked] == [("session_idle", 1)]
    assert revoked[0]["correlation"]["session_ref"] == ended["correlation"]["session_ref"]


def test_absolute_lifetime_ends_even_an_extended_session(stack: Stack) -> None:
    """Extending forever stops at the absolute lifetime: reason expired."""
    b, s = _logged_in(stack)
    with closing(b):
        for _ in range(stack.settings.session_absolute_s // 800 + 1):
            stack.clock.advance(800)
            b.post(
                stack.service + "/auth/session/extend", headers={"x-csrf-token": s["csrf_token"]}
            )
        assert b.get(stack.service + "/auth/session").status_code == 401
    assert [e["reason"] for e in _terminations(stack)] == ["expired"]


def test_logout_ends_session_and_emits_auth_logout(stack: Stack) -> None:
    """Logout (with CSRF token) ends the session, clears the cookie, emits both events."""
    b, s = _logged_in(stack)
    with closing(b):
        r = b.post(stack.service + "/auth/logout", headers={"x-csrf-token": s["csrf_token"]})
        assert r.status_code == 200
        assert b.get(stack.service + "/auth/session").status_code == 401
    [logout] = stack.events(types=("auth.logout",))
    [end] = _terminations(stack)
    assert end["reason"] == "logout"
    assert logout["actor"]["pseudonym"] == end["actor"]["pseudonym"]
    assert logout["correlation"]["session_ref"] == end["correlation"]["session_ref"]
    assert logout["source"]["ip"] == "127.0.0.0"


def test_logout_without_csrf_token_is_refused(stack: Stack) -> None:
    """A cross-site POST without the token cannot log anyone out."""
    b, _ = _logged_in(stack)
    with closing(b):
        r = b.post(stack.service + "/auth/logout", data={"csrf_token": "forged"})
        assert r.status_code == 403
        assert b.get(stack.service + "/auth/session").status_code == 200


@pytest.mark.parametrize(
    "ctype", ["multipart/form-data", "multipart/form-data; boundary=", "multipart/x; boundary=b"]
)
def test_logout_with_a_body_that_cannot_be_parsed_is_a_csrf_refusal(
    stack: Stack, ctype: str
) -> None:
    """A form body that cannot be parsed (multipart without a boundary) carries no CSRF
    token: 403 csrf_failed with its policy violation, not a bare 400 http_error."""
    b, _ = _logged_in(stack)
    with closing(b):
        r = b.post(stack.service + "/auth/logout", headers={"content-type": ctype}, content=b"x")
        assert (r.status_code, r.json()["error"]) == (403, "csrf_failed")
        assert b.get(stack.service + "/auth/session").status_code == 200
    (violation,) = stack.events(types=("security.policy_violation",))
    assert violation["correlation"]["request_id"] == r.headers["x-request-id"]


def test_end_one_of_own_sessions(stack: Stack) -> None:
    """A citizen ends another of their sessions by its public id; the other browser is out."""
    b1, s1 = _logged_in(stack)
    b2, s2 = _logged_in(stack)
    with closing(b1), closing(b2):
        listed = b1.get(stack.service + "/auth/sessions").json()["sessions"]
        assert {x["id"] for x in listed} == {s1["id"], s2["id"]}
        r = b1.delete(
            stack.service + f"/auth/sessions/{s2['id']}", headers={"x-csrf-token": s1["csrf_token"]}
        )
        assert r.json() == {"ended": 1, "current_ended": False}
        assert b2.get(stack.service + "/auth/session").status_code == 401
        assert b1.get(stack.service + "/auth/session").status_code == 200
    assert [e["reason"] for e in _terminations(stack)] == ["user"]


def test_cannot_end_someone_elses_session(stack: Stack) -> None:
    """Another person's session id answers 404 and stays alive."""
    b1, s1 = _logged_in(stack)
    b2, s2 = _logged_in(stack, code="40404040009")
    with closing(b1), closing(b2):
        r = b1.delete(
            stack.service + f"/auth/sessions/{s2['id']}", headers={"x-csrf-token": s1["csrf_token"]}
        )
        assert r.status_code == 404
        assert b2.get(stack.service + "/auth/session").status_code == 200


def test_end_all_sessions(stack: Stack) -> None:
    """End-all ends every session of the person, the current one too."""
    b1, s1 = _logged_in(stack)
    b2, _ = _logged_in(stack)
    with closing(b1), closing(b2):
        r = b1.delete(stack.service + "/auth/sessions", headers={"x-csrf-token": s1["csrf_token"]})
        assert r.json()["ended"] == 2
        assert b1.get(stack.service + "/auth/session").status_code == 401
        assert b2.get(stack.service + "/auth/session").status_code == 401
    assert sorted(e["reason"] for e in _terminations(stack)) == ["user", "user"]


def test_concurrent_session_cap_ends_the_oldest(stack: Stack) -> None:
    """The fourth login with a cap of three ends the oldest session (reason limit)."""
    browsers = []
    for _ in range(4):
        stack.clock.advance(1)
        browsers.append(_logged_in(stack))
    try:
        assert browsers[0][0].get(stack.service + "/auth/session").status_code == 401
        for b, _ in browsers[1:]:
            assert b.get(stack.service + "/auth/session").status_code == 200
    finally:
        for b, _ in browsers:
            b.close()
    ends = _terminations(stack)
    assert [e["reason"] for e in ends] == ["limit"]


def test_session_ended_by_the_cap_has_its_tokens_revoked(stack: Stack) -> None:
    """The session the cap ends loses its session access token, like any other ending."""
    browsers = []
    for _ in range(4):
        stack.clock.advance(1)
        browsers.append(_logged_in(stack))
    for b, _ in browsers:
        b.close()
    (ended,) = _terminations(stack)
    revoked = stack.events(types=("token.revoke",))
    assert [(e["details"]["why"], e["details"]["count"]) for e in revoked] == [("session_limit", 1)]
    assert revoked[0]["correlation"]["session_ref"] == ended["correlation"]["session_ref"]


def test_login_again_in_the_same_browser_supersedes_its_session(stack: Stack) -> None:
    """A new login over a live session cookie ends that session (superseded) and its tokens:
    the browser can no longer reach it, so nothing should keep it alive."""
    b, first = _logged_in(stack, "38001085718")
    with closing(b):
        stack.clock.advance(1)
        assert b.get(stack.service + "/auth/login").status_code == 200
        second = b.get(stack.service + "/auth/session").json()
        assert second["id"] != first["id"]
        live = b.get(stack.service + "/auth/sessions").json()["sessions"]
        assert [s["id"] for s in live] == [second["id"]]
    (ended,) = _terminations(stack)
    assert (ended["reason"], ended["details"]["ended_by"]) == ("superseded", "system")
    revoked = stack.events(types=("token.revoke",))
    assert [e["details"]["why"] for e in revoked] == ["session_superseded"]
    assert revoked[0]["correlation"]["session_ref"] == ended["correlation"]["session_ref"]


def test_failed_login_keeps_the_session_it_would_have_superseded(stack: Stack) -> None:
    """Only a successful login supersedes: a cancelled one leaves the live session alone."""
    b, first = _logged_in(stack)
    with closing(b):
        start = b.get(stack.service + "/auth/login", follow_redirects=False)
        cancel = httpx.URL(start.headers["location"]).copy_merge_params({"autologin": "cancel"})
        back = httpx.get(str(cancel), timeout=10)
        assert b.get(back.headers["location"]).json()["reason"] == "user_cancel"
        assert b.get(stack.service + "/auth/session").json()["id"] == first["id"]
    assert _terminations(stack) == []


def test_concurrent_logouts_of_one_session_are_audited_once(stack: Stack) -> None:
    """Eight logouts racing on one session: one ends it and is audited, the rest are 401
    and add no auth.logout or token.revoke of their own."""
    rounds = 3
    for _ in range(rounds):
        b, s = _logged_in(stack)
        with closing(b):
            cookies = dict(b.cookies)

        def logout(_: int, cookies: dict[str, str] = cookies, csrf: str = s["csrf_token"]) -> int:
            with httpx.Client(cookies=cookies, timeout=20) as c:
                r = c.post(stack.service + "/auth/logout", headers={"x-csrf-token": csrf})
                return r.status_code

        with ThreadPoolExecutor(8) as pool:
            codes = sorted(pool.map(logout, range(8)))
        assert codes.count(200) == 1, codes
        assert set(codes) == {200, 401}
    assert len(stack.events(types=("auth.logout",))) == rounds
    assert len(_terminations(stack)) == rounds
    assert [e["details"]["count"] for e in stack.events(types=("token.revoke",))] == [1] * rounds


def test_concurrent_logins_under_the_cap_never_end_every_session(tmp_path: Path) -> None:
    """Six simultaneous logins of one person with a cap of one never end all six sessions
    (each used to end the others, newer ones included); the next login restores the cap."""
    overrides = {"session_max_per_person": 1, "ratelimit_enabled": False}
    with running_stack(tmp_path, settings_overrides=overrides) as stack:

        def login(_: int) -> int:
            with stack.browser() as b:
                return b.get(stack.service + "/auth/login").status_code

        def live() -> int:
            return len(stack.services.sessions.store.active_for("EE38001085718"))

        for _ in range(3):
            stack.clock.advance(1)
            with ThreadPoolExecutor(6) as pool:
                assert set(pool.map(login, range(6))) == {200}
            assert live() >= 1
            stack.clock.advance(1)
            assert login(0) == 200
            assert live() == 1
