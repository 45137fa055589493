"""Every failure path of /auth/login and /auth/callback over real HTTP: the exact auth.login
reason and the auth.flow.transition sequence, read back from the audit store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from login_harness import SUCCESS_STEPS, Stack, running_stack
from sqlalchemy.exc import OperationalError

from kroonika.web import Services

STARTED = [("none", "started"), ("started", "redirected")]
RECEIVED = [*STARTED, ("redirected", "callback_received")]
ORPHAN = [("none", "callback_received"), ("callback_received", "failed")]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path, settings_overrides={"tara_timeout_s": 1.0}) as s:
        yield s


def _fail_via_browser(stack: Stack, **browser: str) -> tuple[httpx.Response, dict, list]:
    with stack.browser(**browser) as b:
        r = b.get(stack.service + "/auth/login")
    login, steps = stack.login_events(r.headers["x-request-id"])
    return r, login, steps


def test_user_cancel(stack: Stack) -> None:
    """Cancel at TARA gives reason user_cancel after callback_received."""
    r, login, steps = _fail_via_browser(stack, autologin="cancel")
    assert r.status_code == 400
    assert r.json()["reason"] == "user_cancel"
    assert login["outcome"] == "failure"
    assert login["reason"] == "user_cancel"
    assert steps == [*RECEIVED, ("callback_received", "failed")]


@pytest.mark.parametrize(
    ("switch", "reason"),
    [
        ("wrong_nonce", "id_token.nonce_mismatch"),
        ("wrong_audience", "id_token.audience_mismatch"),
        ("wrong_issuer", "id_token.issuer_mismatch"),
        ("expired_token", "id_token.expired"),
        ("bad_signature", "id_token.bad_signature"),
        ("unknown_kid", "id_token.unknown_kid"),
        ("low_acr", "acr_too_low"),
    ],
)
def test_id_token_checks(stack: Stack, switch: str, reason: str) -> None:
    """A misbehaving TARA is caught by the named ID-token check, after the code exchange."""
    stack.mock_switch(**{switch: True})
    r, login, steps = _fail_via_browser(stack)
    assert r.json()["reason"] == reason
    assert login["reason"] == reason
    assert steps == [
        *RECEIVED,
        ("callback_received", "code_exchanged"),
        ("code_exchanged", "failed"),
    ]


def test_token_endpoint_error_is_idp_unavailable(stack: Stack) -> None:
    """TARA's token endpoint answering 500 gives idp_unavailable (502 to the browser)."""
    stack.mock_switch(fail_token_endpoint=True)
    r, login, steps = _fail_via_browser(stack)
    assert r.status_code == 502
    assert login["reason"] == "idp_unavailable"
    assert steps == [*RECEIVED, ("callback_received", "failed")]


def test_token_endpoint_timeout_is_idp_unavailable(stack: Stack) -> None:
    """A token endpoint slower than the configured timeout gives idp_unavailable."""
    stack.mock_switch(slow_token_endpoint_seconds=3.0)
    r, login, _ = _fail_via_browser(stack)
    assert login["reason"] == "idp_unavailable"
    assert r.status_code == 502


def test_bad_code_is_code_exchange_failed(stack: Stack) -> None:
    """A code TARA does not know gives code_exchange_failed."""
    with stack.browser(autologin=None) as b:
        url = stack.callback_url(b)
        q = parse_qs(urlsplit(url).query)
        bad = httpx.URL(url.split("?")[0]).copy_merge_params(
            {"state": q["state"][0], "code": "not-a-real-code"}
        )
        r = b.get(str(bad))
    login, steps = stack.login_events(r.headers["x-request-id"])
    assert login["reason"] == "code_exchange_failed"
    assert steps == [*RECEIVED, ("callback_received", "failed")]


def test_provider_error_is_idp_error(stack: Stack) -> None:
    """An error TARA does not send (neither user_cancel nor one that blames TARA or this
    service) gives idp_error with the error code."""
    with stack.browser(autologin=None) as b:
        url = stack.callback_url(b)
        state = parse_qs(urlsplit(url).query)["state"][0]
        r = b.get(
            stack.service + "/auth/callback",
            params={"state": state, "error": "access_denied"},
        )
    login, steps = stack.login_events(r.headers["x-request-id"])
    assert login["reason"] == "idp_error"
    assert login["details"]["idp_error"] == "access_denied"
    assert steps == [*RECEIVED, ("callback_received", "failed")]


def test_state_missing(stack: Stack) -> None:
    """A callback without state is state_missing, as an attempt of its own."""
    r = httpx.get(stack.service + "/auth/callback?code=abc", timeout=10)
    login, steps = stack.login_events(r.headers["x-request-id"])
    assert (r.status_code, login["reason"]) == (400, "state_missing")
    assert steps == ORPHAN


def test_state_unknown(stack: Stack) -> None:
    """A state no flow has is state_unknown."""
    r = httpx.get(stack.service + "/auth/callback?code=abc&state=abcdefghijkl", timeout=10)
    login, steps = stack.login_events(r.headers["x-request-id"])
    assert login["reason"] == "state_unknown"
    assert steps == ORPHAN


def test_state_expired(stack: Stack) -> None:
    """A flow older than its TTL (injected clock) is state_expired."""
    with stack.browser(autologin=None) as b:
        url = stack.callback_url(b)
        stack.clock.advance(stack.settings.login_flow_ttl_s + 1)
        r = b.get(url)
    login, steps = stack.login_events(r.headers["x-request-id"])
    assert login["reason"] == "state_expired"
    assert steps == [*RECEIVED, ("callback_received", "failed")]


def test_state_replayed(stack: Stack) -> None:
    """Presenting a used callback again is state_replayed, under the original flow id."""
    with stack.browser() as b:
        landed = b.get(stack.service + "/auth/login")
        callback = next(h for h in landed.history if h.url.path == "/auth/callback")
        first_rid = callback.headers["x-request-id"]
        replay = b.get(str(callback.url))
    login, steps = stack.login_events(replay.headers["x-request-id"])
    assert login["reason"] == "state_replayed"
    original, _ = stack.login_events(first_rid)
    assert original["correlation"]["flow_id"] == login["correlation"]["flow_id"]
    assert steps == [
        *SUCCESS_STEPS,
        ("session_created", "callback_received"),
        ("callback_received", "failed"),
    ]


def test_state_not_bound_to_this_browser(stack: Stack) -> None:
    """A callback from a browser without the flow cookie (login CSRF) is refused."""
    with stack.browser(autologin=None) as b:
        url = stack.callback_url(b)
    with httpx.Client(timeout=10) as other:
        r = other.get(url)
    login, steps = stack.login_events(r.headers["x-request-id"])
    assert login["reason"] == "state_not_bound"
    assert steps == [*RECEIVED, ("callback_received", "failed")]


def test_key_rotation_during_a_flow(stack: Stack) -> None:
    """TARA signing with a new key mid-flow: the JWKS is refetched once and login succeeds."""
    with stack.browser() as warm:
        assert warm.get(stack.service + "/auth/login").status_code == 200
    fetches = stack.services.tara.jwks.fetches
    with stack.browser(autologin=None) as b:
        start = b.get(stack.service + "/auth/login", follow_redirects=False)
        rotated = stack.mock_rotate(new_key=True)
        authorize = httpx.URL(start.headers["location"]).copy_merge_params(
            {"autologin": "38001085718"}
        )
        back = httpx.get(str(authorize), timeout=10).headers["location"]
        r = b.get(back)
    login, steps = stack.login_events(r.history[0].headers["x-request-id"])
    assert login["outcome"] == "success"
    assert steps == SUCCESS_STEPS
    assert stack.services.tara.jwks.fetches == fetches + 1
    assert rotated["signing_kid"] in rotated["kids"]


def test_crash_after_the_state_was_used_still_ends_the_attempt(tmp_path: Path) -> None:
    """The database failing while the session is stored (after the state was used, so no
    job will ever see the flow again) is a 503, and the attempt still gets its failed
    auth.login (reason database_unavailable) and transition."""

    def configure(services: Services) -> None:
        def gone(*_: object) -> None:
            raise OperationalError("INSERT INTO session", {}, ConnectionError("server closed"))

        services.sessions.store.add = gone  # type: ignore[method-assign]

    with running_stack(tmp_path, configure=configure) as stack, stack.browser() as b:
        r = b.get(stack.service + "/auth/login")
        assert (r.status_code, r.json()["error"]) == (503, "database_unavailable")
        (login,) = stack.events(types=("auth.login",))
        assert (login["outcome"], login["reason"]) == ("failure", "database_unavailable")
        transitions = stack.events(
            types=("auth.flow.transition",), correlation=login["correlation"]["flow_id"]
        )
        assert [(t["details"]["from_state"], t["details"]["to_state"]) for t in transitions][
            -2:
        ] == [("code_exchanged", "id_token_verified"), ("id_token_verified", "failed")]


@pytest.fixture(scope="module")
def starts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("starts")) as s:
        yield s


LONG = "x" * 3000
REFUSED_STARTS = [
    ("acr=bogus", "invalid_acr", "bogus"),
    (f"acr={LONG}", "invalid_acr", LONG[:16]),
    ("acr=%FF%FE", "invalid_acr", "\ufffd"),
    ("method=bogus", "method_not_allowed", "bogus"),
    (f"method=mid&method={LONG}", "method_not_allowed", LONG[:16]),
    ("method=%00", "method_not_allowed", "\u0000"),
    (f"ui_locales={LONG}", "invalid_request", LONG[:16]),
    (f"return_to=/{LONG}", "invalid_return_to", LONG[:16]),
]


@pytest.mark.parametrize(
    ("query", "reason", "raw"),
    REFUSED_STARTS,
    ids=[r[1] + str(i) for i, r in enumerate(REFUSED_STARTS)],
)
def test_a_refused_login_start_is_one_failed_attempt(
    starts: Stack, query: str, reason: str, raw: str
) -> None:
    """A login start with a bad or over-long parameter is a 400 that does not repeat the
    value, one failed auth.login with the reason and the none -> failed transition."""
    r = httpx.get(starts.service + "/auth/login?" + query, timeout=10)
    assert r.status_code == 400, r.text
    assert r.json()["error"] in ("invalid_request", "invalid_return_to")
    assert raw not in r.text
    assert "set-cookie" not in r.headers
    login, steps = starts.login_events(r.headers["x-request-id"])
    assert (login["outcome"], login["reason"]) == ("failure", reason)
    assert steps == [("none", "failed")]
