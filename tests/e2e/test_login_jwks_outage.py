"""TARA's JWKS endpoint down (the mock's ``jwks_unavailable`` switch, over real HTTP)
after the key set was cached: logins go on with the cached keys for a bounded time
(stale-if-error), with one WARNING per outage and the state on /ready and /metrics; a
token under a ``kid`` that is not cached is still refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from login_harness import LogLines, Stack, running_stack, watching_logs

TTL = 3600  # KROONIKA_TARA_JWKS_TTL_S, the default
WINDOW = 7200  # KROONIKA_TARA_JWKS_STALE_IF_ERROR_S for these tests


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(
        tmp_path, settings_overrides={"tara_jwks_stale_if_error_s": WINDOW}
    ) as stack:
        yield stack


def _stale_warnings(lines: LogLines) -> list[str]:
    return [
        line
        for line in lines.lines
        if line.startswith("kroonika.tara WARNING") and "cached keys" in line
    ]


def _login_outcome(stack: Stack) -> tuple[str, str | None]:
    """One login in a fresh browser: its auth.login outcome and reason."""
    with stack.browser() as b:
        r = b.get(stack.service + "/auth/login")
    (callback,) = [a for a in (*r.history, r) if a.url.path == "/auth/callback"]
    login, _ = stack.login_events(callback.headers["x-request-id"])
    return login["outcome"], login.get("reason")


def test_cached_keys_carry_logins_through_a_jwks_outage(stack: Stack) -> None:
    """The key set is past its TTL and TARA's JWKS answers 503: logins still succeed
    with the cached keys (the token's kid is among them), one WARNING names the outage
    however many logins pass, /ready stays 200 and says the keys are stale, /metrics
    says so too; when the JWKS answers again the next refresh ends the outage."""
    assert _login_outcome(stack) == ("success", None)  # the key set is cached now
    lines = LogLines()
    with watching_logs(lines):
        stack.mock_switch(jwks_unavailable=True)
        stack.clock.advance(TTL + 60)
        outcomes = [_login_outcome(stack) for _ in range(3)]
        ready = httpx.get(stack.service + "/ready", timeout=20)
        metrics = httpx.get(stack.service + "/metrics", timeout=20)
        stack.mock_switch(jwks_unavailable=False)
        stack.clock.advance(120)  # past the retry pause of the outage
        after = _login_outcome(stack)
        ready_after = httpx.get(stack.service + "/ready", timeout=20)
    assert outcomes == [("success", None)] * 3
    assert len(_stale_warnings(lines)) == 1, lines.lines
    assert ready.status_code == 200, ready.text
    assert ready.json()["tara_keys"] == "stale"
    assert "KROONIKA_TARA_JWKS_STALE_IF_ERROR_S" in ready.json()["tara_keys_detail"]
    assert "kroonika_tara_jwks_stale 1" in metrics.text
    assert after == ("success", None)
    assert any("kroonika.tara INFO" in line and "answers again" in line for line in lines.lines)
    assert "tara_keys" not in ready_after.json()


def test_an_unknown_kid_is_still_refused_during_a_jwks_outage(stack: Stack) -> None:
    """Stale keys only verify tokens under a kid they hold: a token under another kid
    needs the key set, which cannot be fetched, so the login fails."""
    assert _login_outcome(stack) == ("success", None)
    stack.mock_switch(jwks_unavailable=True)
    stack.clock.advance(TTL + 60)
    assert _login_outcome(stack) == ("success", None)  # the outage is on
    stack.mock_switch(unknown_kid=True)
    outcome, reason = _login_outcome(stack)
    assert outcome == "failure"
    assert reason == "idp_unavailable"


def test_the_stale_window_is_bounded(stack: Stack) -> None:
    """Past TTL plus KROONIKA_TARA_JWKS_STALE_IF_ERROR_S the cached keys are no longer
    used: with the JWKS still down, logins fail idp_unavailable."""
    assert _login_outcome(stack) == ("success", None)
    stack.mock_switch(jwks_unavailable=True)
    stack.clock.advance(TTL + 60)
    assert _login_outcome(stack) == ("success", None)
    stack.clock.advance(WINDOW)
    assert _login_outcome(stack) == ("failure", "idp_unavailable")
