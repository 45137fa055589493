"""``kroonika audit retention run`` applies the configured policy, as the scheduled job does:
``KROONIKA_AUDIT_LEGAL_HOLD``, ``KROONIKA_AUDIT_RETENTION_DEFAULT_DAYS``/``_DAYS`` and
``KROONIKA_AUDIT_ARCHIVE_DIR`` (the operator guide's *Retention, legal hold and archives*)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).parent / "sinks"))

from cli_kit import Cli
from sink_kit import make_kit, refuse_on_insert, write_events

from kroonika.audit import Query, SqlAuditStore, run_query

DAY = 86400.0


@pytest.fixture
def old_trail(tmp_path: Path) -> Cli:
    """A var dir whose stream `web-1` holds ten events of 500 days ago, checkpointed at 10."""
    var = tmp_path / "var"
    kit = make_kit(f"sqlite:///{var / 'audit.db'}", var / "keys" / "audit", checkpoint_every=5)
    then = time.time_ns() - int(500 * DAY * 1e9)
    kit.trail._clock = lambda: then
    kit.trail._sealer._clock = lambda: then
    try:
        write_events(kit, 10)
    finally:
        kit.store.close()
    return Cli(var)


def test_the_default_policy_purges_what_is_older_than_400_days(old_trail: Cli) -> None:
    """The fixture's events are due under the defaults (the tests below are not vacuous)."""
    done = old_trail("audit", "retention", "run", "--dry-run")
    assert "would purge web-1 1..10" in done.stdout


def test_a_configured_legal_hold_refuses_the_purge(old_trail: Cli) -> None:
    """KROONIKA_AUDIT_LEGAL_HOLD=true stops the command as --legal-hold does: exit 2."""
    err = old_trail.usage_error(
        "audit", "retention", "run", env={"KROONIKA_AUDIT_LEGAL_HOLD": "true"}
    )
    assert "legal hold" in err
    assert "would purge web-1" in old_trail("audit", "retention", "run", "--dry-run").stdout


def test_configured_retention_days_are_applied(old_trail: Cli) -> None:
    """A longer configured retention keeps what the built-in default would purge."""
    for env in (
        {"KROONIKA_AUDIT_RETENTION_DEFAULT_DAYS": "1000", "KROONIKA_AUDIT_RETENTION_DAYS": "{}"},
        {"KROONIKA_AUDIT_RETENTION_DAYS": '{"authentication": 1000}'},
    ):
        done = old_trail("audit", "retention", "run", "--dry-run", env=env)
        assert done.stdout.strip() == "nothing to purge", (env, done.stdout)


def test_the_configured_archive_dir_is_used(old_trail: Cli, tmp_path: Path) -> None:
    """Without --archive-dir the range is archived to KROONIKA_AUDIT_ARCHIVE_DIR first."""
    archive = tmp_path / "archive"
    done = old_trail("audit", "retention", "run", env={"KROONIKA_AUDIT_ARCHIVE_DIR": str(archive)})
    assert "purged web-1 1..10" in done.stdout
    assert [p.name for p in archive.iterdir()] == ["web-1-000000000001-000000000010.jsonl.gz"], (
        done.stdout
    )


def _retention_phases(var: Path) -> list[tuple[str, str]]:
    store = SqlAuditStore(str(var / "audit.db"), read_only=True)
    try:
        docs = [orjson.loads(b) for b in run_query(store, Query(types=("audit.retention",)))]
    finally:
        store.close()
    return [(d["details"]["phase"], d["outcome"]) for d in docs]


def test_the_purge_is_recorded_before_and_after(old_trail: Cli) -> None:
    """As the job: a planned record, the purge, a done record."""
    assert "purged web-1 1..10" in old_trail("audit", "retention", "run").stdout
    assert _retention_phases(old_trail.var) == [("planned", "unknown"), ("done", "success")]


def test_when_the_trail_refuses_the_record_nothing_is_purged(old_trail: Cli) -> None:
    """The store takes the command's audit.log.start but refuses its next block (the
    planned record): exit 2 with one line, and the range is still there."""
    store = SqlAuditStore(str(old_trail.var / "audit.db"))
    try:
        refuse_on_insert(store.engine, "audit_blocks", stream_like="cli-%", after_seq=1)
    finally:
        store.close()
    err = old_trail.usage_error("audit", "retention", "run")
    assert "the audit trail refused a record" in err
    assert "would purge web-1 1..10" in old_trail("audit", "retention", "run", "--dry-run").stdout
    assert _retention_phases(old_trail.var) == []


def test_a_lone_planned_record_is_settled_by_the_next_run(old_trail: Cli) -> None:
    """The store refuses the command's done record after the purge committed: a lone
    planned record. The next run settles it from the signed base (reconciled, done),
    says so in one line and purges nothing twice (decision 0001, review ops)."""
    store = SqlAuditStore(str(old_trail.var / "audit.db"))
    try:
        refuse_on_insert(store.engine, "audit_blocks", stream_like="cli-%", after_seq=2)
    finally:
        store.close()
    assert "the audit trail refused a record" in old_trail.usage_error("audit", "retention", "run")
    assert _retention_phases(old_trail.var) == [("planned", "unknown")]
    store = SqlAuditStore(str(old_trail.var / "audit.db"))
    try:
        with store.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER refuse_audit_blocks"))
    finally:
        store.close()
    done = old_trail("audit", "retention", "run")
    assert "settled 1 planned record(s)" in done.stdout
    assert "nothing to purge" in done.stdout
    assert _retention_phases(old_trail.var) == [
        ("planned", "unknown"),
        ("reconciled", "success"),
    ]
    again = old_trail("audit", "retention", "run")
    assert "settled" not in again.stdout
