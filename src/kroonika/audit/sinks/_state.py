"""A sink's persisted state: cursors, dead letters, and who owns a (sink, stream).

Cursors live in ``audit_sink_cursors`` (one row per sink and stream: the last
delivered seq). Ownership is a database lock, so several instances sharing one
store deliver each stream to each sink from exactly one place at a time:

* PostgreSQL: session advisory locks (``pg_try_advisory_lock``) held on one
  dedicated connection; if the process dies the server releases them.
* SQLite: ``flock`` on a lock file next to the database (one file per sink and
  stream), released by the kernel when the process dies.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from kroonika.audit.store._schema import sink_cursors, sink_dead_letters


class CorruptCursor(ValueError):
    """A cursor row that is not a sequence number (not an integer, or negative)."""


def _seq(value: object, sink: str, stream: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CorruptCursor(
            f"cursor of sink {sink!r} on stream {stream!r} is not a sequence number"
        )
    return value


class CursorStore:
    """Reads and writes sink cursors and dead letters in the audit database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    def get(self, sink: str, stream: str) -> int:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(sink_cursors.c.seq).where(
                    sink_cursors.c.sink == sink, sink_cursors.c.stream == stream
                )
            ).first()
        return _seq(row.seq, sink, stream) if row is not None else 0

    def all(self) -> dict[tuple[str, str], int]:
        """Every valid cursor (a corrupted row is left out: the runner reports it)."""
        return self._read()[0]

    def corrupted(self) -> list[tuple[str, str]]:
        """(sink, stream) of every cursor row that is not a sequence number."""
        return self._read()[1]

    def _read(self) -> tuple[dict[tuple[str, str], int], list[tuple[str, str]]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(sink_cursors)).all()
        good: dict[tuple[str, str], int] = {}
        bad: list[tuple[str, str]] = []
        for r in rows:
            try:
                good[(r.sink, r.stream)] = _seq(r.seq, r.sink, r.stream)
            except CorruptCursor:
                bad.append((str(r.sink), str(r.stream)))
        return good, sorted(bad)

    def set(self, sink: str, stream: str, seq: int, now: str) -> None:
        """Move the cursor forward (never back: a lagging writer cannot rewind it)."""
        values = {"sink": sink, "stream": stream, "seq": seq, "updated": now}
        ins: Any = (postgresql if self.dialect == "postgresql" else sqlite).insert(sink_cursors)
        stmt = ins.values(values).on_conflict_do_update(
            index_elements=[sink_cursors.c.sink, sink_cursors.c.stream],
            set_={"seq": ins.excluded.seq, "updated": ins.excluded.updated},
            where=sink_cursors.c.seq < ins.excluded.seq,
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def reset(self, sink: str, stream: str, seq: int, now: str) -> None:
        """Set the cursor to ``seq`` even backwards (operator replay)."""
        with self.engine.begin() as conn:
            conn.execute(
                sink_cursors.delete().where(
                    sink_cursors.c.sink == sink, sink_cursors.c.stream == stream
                )
            )
            conn.execute(
                insert(sink_cursors),
                {"sink": sink, "stream": stream, "seq": seq, "updated": now},
            )

    def dead_letter(
        self,
        sink: str,
        stream: str,
        seq: int,
        item_id: str,
        error: str,
        attempts: int,
        now: str,
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(sink_dead_letters),
                {
                    "sink": sink,
                    "stream": stream,
                    "seq": seq,
                    "item_id": item_id[:200],
                    "error": error[:500],
                    "attempts": attempts,
                    "time": now,
                },
            )

    def dead_letters(
        self, sink: str | None = None, *, pending: bool = False
    ) -> list[dict[str, Any]]:
        """Dead-letter rows in the order they were written; ``pending``: only those no
        replay has delivered yet."""
        query = select(sink_dead_letters).order_by(sink_dead_letters.c.id)
        if sink is not None:
            query = query.where(sink_dead_letters.c.sink == sink)
        if pending:
            query = query.where(sink_dead_letters.c.replayed.is_(None))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        # plain str keys: SQLAlchemy's are quoted_name, which orjson refuses
        return [{str(k): v for k, v in r._mapping.items()} for r in rows]

    def mark_replayed(self, ids: Sequence[int], now: str) -> int:
        """Mark dead letters as delivered by a replay (the rows stay: evidence of what a
        destination refused and when it got it). Returns how many were still pending."""
        if not ids:
            return 0
        c = sink_dead_letters.c
        with self.engine.begin() as conn:
            done = conn.execute(
                update(sink_dead_letters)
                .where(c.id.in_(list(ids)), c.replayed.is_(None))
                .values(replayed=now)
            )
        return int(done.rowcount or 0)

    def pending_counts(self) -> dict[str, int]:
        """Per sink, how many dead letters no replay has delivered yet."""
        c = sink_dead_letters.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(c.sink, func.count()).where(c.replayed.is_(None)).group_by(c.sink)
            ).all()
        return {str(sink): int(n) for sink, n in rows}


class OwnershipLock(Protocol):
    """Exclusive ownership of named keys across processes."""

    def try_acquire(self, key: str) -> bool: ...

    def release(self, key: str) -> None: ...

    def alive(self) -> bool:
        """False when the locks were lost (e.g. the database connection dropped)."""
        ...

    def close(self) -> None: ...


def _key_pair(key: str) -> tuple[int, int]:
    digest = hashlib.sha256(b"kroonika.sink:" + key.encode()).digest()
    return (
        int.from_bytes(digest[:4], "big", signed=True),
        int.from_bytes(digest[4:8], "big", signed=True),
    )


class PostgresAdvisoryLock:
    """Session advisory locks on one dedicated connection."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Connection | None = None
        self._held: set[str] = set()
        self._lock = threading.Lock()

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._conn

    def try_acquire(self, key: str) -> bool:
        with self._lock:
            if key in self._held:
                return True
            a, b = _key_pair(key)
            try:
                got = (
                    self._connection()
                    .execute(text("SELECT pg_try_advisory_lock(:a, :b)"), {"a": a, "b": b})
                    .scalar_one()
                )
            except SQLAlchemyError:
                self._drop()
                return False
            if got:
                self._held.add(key)
            return bool(got)

    def release(self, key: str) -> None:
        with self._lock:
            if key not in self._held or self._conn is None:
                return
            self._held.discard(key)
            a, b = _key_pair(key)
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:a, :b)"), {"a": a, "b": b})
            except SQLAlchemyError:
                self._drop()

    def alive(self) -> bool:
        with self._lock:
            if self._conn is None:
                return not self._held
            try:
                self._conn.execute(text("SELECT 1"))
            except SQLAlchemyError:
                self._drop()
                return False
            return True

    def _drop(self) -> None:
        self._held.clear()
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except SQLAlchemyError:
                pass
            self._conn = None

    def close(self) -> None:
        """Release every lock: the connection is discarded, not handed back to the pool,
        where its session, and the locks with it, would live on until the engine is
        disposed (another instance could not take the keys over meanwhile)."""
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.invalidate()
                    self._conn.close()
                except SQLAlchemyError:
                    pass
                self._conn = None
            self._held.clear()


class FileLock:
    """``flock`` locks in a directory (the SQLite equivalent of advisory locks)."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        self._fds: dict[str, int] = {}

    def try_acquire(self, key: str) -> bool:
        if key in self._fds:
            return True
        name = hashlib.sha256(key.encode()).hexdigest()[:32] + ".lock"
        fd = os.open(self._dir / name, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fds[key] = fd
        return True

    def release(self, key: str) -> None:
        fd = self._fds.pop(key, None)
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def alive(self) -> bool:
        return True

    def close(self) -> None:
        for key in list(self._fds):
            self.release(key)


def ownership_lock_for(engine: Engine) -> OwnershipLock:
    """The lock that fits the store: advisory locks on PostgreSQL, flock on SQLite."""
    if engine.dialect.name == "postgresql":
        return PostgresAdvisoryLock(engine)
    database = engine.url.database
    if not database:
        raise ValueError("an SQLite store needs a file for sink locks")
    return FileLock(Path(database).resolve().parent / (Path(database).name + ".sink-locks"))
