"""The login flow with the business database on the real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from login_harness import SUCCESS_STEPS, running_stack


@pytest.mark.postgres
def test_login_and_logout_with_postgres(tmp_path: Path, fresh_postgres_url: str) -> None:
    """Flows and sessions live in PostgreSQL; login, session, logout all work."""
    with running_stack(tmp_path, database_url=fresh_postgres_url) as stack:
        assert stack.services.engine.dialect.name == "postgresql"
        with stack.browser() as b:
            landed = b.get(stack.service + "/auth/login")
            assert landed.status_code == 200
            rid = landed.history[-1].headers["x-request-id"]
            s = b.get(stack.service + "/auth/session").json()
            out = b.post(stack.service + "/auth/logout", headers={"x-csrf-token": s["csrf_token"]})
            assert out.status_code == 200
        login, steps = stack.login_events(rid)
        assert login["outcome"] == "success"
        assert steps == SUCCESS_STEPS
        assert stack.events(types=("session.terminate",))[0]["reason"] == "logout"


@pytest.mark.postgres
def test_session_ref_with_nul_is_not_found(tmp_path: Path, fresh_postgres_url: str) -> None:
    """A session ref no session can have (PostgreSQL refuses NUL in text) is a 404, not a 500."""
    with running_stack(tmp_path, database_url=fresh_postgres_url) as stack, stack.browser() as b:
        assert b.get(stack.service + "/auth/login").status_code == 200
        s = b.get(stack.service + "/auth/session").json()
        r = b.delete(
            stack.service + "/auth/sessions/a%00b", headers={"x-csrf-token": s["csrf_token"]}
        )
        assert (r.status_code, r.json()["error"]) == (404, "session_not_found")
        assert b.get(stack.service + "/auth/session").status_code == 200
