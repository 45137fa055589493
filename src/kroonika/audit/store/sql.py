"""The SQL audit store: SQLite (default, WAL) and PostgreSQL (psycopg 3), one code path.

One row per durable commit (a *block*): the records of the commit as canonical JSON,
the signed tree head after it and the Merkle frontier. Writing one row per commit
instead of one per event keeps the hot path close to an append (see
``docs/decisions/0002-block-store.md``); the indexed columns (stream, seq range,
time range, count) are derived from the records and checked by the verifier.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from alembic import command
from alembic.config import Config
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    delete,
    event,
    func,
    insert,
    literal_column,
    select,
    text,
)
from sqlalchemy.exc import SQLAlchemyError

from kroonika.audit._errors import AuditUnavailable, StoreError
from kroonika.audit.integrity import leaf_hash
from kroonika.audit.privacy import KeyWrapper
from kroonika.audit.store._schema import blocks, checkpoints, retained_bases, subject_keys
from kroonika.audit.store._types import Block, Checkpoint, NewKey, StreamState, TreeHead

#: How long :meth:`SqlAuditStore.settled_id` waits on PostgreSQL for the inserts in
#: flight (writers wait behind it meanwhile) before it gives up and answers 0.
SETTLE_LOCK_TIMEOUT_MS = 500

#: The bytes that mark a record of the alert state (canonical JSON: exact bytes): the
#: category of ``alert.raise``, ``alert.acknowledge`` and ``response.action``, and of no
#: other type (tests/audit/test_alert_blocks_index.py holds the catalogue to it). A
#: block without them holds nothing of the alert state. One marker, so the database
#: searches a block once when it stores it.
ALERT_MARKER = b'"category":"alert"'
#: The partial index of the blocks holding :data:`ALERT_MARKER` (migration a0007): a
#: reader of the alert state reads those blocks only, so its cost grows with the alerts,
#: not with the trail.
ALERT_BLOCKS_INDEX = "audit_blocks_alerts"


def alert_blocks_predicate(dialect: str) -> str:
    """The SQL condition "this block holds a record of the alert state", over the
    block's bytes, with the marker as a literal: the index of migration a0007 is built on
    this very text, and a query uses a partial index only when it states the index's
    condition (a bound parameter would not do)."""
    if dialect == "postgresql":
        return f"(position(CAST('\\x{ALERT_MARKER.hex()}' AS bytea) IN data) > 0)"
    return f"(instr(data, X'{ALERT_MARKER.hex()}') > 0)"


_BLOCK_COLUMNS = (
    blocks.c.id,
    blocks.c.stream,
    blocks.c.first_seq,
    blocks.c.last_seq,
    blocks.c.count,
    blocks.c.first_time,
    blocks.c.last_time,
    blocks.c.data,
    blocks.c.tree_size,
    blocks.c.root,
    blocks.c.head_time,
    blocks.c.kid,
    blocks.c.signature,
    blocks.c.frontier,
)


def normalise_url(url: str) -> str:
    """Accept a plain file path, ``sqlite:///...`` or ``postgresql://...``."""
    if "://" not in url:
        # a file name, not URL syntax: "%", "#" and "?" are quoted (see _sqlite_path)
        return f"sqlite:///{quote(str(Path(url).resolve()), safe='/')}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_path(url: str) -> str:
    """The file of a ``sqlite:///`` URL, percent-decoded once (SQLAlchemy's own URL
    parsing is kept out of it: connections are made from this path)."""
    return unquote(url.split(":///", 1)[1].split("?", 1)[0])


def _row_to_block(row: Any) -> Block:
    return Block(
        stream=row.stream,
        first_seq=row.first_seq,
        last_seq=row.last_seq,
        count=row.count,
        first_time=row.first_time,
        last_time=row.last_time,
        data=bytes(row.data),
        head=TreeHead(
            stream=row.stream,
            size=row.tree_size,
            root=bytes(row.root),
            time=row.head_time,
            kid=row.kid,
            signature=bytes(row.signature),
        ),
        frontier=bytes(row.frontier),
        rowid=row.id,
    )


def _row_to_checkpoint(row: Any) -> Checkpoint:
    return Checkpoint(
        stream=row.stream,
        size=row.size,
        root=bytes(row.root),
        time=row.time,
        kid=row.kid,
        prev=bytes(row.prev),
        signature=bytes(row.signature),
    )


class SqlAuditStore:
    """Append-only audit store over SQLAlchemy Core.

    ``read_only=True`` opens an archive or evidence copy without writing anything
    (SQLite: see :func:`_read_only_path`); ``follow=True`` (``audit tail -f``) also
    sees what a writer commits later.
    ``synchronous`` is SQLite's setting: ``FULL`` (default) survives power loss,
    ``NORMAL`` survives process crashes only.
    """

    def __init__(
        self,
        url: str,
        *,
        read_only: bool = False,
        synchronous: str = "FULL",
        follow: bool = False,
    ) -> None:
        self.url = normalise_url(url)
        self.read_only = read_only
        self._scratch: Path | None = None
        self.dialect = self.url.split(":", 1)[0].split("+", 1)[0]
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("synchronous must be FULL, NORMAL or EXTRA")
        if self.dialect == "sqlite":
            if ":///" not in self.url or not _sqlite_path(self.url):
                raise StoreError("an SQLite audit store URL names a file: sqlite:///path")
            path = _sqlite_path(self.url)
            if read_only:
                try:
                    if not Path(path).is_file():
                        raise StoreError(f"no audit store at {path}")
                    path, self._scratch = _read_only_path(path, follow=follow)
                except OSError as exc:  # a directory that may not be searched, a copy that fails
                    raise StoreError(
                        f"cannot open the audit store {path}: {exc.strerror or exc}"
                    ) from exc
                uri = _read_only_uri(path, follow=follow)
                self.engine = create_engine(
                    "sqlite://",
                    creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False),
                    poolclass=_pool(),
                    hide_parameters=True,
                )
            else:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                self.engine = create_engine(
                    self.url,  # engine.url names the file (sink locks sit beside it)
                    creator=lambda: sqlite3.connect(path, check_same_thread=False),
                    poolclass=_pool(),
                    hide_parameters=True,
                )
                _configure_sqlite(self.engine, synchronous)
        elif self.dialect == "postgresql":
            self.engine = create_engine(
                self.url, pool_pre_ping=True, pool_size=5, hide_parameters=True
            )
            if read_only:
                event.listen(self.engine, "connect", _pg_read_only)
        else:
            raise StoreError(f"unsupported audit store URL scheme: {self.url.split(':')[0]}")

    # --- schema -------------------------------------------------------------------

    def upgrade(self) -> None:
        """Create or migrate the audit tables (Alembic, version table
        ``audit_schema_version``)."""
        if self.read_only:
            raise StoreError("a read-only store cannot be migrated")
        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        try:
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
            if self.dialect == "postgresql":
                from kroonika.audit.store.partitions import ensure_partitions

                ensure_partitions(self.engine)  # this month and the next ones
        except SQLAlchemyError as exc:
            raise AuditUnavailable(f"audit store migration failed: {_brief(exc)}") from exc

    # --- writing ------------------------------------------------------------------

    def append(
        self, block: Block, checkpoint: Checkpoint | None, keys: Sequence[NewKey] = ()
    ) -> None:
        """Store one block (with a checkpoint and the subject keys its events use
        for the first time) in one transaction, durably."""
        if self.read_only:
            raise AuditUnavailable("the audit store is open read-only")
        head = block.head
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(blocks),
                    {
                        "stream": block.stream,
                        "first_seq": block.first_seq,
                        "last_seq": block.last_seq,
                        "count": block.count,
                        "first_time": block.first_time,
                        "last_time": block.last_time,
                        "data": block.data,
                        "tree_size": head.size,
                        "root": head.root,
                        "head_time": head.time,
                        "kid": head.kid,
                        "signature": head.signature,
                        "frontier": block.frontier,
                    },
                )
                if checkpoint is not None:
                    conn.execute(insert(checkpoints), _checkpoint_row(checkpoint))
                if keys:
                    conn.execute(
                        insert(subject_keys),
                        [
                            {
                                "key_id": k.key_id,
                                "subject": k.subject,
                                "wrapped": k.wrapped,
                                "created": k.created,
                            }
                            for k in keys
                        ],
                    )
        except SQLAlchemyError as exc:
            raise AuditUnavailable(f"audit store write failed: {_brief(exc)}") from exc

    def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(checkpoints), _checkpoint_row(checkpoint))
        except SQLAlchemyError as exc:
            raise AuditUnavailable(f"audit store write failed: {_brief(exc)}") from exc

    # --- reading ------------------------------------------------------------------

    def stream_state(self, stream: str) -> StreamState | None:
        try:
            with self.engine.connect() as conn:
                row = conn.execute(
                    select(*_BLOCK_COLUMNS)
                    .where(blocks.c.stream == stream)
                    .order_by(blocks.c.last_seq.desc())
                    .limit(1)
                ).first()
                cp_row = conn.execute(
                    select(checkpoints)
                    .where(checkpoints.c.stream == stream)
                    .order_by(checkpoints.c.size.desc(), checkpoints.c.id.desc())
                    .limit(1)
                ).first()
        except SQLAlchemyError as exc:
            raise AuditUnavailable(f"audit store read failed: {_brief(exc)}") from exc
        if row is None:
            return None
        block = _row_to_block(row)
        records = block.records()
        return StreamState(
            stream=stream,
            size=block.head.size,
            last_leaf=leaf_hash(records[-1]),
            frontier=block.frontier,
            last_checkpoint=_row_to_checkpoint(cp_row) if cp_row is not None else None,
            head=block.head,
        )

    def streams(self) -> list[str]:
        with self._read() as conn:
            return [r[0] for r in conn.execute(select(blocks.c.stream).distinct()).all()]

    def blocks(
        self,
        stream: str | None = None,
        *,
        after_seq: int = 0,
        from_time: str | None = None,
        to_time: str | None = None,
        batch: int = 16,
        after_id: int = 0,
        upto_id: int | None = None,
        holding_alerts: bool = False,
    ) -> Iterator[Block]:
        """Blocks in storage order (by row id), streamed in batches of ``batch`` rows
        (a block holds up to a few thousand records, so a batch stays a few MB).
        ``after_id``/``upto_id`` bound the row ids (for parallel readers). With
        ``from_time`` the walk starts at the first block that ends at or after it, found
        through the time index: a reader of the last day does not step through the
        older blocks by row id. With ``holding_alerts`` only the blocks holding an
        ``alert.*`` or ``response.*`` record (:data:`ALERT_MARKER`), found through the
        partial index :data:`ALERT_BLOCKS_INDEX`: the database selects them, no other
        block is sent."""
        last_id = after_id
        if from_time is not None:
            first = self._first_id(from_time)
            if first is None:
                return
            last_id = max(last_id, first - 1)
        while True:
            query = select(*_BLOCK_COLUMNS).where(blocks.c.id > last_id)
            if upto_id is not None:
                query = query.where(blocks.c.id <= upto_id)
            if stream is not None:
                query = query.where(blocks.c.stream == stream)
            if after_seq:
                query = query.where(blocks.c.last_seq > after_seq)
            if from_time is not None:
                query = query.where(blocks.c.last_time >= from_time)
            if to_time is not None:
                query = query.where(blocks.c.first_time <= to_time)
            if holding_alerts:
                query = query.where(text(alert_blocks_predicate(self.dialect)))
            query = query.order_by(blocks.c.id).limit(batch)
            with self._read() as conn:
                if holding_alerts and self.dialect == "postgresql":
                    # The planner cannot tell what the condition costs (it searches every
                    # block's bytes) and, on a table not analysed yet, may prefer reading
                    # every block to the index: for this read, it may not.
                    conn.execute(text("SET LOCAL enable_seqscan = off"))
                rows = conn.execute(query).all()
            if not rows:
                return
            for row in rows:
                yield _row_to_block(row)
            last_id = rows[-1].id

    def _first_id(self, from_time: str) -> int | None:
        """The lowest row id of a block whose ``last_time`` is ``from_time`` or later (an
        index-only range on ``audit_blocks_time``), None if there is none. A lower bound
        for every stream: each stream's blocks past it have a row id at least this."""
        # "+ 0": SQLite answers a bare min(id) by walking the row ids from the first
        # (its min/max shortcut), which is the walk this look-up is here to avoid
        first_id = func.min(blocks.c.id + literal_column("0"))
        with self._read() as conn:
            first = conn.execute(
                select(first_id).where(blocks.c.last_time >= from_time)
            ).scalar_one()
        return None if first is None else int(first)

    def settled_id(self) -> int:
        """A row id below which no block can still appear: every block with this id or a
        lower one is committed (a read that starts now sees it) and every block committed
        later gets a higher one. A reader that has read everything after taking it need
        later read only ``blocks(after_id=...)`` (erasure, decision 0023). 0 when no such
        bound can be had, which makes that reader read everything again.

        SQLite serialises writers and gives an insert the highest row id plus one, so the
        highest id committed is the bound. A PostgreSQL ``BIGSERIAL`` id is drawn at
        insert, not at commit: a block drawn before another can commit after it. So the
        bound is read under a ``SHARE`` lock on the table, which waits for the inserts in
        flight to commit and holds new ones back for one index lookup; if the lock is
        not granted within :data:`SETTLE_LOCK_TIMEOUT_MS` (a long insert, or no
        privilege to take it) the answer is 0."""
        try:
            with self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    conn.execute(text(f"SET LOCAL lock_timeout = {SETTLE_LOCK_TIMEOUT_MS}"))
                    conn.execute(text(f"LOCK TABLE {blocks.name} IN SHARE MODE"))
                top = conn.execute(select(func.max(blocks.c.id))).scalar_one()
        except SQLAlchemyError as exc:
            if self.dialect != "postgresql":
                raise StoreError(f"cannot read the audit store: {_brief(exc)}") from exc
            return 0  # not granted in time (or not at all): the reader reads everything
        return int(top or 0)

    def top_id(self) -> int:
        """The highest row id a read sees now (0 for an empty store). No lock: on
        PostgreSQL a block with a lower id may still commit (see :meth:`settled_id`)."""
        with self._read() as conn:
            top = conn.execute(select(func.max(blocks.c.id))).scalar_one()
        return int(top or 0)

    def purged_upto(self) -> dict[str, int]:
        """Per stream, the size up to which retention purged it (``audit_retained_bases``):
        a reader that keeps what it read can tell that older records are gone."""
        with self._read() as conn:
            rows = conn.execute(select(retained_bases.c.stream, retained_bases.c.size)).all()
        return {str(r[0]): int(r[1]) for r in rows}

    def block_ids(self, stream: str) -> list[int]:
        """Row ids of a stream's blocks in storage order (small: one per commit)."""
        with self._read() as conn:
            rows = conn.execute(
                select(blocks.c.id).where(blocks.c.stream == stream).order_by(blocks.c.id)
            ).all()
        return [r[0] for r in rows]

    def checkpoints(self, stream: str | None = None) -> list[Checkpoint]:
        query = select(checkpoints).order_by(checkpoints.c.stream, checkpoints.c.size)
        if stream is not None:
            query = query.where(checkpoints.c.stream == stream)
        with self._read() as conn:
            return [_row_to_checkpoint(r) for r in conn.execute(query).all()]

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A connection for reading; any database error (cannot connect, not a database,
        a table missing, the server gone mid-query) becomes :class:`StoreError`."""
        try:
            with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the audit store: {_brief(exc)}") from exc

    def close(self) -> None:
        self.engine.dispose()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


class SqlSubjectKeys:
    """Per-subject data keys in ``audit_subject_keys``, wrapped under the master key.

    ``get_or_create`` never touches the database on the hot path: a new key is
    generated in memory and handed to the writer (``take_pending``), which stores
    it in the same transaction as the block holding the first event that uses it.
    Key ids are ``<subject>/<generation>.<n>`` with a random generation per process
    and a counter, so several instances never race for one key and a key made after
    an erasure never reuses an erased key's id.

    Erasure and several instances (``docs/decisions/0012-erasure-and-re-identification.md``):
    ``erase(subject)`` deletes every stored key of the subject, whichever instance made
    it, and forgets this instance's own. Another running instance may still hold the
    subject's key in memory: it never decrypts with it (``get`` reads the key table,
    never the cache, so an erased key answers ``None`` everywhere at once). It stops
    encrypting under it at the first commit ``erasure_check_s`` after its last check:
    the writer then asks the key table which of the stored keys it used since are gone
    and forgets them (one query, off the event path). ``key_ttl_s`` bounds a key's use
    in any case. Events written in between carry a key id that is no longer stored:
    their ``pii`` is unreadable, as the erasure asked.

    The cache holds ``cache_size`` subjects and drops the least recently used one: a
    person active now keeps their key while a flood of one-off subjects (login flows,
    decision 0023) passes through it.
    """

    def __init__(
        self,
        store: SqlAuditStore,
        master_key: bytes,
        *,
        cache_size: int = 65536,
        key_ttl_s: float = 300.0,
        erasure_check_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if key_ttl_s <= 0 or erasure_check_s < 0 or cache_size < 1:
            raise ValueError(
                "key_ttl_s and cache_size must be positive and erasure_check_s not negative"
            )
        self._engine: Engine = store.engine
        self._wrapper = KeyWrapper(master_key)
        self._generation = os.urandom(4).hex()
        self._counter = 0
        # subject -> (key id, key, when made by the clock), least recently used first
        self._by_subject: OrderedDict[str, tuple[str, AESGCM, float]] = OrderedDict()
        self._pending: list[NewKey] = []
        self._cache_size = cache_size
        self._ttl = key_ttl_s
        self._check_s = erasure_check_s
        self._clock = clock
        self._used: set[str] = set()  # stored keys handed out since the last erasure check
        self._last_check = clock()
        self._lock = threading.Lock()

    def get_or_create(self, subject: str) -> tuple[str, AESGCM]:
        cached = self._by_subject.get(subject)
        now = self._clock()
        if cached is not None and now - cached[2] < self._ttl:
            # lock-free: an erasure or eviction in another thread may just have won; a
            # bare try is a fraction of contextlib.suppress's cost on the event path
            try:  # noqa: SIM105
                self._by_subject.move_to_end(subject)
            except KeyError:
                pass
            self._used.add(cached[0])
            return cached[0], cached[1]
        with self._lock:
            data_key = AESGCM.generate_key(256)
            self._counter += 1
            key_id = f"{subject}/{self._generation}.{self._counter:x}"
            self._pending.append(
                NewKey(
                    key_id,
                    subject,
                    self._wrapper.wrap(key_id, data_key),
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                )
            )
            aead = AESGCM(data_key)
            self._by_subject.pop(subject, None)
            if len(self._by_subject) >= self._cache_size:
                self._by_subject.popitem(last=False)  # the least recently used
            self._by_subject[subject] = (key_id, aead, now)
            return key_id, aead

    def take_pending(self) -> list[NewKey]:
        """The new keys for the writer to store with its block; also, at most every
        ``erasure_check_s``, forgets the cached keys another instance erased."""
        with self._lock:
            pending, self._pending = self._pending, []
            due = self._used and self._clock() - self._last_check >= self._check_s
            used: set[str] = set()
            if due:
                used, self._used = self._used - {k.key_id for k in pending}, set()
                self._last_check = self._clock()
        if used:
            self._forget_erased(used)
        return pending

    def _forget_erased(self, used: set[str]) -> None:
        """Drop from the cache each of ``used`` (stored keys) that is no longer stored.
        A failed read changes nothing: the writer's own append reports the store."""
        ids = sorted(used)
        stored: set[str] = set()
        try:
            with self._engine.connect() as conn:
                for i in range(0, len(ids), 500):
                    chunk = ids[i : i + 500]
                    rows = conn.execute(
                        select(subject_keys.c.key_id).where(subject_keys.c.key_id.in_(chunk))
                    )
                    stored.update(r[0] for r in rows)
        except SQLAlchemyError:
            with self._lock:
                self._used |= used
            return
        with self._lock:
            for key_id in used - stored:
                subject = key_id.rsplit("/", 1)[0]
                cached = self._by_subject.get(subject)
                if cached is not None and cached[0] == key_id:
                    del self._by_subject[subject]

    def restore_pending(self, keys: list[NewKey]) -> None:
        with self._lock:
            self._pending[:0] = keys

    def get(self, key_id: str) -> AESGCM | None:
        """The stored key ``key_id`` (``None`` once erased). Always read from the key
        table: a key this or another instance erased must not decrypt from a cache."""
        try:
            with self._engine.connect() as conn:
                row = conn.execute(
                    select(subject_keys.c.wrapped).where(subject_keys.c.key_id == key_id)
                ).first()
        except SQLAlchemyError as exc:
            raise AuditUnavailable(f"audit key table read failed: {_brief(exc)}") from exc
        if row is None:
            return None
        return AESGCM(self._wrapper.unwrap(key_id, bytes(row.wrapped)))

    def count(self, subject: str) -> int:
        """How many stored keys ``subject`` has (every writer's, every generation)."""
        return self.count_many([subject])

    def count_many(self, subjects: Iterable[str]) -> int:
        """How many stored keys the ``subjects`` have together."""
        wanted = sorted(set(subjects))
        n = 0
        try:
            with self._engine.connect() as conn:
                for i in range(0, len(wanted), 500):
                    n += conn.execute(
                        select(func.count())
                        .select_from(subject_keys)
                        .where(subject_keys.c.subject.in_(wanted[i : i + 500]))
                    ).scalar_one()
        except SQLAlchemyError as exc:
            raise AuditUnavailable(f"audit key table read failed: {_brief(exc)}") from exc
        return int(n)

    def erase(self, subject: str) -> int:
        """Delete every data key of ``subject``; returns how many stored keys were deleted."""
        return self.erase_many([subject])

    def erase_many(self, subjects: Iterable[str]) -> int:
        """Delete every data key of each of ``subjects`` (one transaction); returns how many
        stored keys were deleted."""
        wanted = sorted(set(subjects))
        gone = set(wanted)
        deleted = 0
        with self._lock:
            for subject in wanted:
                self._by_subject.pop(subject, None)
            self._pending = [k for k in self._pending if k.subject not in gone]
            try:
                with self._engine.begin() as conn:
                    secure_delete(conn)
                    for i in range(0, len(wanted), 500):
                        deleted += conn.execute(
                            delete(subject_keys).where(
                                subject_keys.c.subject.in_(wanted[i : i + 500])
                            )
                        ).rowcount
                if deleted:
                    flush_deleted(self._engine)
            except SQLAlchemyError as exc:
                raise AuditUnavailable(f"audit key erasure failed: {_brief(exc)}") from exc
            return int(deleted)


def secure_delete(conn: Connection) -> None:
    """SQLite: overwrite what this connection deletes with zeros instead of leaving it in
    free space (an erased key or name must not be recoverable from the file). PostgreSQL
    has no such switch (see decision 0012)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA secure_delete=ON")


def flush_deleted(engine: Engine) -> None:
    """SQLite: copy the zeroed pages into the database file and empty the write-ahead log,
    whose older frames still hold the deleted rows. Best effort: while another process
    reads, part of the log stays until the next checkpoint."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def _checkpoint_row(cp: Checkpoint) -> dict[str, Any]:
    return {
        "stream": cp.stream,
        "size": cp.size,
        "root": cp.root,
        "time": cp.time,
        "kid": cp.kid,
        "prev": cp.prev,
        "signature": cp.signature,
    }


def _pool() -> Any:
    from sqlalchemy.pool import QueuePool

    return QueuePool


def _configure_sqlite(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()


def _read_only_path(path: str, *, follow: bool) -> tuple[str, Path | None]:
    """Where to open a store read-only without writing a byte beside it.

    A store with no ``-wal`` file (an archive, an evidence copy, a store closed
    cleanly) is opened in place, ``immutable``. A live store (its ``-shm`` file
    writable, as the writer left it) is opened in place with ``mode=ro``, which
    is how SQLite reads a WAL database that another process writes. Anything else
    with a ``-wal`` file (a copy of a live store made read-only, on read-only media
    or with no ``-shm``) would need SQLite to write the ``-shm`` file: the files
    are copied into a private scratch directory and opened there, so the evidence
    is not touched and the commits in the ``-wal`` are still read. Returns the path
    to open and the scratch directory to remove on close.
    """
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    if not wal.exists() or follow:
        return path, None
    if shm.exists() and shm.stat().st_mode & 0o200 and not _read_only_media(path):
        return path, None
    scratch = Path(tempfile.mkdtemp(prefix="kroonika-evidence-"))
    copy = scratch / "audit.db"
    try:
        shutil.copyfile(path, copy)
        shutil.copyfile(wal, f"{copy}-wal")
    except OSError:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return str(copy), scratch


def _read_only_uri(path: str, *, follow: bool) -> str:
    """An SQLite URI for ``path`` (quoted: ``%``, ``#`` and ``?`` are file name
    characters here, not URI syntax)."""
    live = follow or Path(f"{path}-wal").exists()
    return f"file:{quote(path)}?{'mode=ro' if live else 'immutable=1'}"


def _read_only_media(path: str) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return True


def _pg_read_only(dbapi_conn: Any, _record: object) -> None:
    dbapi_conn.execute("SET default_transaction_read_only = on")
    dbapi_conn.commit()


def _brief(exc: BaseException) -> str:
    """First line of a driver error, without SQL parameters (they may hold data)."""
    text = str(getattr(exc, "orig", exc)) or type(exc).__name__
    return text.splitlines()[0][:200]
