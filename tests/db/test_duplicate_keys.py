"""A duplicate is refused without a database error: PostgreSQL logs every unique
violation with the key's values (``DETAIL: Key (list, kind, value)=(deny, subject,
EE38001085718) already exists.``), so a personal code would reach the server's log, out
of reach of erasure (decision 0020, 2026-11-28). Found by ``tests/e2e/test_secret_sweep.py``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, event, select

from kroonika.admin import RoleStore
from kroonika.db import make_engine
from kroonika.db.migrate import upgrade
from kroonika.db.tokens import access_list
from kroonika.tokens import FixedClock
from kroonika.tokens._lists import AccessListError, AccessLists

pytestmark = pytest.mark.postgres

CODE = "EE38001085718"


@pytest.fixture
def errors(fresh_postgres_url: str) -> Iterator[tuple[Engine, list[str]]]:
    """A migrated PostgreSQL business database, and every error its server answered."""
    engine = make_engine(fresh_postgres_url)
    upgrade(engine)
    seen: list[str] = []
    event.listen(engine, "handle_error", lambda ctx: seen.append(str(ctx.original_exception)))
    yield engine, seen
    engine.dispose()


def test_a_duplicate_list_entry_is_refused_without_a_database_error(
    errors: tuple[Engine, list[str]],
) -> None:
    """The second deny entry for the same person is refused, and the server saw no error."""
    engine, seen = errors
    lists = AccessLists(engine, clock=FixedClock(1_700_000_000))
    lists.add("deny", "subject", CODE, reason="INC-1", created_by="admin:a")
    with pytest.raises(AccessListError, match="already has this subject"):
        lists.add("deny", "subject", CODE, reason="INC-1 again", created_by="admin:a")
    assert seen == []
    with engine.connect() as conn:
        assert conn.execute(select(access_list.c.reason)).scalars().all() == ["INC-1"]


def test_a_role_granted_twice_is_refused_without_a_database_error(
    errors: tuple[Engine, list[str]],
) -> None:
    """Granting a role the person holds answers False, and the server saw no error."""
    engine, seen = errors
    roles = RoleStore(engine, clock=lambda: 1_700_000_000.0)
    assert roles.grant(CODE, "auditor", by="bootstrap")
    assert not roles.grant(CODE, "auditor", by="bootstrap")
    assert seen == []
    assert roles.roles_of(CODE) == ("auditor",)
