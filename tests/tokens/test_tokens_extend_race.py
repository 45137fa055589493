"""Extension is a database-level compare-and-set: real threads race on one token."""

from __future__ import annotations

import threading

import pytest

from conftest import Kit
from kroonika.tokens import ExtendConflict, MintRequest, TokenRecord


@pytest.mark.asyncio
async def test_threads_racing_replace_exactly_one_wins(kit: Kit) -> None:
    """Sixteen threads replace the same token version at once; exactly one succeeds."""
    client = kit.client()
    issued = await kit.service.issue(client, MintRequest(subject="s"))
    old = issued.record
    barrier = threading.Barrier(16)
    wins: list[str] = []
    conflicts: list[str] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        new = TokenRecord(
            f"new-{i}", old.kid, old.alg, old.token_type, old.subject, old.client_id,
            old.audience, None, old.claim_names, old.iat, old.exp + 60, "active", 1,
        )  # fmt: skip
        barrier.wait()
        try:
            kit.service.store.replace(old, new, now=old.iat, by="t")
        except ExtendConflict:
            with lock:
                conflicts.append(new.jti)
        else:
            with lock:
                wins.append(new.jti)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert len(conflicts) == 15
    stored = kit.service.store.get(old.jti)
    assert stored is not None
    assert stored.state == "replaced"
    assert stored.replaced_by == wins[0]
    assert kit.service.store.get_many(conflicts) == {}
