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
    req = store.request(CODE, " Security ", "grant", by="admin:a", by_subject=None, why="INC-1")
    assert req.role == "security"
    store.decide(req.id, approve=True, by="admin:b", by_subject=None)
    assert store.roles_of(CODE) == ("security",)


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
        store.request(subject, "admin", "grant", by="admin:a", by_subject=None, why="INC-1")
    assert store.holders() == []


def test_a_personal_code_gets_its_country_prefix() -> None:
    """11 digits are an Estonian personal code; lower case is upper-cased."""
    assert normalise_subject(" 38001085718 ") == "EE38001085718"
    assert normalise_subject("ee38001085718") == "EE38001085718"
