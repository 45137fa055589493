"""PostgreSQL monthly partitions of audit_blocks: guarded like the parent, dropped by
a purge that covers them, and verify passes afterwards."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from kroonika.audit import (
    Actor,
    ActorType,
    AuditEvent,
    AuditTrail,
    Counters,
    Fingerprinter,
    KeyRing,
    Outcome,
    Pipeline,
    SqlAuditStore,
    SqlSubjectKeys,
    events,
    verify_store,
)
from kroonika.audit.retention import RetentionJob, RetentionPolicy
from kroonika.audit.store import partitions
from kroonika.audit.store.partitions import ensure_partitions, existing_partitions

pytestmark = pytest.mark.postgres

DAY = 86400
NOW = time.time()
OLD = NOW - 500 * DAY  # past the default 400 days


class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> int:
        self.at += 0.001
        return int(self.at * 1e9)


@pytest.fixture
def store(fresh_postgres_url: str) -> Iterator[SqlAuditStore]:
    s = SqlAuditStore(fresh_postgres_url)
    s.upgrade()
    yield s
    s.close()


def trail_on(store: SqlAuditStore, keys_dir: Path, clock: Clock) -> tuple[AuditTrail, KeyRing]:
    keyring = KeyRing.open(keys_dir, create=True)
    counters = Counters()
    subject_keys = SqlSubjectKeys(store, b"m" * 32)
    pipeline = Pipeline.standard(
        fingerprinter=Fingerprinter(b"k" * 32, "p1"),
        subject_keys=subject_keys,
        counters=counters,
        strict=True,
    )
    trail = AuditTrail(
        pipeline,
        store,
        keyring,
        stream="web-1",
        counters=counters,
        subject_keys=subject_keys,
        checkpoint_every=5,
        checkpoint_interval=1e9,
        clock=clock,
    )
    return trail, keyring


def login(n: int) -> AuditEvent:
    return events.auth_login(
        outcome=Outcome.FAILURE,
        reason="id_token.nonce_mismatch",
        actor=Actor(ActorType.USER, subject=f"EE3800108571{n % 10}"),
        method="idcard",
    )


def old_partition() -> str:
    return partitions.partition_name(*partitions.month_of(OLD))


def test_upgrade_makes_a_partitioned_table_with_this_month_and_the_next(
    store: SqlAuditStore,
) -> None:
    """After upgrade audit_blocks is partitioned, with a default and month partitions."""
    with store.engine.connect() as conn:
        assert partitions.is_partitioned(conn)
        names = existing_partitions(conn)
    y, m = partitions.month_of(NOW)
    assert "audit_blocks_pdefault" in names
    for n in range(4):
        assert partitions.partition_name(*partitions.add_months(y, m, n)) in names


def test_every_partition_refuses_update_delete_and_truncate(
    store: SqlAuditStore, tmp_path: Path
) -> None:
    """The append-only triggers hold on each partition, addressed directly."""
    ensure_partitions(store.engine, now=OLD, ahead=0)
    clock = Clock(OLD)
    trail, _ = trail_on(store, tmp_path / "keys", clock)
    trail.emit_sync(login(1))
    clock.at = NOW
    trail.emit_sync(login(2))
    with store.engine.connect() as conn:
        homes = conn.execute(
            text("SELECT tableoid::regclass::text FROM audit_blocks ORDER BY first_seq")
        ).scalars()
        used = list(homes)
    assert used[0] == old_partition()
    for part in used:
        for sql in (
            f'UPDATE "{part}" SET count = 99',  # noqa: S608 (test-only names)
            f'DELETE FROM "{part}"',  # noqa: S608
            f'TRUNCATE "{part}"',
        ):
            with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
                conn.execute(text(sql))
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text("TRUNCATE audit_blocks_pdefault"))


def test_purge_drops_a_covered_partition_and_verify_passes(
    store: SqlAuditStore, tmp_path: Path
) -> None:
    """Ten old events fill one month's partition; the purge drops it whole and the
    store still verifies from the retained checkpoint."""
    ensure_partitions(store.engine, now=OLD, ahead=0)
    clock = Clock(OLD)
    trail, keyring = trail_on(store, tmp_path / "keys", clock)
    for n in range(10):  # checkpoints at 5 and 10
        trail.emit_sync(login(n))
    clock.at = NOW
    for n in range(10, 13):
        trail.emit_sync(login(n))
    assert verify_store(store, keyring.public_keys()).intact

    (result,) = RetentionJob(store, RetentionPolicy(), clock=lambda: NOW, keyring=keyring).run()

    assert (result.first_seq, result.last_seq) == (1, 10)
    assert result.partitions_dropped == [old_partition()]
    with store.engine.connect() as conn:
        assert old_partition() not in existing_partitions(conn)
    assert [b.first_seq for b in store.blocks("web-1")] == [11, 12, 13]
    report = verify_store(store, keyring.public_keys())
    assert report.intact, report.findings
    assert report.streams[0].base == 10
    assert report.streams[0].records == 3


def test_a_partition_with_rows_not_covered_stays(store: SqlAuditStore, tmp_path: Path) -> None:
    """A month partition keeps rows past the checkpoint: only the covered rows go."""
    ensure_partitions(store.engine, now=OLD, ahead=0)
    clock = Clock(OLD)
    trail, keyring = trail_on(store, tmp_path / "keys", clock)
    for n in range(7):  # checkpoint at 5; 6..7 in the same month, not checkpointed
        trail.emit_sync(login(n))
    (result,) = RetentionJob(store, RetentionPolicy(), clock=lambda: NOW, keyring=keyring).run()
    assert (result.last_seq, result.partitions_dropped) == (5, [])
    with store.engine.connect() as conn:
        assert old_partition() in existing_partitions(conn)
    assert [b.first_seq for b in store.blocks("web-1")] == [6, 7]
    assert verify_store(store, keyring.public_keys()).intact


def test_migration_moves_existing_rows_and_downgrades(store: SqlAuditStore, tmp_path: Path) -> None:
    """Down to a0002 (plain table) and up again keeps every block, and verify passes."""
    trail, keyring = trail_on(store, tmp_path / "keys", Clock(NOW - 40 * DAY))
    for n in range(6):
        trail.emit_sync(login(n))
    cfg = Config()
    cfg.set_main_option(
        "script_location",
        str(Path(partitions.__file__).parent / "migrations"),
    )
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "a0002")
    with store.engine.connect() as conn:
        assert not partitions.is_partitioned(conn)
    assert verify_store(store, keyring.public_keys()).intact
    store.upgrade()
    with store.engine.connect() as conn:
        assert partitions.is_partitioned(conn)
        month = partitions.partition_name(*partitions.month_of(NOW - 40 * DAY))
        assert month in existing_partitions(conn)
    trail.emit_sync(login(7))
    assert sum(b.count for b in store.blocks()) == 7
    assert verify_store(store, keyring.public_keys()).intact
