"""Reading streams: the memory that query, export, verify and tail take does not grow
with the store (issue 2: "writer, verify, query and export stream")."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from audit_kit import make_kit

from kroonika.audit import (
    Actor,
    ActorType,
    Correlation,
    Query,
    SqlAuditStore,
    events,
    formats,
    run_query,
    verify_store,
)
from kroonika.audit.signing import PublicKeys


def _store(base: Path, n: int) -> tuple[SqlAuditStore, PublicKeys]:
    kit = make_kit(f"sqlite:///{base / 'audit.db'}", base / "keys", strict=False)
    kit.trail.log_start_sync()
    for start in range(0, n, 100):
        kit.trail.emit_many_sync(
            [
                events.auth_login(
                    actor=Actor(ActorType.USER, subject=f"EE3800108{i % 977:04d}"),
                    correlation=Correlation(request_id=f"req-{i:08d}"),
                    method="smartid",
                )
                for i in range(start, start + 100)
            ]
        )
    keys = kit.keyring.public_keys()
    kit.store.close()
    return SqlAuditStore(f"sqlite:///{base / 'audit.db'}", read_only=True), keys


def _peak(work: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _query(store: SqlAuditStore) -> int:
    return sum(len(b) for b in run_query(store, Query()))


def _export(store: SqlAuditStore) -> int:
    return sum(len(formats.render("ecs", orjson.loads(b))) for b in run_query(store, Query()))


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[SqlAuditStore, PublicKeys]]:
    # 16 blocks are read per round trip; both stores are several such rounds
    return {
        "small": _store(tmp_path_factory.mktemp("small"), 4_000),
        "large": _store(tmp_path_factory.mktemp("large"), 16_000),
    }


@pytest.mark.parametrize("read", [_query, _export], ids=["query", "export"])
def test_reading_everything_takes_the_same_memory_on_a_four_times_larger_store(
    stores: dict[str, tuple[SqlAuditStore, PublicKeys]], read: Callable[[SqlAuditStore], int]
) -> None:
    small, _ = stores["small"]
    large, _ = stores["large"]
    assert read(large) > 3.5 * read(small)  # the work really is four times larger
    peak_small = _peak(lambda: read(small))
    peak_large = _peak(lambda: read(large))
    assert peak_large < 1.5 * peak_small, (peak_small, peak_large)


def test_verify_takes_the_same_memory_on_a_four_times_larger_store(
    stores: dict[str, tuple[SqlAuditStore, PublicKeys]],
) -> None:
    (small, keys_small), (large, keys_large) = stores["small"], stores["large"]
    reports = []

    def check(store: SqlAuditStore, keys: PublicKeys) -> None:
        reports.append(verify_store(store, keys, workers=1))

    peak_small = _peak(lambda: check(small, keys_small))
    peak_large = _peak(lambda: check(large, keys_large))
    assert [r.intact for r in reports] == [True, True]
    assert reports[1].records > 3.5 * reports[0].records
    assert peak_large < 1.5 * peak_small, (peak_small, peak_large)
