"""Gaps a reviewer found in the verifier: the stored frontier, checkpoints inside a
block, streams left with checkpoints only, positions named from forged columns,
values of the wrong storage class, damaged database files and checkpoint files."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from audit_kit import TrailKit, make_kit
from sqlalchemy import text
from tamper import block_holding, block_ids, disable_guards, execute, rewrite_records, set_column
from test_verify_tamper import STREAM, fill

from kroonika.audit import verify_store
from kroonika.audit.integrity import CompactRange, leaf_hash
from kroonika.audit.store._types import TreeHead, decode_records, encode_records
from kroonika.audit.verify import Report, load_checkpoints

KROONIKA = str(Path(sys.executable).parent / "kroonika")


def verify(kit: TrailKit, *, parallel: bool = False, **kw: object) -> Report:
    """Sequentially, or through the parallel fast path (two workers, any length)."""
    how = {"workers": 2, "parallel_min_blocks": 1} if parallel else {"workers": 1}
    kw = {**how, **kw}
    return verify_store(kit.store, kit.keyring.public_keys(), **kw)  # type: ignore[arg-type]


def found(report: Report) -> list[tuple[str, int]]:
    return [(f.kind, f.seq) for f in report.findings]


def edit_and_rechain(seq: int) -> Callable[[list[bytes]], list[bytes]]:
    """Change record ``seq``'s outcome and recompute the chain after it (no key needed)."""

    def change(records: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        for body in records:
            doc = orjson.loads(body)
            if out:
                doc["integrity"] = {"prev": leaf_hash(out[-1]).hex()}
            if doc["seq"] == seq:
                doc["outcome"] = "failure"
            out.append(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))
        return out

    return change


def frontier_of(kit: TrailKit, block_id: int) -> bytes:
    with kit.store.engine.connect() as conn:
        value = conn.execute(
            text("SELECT frontier FROM audit_blocks WHERE id = :i"), {"i": block_id}
        ).scalar_one()
    return bytes(value)


@pytest.fixture
def filled(kit_factory: Callable[..., TrailKit], store_url: str) -> TrailKit:
    """Blocks 1..10, 11..20, 21..30, no checkpoints; guards off."""
    kit = kit_factory(store_url)
    fill(kit)
    assert verify(kit).intact
    disable_guards(kit.store)
    return kit


@pytest.fixture
def checkpointed(kit_factory: Callable[..., TrailKit], store_url: str) -> TrailKit:
    """As ``filled``, with stored checkpoints at 10, 20 and 30."""
    kit = kit_factory(store_url, checkpoint_every=10)
    fill(kit)
    assert [cp.size for cp in kit.store.checkpoints(STREAM)] == [10, 20, 30]
    disable_guards(kit.store)
    return kit


@pytest.fixture
def sqlite_filled(kit_factory: Callable[..., TrailKit]) -> TrailKit:
    """As ``filled``, on SQLite only (it keeps any storage class in any column)."""
    kit = kit_factory(checkpoint_every=10)
    fill(kit)
    disable_guards(kit.store)
    return kit


# --- 1. the stored frontier ----------------------------------------------------------


@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
def test_forged_frontier_of_newest_block_is_modified(filled: TrailKit, parallel: bool) -> None:
    """The newest block's frontier replaced by an older one (what a restarted writer
    would resume from) is modified at that block's first seq."""
    ids = block_ids(filled.store, STREAM)
    set_column(filled.store, "audit_blocks", ids[-1], "frontier", frontier_of(filled, ids[0]))
    report = verify(filled, parallel=parallel)
    assert found(report) == [("modified", 21)]
    assert "frontier" in report.findings[0].detail


@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
def test_garbage_frontier_in_a_middle_block_is_modified(filled: TrailKit, parallel: bool) -> None:
    """A frontier that is not even a compact range is modified at its block."""
    set_column(filled.store, "audit_blocks", block_ids(filled.store, STREAM)[1], "frontier",
               b"\x00" * 40)  # fmt: skip
    assert found(verify(filled, parallel=parallel)) == [("modified", 11)]


# --- 2. checkpoints that do not fall on a block's end ---------------------------------


def fold_with_signed_history(kit: TrailKit, edit_seq: int) -> None:
    """Merge every block after the first into one row whose records have ``edit_seq``
    changed and re-chained, with a head over them signed by the stream's key and
    their frontier: what an attacker is left with after a restarted writer signed
    over planted history (the reviewer's resume attack), folded so that the
    checkpoints between the old blocks now fall inside one block."""
    blocks = list(kit.store.blocks(STREAM))
    records = [body for block in blocks[1:] for body in block.records()]
    records = edit_and_rechain(edit_seq)(records)
    tree = CompactRange()
    for body in [*blocks[0].records(), *records]:
        tree.append(leaf_hash(body))
    last = blocks[-1]
    head = TreeHead(STREAM, tree.size, tree.root(), last.head.time, kit.keyring.active_kid)
    execute(
        kit.store,
        "UPDATE audit_blocks SET data = :d, last_seq = :l, count = :c, last_time = :lt, "
        "tree_size = :n, root = :r, head_time = :ht, kid = :k, signature = :s, frontier = :f "
        "WHERE id = :i",
        d=encode_records(records),
        l=last.last_seq,
        c=len(records),
        lt=last.last_time,
        n=head.size,
        r=head.root,
        ht=head.time,
        k=head.kid,
        s=kit.keyring.sign(head.signed_bytes()),
        f=tree.to_bytes(),
        i=blocks[1].rowid,
    )
    for block in blocks[2:]:
        execute(kit.store, "DELETE FROM audit_blocks WHERE id = :i", i=block.rowid)


@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
def test_stored_checkpoint_inside_a_block_is_checked(
    checkpointed: TrailKit, parallel: bool
) -> None:
    """With blocks 11..20 and 21..30 folded into one re-signed block that rewrites
    record 15, the stored checkpoint at 20 (now inside the block) finds it."""
    fold_with_signed_history(checkpointed, 15)
    assert ("modified", 20) in found(verify(checkpointed, parallel=parallel))


@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
def test_external_checkpoint_inside_a_block_is_checked(
    checkpointed: TrailKit, parallel: bool
) -> None:
    """The same with the store's checkpoints gone: an exported checkpoint at 20 finds it."""
    (cp,) = [cp for cp in checkpointed.store.checkpoints(STREAM) if cp.size == 20]
    fold_with_signed_history(checkpointed, 15)
    execute(checkpointed.store, "DELETE FROM audit_checkpoints")
    assert verify(checkpointed, parallel=parallel).intact  # consistent on its own
    report = verify(checkpointed, parallel=parallel, external=[cp])
    assert found(report) == [("modified", 20)]
    assert "external checkpoint" in report.findings[0].detail


# --- 3. a stream left with checkpoints only -------------------------------------------


def test_stream_with_checkpoints_but_no_blocks_is_truncated(filled: TrailKit) -> None:
    """Deleting every block of a stream leaves its checkpoints: truncated at 1."""
    assert filled.trail.checkpoint_now() is not None
    execute(filled.store, "DELETE FROM audit_blocks")
    report = verify(filled)
    assert report.findings
    assert {(f.stream, f.kind, f.seq) for f in report.findings} == {(STREAM, "truncated", 1)}


# --- 4. kinds and positions -----------------------------------------------------------


def append_forged(records: list[bytes]) -> list[bytes]:
    forged = orjson.loads(records[-1])
    forged["seq"] += 1
    forged["id"] = "00000000-0000-7000-8000-000000000031"
    forged["integrity"] = {"prev": leaf_hash(records[-1]).hex()}
    return [*records, orjson.dumps(forged, option=orjson.OPT_SORT_KEYS)]


def match_columns(kit: TrailKit, block_id: int) -> None:
    """Set a block's indexed columns from its (rewritten) records, as an attacker would."""
    with kit.store.engine.connect() as conn:
        data = conn.execute(
            text("SELECT data FROM audit_blocks WHERE id = :i"), {"i": block_id}
        ).scalar_one()
    docs = [orjson.loads(body) for body in decode_records(bytes(data))]
    for column, value in [
        ("first_seq", docs[0]["seq"]),
        ("last_seq", docs[-1]["seq"]),
        ("count", len(docs)),
        ("first_time", docs[0]["time"]),
        ("last_time", docs[-1]["time"]),
    ]:
        set_column(kit.store, "audit_blocks", block_id, column, value)


def test_edit_behind_an_unsigned_tail_is_modified(filled: TrailKit) -> None:
    """Record 25 rewritten (chain recomputed) and a record 31 appended: the signed
    head still covers 21..30, so the block is modified, and 31 is an unsigned tail."""
    bid = block_holding(filled.store, STREAM, 25)
    rewrite_records(filled.store, bid, lambda rs: append_forged(edit_and_rechain(25)(rs)))
    match_columns(filled, bid)
    assert found(verify(filled)) == [("modified", 21), ("unsigned_tail", 31)]


def test_dropping_the_newest_record_is_only_deleted(filled: TrailKit) -> None:
    """Record 30 removed: deleted at 30, and 21..29 are not an unsigned tail."""
    bid = block_holding(filled.store, STREAM, 30)
    rewrite_records(filled.store, bid, lambda rs: rs[:-1])
    match_columns(filled, bid)
    report = verify(filled)
    assert found(report) == [("deleted", 30)]
    assert report.streams[0].signed_size == 30


def test_edit_hidden_by_dropping_the_newest_record_is_modified(filled: TrailKit) -> None:
    """Record 25 rewritten (chain recomputed) and record 30 removed: the subtrees the
    signed frontier shares with 21..29 differ, so the block is modified too."""
    bid = block_holding(filled.store, STREAM, 30)
    rewrite_records(filled.store, bid, lambda rs: edit_and_rechain(25)(rs)[:-1])
    match_columns(filled, bid)
    assert found(verify(filled)) == [("modified", 21), ("deleted", 30)]


def test_forged_first_seq_column_names_the_real_seq(filled: TrailKit) -> None:
    """first_seq of block 21..30 set to 22: modified at 21, not at the forged 22."""
    set_column(filled.store, "audit_blocks", block_holding(filled.store, STREAM, 25),
               "first_seq", 22)  # fmt: skip
    report = verify(filled)
    assert found(report) == [("modified", 21)]
    assert "first_seq" in report.findings[0].detail


def test_forged_tree_size_names_the_real_seq(filled: TrailKit) -> None:
    """tree_size of block 21..30 set to 29 breaks the signature, named at 30."""
    set_column(filled.store, "audit_blocks", block_holding(filled.store, STREAM, 25),
               "tree_size", 29)  # fmt: skip
    assert found(verify(filled)) == [("bad_signature", 30)]


# --- 5. values of the wrong storage class (SQLite) ------------------------------------

STORAGE_CLASS_CASES = [
    ("audit_blocks", "data", "garbage", "modified", 21),
    ("audit_blocks", "data", 9223372036854775807, "modified", 21),
    ("audit_blocks", "data", 0, "modified", 21),
    ("audit_blocks", "head_time", b"\x00", "bad_signature", 30),
    ("audit_blocks", "kid", b"\x01", "bad_signature", 30),
    ("audit_blocks", "root", "abc", "bad_signature", 30),
    ("audit_blocks", "tree_size", "abc", "bad_signature", 30),
    ("audit_blocks", "frontier", "x", "modified", 21),
    ("audit_blocks", "first_seq", "abc", "modified", 21),
    ("audit_blocks", "count", 1.5, "modified", 21),
    ("audit_checkpoints", "size", "abc", "bad_signature", 21),
    ("audit_checkpoints", "prev", "abc", "bad_signature", 30),
    ("audit_checkpoints", "root", 5, "bad_signature", 30),
]


def store_value(kit: TrailKit, table: str, column: str, value: object) -> None:
    """Store ``value`` in block 21..30 or in checkpoint 30 as is (SQLite keeps its
    storage class where the column's affinity cannot convert it)."""
    if table == "audit_blocks":
        row = block_holding(kit.store, STREAM, 25)
    else:
        with kit.store.engine.connect() as conn:
            row = conn.execute(
                text("SELECT id FROM audit_checkpoints WHERE size = 30")
            ).scalar_one()
    set_column(kit.store, table, row, column, value)


@pytest.mark.parametrize(("table", "column", "value", "kind", "seq"), STORAGE_CLASS_CASES)
@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
def test_wrong_storage_class_is_a_finding(
    sqlite_filled: TrailKit,
    table: str,
    column: str,
    value: object,
    kind: str,
    seq: int,
    parallel: bool,
) -> None:
    """Any column of block 21..30 or checkpoint 30 holding another kind of value is
    a finding at the block or checkpoint (never a crash), and the report is JSON."""
    store_value(sqlite_filled, table, column, value)
    report = verify(sqlite_filled, parallel=parallel)
    assert (kind, seq) in found(report)
    assert all(type(f.seq) is int for f in report.findings)
    assert orjson.loads(orjson.dumps(report.to_dict()))["intact"] is False


def test_block_row_with_a_blob_stream_is_a_finding(sqlite_filled: TrailKit) -> None:
    """A block whose stream column holds a blob belongs to no stream: its records are
    missing from the stream and the row itself is reported."""
    set_column(sqlite_filled.store, "audit_blocks", block_holding(sqlite_filled.store, STREAM, 15),
               "stream", STREAM.encode())  # fmt: skip
    report = verify(sqlite_filled)
    assert report.first() is not None
    assert ("deleted", 11) in found(report)
    assert any("column stream holds the blob" in f.detail for f in report.findings)


# --- 5. damaged database files (the command line) -------------------------------------


@pytest.fixture
def cli_store(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A var dir with the signing keys (and its own trail for the access records), a
    separate store of 30 records to verify, and a checkpoint file exported from it."""
    var = tmp_path / "var"
    kit = make_kit(f"sqlite:///{var / 'audit.db'}", var / "keys" / "audit")
    try:
        fill(kit)
        cp = kit.trail.checkpoint_now()
    finally:
        kit.store.close()
    assert cp is not None
    victim = tmp_path / "victim.db"
    src = sqlite3.connect(var / "audit.db")
    dst = sqlite3.connect(victim)
    src.backup(dst)
    src.close()
    dst.close()
    cp_file = tmp_path / "cp.json"
    cp_file.write_bytes(orjson.dumps({"checkpoints": [orjson.loads(cp.to_json())]}))
    return var, victim, cp_file


def run_verify(var: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KROONIKA_VAR_DIR": str(var)}
    return subprocess.run(
        [KROONIKA, "audit", "verify", *args], env=env, capture_output=True, text=True, check=False
    )


def assert_usage_error(done: subprocess.CompletedProcess[str], *text: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    for t in text:
        assert t in lines[0]


def test_cli_reports_wrong_storage_class_as_json(cli_store: tuple[Path, Path, Path]) -> None:
    """``data = 'garbage'`` is exit 1 with a valid JSON report naming the block."""
    var, victim, _ = cli_store
    con = sqlite3.connect(victim)
    con.execute("DROP TRIGGER audit_blocks_no_update")
    con.execute("UPDATE audit_blocks SET data = 'garbage' WHERE last_seq = 30")
    con.commit()
    con.close()
    done = run_verify(var, "--store", str(victim), "--json")
    assert done.returncode == 1, done.stderr
    report = orjson.loads(done.stdout)
    assert [(f["kind"], f["seq"]) for f in report["findings"]] == [("modified", 21)]


def test_cli_empty_file_is_a_usage_error_and_stays_empty(
    cli_store: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """A 0-byte store is exit 2 with one error line, and nothing is written to it."""
    var, _, cp_file = cli_store
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    assert_usage_error(run_verify(var, "--store", str(empty)), "not an audit store")
    done = run_verify(var, "--store", str(empty), "--checkpoint", str(cp_file), "--json")
    assert done.returncode == 1, done.stderr
    assert [(f["kind"], f["seq"]) for f in orjson.loads(done.stdout)["findings"]] == [
        ("truncated", 1)
    ]
    assert empty.read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("empty")) == ["empty.db"]


@pytest.mark.parametrize("damage", ["header", "pages", "dropped_table"])
def test_cli_damaged_file_is_a_usage_error(cli_store: tuple[Path, Path, Path], damage: str) -> None:
    """An overwritten header, random bytes over pages or a dropped table: exit 2
    with one error line, with or without a checkpoint file."""
    var, victim, cp_file = cli_store
    if damage == "dropped_table":
        con = sqlite3.connect(victim)
        con.execute("DROP TABLE audit_blocks")
        con.commit()
        con.close()
    else:
        data = bytearray(victim.read_bytes())
        at, junk = (
            (0, b"not a database at all!!") if damage == "header" else (4096, os.urandom(20000))
        )
        data[at : at + len(junk)] = junk
        victim.write_bytes(bytes(data))
    assert_usage_error(run_verify(var, "--store", str(victim)))
    assert_usage_error(run_verify(var, "--store", str(victim), "--checkpoint", str(cp_file)))


# --- 6. malformed checkpoint files ----------------------------------------------------

GOOD = {
    "kind": "kroonika.checkpoint/1",
    "kid": "00112233",
    "prev": "00" * 32,
    "root": "11" * 32,
    "signature": "22" * 64,
    "size": 50,
    "stream": "s1",
    "time": "2026-01-01T00:00:00.000000Z",
}


def checkpoint_json(**changes: object) -> bytes:
    """One checkpoint object with ``changes`` (stdlib json: sizes beyond 64 bits)."""
    return json.dumps({**GOOD, **changes}).encode()


def test_good_checkpoint_files_load() -> None:
    """The exported form, a bare list and a single object all load."""
    assert load_checkpoints(orjson.dumps({"checkpoints": [GOOD]}))[0].size == 50
    assert load_checkpoints(orjson.dumps([GOOD, GOOD]))[1].stream == "s1"
    assert load_checkpoints(orjson.dumps(GOOD))[0].root == b"\x11" * 32


@pytest.mark.parametrize(
    "content",
    [
        b'"x"',
        b"5",
        b"null",
        b"[1]",
        b"{}",
        b"not json",
        b'{"checkpoints": {"a": 1}}',
        b'{"checkpoints": []}',
        checkpoint_json(size=10**30),
        checkpoint_json(size=2**64 - 1),
        checkpoint_json(size=True),
        checkpoint_json(size="50"),
        checkpoint_json(size=0),
        checkpoint_json(stream=None),
        checkpoint_json(stream=""),
        checkpoint_json(root=5),
        checkpoint_json(prev="zz"),
        checkpoint_json(signature=["x"]),
        checkpoint_json(time=1),
        checkpoint_json(kind="kroonika.tree_head/1"),
    ],
)
def test_malformed_checkpoint_file_is_a_value_error(content: bytes) -> None:
    """Anything but a list of well-typed checkpoints is a ValueError saying why."""
    with pytest.raises(ValueError, match=r"."):
        load_checkpoints(content)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'"x"', "cannot read checkpoint file"),
        (b"null", "cannot read checkpoint file"),
        (checkpoint_json(size=10**30), "size"),
        (b'{"checkpoints": []}', "holds no checkpoint"),
    ],
)
def test_cli_malformed_checkpoint_file_is_a_usage_error(
    cli_store: tuple[Path, Path, Path], tmp_path: Path, content: bytes, says: str
) -> None:
    """A malformed checkpoint file is exit 2 with one error line, never a traceback."""
    var, victim, _ = cli_store
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    assert_usage_error(
        run_verify(var, "--store", str(victim), "--checkpoint", str(bad)),
        "cannot read checkpoint file",
        says,
    )
