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


@pytest.mark.postgres
def test_name_longer_than_the_session_column_still_logs_in(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    """A name TARA allows that upper-cases past the session table's 256 characters
    ("ΐ" becomes three) is shortened there, not a 500 that dumps the row into the log."""
    typed = "ΐ" * 100
    with (
        running_stack(tmp_path, database_url=fresh_postgres_url) as stack,
        stack.browser(autologin_given_name=typed, autologin_family_name="TAMM") as b,
    ):
        landed = b.get(stack.service + "/auth/login")
        assert landed.status_code == 200
        session = b.get(stack.service + "/auth/session").json()
        assert (session["given_name"], session["family_name"]) == (typed.upper()[:256], "TAMM")
        login, _ = stack.login_events(landed.history[-1].headers["x-request-id"])
        assert login["outcome"] == "success"
