"""The parallel verifier agrees with the sequential one, intact or damaged."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import orjson
import pytest
from audit_kit import TrailKit
from tamper import block_holding, disable_guards, rewrite_records
from test_verify_tamper import fill

from kroonika.audit import verify_store
from kroonika.audit.verify import _process_pool

T = TypeVar("T")


@pytest.fixture
def many_blocks(kit_factory: Callable[..., TrailKit]) -> TrailKit:
    kit = kit_factory(checkpoint_every=37)
    fill(kit, batches=90, per_batch=7)
    return kit


def _summary(kit: TrailKit, workers: int) -> tuple[bool, list[tuple[str, int]], list[str]]:
    report = verify_store(kit.store, kit.keyring.public_keys(), workers=workers,
                          parallel_min_blocks=1)  # fmt: skip
    return (
        report.intact,
        [(f.kind, f.seq) for f in report.findings],
        [s.root for s in report.streams],
    )


def test_parallel_and_sequential_agree_on_an_intact_store(many_blocks: TrailKit) -> None:
    """Two workers find the store intact with the same root and counts as one process."""
    parallel = verify_store(
        many_blocks.store, many_blocks.keyring.public_keys(), workers=2, parallel_min_blocks=1
    )
    sequential = verify_store(many_blocks.store, many_blocks.keyring.public_keys(), workers=1)
    assert parallel.intact
    assert parallel.records == sequential.records == 630
    assert [s.root for s in parallel.streams] == [s.root for s in sequential.streams]
    assert parallel.streams[0].blocks == 90


def test_parallel_run_falls_back_and_names_the_damage(many_blocks: TrailKit) -> None:
    """Damage in one block is found and named exactly as the sequential run names it."""
    disable_guards(many_blocks.store)

    def edit(records: list[bytes]) -> list[bytes]:
        out = []
        for body in records:
            doc = orjson.loads(body)
            if doc["seq"] == 300:
                doc["outcome"] = "failure"
                body = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
            out.append(body)
        return out

    rewrite_records(many_blocks.store, block_holding(many_blocks.store, "test-stream", 300), edit)
    parallel = _summary(many_blocks, workers=2)
    assert parallel == _summary(many_blocks, workers=1)
    assert parallel[0] is False
    assert parallel[1][0] == ("modified", 300)


def _in_thread(run: Callable[[], T]) -> T:
    """``run()`` in a worker thread beside the main one, as a server calls the verifier."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


def test_a_run_beside_other_threads_forks_from_a_fork_server(many_blocks: TrailKit) -> None:
    """Beside other threads (a server's worker thread) the workers are not forked from
    this process (its other threads may hold locks) nor spawned as fresh interpreters that
    import the package again for every worker of every run (seconds each), but forked
    from a fork server that has imported the verifier once; the report is the same."""

    def start_method() -> str:
        with _process_pool(1) as pool:
            return pool._mp_context.get_start_method()

    # Alone in the process, the workers fork from it; any other thread alive (a thread
    # another test left behind counts too) makes it the fork server.
    alone = threading.active_count() == 1
    assert start_method() == ("fork" if alone else "forkserver")
    assert _in_thread(start_method) == "forkserver"
    threaded = _in_thread(lambda: _summary(many_blocks, workers=2))
    assert threaded == _summary(many_blocks, workers=1)
    assert threaded[0] is True
