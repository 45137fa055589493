"""Every kind of damage is found, on SQLite and on the real PostgreSQL, with the
right kind and position (DESIGN.md section 4)."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest
from audit_kit import TrailKit
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from tamper import (
    block_holding,
    block_ids,
    disable_guards,
    execute,
    rewrite_records,
    set_column,
)

from kroonika.audit import Actor, ActorType, Outcome, Source, events, verify_store
from kroonika.audit.integrity import leaf_hash
from kroonika.audit.signing import key_id
from kroonika.audit.store._types import TreeHead

STREAM = "test-stream"


def fill(kit: TrailKit, batches: int = 3, per_batch: int = 10) -> None:
    """Three blocks of ten login events: seq 1..10, 11..20, 21..30."""
    n = 0
    for _ in range(batches):
        batch = []
        for _ in range(per_batch):
            n += 1
            batch.append(
                events.auth_login(
                    outcome=Outcome.SUCCESS,
                    actor=Actor(ActorType.USER, subject=f"EE3800108571{n % 10}"),
                    source=Source(ip=f"192.0.2.{n}", user_agent="test-agent"),
                    method="idcard",
                    acr="high",
                )
            )
        kit.trail.emit_many_sync(batch)


def check(kit: TrailKit, **kw: object) -> tuple[str, int] | None:
    report = verify_store(kit.store, kit.keyring.public_keys(), **kw)  # type: ignore[arg-type]
    first = report.first()
    return None if first is None else (first.kind, first.seq)


@pytest.fixture
def filled(kit_factory: Callable[..., TrailKit], store_url: str) -> TrailKit:
    kit = kit_factory(store_url)
    fill(kit)
    assert check(kit) is None
    disable_guards(kit.store)
    return kit


def _patch(
    seq: int, change: Callable[[dict[str, object]], None]
) -> Callable[[list[bytes]], list[bytes]]:
    def edit(records: list[bytes]) -> list[bytes]:
        out = []
        for body in records:
            doc = orjson.loads(body)
            if doc["seq"] == seq:
                change(doc)
                body = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
            out.append(body)
        return out

    return edit


def test_intact_store_verifies(kit_factory: Callable[..., TrailKit], store_url: str) -> None:
    """An untouched store has no findings and counts every record."""
    kit = kit_factory(store_url)
    fill(kit)
    report = verify_store(kit.store, kit.keyring.public_keys())
    assert report.intact
    assert report.records == 30


def test_edited_record_is_modified_at_its_seq(filled: TrailKit) -> None:
    """Changing one field of record 15 is reported as modified at 15."""
    rewrite_records(
        filled.store,
        block_holding(filled.store, STREAM, 15),
        _patch(15, lambda d: d.update(outcome="failure")),
    )
    assert check(filled) == ("modified", 15)


def test_edited_index_column_is_modified(filled: TrailKit) -> None:
    """Editing only an indexed column (first_time) is found although records are intact."""
    bid = block_holding(filled.store, STREAM, 15)
    set_column(filled.store, "audit_blocks", bid, "first_time", "2001-01-01T00:00:00.000000Z")
    report = verify_store(filled.store, filled.keyring.public_keys())
    first = report.first()
    assert first is not None
    assert (first.kind, first.seq) == ("modified", 11)
    assert "first_time" in first.detail


def test_deleted_record_is_found(filled: TrailKit) -> None:
    """Removing record 15 from its block is reported as deleted at 15."""
    bid = block_holding(filled.store, STREAM, 15)
    rewrite_records(filled.store, bid, lambda rs: [r for r in rs if orjson.loads(r)["seq"] != 15])
    set_column(filled.store, "audit_blocks", bid, "count", 9)
    assert check(filled) == ("deleted", 15)


def test_inserted_forged_record_is_found(filled: TrailKit) -> None:
    """A forged record with a seq already taken, chained correctly, is inserted."""
    bid = block_holding(filled.store, STREAM, 15)

    def insert(records: list[bytes]) -> list[bytes]:
        docs = [orjson.loads(r) for r in records]
        i = next(i for i, d in enumerate(docs) if d["seq"] == 15)
        forged = dict(docs[i - 1])
        forged["seq"] = 15
        forged["id"] = "00000000-0000-7000-8000-000000000000"
        forged["integrity"] = {"prev": leaf_hash(records[i - 1]).hex()}
        return [*records[:i], orjson.dumps(forged, option=orjson.OPT_SORT_KEYS), *records[i:]]

    rewrite_records(filled.store, bid, insert)
    assert check(filled) == ("inserted", 15)


def test_swapped_records_are_reordered(filled: TrailKit) -> None:
    """Swapping records 15 and 16 is reported as reordered at 15."""
    bid = block_holding(filled.store, STREAM, 15)

    def swap(records: list[bytes]) -> list[bytes]:
        seqs = [orjson.loads(r)["seq"] for r in records]
        i = seqs.index(15)
        records[i], records[i + 1] = records[i + 1], records[i]
        return records

    rewrite_records(filled.store, bid, swap)
    assert check(filled) == ("reordered", 15)


def test_appended_forged_record_is_unsigned_tail(filled: TrailKit) -> None:
    """A record appended with a correctly recomputed chain is not covered by a
    signed head: unsigned tail at 31."""
    bid = block_ids(filled.store, STREAM)[-1]

    def append(records: list[bytes]) -> list[bytes]:
        forged = orjson.loads(records[-1])
        forged["seq"] = 31
        forged["id"] = "00000000-0000-7000-8000-000000000031"
        forged["integrity"] = {"prev": leaf_hash(records[-1]).hex()}
        return [*records, orjson.dumps(forged, option=orjson.OPT_SORT_KEYS)]

    rewrite_records(filled.store, bid, append)
    set_column(filled.store, "audit_blocks", bid, "count", 11)
    set_column(filled.store, "audit_blocks", bid, "last_seq", 31)
    assert check(filled) == ("unsigned_tail", 31)


def test_recomputed_chain_without_key_is_modified(filled: TrailKit) -> None:
    """Rewriting record 25 and re-chaining everything after it still fails the
    signed tree head of that block."""
    bid = block_holding(filled.store, STREAM, 25)

    def rewrite(records: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        for body in records:
            doc = orjson.loads(body)
            if out:
                doc["integrity"] = {"prev": leaf_hash(out[-1]).hex()}
            if doc["seq"] == 25:
                doc["outcome"] = "failure"
            out.append(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))
        return out

    rewrite_records(filled.store, bid, rewrite)
    kind_seq = check(filled)
    assert kind_seq is not None
    assert kind_seq[0] == "modified"
    assert 21 <= kind_seq[1] <= 25


def test_truncation_after_exported_checkpoint(filled: TrailKit) -> None:
    """Dropping the last block (and the store's own checkpoints) is invisible inside
    the store but found against a checkpoint exported before."""
    cp = filled.trail.checkpoint_now()
    assert cp is not None
    assert cp.size == 30
    last = block_ids(filled.store, STREAM)[-1]
    execute(filled.store, "DELETE FROM audit_blocks WHERE id = :i", i=last)
    execute(filled.store, "DELETE FROM audit_checkpoints")
    assert check(filled) is None  # consistent on its own: only a witness can tell
    assert check(filled, external=[cp]) == ("truncated", 21)


def test_rollback_against_exported_checkpoint_is_modified(filled: TrailKit) -> None:
    """A store rewritten below an exported checkpoint's size differs from its root."""
    cp = filled.trail.checkpoint_now()
    assert cp is not None
    rewrite_records(
        filled.store,
        block_holding(filled.store, STREAM, 30),
        _patch(30, lambda d: d.update(outcome="failure")),
    )
    report = verify_store(filled.store, filled.keyring.public_keys(), external=[cp])
    kinds = {(f.kind, f.seq) for f in report.findings}
    assert ("modified", 30) in kinds


def test_edited_checkpoint_has_bad_signature(filled: TrailKit) -> None:
    """Changing a stored checkpoint's root breaks its signature."""
    filled.trail.checkpoint_now()
    with filled.store.engine.connect() as conn:
        cid = conn.execute(text("SELECT max(id) FROM audit_checkpoints")).scalar_one()
    set_column(filled.store, "audit_checkpoints", cid, "root", b"\x01" * 32)
    assert check(filled) == ("bad_signature", 30)


def test_head_signed_with_unknown_key(filled: TrailKit) -> None:
    """A tree head re-signed by the attacker's own key names an unknown key."""
    bid = block_ids(filled.store, STREAM)[-1]
    rogue = Ed25519PrivateKey.generate()
    blocks = list(filled.store.blocks(STREAM))
    head = blocks[-1].head
    forged = TreeHead(head.stream, head.size, head.root, head.time, key_id(rogue.public_key()))
    set_column(filled.store, "audit_blocks", bid, "kid", forged.kid)
    set_column(filled.store, "audit_blocks", bid, "signature", rogue.sign(forged.signed_bytes()))
    assert check(filled) == ("unknown_key", 30)


def test_tampered_head_signature_is_bad(filled: TrailKit) -> None:
    """Changing a signed head's root without the key is a bad signature."""
    bid = block_ids(filled.store, STREAM)[1]
    set_column(filled.store, "audit_blocks", bid, "root", b"\x02" * 32)
    assert check(filled) == ("bad_signature", 20)


def test_triggers_refuse_update_and_delete(
    kit_factory: Callable[..., TrailKit], store_url: str
) -> None:
    """Without tampering the triggers first, the store refuses UPDATE and DELETE."""
    from sqlalchemy.exc import DBAPIError

    kit = kit_factory(store_url)
    fill(kit, batches=1)
    kit.trail.checkpoint_now()
    with pytest.raises(DBAPIError, match="append-only"):
        execute(kit.store, "UPDATE audit_blocks SET count = 0")
    with pytest.raises(DBAPIError, match="append-only"):
        execute(kit.store, "DELETE FROM audit_blocks")
    with pytest.raises(DBAPIError, match="append-only"):
        execute(kit.store, "DELETE FROM audit_checkpoints")
    assert check(kit) is None
