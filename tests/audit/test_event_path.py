"""The cheaper event path makes the same bytes as the straightforward one it replaced.

Event ids and nonces come from pools filled by one kernel read per 256 pieces; the
time's second and the id's millisecond are cached; the sealer frames, hashes and
appends a block's records in one loop. Each is checked here against the plain
construction it stands for, and the pools against handing a piece out twice (to
two threads, or to a parent and its forked child).
"""

from __future__ import annotations

import ast
import os
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from audit_kit import TrailKit
from hypothesis import given, settings
from hypothesis import strategies as st

from kroonika.audit import (
    Actor,
    ActorType,
    Correlation,
    Counters,
    PersonalData,
    Source,
    UndeclaredField,
    _model,
    _random,
    events,
)
from kroonika.audit.catalogue import CATALOGUE
from kroonika.audit.integrity import CompactRange, leaf_hash, root_of
from kroonika.audit.processors._text import neutralise
from kroonika.audit.processors.validate import _INVALID, Validate, _check
from kroonika.audit.store._types import encode_records

_UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def _uuid7_reference(ms: int, random10: bytes) -> str:
    """RFC 9562 section 5.7 spelled out: 48-bit milliseconds, then 10 random bytes
    with version 7 in the first byte's high nibble and variant 0b10 in the third's."""
    raw = bytearray(ms.to_bytes(6, "big") + random10)
    raw[6] = 0x70 | (raw[6] & 0x0F)
    raw[8] = 0x80 | (raw[8] & 0x3F)
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@settings(max_examples=50, deadline=None)
@given(
    seed=st.binary(min_size=2560, max_size=2560),
    ms=st.integers(min_value=0, max_value=2**48 - 1),
)
def test_uuid7_is_the_reference_construction_of_the_kernel_bytes(seed: bytes, ms: int) -> None:
    """Every id of one pool refill is the reference UUIDv7 of its 10 bytes of the read."""
    pool = _model._UUID7_TAILS
    reads: list[int] = []

    def kernel(n: int) -> bytes:
        reads.append(n)
        return seed

    pool.clear()
    real = os.urandom
    os.urandom = kernel  # the pool's one read
    try:
        made = [_model.uuid7(ms * 1_000_000 + 999_999) for _ in range(256)]
    finally:
        os.urandom = real
        pool.clear()
    assert reads == [2560]
    expected = {_uuid7_reference(ms, seed[i : i + 10]) for i in range(0, 2560, 10)}
    assert set(made) == expected
    assert all(_UUID7.fullmatch(u) for u in made)


def test_uuid7_sorts_by_millisecond_and_refuses_what_48_bits_cannot_hold() -> None:
    ids = [_model.uuid7(ms * 1_000_000) for ms in range(1_700_000_000_000, 1_700_000_000_300)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    with pytest.raises(OverflowError):
        _model.uuid7(2**48 * 1_000_000)
    with pytest.raises(OverflowError):
        _model.uuid7(-1_000_000)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.integers(min_value=0, max_value=2**42).flatmap(
            lambda s: st.sampled_from([s * 10**9, s * 10**9 - 1, s * 10**9 + 999_999_999, s])
        ),
        min_size=1,
        max_size=8,
    )
)
def test_rfc3339_micro_is_utc_with_microseconds_at_every_second_boundary(
    stamps: list[int],
) -> None:
    """The cached second prefix never leaks into another second, in whatever order
    the times come (a clock may step back)."""
    for ns in stamps:
        if ns // 10**9 > 253_402_300_799:  # after 9999-12-31T23:59:59Z
            continue
        sec, rem = divmod(ns, 10**9)
        expected = (
            datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{rem // 1000:06d}Z"
        )
        assert _model.rfc3339_micro(ns) == expected


def _take_in_child(take: Callable[[], bytes | str], n: int) -> list[bytes | str]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover  (the child)
        try:
            os.close(read)
            os.write(write, repr([take() for _ in range(n)]).encode())
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    got: list[bytes | str] = ast.literal_eval(b"".join(chunks).decode())
    return got


@pytest.mark.parametrize("pool", [_random.NONCES, _model._UUID7_TAILS], ids=["nonce", "uuid7"])
def test_a_forked_child_never_hands_out_its_parents_pieces(
    pool: _random.RandomPool[bytes] | _random.RandomPool[str],
) -> None:
    """After a fork, parent and child draw from different kernel reads: the child
    must not reuse the AES-GCM nonces (nor the ids) left in the parent's pool."""
    pool.take()  # the pool now holds 255 unused pieces
    in_child = _take_in_child(pool.take, 100)
    in_parent = [pool.take() for _ in range(100)]
    assert len(set(in_child)) == len(set(in_parent)) == 100
    assert not set(in_child) & set(in_parent)


def test_threads_never_share_a_nonce() -> None:
    got: list[list[bytes]] = [[] for _ in range(8)]

    def draw(out: list[bytes]) -> None:
        for _ in range(2000):
            out.append(_random.NONCES.take())

    threads = [threading.Thread(target=draw, args=(out,)) for out in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [n for out in got for n in out]
    assert all(len(n) == 12 for n in every)
    assert len(set(every)) == len(every) == 16_000


@settings(max_examples=60, deadline=None)
@given(
    start=st.integers(min_value=0, max_value=70),
    count=st.integers(min_value=0, max_value=70),
)
def test_extending_a_tree_is_appending_leaf_by_leaf(start: int, count: int) -> None:
    leaves = [leaf_hash(i.to_bytes(2, "big")) for i in range(start + count)]
    one_by_one, at_once = CompactRange(), CompactRange()
    for h in leaves[:start]:
        one_by_one.append_unchecked(h)
        at_once.append_unchecked(h)
    for h in leaves[start:]:
        one_by_one.append_unchecked(h)
    at_once.extend_unchecked(leaves[start:])
    assert at_once.size == one_by_one.size == start + count
    assert at_once.to_bytes() == one_by_one.to_bytes()
    assert at_once.root() == root_of(leaves)


def test_a_sealed_block_holds_the_framed_records_and_their_tree(kit: TrailKit) -> None:
    """The sealer builds the block's payload and tree in its loop: they are what
    encode_records and the RFC 9162 reference make of the sealed records."""
    kit.trail.log_start_sync()
    sealed = kit.trail.emit_many_sync(
        events.auth_login(
            actor=Actor(ActorType.USER, subject=f"EE3800108571{i % 10}"),
            source=Source(ip=f"203.0.113.{i}", port=4000 + i, user_agent="curl/8.0"),
            correlation=Correlation(request_id=f"req-{i:04x}"),
            personal=PersonalData(given_name="MARI", family_name="TAMM"),
            method="mID",
            amr=["mID"],
        )
        for i in range(37)
    )
    blocks = list(kit.store.blocks())
    assert [b.count for b in blocks] == [1, 37]
    block = blocks[1]
    assert block.data == encode_records([s.canonical for s in sealed])
    assert [s.leaf_hash for s in sealed] == [leaf_hash(s.canonical) for s in sealed]
    first = leaf_hash(blocks[0].records()[0])
    assert block.head.root == root_of([first, *(s.leaf_hash for s in sealed)])
    assert [s.seq for s in sealed] == list(range(2, 39))


_TEXT = st.text(max_size=300)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(_TEXT, st.integers(), st.none()), max_size=70),
    st.booleans(),
)
def test_a_list_detail_is_checked_as_the_general_check_does(
    value: list[object], strict: bool
) -> None:
    """validate's inline path for lists of strings gives what ``_check`` gives: the
    same kept, neutralised or refused list."""
    spec = CATALOGUE["auth.login"].details["amr"]
    expected = _check(spec, value)
    event = events.auth_login(actor=Actor(ActorType.USER), amr=value)  # type: ignore[arg-type]
    counters = Counters()
    validate = Validate(strict=strict, counters=counters)
    if expected is not _INVALID:
        out = validate(event).details["amr"]
        assert out == expected
        assert out is not value  # a copy: the caller's list may change after emit
    elif strict:
        with pytest.raises(UndeclaredField, match="amr"):
            validate(event)
    else:
        assert "amr" not in validate(event).details
        assert counters.get("validate.dropped_field") == 1


@settings(max_examples=200, deadline=None)
@given(
    st.tuples(*(st.one_of(st.none(), _TEXT) for _ in range(4))),
    st.tuples(*(st.one_of(st.none(), _TEXT) for _ in range(6))),
)
def test_correlation_and_personal_text_is_neutralised_field_by_field(
    corr: tuple[str | None, ...], personal: tuple[str | None, ...]
) -> None:
    """Each correlation id and each allowed personal field is neutralised and bounded
    on its own; a personal field the type may not carry is dropped and counted."""
    counters = Counters()
    event = events.auth_login(
        actor=Actor(ActorType.USER),
        correlation=Correlation(*corr),
        personal=PersonalData(*personal),
    )
    out = Validate(strict=False, counters=counters)(event)
    assert out.correlation is not None
    assert out.personal is not None
    got = (
        out.correlation.request_id,
        out.correlation.trace_id,
        out.correlation.flow_id,
        out.correlation.session_ref,
    )
    assert got == tuple(None if v is None else neutralise(v, 128) for v in corr)
    allowed = CATALOGUE["auth.login"].personal
    names = ("personal_code", "given_name", "family_name", "email", "phone", "ip")
    for name, v in zip(names, personal, strict=True):
        kept = v is not None and name in allowed
        assert getattr(out.personal, name) == (neutralise(v, 256) if kept else None)
    refused = sum(v is not None and n not in allowed for n, v in zip(names, personal, strict=True))
    assert counters.get("validate.dropped_personal") == refused
