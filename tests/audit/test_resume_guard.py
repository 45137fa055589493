"""A writer resumes a stream only from a frontier its newest signed head vouches for.

The frontier column is not signed. If a restarted writer took a planted one, its
next signed head would cover whatever history the attacker wrote to match: the key
would sign a forgery. These tests plant frontiers and check that the writer refuses,
fail closed, and that an honest restart still works.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from audit_kit import TrailKit, make_kit
from tamper import block_ids, disable_guards, set_column

from kroonika.audit import (
    Actor,
    ActorType,
    AuditUnavailable,
    KeyRing,
    SqlAuditStore,
    events,
    verify_store,
)
from kroonika.audit._sealer import StreamSealer
from kroonika.audit.integrity import CompactRange

STREAM = "test-stream"


def _write(kit: TrailKit, n: int) -> None:
    for i in range(n):
        kit.trail.emit_many_sync(
            [events.auth_login(actor=Actor(ActorType.USER, subject=f"EE3800108{i:04d}"))] * 5
        )


def _reopen(kit: TrailKit, keys_dir: Path) -> TrailKit:
    kit.store.close()
    return make_kit(kit.url, keys_dir, stream=STREAM)


def _resume(kit: TrailKit, keys_dir: Path) -> None:
    """Start a writer on the stream as a restarted service would."""
    kit.store.close()
    store = SqlAuditStore(kit.url)
    try:
        StreamSealer(store, STREAM, KeyRing.open(keys_dir))
    finally:
        store.close()


def _newest(kit: TrailKit) -> int:
    return block_ids(kit.store, STREAM)[-1]


def _forged_frontier(size: int) -> CompactRange:
    tree = CompactRange()
    for i in range(size):
        tree.append(hashlib.sha256(b"forged %d" % i).digest())
    return tree


@pytest.fixture
def written(store_url: str, tmp_path: Path) -> Callable[[], TrailKit]:
    def make() -> TrailKit:
        kit = make_kit(store_url, tmp_path / "keys", stream=STREAM)
        _write(kit, 4)  # 4 blocks of 5 events
        disable_guards(kit.store)
        return kit

    return make


def test_an_honest_restart_resumes(written: Callable[[], TrailKit], tmp_path: Path) -> None:
    kit = _reopen(written(), tmp_path / "keys")
    _write(kit, 1)
    assert kit.trail.size == 25
    assert verify_store(kit.store, kit.keyring.public_keys()).intact
    kit.store.close()


def test_a_planted_frontier_is_refused(written: Callable[[], TrailKit], tmp_path: Path) -> None:
    kit = written()
    set_column(kit.store, "audit_blocks", _newest(kit), "frontier", _forged_frontier(20).to_bytes())
    with pytest.raises(AuditUnavailable, match="does not match its signed head"):
        _resume(kit, tmp_path / "keys")


def test_a_planted_frontier_with_its_root_fails_the_signature(
    written: Callable[[], TrailKit], tmp_path: Path
) -> None:
    """The attacker also writes the forged root into the head: the signature,
    which only the key can make, no longer verifies."""
    kit = written()
    forged = _forged_frontier(20)
    newest = _newest(kit)
    set_column(kit.store, "audit_blocks", newest, "frontier", forged.to_bytes())
    set_column(kit.store, "audit_blocks", newest, "root", forged.root())
    with pytest.raises(AuditUnavailable, match="signature does not verify"):
        _resume(kit, tmp_path / "keys")


def test_a_frontier_of_another_block_is_refused(
    written: Callable[[], TrailKit], tmp_path: Path
) -> None:
    kit = written()
    second, newest = block_ids(kit.store, STREAM)[1], _newest(kit)
    older = next(b.frontier for b in kit.store.blocks(STREAM) if b.rowid == second)
    set_column(kit.store, "audit_blocks", newest, "frontier", older)
    with pytest.raises(AuditUnavailable, match="does not match its signed head"):
        _resume(kit, tmp_path / "keys")


def test_a_garbage_frontier_is_refused(written: Callable[[], TrailKit], tmp_path: Path) -> None:
    kit = written()
    set_column(kit.store, "audit_blocks", _newest(kit), "frontier", b"\x00" * 40)
    with pytest.raises(AuditUnavailable, match="frontier is damaged"):
        _resume(kit, tmp_path / "keys")


def test_a_key_ring_without_the_heads_key_is_refused(
    written: Callable[[], TrailKit], tmp_path: Path
) -> None:
    kit = written()
    KeyRing.open(tmp_path / "other-keys", create=True)
    with pytest.raises(AuditUnavailable, match="which this key ring does not hold"):
        _resume(kit, tmp_path / "other-keys")
