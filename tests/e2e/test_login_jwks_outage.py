"""TARA's JWKS endpoint down (the mock's ``jwks_unavailable`` switch, over real HTTP)
after the key set was cached: logins go on with the cached keys for a bounded time
(stale-if-error), with one WARNING per outage and the state on /ready and /metrics; a
token under a ``kid`` that is not cached is still refused. The trail records the
outage as ``idp.keys`` (stale, expired, recovered), once per change however many
logins run at once (real PostgreSQL holding the trail)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from login_harness import LogLines, Stack, running_stack, watching_logs

from kroonika.audit import SqlAuditStore
from kroonika.audit.dashboard import overview

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


def _logins_at_once(stack: Stack, n: int = 6) -> list[tuple[str, str | None]]:
    """``n`` logins in as many browsers at the same time."""
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: _login_outcome(stack), range(n)))


@pytest.mark.postgres
def test_the_trail_records_each_change_of_trust_once_under_concurrent_logins(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    """Concurrent logins through a whole outage: one idp.keys stale when it begins (age,
    kids, window), one expired when the window runs out (logins fail), one recovered
    when TARA answers again; none while the keys are fresh. The query API finds them by
    type and by area, and the dashboard counts them with the security events."""
    overrides = {
        "tara_jwks_stale_if_error_s": WINDOW,
        "audit_store_url": fresh_postgres_url,
        "ratelimit_enabled": False,  # three dozen logins from one address
    }
    with running_stack(
        tmp_path, database_url=fresh_postgres_url, settings_overrides=overrides
    ) as stack:
        assert set(_logins_at_once(stack)) == {("success", None)}
        stack.mock_switch(jwks_unavailable=True)
        stack.clock.advance(TTL + 60)
        assert set(_logins_at_once(stack)) == {("success", None)}
        stack.clock.advance(120)  # a retry is due and fails: the same outage
        assert set(_logins_at_once(stack)) == {("success", None)}
        stack.clock.advance(WINDOW)
        assert set(_logins_at_once(stack)) == {("failure", "idp_unavailable")}
        stack.mock_switch(jwks_unavailable=False)
        stack.clock.advance(120)
        assert set(_logins_at_once(stack)) == {("success", None)}
        assert set(_logins_at_once(stack)) == {("success", None)}
        changes = stack.events(types=("idp.keys",))
        assert stack.events(types=("idp",)) == changes
        store = SqlAuditStore(stack.settings.resolved_audit_store_url(), read_only=True)
        try:
            board = overview(store, datetime.now(UTC))
        finally:
            store.close()
    assert [(c["details"]["state"], c["outcome"]) for c in changes] == [
        ("stale", "failure"),
        ("expired", "failure"),
        ("recovered", "success"),
    ]
    stale, expired, recovered = (c["details"] for c in changes)
    kids = stale["kids"]
    assert kids
    assert expired["kids"] == kids == recovered["kids"]
    assert stale["window_s"] == WINDOW
    assert stale["age_s"] == TTL + 60
    assert expired["age_s"] > TTL + WINDOW
    assert "503" in stale["error"]
    assert recovered["withdrawn"] == []
    assert recovered["outage_s"] == 120 + WINDOW + 120
    assert [c["severity"] for c in changes] == ["warning", "error", "notice"]
    assert {c["actor"]["type"] for c in changes} == {"system"}
    assert {c["target"]["id"] for c in changes} == {stack.mock}
    assert all(w.security["idp.keys"] == 3 for w in board.windows)
