"""Damage gets the kind and position of what was done, not of its side effects: blocks
stored out of order or under another stream, a record's own seq or stream edited, a
record dropped and the rest renumbered, a checkpoint row duplicated (a reviewer's
reproductions; decision 0004)."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest
from audit_kit import TrailKit
from tamper import block_holding, block_ids, disable_guards, execute, rewrite_records
from test_verify_gaps import found, match_columns, verify
from test_verify_tamper import STREAM, fill

from kroonika.audit.integrity import leaf_hash

OTHER = "other-stream"


def rewrite_and_rechain(
    change: Callable[[list[dict[str, object]]], list[dict[str, object]]],
) -> Callable[[list[bytes]], list[bytes]]:
    """Apply ``change`` to a block's records and recompute the chain (no key needed)."""

    def rewrite(records: list[bytes]) -> list[bytes]:
        docs = change([orjson.loads(body) for body in records])
        out: list[bytes] = []
        for doc in docs:
            if out:
                doc["integrity"] = {"prev": leaf_hash(out[-1]).hex()}
            out.append(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))
        return out

    return rewrite


def set_field(seq: int, key: str, value: object) -> Callable[[list[bytes]], list[bytes]]:
    def change(docs: list[dict[str, object]]) -> list[dict[str, object]]:
        for doc in docs:
            if doc["seq"] == seq:
                doc[key] = value
        return docs

    return rewrite_and_rechain(change)


def drop_and_renumber(seq: int) -> Callable[[list[bytes]], list[bytes]]:
    def change(docs: list[dict[str, object]]) -> list[dict[str, object]]:
        kept = [d for d in docs if d["seq"] != seq]
        for doc in kept:
            if doc["seq"] > seq:  # type: ignore[operator]
                doc["seq"] -= 1  # type: ignore[operator]
        return kept

    return rewrite_and_rechain(change)


@pytest.fixture
def checkpointed(kit_factory: Callable[..., TrailKit], store_url: str) -> TrailKit:
    """Blocks 1..10, 11..20, 21..30 with stored checkpoints at 10, 20, 30; guards off."""
    kit = kit_factory(store_url, checkpoint_every=10)
    fill(kit)
    assert verify(kit).intact
    disable_guards(kit.store)
    return kit


@pytest.fixture
def four_blocks(kit_factory: Callable[..., TrailKit], store_url: str) -> TrailKit:
    """Blocks 1..10 .. 31..40 with stored checkpoints at 20 and 40; guards off."""
    kit = kit_factory(store_url, checkpoint_every=20)
    fill(kit, batches=4)
    assert verify(kit).intact
    disable_guards(kit.store)
    return kit


@pytest.fixture
def two_streams(kit_factory: Callable[..., TrailKit], store_url: str) -> TrailKit:
    """STREAM with blocks 1..10 .. 31..40, then OTHER with 1..10 .. 21..30; guards off."""
    kit = kit_factory(store_url)
    fill(kit, batches=4)
    fill(kit_factory(store_url, stream=OTHER))
    assert verify(kit).intact
    disable_guards(kit.store)
    return kit


@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
def test_swapped_block_ids_are_reordered(checkpointed: TrailKit, parallel: bool) -> None:
    """Blocks 11..20 and 21..30 trading row ids is one finding: reordered at 11."""
    _, second, third = block_ids(checkpointed.store, STREAM)
    for old, new in [(second, -1), (third, second), (-1, third)]:
        execute(checkpointed.store, "UPDATE audit_blocks SET id = :n WHERE id = :o", n=new, o=old)
    report = verify(checkpointed, parallel=parallel)
    assert found(report) == [("reordered", 11)]
    assert report.streams[0].signed_size == 30


@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
def test_block_moved_to_another_stream_is_deleted_there_and_inserted_here(
    two_streams: TrailKit, parallel: bool
) -> None:
    """STREAM's block 21..30 relabelled as OTHER's: deleted at 21 in STREAM, one
    inserted finding in OTHER naming STREAM, and nothing else."""
    execute(two_streams.store, "UPDATE audit_blocks SET stream = :o WHERE id = :i",
            o=OTHER, i=block_holding(two_streams.store, STREAM, 25))  # fmt: skip
    report = verify(two_streams, parallel=parallel)
    assert [(f.stream, f.kind, f.seq) for f in report.findings] == [
        (OTHER, "inserted", 1),
        (STREAM, "deleted", 21),
    ]
    assert report.findings[0].actual == STREAM


def test_edited_seq_field_is_modified(four_blocks: TrailKit) -> None:
    """Record 25 saying seq 125 (chain recomputed) is modified at 25, not 100 deleted."""
    rewrite_records(four_blocks.store, block_holding(four_blocks.store, STREAM, 25),
                    set_field(25, "seq", 125))  # fmt: skip
    assert found(verify(four_blocks)) == [("modified", 25)]


def test_edited_stream_field_is_modified(four_blocks: TrailKit) -> None:
    """Record 25 naming another stream (chain recomputed) is modified at 25."""
    rewrite_records(four_blocks.store, block_holding(four_blocks.store, STREAM, 25),
                    set_field(25, "stream", OTHER))  # fmt: skip
    assert found(verify(four_blocks)) == [("modified", 25)]


def test_dropped_and_renumbered_record_names_the_block(four_blocks: TrailKit) -> None:
    """Record 25 removed and 26..30 renumbered (chain recomputed): modified at the
    block's first seq; the gap at the block's end says it cannot tell which record
    went (the same store as record 30 dropped after an edit), and the next block's
    chain break is not a finding of its own."""
    bid = block_holding(four_blocks.store, STREAM, 25)
    rewrite_records(four_blocks.store, bid, drop_and_renumber(25))
    match_columns(four_blocks, bid)
    report = verify(four_blocks)
    assert found(report)[0] == ("modified", 21)
    assert [f.kind for f in report.findings if f.seq > 21] == ["deleted"]
    assert "cannot be told" in report.findings[1].detail


def test_duplicated_checkpoint_row_is_inserted(checkpointed: TrailKit) -> None:
    """A second row of the checkpoint at 20 is inserted at 20, not a broken chain."""
    execute(
        checkpointed.store,
        "INSERT INTO audit_checkpoints (stream, size, root, time, kid, prev, signature) "
        "SELECT stream, size, root, time, kid, prev, signature FROM audit_checkpoints "
        "WHERE stream = :s AND size = 20",
        s=STREAM,
    )
    assert found(verify(checkpointed)) == [("inserted", 20)]


def test_deleted_block_before_many_others_is_still_deleted(
    kit_factory: Callable[..., TrailKit],
) -> None:
    """Block 5..6 deleted with more blocks after it than are held back looking for
    it: deleted at 5 and nothing else."""
    kit = kit_factory()
    fill(kit, batches=14, per_batch=2)
    disable_guards(kit.store)
    execute(
        kit.store, "DELETE FROM audit_blocks WHERE id = :i", i=block_holding(kit.store, STREAM, 5)
    )
    assert found(verify(kit)) == [("deleted", 5)]
