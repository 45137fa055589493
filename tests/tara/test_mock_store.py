"""The mock's expiring store when it is full: whoever holds the most loses its own oldest."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kroonika.tara.mock._store import ExpiringStore


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_full_store_drops_the_oldest_entry_of_the_owner_holding_the_most() -> None:
    """One owner filling the store pushes out its own entries, never another owner's."""
    store: ExpiringStore[str] = ExpiringStore(60, _Clock(), max_entries=10)
    real = store.put("real", owner="192.0.2.1")
    flood = [store.put(f"flood-{i}", owner="198.51.100.7") for i in range(100)]
    assert store.get(real) == "real"
    assert len(store) == 10
    assert [store.get(h) for h in flood[-9:]] == [f"flood-{i}" for i in range(91, 100)]
    assert store.get(flood[0]) is None
    assert store.dropped == 91


def test_a_full_store_logs_its_first_drop_once_without_handles(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first drop is one WARNING with the count, not one line per request, and it
    names no handle and no owner."""
    store: ExpiringStore[str] = ExpiringStore(
        60, _Clock(), max_entries=10, name="pending logins", owned_by="client address"
    )
    with caplog.at_level(logging.WARNING, logger="kroonika.tara.mock"):
        handles = [store.put("x", owner="198.51.100.7") for _ in range(100)]
    assert [r.getMessage() for r in caplog.records] == [
        "pending logins full (10 entries): 1 dropped so far, each the oldest of the "
        "client address holding the most"
    ]
    assert not any(h in caplog.text for h in handles)
    assert "198.51.100.7" not in caplog.text


def test_a_lone_owner_still_gets_new_entries_when_full() -> None:
    """With one owner (the stores that pass none), full means the oldest goes, as before."""
    store: ExpiringStore[int] = ExpiringStore(60, _Clock(), max_entries=3)
    handles = [store.put(i) for i in range(5)]
    assert [store.get(h) for h in handles] == [None, None, 2, 3, 4]


def test_expired_and_taken_entries_no_longer_count_for_their_owner() -> None:
    """An owner whose entries expired or were taken is not the one that loses next."""
    clock = _Clock()
    store: ExpiringStore[str] = ExpiringStore(60, clock, max_entries=4)
    old = [store.put("old", owner="a") for _ in range(3)]
    clock.now += 61
    kept = [store.put("b", owner="b"), store.put("b", owner="b")]
    taken = store.put("c", owner="c")
    assert store.take(taken) == "c"
    fresh = [store.put("a", owner="a") for _ in range(2)]  # 'a' holds 2 (expired ones gone)
    store.put("d", owner="d")  # full (b, b, a, a): a 'b' or an 'a' goes, the oldest of it
    assert all(store.get(h) is None for h in old)
    assert store.get(kept[0]) is None
    assert [store.get(h) for h in (kept[1], *fresh)] == ["b", "a", "a"]


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from("abcde")),
        st.tuples(st.just("take"), st.integers(0, 200)),
        st.tuples(st.just("tick"), st.integers(1, 30)),
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(ops=_OPS, capacity=st.integers(1, 12))
def test_a_full_store_only_ever_drops_from_an_owner_holding_the_most(
    ops: list[tuple[str, object]], capacity: int
) -> None:
    """Against a plain list of what was put: after any sequence of inserts, takes and
    clock ticks the same entries live, and an insert into a full store drops exactly one
    entry, the oldest of an owner that holds no fewer than any other."""
    clock = _Clock()
    store: ExpiringStore[int] = ExpiringStore(60, clock, max_entries=capacity)
    reference: list[tuple[str, float, str]] = []  # (handle, created, owner), oldest first
    for step, (op, arg) in enumerate(ops):
        reference = [r for r in reference if clock.now - r[1] <= 60]
        if op == "tick":
            assert isinstance(arg, int)
            clock.now += arg
        elif op == "take" and reference:
            assert isinstance(arg, int)
            handle = reference[arg % len(reference)][0]
            assert store.take(handle) is not None
            reference = [r for r in reference if r[0] != handle]
        elif op == "put":
            assert isinstance(arg, str)
            before = list(reference)
            handle = store.put(step, owner=arg)
            dropped = [r for r in before if store.get(r[0]) is None]
            if len(before) < capacity:
                assert dropped == []
            else:
                counts = Counter(owner for _, _, owner in before)
                assert len(dropped) == 1
                owner = dropped[0][2]
                assert counts[owner] == max(counts.values())
                assert dropped[0] == next(r for r in before if r[2] == owner)
                reference.remove(dropped[0])
            reference.append((handle, clock.now, arg))
        live = {r[0] for r in reference if clock.now - r[1] <= 60}
        assert {r[0] for r in reference if store.get(r[0]) is not None} == live
        assert len(store) >= len(live)
