"""Retention: purge whole checkpointed ranges, keep the frontier, verify afterwards."""

from __future__ import annotations

import gzip
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).parent / "sinks"))

from sink_kit import Kit, make_kit, refuse_on_insert, write_events

from kroonika.audit import (
    Actor,
    ActorType,
    AuditUnavailable,
    Correlation,
    Query,
    Source,
    run_query,
    verify_store,
)
from kroonika.audit import events as ev
from kroonika.audit.retention import (
    FLOOR_CATEGORIES,
    LegalHoldActive,
    PurgePhase,
    PurgeResult,
    RetentionError,
    RetentionJob,
    RetentionPolicy,
    retention_event,
    shredded_event,
    verify_archive,
)
from kroonika.audit.store._schema import subject_keys
from kroonika.audit.verify import stored_bases

DAY = 86400.0


def later(days: float) -> float:
    return time.time() + days * DAY


@pytest.fixture
def kit(tmp_path: Path, store_url: str) -> Kit:
    k = make_kit(store_url, tmp_path / "keys", checkpoint_every=5)
    yield k  # type: ignore[misc]
    k.store.close()


def test_purge_removes_a_checkpointed_prefix_and_verify_still_passes(kit: Kit) -> None:
    """After a purge the store verifies, starting at the retained checkpoint."""
    write_events(kit, 12)  # checkpoints at 5 and 10; 11..12 after the last one
    purged: list[PurgeResult] = []
    job = RetentionJob(
        kit.store,
        RetentionPolicy(),
        clock=lambda: later(401),
        on_purged=purged.append,
        keyring=kit.keyring,
    )
    (result,) = job.run()
    assert (result.stream, result.first_seq, result.last_seq, result.count) == ("web-1", 1, 10, 10)
    assert [b.first_seq for b in kit.store.blocks("web-1")] == [11, 12]
    report = verify_store(kit.store, kit.keyring.public_keys())
    assert report.intact, report.findings
    assert report.streams[0].base == 10
    assert report.streams[0].records == 2
    assert [(p.phase, p.last_seq) for p in purged] == [(PurgePhase.PLANNED, 10), (result.phase, 10)]
    assert purged[-1] == result
    assert result.phase is PurgePhase.DONE
    assert [cp.size for cp in kit.store.checkpoints("web-1")] == [5, 10]


def test_nothing_younger_than_the_policy_is_purged(kit: Kit) -> None:
    """Events within their retention stay; the plan is empty."""
    write_events(kit, 10)
    assert (
        RetentionJob(
            kit.store, RetentionPolicy(), clock=lambda: later(399), keyring=kit.keyring
        ).run()
        == []
    )
    assert sum(b.count for b in kit.store.blocks()) == 10


def test_legal_hold_stops_every_purge(kit: Kit) -> None:
    """With a legal hold nothing is deleted."""
    write_events(kit, 10)
    job = RetentionJob(
        kit.store, RetentionPolicy(legal_hold=True), clock=lambda: later(1000), keyring=kit.keyring
    )
    with pytest.raises(LegalHoldActive):
        job.run()
    assert sum(b.count for b in kit.store.blocks()) == 10


def test_short_lived_types_go_first_but_a_block_waits_for_its_longest_lived_event(
    kit: Kit,
) -> None:
    """Flow transitions (90 days) are purged at 91 days unless a login shares the range."""
    actor = Actor(ActorType.ANONYMOUS)
    for i in range(5):
        kit.trail.emit_sync(
            ev.auth_flow_transition(actor=actor, from_state="start", to_state=f"s{i}")
        )
    write_events(kit, 5)
    job = RetentionJob(kit.store, RetentionPolicy(), clock=lambda: later(91), keyring=kit.keyring)
    (result,) = job.run()
    assert (result.first_seq, result.last_seq) == (1, 5)
    assert verify_store(kit.store, kit.keyring.public_keys()).intact


def test_a_second_purge_continues_from_the_retained_base(kit: Kit) -> None:
    """Purging twice keeps the chain verifiable from the newest base."""
    write_events(kit, 5)
    RetentionJob(kit.store, RetentionPolicy(), clock=lambda: later(401), keyring=kit.keyring).run()
    write_events(kit, 5, start=5)
    (second,) = RetentionJob(
        kit.store, RetentionPolicy(), clock=lambda: later(401), keyring=kit.keyring
    ).run()
    assert (second.first_seq, second.last_seq) == (6, 10)
    report = verify_store(kit.store, kit.keyring.public_keys())
    assert report.intact, report.findings
    assert report.streams[0].base == 10


def test_deleting_a_prefix_without_a_vouched_base_is_found(kit: Kit) -> None:
    """A forged base whose root no signed checkpoint has is reported as deleted."""
    from kroonika.audit.verify import RetainedBase

    write_events(kit, 10)
    RetentionJob(kit.store, RetentionPolicy(), clock=lambda: later(401), keyring=kit.keyring).run()
    real = verify_store(kit.store, kit.keyring.public_keys())
    assert real.intact
    forged = {"web-1": RetainedBase("web-1", 10, b"\x01" * 32, b"", b"\x00" * 32)}
    report = verify_store(kit.store, kit.keyring.public_keys(), bases=forged)
    assert not report.intact
    assert report.findings[0].kind == "deleted"


def _forge_purge(kit: Kit, upto: int, kid: str | None, signature: bytes | None) -> None:
    """What someone with write access but no key can do with the triggers in place:
    grant themselves a purge, leave a base that a stored checkpoint vouches for,
    and delete recent records."""
    from sqlalchemy import text

    from kroonika.audit.integrity import leaf_hash

    block = next(b for b in kit.store.blocks("web-1") if b.last_seq == upto)
    cp = next(c for c in kit.store.checkpoints("web-1") if c.size == upto)
    with kit.store.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO audit_purge_grants (stream, upto_seq) VALUES ('web-1', :u)"),
            {"u": upto},
        )
        conn.execute(
            text(
                "INSERT INTO audit_retained_bases (stream, size, root, frontier, last_leaf, "
                "purged, kid, signature) VALUES ('web-1', :s, :r, :f, :l, '2026-01-01', :k, :g)"
            ),
            {
                "s": upto,
                "r": cp.root,
                "f": block.frontier,
                "l": leaf_hash(block.records()[-1]),
                "k": kid,
                "g": signature,
            },
        )
        conn.execute(
            text("DELETE FROM audit_blocks WHERE stream = 'web-1' AND last_seq <= :u"), {"u": upto}
        )


@pytest.mark.parametrize("signed", ["unsigned", "signed by another key", "bad signature"])
def test_a_forged_purge_of_recent_records_is_found(kit: Kit, tmp_path: Path, signed: str) -> None:
    """Records seconds old, removed through a grant and a base the attacker wrote
    (the triggers still in place): the base carries no valid signature, so the
    records count as deleted."""
    from kroonika.audit import KeyRing

    write_events(kit, 12)
    if signed == "unsigned":
        kid, signature = None, None
    elif signed == "signed by another key":
        other = KeyRing.open(tmp_path / "other", create=True)
        kid, signature = other.active_kid, other.sign(b"anything")
    else:
        kid, signature = kit.keyring.active_kid, b"\x00" * 64
    _forge_purge(kit, 10, kid, signature)
    report = verify_store(kit.store, kit.keyring.public_keys())
    assert not report.intact
    assert (report.findings[0].kind, report.findings[0].seq) == ("deleted", 1)


def test_archive_of_the_purged_range_verifies_on_its_own(kit: Kit, tmp_path: Path) -> None:
    """The gzip JSONL archive verifies against its checkpoint; a changed byte fails."""
    write_events(kit, 5)
    RetentionJob(
        kit.store,
        RetentionPolicy(),
        archive_dir=tmp_path / "a",
        clock=lambda: later(401),
        keyring=kit.keyring,
    ).run()
    write_events(kit, 5, start=5)
    (second,) = RetentionJob(
        kit.store,
        RetentionPolicy(),
        archive_dir=tmp_path / "a",
        clock=lambda: later(401),
        keyring=kit.keyring,
    ).run()
    keys = kit.keyring.public_keys()
    assert second.archive is not None
    report = verify_archive(second.archive, keys)
    assert report.intact, report.findings
    assert (report.records, report.streams[0].base) == (5, 5)
    with gzip.open(second.archive) as fh:
        lines = fh.read().splitlines()
    lines[2] = lines[2].replace(b"req-6", b"req-X")
    tampered = tmp_path / "tampered.jsonl.gz"
    tampered.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    assert not verify_archive(tampered, keys).intact


def test_deletes_without_a_grant_are_still_refused(kit: Kit) -> None:
    """The purge's grant covers only its range: a later delete is refused."""
    from sqlalchemy import delete
    from sqlalchemy.exc import SQLAlchemyError

    from kroonika.audit.store._schema import blocks

    write_events(kit, 12)
    RetentionJob(kit.store, RetentionPolicy(), clock=lambda: later(401), keyring=kit.keyring).run()
    with pytest.raises(SQLAlchemyError), kit.store.engine.begin() as conn:
        conn.execute(delete(blocks).where(blocks.c.last_seq == 12))


def test_cli_archive_verify_exits_0_for_an_intact_archive(
    kit: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``kroonika audit archive verify`` exits 0 intact, 1 damaged, 2 missing file."""
    from typer.testing import CliRunner

    from kroonika.cli import app

    write_events(kit, 5)
    (result,) = RetentionJob(
        kit.store,
        RetentionPolicy(),
        archive_dir=tmp_path / "a",
        clock=lambda: later(401),
        keyring=kit.keyring,
    ).run()
    assert result.archive is not None
    keys_file = tmp_path / "keys.json"
    keys_file.write_bytes(kit.keyring.public_keys().to_json())
    monkeypatch.setenv("KROONIKA_VAR_DIR", str(tmp_path / "var"))
    runner = CliRunner()
    ok = runner.invoke(
        app, ["audit", "archive", "verify", str(result.archive), "--keys", str(keys_file)]
    )
    assert ok.exit_code == 0, ok.output
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(
        gzip.compress(gzip.decompress(result.archive.read_bytes()).replace(b"req-1", b"req-9"))
    )
    damaged = runner.invoke(app, ["audit", "archive", "verify", str(bad), "--keys", str(keys_file)])
    assert damaged.exit_code == 1
    missing = runner.invoke(app, ["audit", "archive", "verify", str(tmp_path / "nope.gz")])
    assert missing.exit_code == 2


def _key_subjects(kit: Kit) -> list[str]:
    with kit.store.engine.connect() as conn:
        return sorted(conn.execute(select(subject_keys.c.subject)).scalars())


def _three_kinds_of_key(kit: Kit) -> str:
    """A step of a login flow that names nobody, an anonymous event with no flow and a
    person's login: one key each (flow:, anon:, the person's pseudonym), stored now."""
    kit.trail.emit_sync(
        ev.auth_flow_transition(
            actor=Actor(ActorType.ANONYMOUS),
            source=Source(ip="198.51.100.77"),
            correlation=Correlation(flow_id="7f0c2a9e-1b4d-4e8a-9c3f-5d6e7f809a1b"),
            from_state="none",
            to_state="started",
        )
    )
    kit.trail.emit_sync(ev.auth_login(actor=Actor(ActorType.ANONYMOUS), source=Source(ip="::1")))
    write_events(kit, 1)
    subjects = _key_subjects(kit)
    assert [s.split(":")[0] for s in subjects] == ["anon", "flow", "p1"]
    return subjects[2]


def test_keys_of_anonymous_months_and_login_flows_are_shredded_after_the_longest_retention(
    kit: Kit,
) -> None:
    """Keys of subjects that are no person go once no retained event can need them (the
    longest retention and a day); a person's key stays (only an erasure deletes it); each
    shredding is reported with its count and cutoff."""
    person = _three_kinds_of_key(kit)
    shredded: list[tuple[int, str]] = []
    policy = RetentionPolicy()

    def job(days: float) -> RetentionJob:
        return RetentionJob(
            kit.store,
            policy,
            clock=lambda: later(days),
            keyring=kit.keyring,
            on_shredded=lambda n, before, phase: shredded.append((n, before, phase)),
        )

    assert job(policy.longest_days).shred_keys() == 0
    assert len(_key_subjects(kit)) == 3
    assert job(policy.longest_days + 2).shred_keys(dry_run=True) == 2
    assert len(_key_subjects(kit)) == 3
    late = job(policy.longest_days + 2)
    assert late.shred_keys() == 2
    assert _key_subjects(kit) == [person]
    cutoff = late.keys_cutoff()
    assert shredded == [(2, cutoff, PurgePhase.PLANNED), (2, cutoff, PurgePhase.DONE)]
    assert verify_store(kit.store, kit.keyring.public_keys()).intact


def test_legal_hold_stops_the_shredding_of_keys(kit: Kit) -> None:
    """Under a legal hold no key is shredded, however old."""
    _three_kinds_of_key(kit)
    job = RetentionJob(
        kit.store, RetentionPolicy(legal_hold=True), clock=lambda: later(5000), keyring=kit.keyring
    )
    with pytest.raises(LegalHoldActive):
        job.shred_keys()
    assert len(_key_subjects(kit)) == 3


@pytest.mark.parametrize("category", ["security", "admin", "audit", "authentication", "token"])
def test_a_short_default_does_not_shorten_the_security_relevant_categories(category: str) -> None:
    """PCI DSS 10.5.1 asks for 12 months: a default below 400 days shortens the other
    categories only; a longer default lengthens these too; naming the category sets it."""
    assert RetentionPolicy(default_days=90).days_for(category, f"{category}.x") == 400
    assert RetentionPolicy(default_days=90).days_for("system", "system.x") == 90
    assert RetentionPolicy(default_days=730).days_for(category, f"{category}.x") == 730
    named = RetentionPolicy(default_days=90, categories={category: 30})
    assert named.days_for(category, f"{category}.x") == 30
    assert RetentionPolicy(default_days=90).longest_days == 400
    all_named = RetentionPolicy(default_days=90, categories=dict.fromkeys(FLOOR_CATEGORIES, 30))
    assert all_named.longest_days == 90


# --- no purge and no shredding without its record ------------------------------------


def _recording_job(kit: Kit, days: float = 401) -> RetentionJob:
    """A job that records through the kit's real trail, as the service and the CLI do."""
    return RetentionJob(
        kit.store,
        RetentionPolicy(),
        clock=lambda: later(days),
        keyring=kit.keyring,
        on_purged=lambda r: kit.trail.emit_sync(retention_event(r)),
        on_shredded=lambda n, before, phase: kit.trail.emit_sync(shredded_event(n, before, phase)),
    )


def _records(kit: Kit) -> list[tuple[Any, ...]]:
    """(phase, outcome, reason, first_seq, last_seq, keys_shredded) of each audit.retention."""
    found = []
    for body in run_query(kit.store, Query(types=("audit.retention",))):
        doc = orjson.loads(body)
        d = doc["details"]
        found.append(
            (
                d.get("phase"),
                doc["outcome"],
                doc.get("reason"),
                d.get("first_seq"),
                d.get("last_seq"),
                d.get("keys_shredded"),
            )
        )
    return found


def test_a_purge_is_recorded_as_planned_before_it_and_done_after_it(kit: Kit) -> None:
    """The record of what will go is in the trail before anything goes (outcome unknown:
    it has not happened yet); the second record says it happened."""
    write_events(kit, 12)
    (result,) = _recording_job(kit).run()
    assert (result.first_seq, result.last_seq) == (1, 10)
    assert _records(kit) == [
        ("planned", "unknown", None, 1, 10, None),
        ("done", "success", None, 1, 10, None),
    ]
    assert verify_store(kit.store, kit.keyring.public_keys()).intact


def test_a_purge_whose_record_the_trail_refuses_purges_nothing(kit: Kit) -> None:
    """The store refuses the writer's next block (the planned record): the purge does
    not happen and the refusal reaches the caller."""
    write_events(kit, 12)
    refuse_on_insert(kit.store.engine, "audit_blocks", after_seq=12)
    with pytest.raises(AuditUnavailable):
        _recording_job(kit).run()
    assert sum(b.count for b in kit.store.blocks("web-1")) == 12
    assert stored_bases(kit.store) == {}
    assert _records(kit) == []
    report = verify_store(kit.store, kit.keyring.public_keys())
    assert report.intact, report.findings
    assert report.streams[0].records == 12


def test_a_purge_that_fails_is_recorded_as_failed(kit: Kit) -> None:
    """The purge's transaction is refused by the database after its planned record:
    a failure record (reason purge_failed) follows, nothing is deleted, the caller gets
    a short RetentionError."""
    write_events(kit, 12)
    refuse_on_insert(kit.store.engine, "audit_retained_bases")
    with pytest.raises(RetentionError, match=r"purge of web-1 1\.\.10 failed"):
        _recording_job(kit).run()
    assert [b.first_seq for b in kit.store.blocks("web-1")] == list(range(1, 15))  # and the records
    assert _records(kit) == [
        ("planned", "unknown", None, 1, 10, None),
        ("failed", "failure", "purge_failed", 1, 10, None),
    ]


def test_a_purge_whose_done_record_is_refused_is_told_by_its_planned_record_and_base(
    kit: Kit,
) -> None:
    """The trail refuses the record after the purge committed: the caller is told, the
    planned record names the range and the signed retained base shows it went."""
    write_events(kit, 12)
    refuse_on_insert(kit.store.engine, "audit_blocks", after_seq=13)  # 13: the planned record
    with pytest.raises(AuditUnavailable):
        _recording_job(kit).run()
    assert _records(kit) == [("planned", "unknown", None, 1, 10, None)]
    assert stored_bases(kit.store)["web-1"].size == 10
    report = verify_store(kit.store, kit.keyring.public_keys())
    assert report.intact, report.findings
    assert report.streams[0].base == 10


def test_keys_are_shredded_only_once_their_shredding_is_recorded(kit: Kit) -> None:
    """Shredding is recorded as planned, then done; when the trail refuses the planned
    record no key goes."""
    _three_kinds_of_key(kit)  # seqs 1..3
    days = RetentionPolicy().longest_days + 2
    refuse_on_insert(kit.store.engine, "audit_blocks", after_seq=3)
    with pytest.raises(AuditUnavailable):
        _recording_job(kit, days).shred_keys()
    assert len(_key_subjects(kit)) == 3
    assert _records(kit) == []


def test_a_shredding_is_recorded_as_planned_and_done(kit: Kit) -> None:
    """Both records carry the count and the cutoff."""
    person = _three_kinds_of_key(kit)
    job = _recording_job(kit, RetentionPolicy().longest_days + 2)
    assert job.shred_keys() == 2
    assert _key_subjects(kit) == [person]
    assert _records(kit) == [
        ("planned", "unknown", None, None, None, 2),
        ("done", "success", None, None, None, 2),
    ]
