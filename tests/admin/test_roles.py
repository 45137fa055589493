"""The role store: roles and subjects are stored in one canonical form, so a grant works
and a revoke finds it whatever case or spacing the administrator typed."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from kroonika.admin import RoleStore
from kroonika.admin._roles import normalise_subject
from kroonika.db import make_engine
from kroonika.db.migrate import upgrade

CODE = "49002124277"


@pytest.fixture
def store(tmp_path: Path) -> RoleStore:
    engine: Engine = make_engine(f"sqlite:///{tmp_path / 'roles.db'}")
    upgrade(engine)
    return RoleStore(engine, clock=lambda: 1_700_000_000.0)


@pytest.mark.parametrize("typed", ["Admin", " admin ", "ADMIN"])
def test_a_role_is_stored_in_its_canonical_form(store: RoleStore, typed: str) -> None:
    """A grant of "Admin" gives the role "admin" (the one the API checks)."""
    assert store.grant(CODE, typed, by="test")
    assert store.roles_of(CODE) == ("admin",)
    assert not store.grant(CODE, "admin", by="test")
    assert store.revoke(CODE, typed)
    assert store.roles_of(CODE) == ()


def test_an_approved_request_applies_the_canonical_role(store: RoleStore) -> None:
    """A request for " Security " grants "security" and records it so."""
    req = store.request(
        CODE, " Security ", "grant", by="admin:a", by_subject=None, why="INC-1", ttl_s=3600
    )
    assert req.role == "security"
    store.decide(req.id, approve=True, by="admin:b", by_subject=None)
    assert store.roles_of(CODE) == ("security",)


def test_an_expired_request_cannot_be_decided(tmp_path: Path) -> None:
    """Past its ttl_s a pending request shows expired, is listed as expired and not
    pending, and neither approving nor rejecting it changes anything (409 expired)."""
    from kroonika.admin import ChangeConflict

    now = [1_700_000_000.0]
    engine = make_engine(f"sqlite:///{tmp_path / 'expiry.db'}")
    upgrade(engine)
    store = RoleStore(engine, clock=lambda: now[0])
    req = store.request(CODE, "security", "grant", by="admin:a", by_subject=None, why="I", ttl_s=60)
    assert req.expires_at == req.requested_at + 60
    now[0] += 60
    assert req.state(int(now[0])) == "expired"
    assert store.requests("pending") == []
    assert [r.id for r in store.requests("expired")] == [req.id]
    for approve in (True, False):
        with pytest.raises(ChangeConflict, match="expired") as refused:
            store.decide(req.id, approve=approve, by="admin:b", by_subject=None)
        assert refused.value.code == "expired"
    assert store.roles_of(CODE) == ()
    stored = store.get_request(req.id)
    assert stored is not None
    assert (stored.status, stored.decided_by) == ("pending", None)


def test_requests_waiting_before_the_upgrade_get_a_day(tmp_path: Path) -> None:
    """Migration k0003 gives a role request made before it a day from when it was made
    (the default KROONIKA_ADMIN_APPROVAL_TTL_S), and goes back down cleanly."""
    from sqlalchemy import inspect, select, text

    from kroonika.db.admin import admin_role_request as t
    from kroonika.db.migrate import downgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "k0002")
    with engine.begin() as conn:  # the table as k0002 left it: no expires_at
        conn.execute(
            text(
                "INSERT INTO admin_role_request (id, subject, role, action, requested_by,"
                " requested_at, justification, status) VALUES ('rr_old', 'EE49002124277',"
                " 'admin', 'grant', 'admin:a', 1000, 'INC-1', 'pending')"
            )
        )
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(select(t.c.expires_at)).scalar_one() == 1_000 + 86_400
    downgrade(engine, "k0002")
    columns = {c["name"] for c in inspect(engine).get_columns("admin_role_request")}
    assert "expires_at" not in columns


@pytest.mark.parametrize(
    "subject",
    ["", "  ", "EE", "\x1b[2J\x1b]0;x\x07EVIL", "EE3800108571\u202e8", "EE 38001085718", "x" * 81],
)
def test_a_subject_that_is_not_one_printable_word_is_refused(
    store: RoleStore, subject: str
) -> None:
    """Empty, too short or long, spaces, terminal codes or bidi controls: no grant."""
    with pytest.raises(ValueError, match="subject"):
        store.grant(subject, "admin", by="test")
    with pytest.raises(ValueError, match="subject"):
        store.request(
            subject, "admin", "grant", by="admin:a", by_subject=None, why="INC-1", ttl_s=3600
        )
    assert store.holders() == []


def test_a_personal_code_gets_its_country_prefix() -> None:
    """11 digits are an Estonian personal code; lower case is upper-cased."""
    assert normalise_subject(" 38001085718 ") == "EE38001085718"
    assert normalise_subject("ee38001085718") == "EE38001085718"
