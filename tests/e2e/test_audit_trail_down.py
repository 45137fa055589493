"""The audit trail unwritable under a running service: whatever would have been recorded
is refused with 503 ``audit_unavailable`` and the request id (never done unaudited, never
a 500), and the service records again once the audit database is back."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from admin_harness import admin_stack
from test_database_down import refusing_connections

LIMITS = {"ratelimit_enabled": True, "ratelimit_limits": {"login_start:ip": "2/minute"}}


def _assert_refused(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.json() == {"error": "audit_unavailable", "request_id": r.headers["x-request-id"]}


@pytest.mark.postgres
def test_a_login_and_a_rate_limited_request_are_refused(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    """A login start (audited by the route) and a request over its rate limit (audited by
    the limiter, before any route runs) both answer 503 while the audit store refuses
    connections; once it is back, the next request is recorded."""
    overrides = {"audit_store_url": fresh_postgres_url, **LIMITS}
    with admin_stack(tmp_path, overrides=overrides) as stack:
        assert httpx.get(stack.url + "/auth/login").status_code == 302
        with refusing_connections(fresh_postgres_url):
            login = httpx.get(stack.url + "/auth/login")
            limited = httpx.get(stack.url + "/auth/login")
        _assert_refused(login)
        _assert_refused(limited)
        after = stack.call("GET", "/admin/sessions")
        assert after.status_code == 200
        assert stack.events(types=("admin.request",), correlation=after.headers["x-request-id"])


@pytest.mark.postgres
def test_sessions_ended_while_the_trail_is_down_are_ended_again_later(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    """The sessions job cannot record the endings: it leaves the lapsed sessions for the
    next run, which ends them with their session.terminate and revokes their tokens
    (instead of ending them silently and leaving their tokens active)."""
    with admin_stack(tmp_path, overrides={"audit_store_url": fresh_postgres_url}) as stack:
        with stack.stack.browser() as b:
            assert b.get(stack.url + "/auth/login").status_code == 200
        stack.stack.clock.advance(stack.stack.settings.session_idle_s + 60)
        with refusing_connections(fresh_postgres_url):
            _assert_refused(stack.call("POST", "/admin/jobs/sessions/run"))
        again = stack.call("POST", "/admin/jobs/sessions/run")
        assert again.json()["counts"] == {"sessions_idle": 1, "tokens_revoked": 1}
        (ended,) = stack.events(types=("session.terminate",))
        assert ended["reason"] == "idle"
        (token,) = stack.call("GET", "/admin/tokens").json()["tokens"]
        assert token["state"] == "revoked"
