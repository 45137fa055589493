"""Hypothesis: any single-byte change anywhere in a stored block is found."""

from __future__ import annotations

from collections.abc import Callable

from audit_kit import TrailKit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from tamper import disable_guards
from test_verify_tamper import fill

from kroonika.audit import verify_store

COLUMNS = ["data", "root", "signature"]


def test_any_single_byte_change_is_found(kit_factory: Callable[..., TrailKit]) -> None:
    """Flipping any bit pattern in any byte of a block's records, root or signature
    makes verify report damage."""
    kit = kit_factory()
    fill(kit)
    disable_guards(kit.store)
    keys = kit.keyring.public_keys()
    with kit.store.engine.connect() as conn:
        rows = conn.execute(text("SELECT id, data, root, signature FROM audit_blocks")).all()
    originals = {
        r.id: {"data": bytes(r.data), "root": bytes(r.root), "signature": bytes(r.signature)}
        for r in rows
    }
    ids = sorted(originals)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        block=st.sampled_from(ids),
        column=st.sampled_from(COLUMNS),
        position=st.floats(min_value=0, max_value=1, exclude_max=True),
        xor=st.integers(min_value=1, max_value=255),
    )
    def check(block: int, column: str, position: float, xor: int) -> None:
        original = originals[block][column]
        i = int(position * len(original))
        damaged = bytearray(original)
        damaged[i] ^= xor
        sql = text(f"UPDATE audit_blocks SET {column} = :v WHERE id = :i")  # noqa: S608
        with kit.store.engine.begin() as conn:
            conn.execute(sql, {"v": bytes(damaged), "i": block})
        try:
            assert not verify_store(kit.store, keys).intact
        finally:
            with kit.store.engine.begin() as conn:
                conn.execute(sql, {"v": original, "i": block})

    check()
    assert verify_store(kit.store, keys).intact
