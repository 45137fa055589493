"""A row a job wants and another PostgreSQL session holds: a security profile long past
its retention (the ``security_profiles`` job deletes it) and a session of the test's own
holding its row lock (``SELECT ... FOR UPDATE``) until the test lets go."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import Engine, insert

from kroonika.db.security import security_profile


def add_stale_profile(engine: Engine, person: str = "p1") -> None:
    """A profile whose newest login is long past the profile retention."""
    with engine.begin() as conn:
        conn.execute(
            insert(security_profile).values(
                person=person,
                login_count=1,
                first_seen=0,
                countries="{}",
                networks="{}",
                hours="[]",
                updated_at=0,
            )
        )


@contextmanager
def profile_locked(url: str, person: str = "p1") -> Iterator[psycopg.Connection[Any]]:
    """Another session holding the profile's row lock; ``rollback()`` lets go early."""
    with psycopg.connect(url) as conn:
        conn.execute("SELECT person FROM security_profile WHERE person = %s FOR UPDATE", (person,))
        yield conn
        conn.rollback()
