"""Retention: purge old audit blocks in whole ranges that end at a checkpoint.

Policy (days, per event type first, then per category, then the default)::

    every category                  the default, 400 days
    security, admin, audit,         at least 400 days unless named (PCI DSS 10.5.1)
      authentication, token
    auth.flow.transition            90 days

PCI DSS 10.5.1 wants 12 months kept with the last 3 immediately available: keep
``default_days`` >= 365 and archive (``archive_dir``) what is purged. A block holds
the events of one commit, whatever their category, so a block expires when its
*longest-lived* event does; a stream's purgeable prefix is cut back to its last
checkpoint. A legal hold stops every purge (:class:`LegalHoldActive`).

A purge of one stream is one transaction: a grant row in ``audit_purge_grants``
(the delete triggers refuse any delete that no grant covers), the stream's retained
base in ``audit_retained_bases`` (Merkle frontier and last leaf at the checkpoint,
signed with the audit key so that nobody without it can leave one behind, and
:func:`~kroonika.audit.verify.verify_store` resumes there), then the delete.
Checkpoints are never deleted. No purge goes unrecorded: ``audit.retention`` is
recorded with ``phase`` ``planned`` before the transaction (the trail refusing it stops
the purge) and ``done`` or ``failed`` after it (:class:`PurgePhase`); a ``planned``
record with neither after it (the trail refused the second record) is settled by the
stream's signed retained base; the next run (:meth:`RetentionJob.reconcile`) finds such a
lone record and records how the store settled it (``phase`` ``reconciled``, ``settled``
``done`` or ``not_done``). Decision 0001, 2026-11-28. On PostgreSQL, monthly partitions of
``audit_blocks`` that the grants cover entirely are dropped instead of deleted row
by row. Before the purge the range can be archived as gzip JSON lines with its
checkpoints, verifiable on its own (:func:`verify_archive`).

The data keys of subjects that are no person (``anon:`` months, ``flow:`` logins:
:data:`~kroonika.audit.privacy.KEYLESS_PREFIXES`) are shredded by
:meth:`RetentionJob.shred_keys` once they were made longer ago than the policy's
longest retention (and a day: a writer keeps using a key for its cache lifetime, at
most a day): every event that can be encrypted under them has expired by then, each
batch recorded as ``planned`` before its delete and ``done`` or ``failed`` after it, like
a purge. A batch is every such key made before its ``keys_made_before`` (the cutoff, or
a second after the newest key of a full batch), so a lone ``planned`` is settled by
whether any of those keys is left. A person's keys go only with an erasure. See decision 0023.

Errors::

    AuditError
    └── RetentionError
        └── LegalHoldActive
"""

from __future__ import annotations

import calendar
import functools
import gzip
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import orjson
from sqlalchemy import and_, delete, func, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite

from kroonika.audit import events
from kroonika.audit._errors import AuditError
from kroonika.audit._model import Actor, ActorType, AuditEvent, Outcome, rfc3339_micro
from kroonika.audit._sealer import ZERO_HASH
from kroonika.audit.integrity import CompactRange, leaf_hash
from kroonika.audit.privacy import KEYLESS_PREFIXES
from kroonika.audit.query import Query, run_query
from kroonika.audit.signing import KeyRing, PublicKeys
from kroonika.audit.store._schema import blocks, purge_grants, retained_bases, subject_keys
from kroonika.audit.store._types import Checkpoint, base_statement
from kroonika.audit.store.sql import SqlAuditStore, flush_deleted, secure_delete
from kroonika.audit.verify import Finding, Report, RetainedBase, StreamReport, stored_bases

log = logging.getLogger("kroonika.audit.retention")

DAY = 86400

#: How far back (days) a run looks for a lone ``planned`` record to settle: the job runs
#: daily, so a week covers a crashed run and several days without one.
RECONCILE_DAYS: Final = 7

#: No category has days of its own by default: every category follows ``default_days``
#: (``KROONIKA_AUDIT_RETENTION_DEFAULT_DAYS``), so a longer default keeps them all
#: longer (five categories were pinned at 400 before, decision 0034, 2026-11-28) ...
DEFAULT_CATEGORY_DAYS: Final[Mapping[str, int]] = MappingProxyType({})
#: ... but a default below :data:`FLOOR_DAYS` does not shorten the categories of the
#: events PCI DSS 10.2.1 asks for (logins, token and administrator actions, reads of the
#: trail, security findings): 10.5.1 wants 12 months kept. Naming one of them in
#: ``KROONIKA_AUDIT_RETENTION_DAYS`` sets its days, below the floor too (an explicit
#: choice, recorded in the configuration).
FLOOR_CATEGORIES: Final = frozenset({"security", "admin", "audit", "authentication", "token"})
FLOOR_DAYS: Final = 400
DEFAULT_TYPE_DAYS: Final[Mapping[str, int]] = MappingProxyType({"auth.flow.transition": 90})


class RetentionError(AuditError):
    """The purge cannot run as asked."""


class LegalHoldActive(RetentionError):
    """A legal hold is in force: nothing may be purged."""


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    default_days: int = 400
    categories: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_CATEGORY_DAYS))
    types: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_TYPE_DAYS))
    legal_hold: bool = False

    def __post_init__(self) -> None:
        for name, days in [
            ("default", self.default_days),
            *self.categories.items(),
            *self.types.items(),
        ]:
            if days < 1:
                raise ValueError(f"retention for {name} must be at least 1 day")

    def days_for(self, category: str, event_type: str) -> int:
        if event_type in self.types:
            return self.types[event_type]
        if category in self.categories:
            return self.categories[category]
        if category in FLOOR_CATEGORIES:
            return max(self.default_days, FLOOR_DAYS)
        return self.default_days

    @property
    def longest_days(self) -> int:
        """The longest any event is kept: the age past which no retained event can need a
        data key made before it."""
        floor = FLOOR_DAYS if not self.categories.keys() >= FLOOR_CATEGORIES else 0
        return max(self.default_days, floor, *self.categories.values(), *self.types.values())


@dataclass(frozen=True, slots=True)
class PurgePlan:
    stream: str
    first_seq: int
    last_seq: int  # a checkpointed size
    blocks: int
    base: RetainedBase  # the new base at last_seq
    checkpoint: Checkpoint
    base_checkpoint: Checkpoint | None  # the checkpoint at the old base, if any
    old_base: RetainedBase | None

    @property
    def count(self) -> int:
        return self.last_seq - self.first_seq + 1


class PurgePhase(StrEnum):
    """Where a purge or a shredding stands when it is recorded (``details.phase`` of
    ``audit.retention``): each is recorded as ``planned`` before anything is deleted,
    then as ``done`` or ``failed``."""

    PLANNED = "planned"  # nothing deleted yet (outcome unknown)
    DONE = "done"  # committed (outcome success)
    FAILED = "failed"  # the delete was rolled back (outcome failure)
    #: a later run settled a ``planned`` left alone (the process died, the trail refused
    #: the second record): outcome success if the store shows it happened (``settled``
    #: ``done``), failure (reason ``purge_not_done`` / ``shred_not_done``) if not
    RECONCILED = "reconciled"


@dataclass(slots=True)
class PurgeResult:
    stream: str
    first_seq: int
    last_seq: int
    count: int
    archive: Path | None = None
    partitions_dropped: list[str] = field(default_factory=list)
    phase: PurgePhase = PurgePhase.DONE


class RetentionJob:
    """Plans and runs purges and shreds old keys of subjects that are no person;
    ``on_purged`` and ``on_shredded`` record ``audit.retention`` (the service passes
    callbacks that emit through its trail)."""

    def __init__(
        self,
        store: SqlAuditStore,
        policy: RetentionPolicy,
        *,
        archive_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
        max_blocks: int = 10_000,
        on_purged: Callable[[PurgeResult], object] | None = None,
        keyring: KeyRing | None = None,
        on_shredded: Callable[[int, str, PurgePhase], object] | None = None,
        on_reconciled: Callable[[AuditEvent], object] | None = None,
        reconcile_days: float | None = RECONCILE_DAYS,
    ) -> None:
        if store.read_only:
            raise RetentionError("retention needs a writable store")
        self.store = store
        self.keyring = keyring
        self.policy = policy
        self.archive_dir = archive_dir
        self._clock = clock
        self.max_blocks = max_blocks
        self.on_purged = on_purged
        self.on_shredded = on_shredded
        self.on_reconciled = on_reconciled
        self.reconcile_days = reconcile_days
        self._reconciled = False

    # --- planning -----------------------------------------------------------------

    def plan(self) -> list[PurgePlan]:
        bases = stored_bases(self.store)
        plans = []
        for stream in sorted(self.store.streams()):
            plan = self._plan_stream(stream, bases.get(stream))
            if plan is not None:
                plans.append(plan)
        return plans

    def _cutoffs(self) -> Callable[[str, str], str]:
        now = self._clock()
        cache: dict[int, str] = {}

        def cutoff(category: str, event_type: str) -> str:
            days = self.policy.days_for(category, event_type)
            if days not in cache:
                cache[days] = rfc3339_micro(int((now - days * DAY) * 1e9))
            return cache[days]

        return cutoff

    def _plan_stream(self, stream: str, base: RetainedBase | None) -> PurgePlan | None:
        start = base.size if base is not None else 0
        cps = {cp.size: cp for cp in self.store.checkpoints(stream)}
        cutoff = self._cutoffs()
        found: tuple[int, RetainedBase, int] | None = None
        for scanned, block in enumerate(self.store.blocks(stream, after_seq=start), 1):
            if scanned > self.max_blocks:
                break
            records = block.records()
            expired = True
            for body in records:
                doc = orjson.loads(body)
                if doc["time"] >= cutoff(str(doc.get("category")), str(doc.get("type"))):
                    expired = False
                    break
            if not expired:
                break
            if block.last_seq in cps and cps[block.last_seq].root == block.head.root:
                new_base = RetainedBase(
                    stream,
                    block.last_seq,
                    block.head.root,
                    block.frontier,
                    leaf_hash(records[-1]),
                )
                found = (block.last_seq, new_base, scanned)
        if found is None:
            return None
        upto, new_base, n_blocks = found
        return PurgePlan(
            stream=stream,
            first_seq=start + 1,
            last_seq=upto,
            blocks=n_blocks,
            base=new_base,
            checkpoint=cps[upto],
            base_checkpoint=cps.get(start) if start else None,
            old_base=base,
        )

    # --- running ------------------------------------------------------------------

    def run(self, *, dry_run: bool = False) -> list[PurgeResult]:
        """Purge every planned range. Each is recorded through ``on_purged`` before its
        delete (``planned``) and after it (``done``, or ``failed`` when the delete was
        rolled back, then :class:`RetentionError`); if the recorder raises (the trail
        refuses the event), that error ends the run: nothing is deleted whose record the
        trail did not take. First, :meth:`reconcile` settles what an earlier run left."""
        if not dry_run and not self._reconciled:
            self.reconcile()  # once per job: the job calls run() batch after batch
        if self.policy.legal_hold:
            raise LegalHoldActive("a legal hold is in force: no audit data is purged")
        results = []
        for plan in self.plan():
            if dry_run:
                results.append(PurgeResult(plan.stream, plan.first_seq, plan.last_seq, plan.count))
                continue
            if self.keyring is None:
                raise RetentionError(
                    "a purge signs the base it leaves behind: retention needs the audit key ring"
                )
            archive = self._archive(plan) if self.archive_dir is not None else None
            planned = PurgeResult(
                plan.stream,
                plan.first_seq,
                plan.last_seq,
                plan.count,
                archive,
                phase=PurgePhase.PLANNED,
            )
            self._record(planned)
            try:
                dropped = self._purge(plan, self.keyring)
            except Exception as exc:
                what = f"purge of {plan.stream} {plan.first_seq}..{plan.last_seq}"
                self._record_failure(
                    what, functools.partial(self._record, replace(planned, phase=PurgePhase.FAILED))
                )
                raise RetentionError(f"the {what} failed ({type(exc).__name__})") from exc
            log.info("purged %s %d..%d", plan.stream, plan.first_seq, plan.last_seq)
            result = replace(planned, partitions_dropped=dropped, phase=PurgePhase.DONE)
            self._record(result)
            results.append(result)
        return results

    def _record(self, result: PurgeResult) -> None:
        if self.on_purged is not None:
            self.on_purged(result)

    @staticmethod
    def _record_failure(what: str, record: Callable[[], None]) -> None:
        """Record that ``what`` failed; if the trail refuses that too, the ``planned``
        record stands alone (the stored retained bases and keys say what is left) and the
        failure itself is what the caller is told."""
        try:
            record()
        except Exception:
            log.exception("the failure of the %s could not be recorded", what)

    # --- keys of subjects that are no person -----------------------------------------

    def keys_cutoff(self) -> str:
        """Keys of ``anon:`` and ``flow:`` subjects made before this time are shredded."""
        age = (self.policy.longest_days + 1) * DAY
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._clock() - age))

    def shred_keys(self, *, dry_run: bool = False) -> int:
        """Delete (or with ``dry_run`` count) the data keys of subjects that are no person
        made before :meth:`keys_cutoff`, in batches of ``max_blocks``; ``on_shredded``
        records how many. Refused under a legal hold, like a purge."""
        if self.policy.legal_hold:
            raise LegalHoldActive("a legal hold is in force: no audit data key is shredded")
        cutoff = self.keys_cutoff()
        c = subject_keys.c
        engine = self.store.engine
        if dry_run:
            with engine.connect() as conn:
                return int(conn.execute(_count_keys(cutoff)).scalar_one())
        oldest = select(c.created).where(_keyless(), c.created < cutoff)
        oldest = oldest.order_by(c.created).limit(self.max_blocks)
        shredded = 0
        while True:
            with engine.connect() as conn:
                made = list(conn.execute(oldest).scalars())
            if not made:
                break
            # The batch is every such key made before ``before``: the cutoff, or (a full
            # batch) the second after its newest key, so that the planned record alone
            # says which keys it covers (reconcile) and no second is split.
            last = len(made) < self.max_blocks
            before = cutoff if last else min(cutoff, _next_second(made[-1]))
            batch = and_(_keyless(), c.created < before)
            with engine.connect() as conn:
                count = int(conn.execute(_count_keys(before)).scalar_one())
            # Recorded before the delete, so that no key goes unrecorded.
            self._record_shred(count, before, PurgePhase.PLANNED)
            try:
                with engine.begin() as conn:
                    secure_delete(conn)
                    gone = conn.execute(delete(subject_keys).where(batch)).rowcount
            except Exception as exc:
                what = f"shredding of {count} data keys"
                self._record_failure(
                    what, functools.partial(self._record_shred, count, before, PurgePhase.FAILED)
                )
                raise RetentionError(f"the {what} failed ({type(exc).__name__})") from exc
            shredded += gone
            # An erasure may have taken some of them meanwhile: the count is what went.
            self._record_shred(gone, before, PurgePhase.DONE)
            if last:
                break
        if shredded and not dry_run:
            flush_deleted(engine)
            log.info("shredded %d data keys made before %s", shredded, cutoff)
        return shredded

    def _record_shred(self, count: int, cutoff: str, phase: PurgePhase) -> None:
        if self.on_shredded is not None:
            self.on_shredded(count, cutoff, phase)

    # --- settling what an earlier run left ------------------------------------------

    def lone_planned(self) -> list[dict[str, Any]]:
        """The ``planned`` records of the last :attr:`reconcile_days` (None: of the whole
        trail) that nothing followed (no ``done``, ``failed`` or ``reconciled`` of the
        same range or batch), oldest first, as stored (parsed)."""
        since = None
        if self.reconcile_days is not None:
            since = rfc3339_micro(int((self._clock() - self.reconcile_days * DAY) * 1e9))
        query = Query(from_time=since, types=("audit.retention",))
        planned: dict[tuple[object, ...], list[dict[str, Any]]] = {}
        closed: Counter[tuple[object, ...]] = Counter()
        for body in run_query(self.store, query):  # stream by stream: paired at the end
            doc = orjson.loads(body)
            details = doc.get("details") or {}
            key = _plan_key(details)
            phase = details.get("phase")
            if key is None or phase is None:
                continue
            if phase == PurgePhase.PLANNED:
                planned.setdefault(key, []).append(doc)
            else:
                closed[key] += 1
        lone = []
        for key, docs in planned.items():
            lone += sorted(docs, key=lambda d: str(d["time"]))[closed[key] :]
        return sorted(lone, key=lambda d: str(d["time"]))

    def reconcile(self) -> list[AuditEvent]:
        """Settle every lone ``planned`` record (the process died between the two
        records, or the trail refused the second) by what the store holds: a purge went
        if the stream's signed retained base reaches its ``last_seq``; a shredding went if
        no key it covered (an ``anon:``/``flow:`` key made before its
        ``keys_made_before``) is left. Each is recorded through ``on_reconciled`` as
        ``phase`` ``reconciled`` naming the planned record (``planned_id``); a refused
        record ends the run, like any other. Without ``on_reconciled``, nothing is looked
        for. Under a legal hold it runs too (the hold stops purges, not records): what did
        not go is settled ``not_done`` with reason ``legal_hold`` and stays, since
        :meth:`run` then purges nothing."""
        self._reconciled = True
        if self.on_reconciled is None:
            return []
        settled = []
        for doc in self.lone_planned():
            details = doc["details"]
            if "stream_purged" in details:
                base = stored_bases(self.store).get(str(details["stream_purged"]))
                done = base is not None and base.size >= int(details["last_seq"])
            else:
                with self.store.engine.connect() as conn:
                    left = conn.execute(_count_keys(str(details["keys_made_before"])))
                    done = int(left.scalar_one()) == 0
            event = reconciled_event(doc, done=done, held=self.policy.legal_hold)
            log.warning(
                "retention: a planned %s was left alone; the store shows it %s",
                "purge" if "stream_purged" in details else "shredding",
                "done" if done else "not done",
            )
            self.on_reconciled(event)
            settled.append(event)
        return settled

    def _purge(self, plan: PurgePlan, keyring: KeyRing) -> list[str]:
        engine = self.store.engine
        dialect = engine.dialect.name
        ins: Any = (postgresql if dialect == "postgresql" else sqlite).insert
        now = rfc3339_micro(int(self._clock() * 1e9))
        grant = ins(purge_grants).values(stream=plan.stream, upto_seq=plan.last_seq)
        grant = grant.on_conflict_do_update(
            index_elements=[purge_grants.c.stream], set_={"upto_seq": grant.excluded.upto_seq}
        )
        b, kid = plan.base, keyring.active_kid
        statement = base_statement(plan.stream, b.size, b.root, b.frontier, b.last_leaf, now, kid)
        base_values = {
            "stream": plan.stream,
            "size": b.size,
            "root": b.root,
            "frontier": b.frontier,
            "last_leaf": b.last_leaf,
            "purged": now,
            "kid": kid,
            "signature": keyring.sign(statement),
        }
        base = ins(retained_bases).values(**base_values)
        base = base.on_conflict_do_update(
            index_elements=[retained_bases.c.stream],
            set_={k: getattr(base.excluded, k) for k in base_values if k != "stream"},
        )
        dropped: list[str] = []
        with engine.begin() as conn:
            conn.execute(grant)
            conn.execute(base)
            if dialect == "postgresql":
                dropped = _drop_covered_partitions(conn)
            conn.execute(
                delete(blocks).where(
                    blocks.c.stream == plan.stream, blocks.c.last_seq <= plan.last_seq
                )
            )
        return dropped

    def _archive(self, plan: PurgePlan) -> Path:
        directory = self.archive_dir
        if directory is None:
            raise RetentionError("no archive directory")
        directory.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in plan.stream)
        path = directory / f"{safe}-{plan.first_seq:012d}-{plan.last_seq:012d}.jsonl.gz"
        header: dict[str, Any] = {
            "kind": "kroonika.archive/1",
            "stream": plan.stream,
            "first_seq": plan.first_seq,
            "last_seq": plan.last_seq,
            "checkpoint": orjson.loads(plan.checkpoint.to_json()),
            "base": None,
        }
        if plan.old_base is not None and plan.base_checkpoint is not None:
            header["base"] = {
                "size": plan.old_base.size,
                "root": plan.old_base.root.hex(),
                "frontier": plan.old_base.frontier.hex(),
                "last_leaf": plan.old_base.last_leaf.hex(),
                "checkpoint": orjson.loads(plan.base_checkpoint.to_json()),
            }
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            gz.write(orjson.dumps(header, option=orjson.OPT_SORT_KEYS) + b"\n")
            for block in self.store.blocks(plan.stream, after_seq=plan.first_seq - 1):
                if block.first_seq > plan.last_seq:
                    break
                for i, body in enumerate(block.records()):
                    if plan.first_seq <= block.first_seq + i <= plan.last_seq:
                        gz.write(body + b"\n")
            gz.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
        return path


def _keyless() -> Any:
    """The data keys of subjects that are no person (``anon:``, ``flow:``)."""
    c = subject_keys.c
    return or_(
        *(and_(c.subject >= p, c.subject < p[:-1] + chr(ord(p[-1]) + 1)) for p in KEYLESS_PREFIXES)
    )


def _count_keys(before: str) -> Any:
    c = subject_keys.c
    return select(func.count()).select_from(subject_keys).where(_keyless(), c.created < before)


def _next_second(created: str) -> str:
    """The second after ``created`` (keys are stamped ``%Y-%m-%dT%H:%M:%SZ``); the far
    future for a stamp of another form (the batch then runs up to the cutoff)."""
    try:
        t = calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ")) + 1
    except ValueError:
        return "9999-12-31T23:59:59Z"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _plan_key(details: Mapping[str, Any]) -> tuple[object, ...] | None:
    """What pairs a ``planned`` record with the record that settles it: the range of a
    purge, the bound of a shredding's batch."""
    if "stream_purged" in details:
        return ("purge", details["stream_purged"], details.get("first_seq"), details["last_seq"])
    if "keys_made_before" in details:
        return ("keys", details["keys_made_before"])
    return None


def _drop_covered_partitions(conn: Any) -> list[str]:
    """Drop monthly partitions of ``audit_blocks`` whose every row is covered by a
    purge grant (PostgreSQL only; a no-op if the table is not partitioned)."""
    parts = (
        conn.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'audit_blocks' "
                "ORDER BY c.relname"
            )
        )
        .scalars()
        .all()
    )
    dropped = []
    for name in parts:
        if not name.startswith("audit_blocks_p") or name == "audit_blocks_pdefault":
            continue
        quoted = f'"{name}"'
        has_rows = conn.execute(text(f"SELECT EXISTS (SELECT 1 FROM {quoted})")).scalar()  # noqa: S608
        uncovered = conn.execute(
            text(
                f"SELECT EXISTS (SELECT 1 FROM {quoted} b WHERE NOT EXISTS ("  # noqa: S608
                "SELECT 1 FROM audit_purge_grants g WHERE g.stream = b.stream "
                "AND b.last_seq <= g.upto_seq))"
            )
        ).scalar()
        if has_rows and not uncovered:
            conn.execute(text(f"ALTER TABLE audit_blocks DETACH PARTITION {quoted}"))
            conn.execute(text(f"DROP TABLE {quoted}"))
            dropped.append(name)
    return dropped


# --- archives -------------------------------------------------------------------------


class ArchiveUnreadable(RetentionError):
    """The file is not a Kroonika archive at all (a usage error, not damage)."""


def verify_archive(path: Path, keys: PublicKeys) -> Report:
    """Verify an archive segment on its own: chain, seqs, the Merkle root at its end
    against its signed checkpoint, and its start against the signed base checkpoint.

    Findings are named as the store verifier names them (decision 0004): a record
    whose bytes no longer match the next record's chain hash is ``modified`` at its
    own seq, a gap is ``deleted`` once at its first missing seq (later records are
    checked from where the archive resumes), a short archive is ``truncated`` at the
    first missing seq. A file that is not an archive raises :class:`ArchiveUnreadable`.
    """
    try:
        with gzip.open(path, "rb") as fh:
            lines = fh.read().splitlines()
        header = orjson.loads(lines[0]) if lines else None
    except (OSError, EOFError, ValueError) as exc:
        raise ArchiveUnreadable(f"{path.name} is not a readable archive: {exc}") from None
    if not isinstance(header, dict) or header.get("kind") != "kroonika.archive/1":
        raise ArchiveUnreadable(f"{path.name} is not a kroonika archive")
    report = Report()
    stream = header.get("stream")
    stream = stream if isinstance(stream, str) else "?"
    rep = StreamReport(stream)
    report.streams.append(rep)

    def bad(seq: int, kind: Any, detail: str, **kw: str | None) -> None:
        report.findings.append(Finding(stream, seq, kind, detail, **kw))

    try:
        cp = Checkpoint.from_dict(header["checkpoint"])
    except (KeyError, TypeError, ValueError, AttributeError):
        bad(1, "modified", "the archive's header has no readable checkpoint")
        return report
    tree = CompactRange()
    prev = ZERO_HASH
    expected = 1
    base = header.get("base")
    if base is not None:
        try:
            base_cp = Checkpoint.from_dict(base["checkpoint"])
            size = int(base["size"])
            tree = CompactRange.from_bytes(bytes.fromhex(base["frontier"]))
            prev = bytes.fromhex(base["last_leaf"])
            ok = (
                base_cp.kid in keys
                and keys.verify(base_cp.kid, base_cp.signature, base_cp.signed_bytes())
                and base_cp.size == tree.size == size
                and base_cp.root == tree.root()
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            bad(1, "modified", "the archive's base is unreadable")
            return report
        if not ok:
            bad(size, "bad_signature", "the archive's base is not vouched for")
        expected = size + 1
        rep.base = size
    last_good = True  # whether ``prev`` is the leaf hash of record expected - 1
    for body in lines[1:]:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            bad(expected, "modified", "record is not a JSON object")
            doc = {}
        seq = doc.get("seq")
        if type(seq) is int and seq > expected:
            bad(expected, "deleted", "sequence gap", expected=str(expected), actual=str(seq))
            expected, last_good = seq, False  # resume at what the archive holds
        elif seq != expected:
            bad(expected, "modified", "record holds the wrong seq", actual=str(seq)[:40])
        integrity = doc.get("integrity")
        chained = isinstance(integrity, dict) and integrity.get("prev") == prev.hex()
        if not chained and last_good and expected > 1:
            bad(
                expected - 1,
                "modified",
                f"record {expected - 1} does not match the chain hash record {expected} holds",
                expected=prev.hex(),
                actual=str(integrity)[:100],
            )
        prev = leaf_hash(body)
        last_good = True
        tree.append(prev)
        expected += 1
        rep.records += 1
    report.records = rep.records
    if cp.kid not in keys:
        bad(cp.size, "unknown_key", f"checkpoint signed by unknown key {cp.kid!a}")
    elif not keys.verify(cp.kid, cp.signature, cp.signed_bytes()):
        bad(cp.size, "bad_signature", "checkpoint signature does not verify")
    if tree.size < cp.size:
        bad(
            tree.size + 1,
            "truncated",
            "the archive ends before its checkpoint",
            expected=str(cp.size),
            actual=str(tree.size),
        )
    elif tree.size > cp.size:
        bad(cp.size + 1, "inserted", "records after the archive's checkpoint")
    elif tree.root() != cp.root:
        bad(
            cp.size,
            "modified",
            "archive does not match its checkpoint",
            expected=cp.root.hex(),
            actual=tree.root().hex(),
        )
    rep.signed_size = cp.size
    rep.checkpoints = 1
    rep.root = tree.root().hex()
    return report


def reconciled_event(planned: Mapping[str, Any], *, done: bool, held: bool = False) -> AuditEvent:
    """The ``audit.retention`` that settles the lone ``planned`` record ``planned`` (as
    stored, parsed): its range or batch, ``settled`` and ``planned_id``; one not done is
    reason ``legal_hold`` when a hold (``held``) keeps it from being done now."""
    details = planned["details"]
    what = "purge" if "stream_purged" in details else "shred"
    reason = None if done else "legal_hold" if held else f"{what}_not_done"
    event = events.audit_retention(
        actor=Actor(ActorType.SYSTEM),
        outcome=Outcome.SUCCESS if done else Outcome.FAILURE,
        reason=reason,
        phase=PurgePhase.RECONCILED.value,
    )
    kept = (
        "stream_purged",
        "first_seq",
        "last_seq",
        "count",
        "archive",
        "keys_shredded",
        "keys_made_before",
    )
    event.details.update({k: details[k] for k in kept if k in details})
    event.details["settled"] = "done" if done else "not_done"
    event.details["planned_id"] = str(planned["id"])
    return event


def _retention_event(phase: PurgePhase, what: str, details: dict[str, str | int]) -> AuditEvent:
    """A ``planned`` record has not happened yet (outcome unknown), a ``failed`` one was
    rolled back (outcome failure, reason ``purge_failed`` or ``shred_failed``)."""
    outcome = {
        PurgePhase.PLANNED: Outcome.UNKNOWN,
        PurgePhase.DONE: Outcome.SUCCESS,
        PurgePhase.FAILED: Outcome.FAILURE,
    }[phase]
    event = events.audit_retention(
        actor=Actor(ActorType.SYSTEM),
        outcome=outcome,
        reason=f"{what}_failed" if phase is PurgePhase.FAILED else None,
        phase=phase.value,
    )
    event.details.update(details)
    return event


def shredded_event(shredded: int, made_before: str, phase: PurgePhase) -> AuditEvent:
    """The ``audit.retention`` of one shredding of keys, in ``phase``."""
    details: dict[str, str | int] = {"keys_shredded": shredded, "keys_made_before": made_before}
    return _retention_event(phase, "shred", details)


def retention_event(result: PurgeResult) -> AuditEvent:
    """The ``audit.retention`` of one purge, in ``result.phase``."""
    details: dict[str, str | int] = {
        "stream_purged": result.stream,
        "first_seq": result.first_seq,
        "last_seq": result.last_seq,
        "count": result.count,
    }
    if result.archive is not None:
        details["archive"] = result.archive.name
    return _retention_event(result.phase, "purge", details)


__all__ = [
    "DEFAULT_CATEGORY_DAYS",
    "DEFAULT_TYPE_DAYS",
    "FLOOR_CATEGORIES",
    "FLOOR_DAYS",
    "RECONCILE_DAYS",
    "LegalHoldActive",
    "PurgePhase",
    "PurgePlan",
    "PurgeResult",
    "RetentionError",
    "RetentionJob",
    "RetentionPolicy",
    "reconciled_event",
    "retention_event",
    "shredded_event",
    "verify_archive",
]
