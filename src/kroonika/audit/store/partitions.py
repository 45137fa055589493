"""Monthly partitions of ``audit_blocks`` on PostgreSQL (migration ``a0003``).

The table is partitioned by range of ``last_time`` (RFC 3339 text in the ``C``
collation, so ``'2026-03' <= '2026-03-..T..Z' < '2026-04'``), one partition per month
named ``audit_blocks_pYYYYMM``, plus ``audit_blocks_pdefault`` for anything no month
partition takes, so a write never fails for want of a partition. Partitions are created
ahead of time (at start and by the retention job); a month whose rows already landed in
the default partition is skipped (its rows stay there and are purged row by row). The
row triggers of the parent are cloned onto every partition by PostgreSQL; TRUNCATE
triggers are not, so each month partition gets its own. Retention drops a partition
once purge grants cover every row in it.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger("kroonika.audit.store")

_LOCK = 0x6B726F6F  # pg_advisory_xact_lock key: one partition creator at a time


def month_of(epoch: float) -> tuple[int, int]:
    t = time.gmtime(epoch)
    return t.tm_year, t.tm_mon


def add_months(year: int, month: int, n: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + n
    return index // 12, index % 12 + 1


def partition_name(year: int, month: int) -> str:
    return f"audit_blocks_p{year:04d}{month:02d}"


def is_partitioned(conn: Connection) -> bool:
    kind = conn.execute(
        text("SELECT relkind FROM pg_class WHERE relname = 'audit_blocks' AND relkind = 'p'")
    ).scalar()
    return kind == "p"


def existing_partitions(conn: Connection) -> list[str]:
    return list(
        conn.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'audit_blocks' "
                "ORDER BY c.relname"
            )
        ).scalars()
    )


def create_month(conn: Connection, year: int, month: int) -> bool:
    """Create one month's partition (in a savepoint); False if it exists or the default
    partition already holds rows of that month."""
    name = partition_name(year, month)
    ny, nm = add_months(year, month, 1)
    if name in existing_partitions(conn):
        return False
    try:
        with conn.begin_nested():
            conn.execute(
                text(
                    f'CREATE TABLE "{name}" PARTITION OF audit_blocks '
                    f"FOR VALUES FROM ('{year:04d}-{month:02d}') TO ('{ny:04d}-{nm:02d}')"
                )
            )
            conn.execute(
                text(
                    f'CREATE TRIGGER audit_blocks_no_truncate BEFORE TRUNCATE ON "{name}" '
                    "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()"
                )
            )
    except SQLAlchemyError as exc:
        log.warning(
            "audit partition %s not created: %s", name, type(getattr(exc, "orig", exc)).__name__
        )
        return False
    return True


def ensure_partitions(
    engine: Engine, *, now: float | None = None, ahead: int = 3, behind: int = 0
) -> list[str]:
    """Create the partitions from ``behind`` months ago to ``ahead`` months ahead of
    ``now``; returns the names created. A no-op on an unpartitioned table or SQLite."""
    if engine.dialect.name != "postgresql":
        return []
    year, month = month_of(time.time() if now is None else now)
    created: list[str] = []
    with engine.begin() as conn:
        if not is_partitioned(conn):
            return []
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK})
        for n in range(-behind, ahead + 1):
            y, m = add_months(year, month, n)
            if create_month(conn, y, m):
                created.append(partition_name(y, m))
    return created


__all__ = [
    "add_months",
    "create_month",
    "ensure_partitions",
    "existing_partitions",
    "is_partitioned",
    "month_of",
    "partition_name",
]
