"""The scheduled audit_retention job: purges by policy, records audit.retention,
archives, and does nothing under a legal hold."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "audit" / "sinks"))

from job_kit import job_context, job_deps
from sink_kit import Kit, make_kit, write_events

from kroonika.audit import Query, run_query, verify_store
from kroonika.audit.retention import (
    PurgePhase,
    PurgeResult,
    RetentionPolicy,
    retention_event,
    verify_archive,
)
from kroonika.jobs import JobContext, JobDeps
from kroonika.jobs.retention import audit_retention_job

LATER = int(time.time() + 401 * 86400)


@pytest.fixture
def kit(tmp_path: Path) -> Kit:
    k = make_kit(f"sqlite:///{tmp_path / 'audit.db'}", tmp_path / "keys", checkpoint_every=5)
    yield k  # type: ignore[misc]
    k.store.close()


def context() -> JobContext:
    return job_context(lambda: LATER, 500, Counter())


def deps(kit: Kit) -> JobDeps:
    return job_deps(kit.store.engine, kit.trail, flow_retention_s=0, token_retention_s=0)


def retention_events(kit: Kit) -> list[dict[str, Any]]:
    return [orjson.loads(b) for b in run_query(kit.store, Query(types=("audit.retention",)))]


@pytest.mark.asyncio
async def test_job_purges_archives_and_records_audit_retention(kit: Kit, tmp_path: Path) -> None:
    """Old checkpointed ranges go, each recorded as audit.retention with its archive."""
    # Checkpoints at 5 and 10; the job's own records (audit.log.start, then planned and
    # done: 12..14) stay short of the next one at 15, so only 1..10 goes although the
    # clock is 401 days ahead.
    write_events(kit, 11)
    await kit.trail.start()
    try:
        job = audit_retention_job(kit.store, RetentionPolicy(), archive_dir=tmp_path / "arch")
        ctx = context()
        await job(deps(kit), ctx)
    finally:
        await kit.trail.stop()
    assert ctx.counts["events_purged"] == 10
    assert ctx.counts["archives_written"] == 1
    planned, event = retention_events(kit)
    assert (planned["details"]["phase"], event["details"]["phase"]) == ("planned", "done")
    assert planned["details"]["archive"] == event["details"]["archive"]
    assert event["details"]["first_seq"] == 1
    assert event["details"]["last_seq"] == 10
    assert event["details"]["archive"].endswith(".jsonl.gz")
    assert verify_store(kit.store, kit.keyring.public_keys()).intact
    (archive,) = (tmp_path / "arch").iterdir()
    assert verify_archive(archive, kit.keyring.public_keys()).intact


@pytest.mark.asyncio
async def test_legal_hold_purges_nothing_and_says_so(kit: Kit) -> None:
    """Under a legal hold the job deletes nothing and counts the hold."""
    write_events(kit, 12)
    await kit.trail.start()
    try:
        job = audit_retention_job(kit.store, RetentionPolicy(legal_hold=True))
        ctx = context()
        await job(deps(kit), ctx)
    finally:
        await kit.trail.stop()
    assert ctx.counts == Counter({"legal_hold": 1})
    assert retention_events(kit) == []
    assert sum(b.count for b in kit.store.blocks("web-1")) >= 12


@pytest.mark.asyncio
async def test_job_shreds_old_keys_of_login_flows_and_records_it(kit: Kit) -> None:
    """A login step that named nobody has a key of its flow; past the longest retention
    and a day the job shreds it, counts it and records audit.retention with the count."""
    from kroonika.audit import Actor, ActorType, Correlation, Source
    from kroonika.audit import events as ev
    from kroonika.audit.store._schema import subject_keys

    step = ev.auth_flow_transition(
        actor=Actor(ActorType.ANONYMOUS),
        source=Source(ip="198.51.100.77"),
        correlation=Correlation(flow_id="7f0c2a9e-1b4d-4e8a-9c3f-5d6e7f809a1b"),
        from_state="none",
        to_state="started",
    )
    kit.trail.emit_sync(step)
    policy = RetentionPolicy()
    later = int(time.time() + (policy.longest_days + 2) * 86400)
    ctx = job_context(lambda: later, 500, Counter())
    await kit.trail.start()
    try:
        await audit_retention_job(kit.store, policy)(deps(kit), ctx)
    finally:
        await kit.trail.stop()
    assert ctx.counts["keys_shredded"] == 1
    shreds = [e["details"] for e in retention_events(kit) if "keys_shredded" in e["details"]]
    assert [(d["phase"], d["keys_shredded"]) for d in shreds] == [("planned", 1), ("done", 1)]
    with kit.store.engine.connect() as conn:
        left = list(conn.execute(subject_keys.select()).all())
    assert [r.subject for r in left if r.subject.startswith("flow:")] == []


@pytest.mark.asyncio
async def test_a_stopped_trail_stops_the_purge_and_the_shredding(kit: Kit) -> None:
    """The trail's writer is not running (the service stopped it, or the stop gave this
    run up): the job fails on its first record and purges and shreds nothing, as the
    CLI does when its trail refuses."""
    from kroonika.audit import AuditUnavailable
    from kroonika.audit.store._schema import subject_keys

    write_events(kit, 12)
    with kit.store.engine.connect() as conn:
        keys_before = len(conn.execute(subject_keys.select()).all())
    policy = RetentionPolicy()
    later = int(time.time() + (policy.longest_days + 2) * 86400)
    ctx = job_context(lambda: later, 500, Counter())
    with pytest.raises(AuditUnavailable):
        await audit_retention_job(kit.store, policy)(deps(kit), ctx)
    assert ctx.counts["events_purged"] == 0
    assert sum(b.count for b in kit.store.blocks("web-1")) == 12
    with kit.store.engine.connect() as conn:
        assert len(conn.execute(subject_keys.select()).all()) == keys_before
    assert retention_events(kit) == []


@pytest.mark.asyncio
async def test_job_settles_a_lone_planned_record_first_and_counts_it(kit: Kit) -> None:
    """A planned record stored by a run that died before its purge (events of 500 days
    ago, the record of now): the job records it reconciled, not done, then purges the
    range with its own pair of records (decision 0001, review ops)."""
    now_ns = time.time_ns()
    then = now_ns - int(500 * 86400 * 1e9)
    kit.trail._clock = kit.trail._sealer._clock = lambda: then
    write_events(kit, 11)
    kit.trail._clock = kit.trail._sealer._clock = time.time_ns
    kit.trail.emit_sync(retention_event(PurgeResult("web-1", 1, 10, 10, phase=PurgePhase.PLANNED)))
    await kit.trail.start()
    try:
        ctx = job_context(lambda: int(time.time()), 500, Counter())
        await audit_retention_job(kit.store, RetentionPolicy())(deps(kit), ctx)
    finally:
        await kit.trail.stop()
    assert ctx.counts["retention_reconciled"] == 1
    assert ctx.counts["events_purged"] == 10
    lone, settled, planned, done = retention_events(kit)
    assert lone["details"]["phase"] == "planned"
    assert settled["details"]["phase"] == "reconciled"
    assert (settled["details"]["settled"], settled["reason"]) == ("not_done", "purge_not_done")
    assert settled["details"]["planned_id"] == lone["id"]
    assert [planned["details"]["phase"], done["details"]["phase"]] == ["planned", "done"]
    assert verify_store(kit.store, kit.keyring.public_keys()).intact
