"""The verifier: recompute everything and name the first bad position (DESIGN.md 4).

For each stream it re-reads every block in storage order and checks

- each record's canonical bytes → leaf hash, and the chain (``integrity.prev``);
- sequence numbers: gaps (*deleted*), duplicates (*inserted*), out of order
  (*reordered*);
- the indexed columns of each block against its records (*modified*);
- the Merkle root after each block against its Ed25519-signed tree head
  (*modified*, *bad signature*, *unknown key*); records after the last signed head
  are an *unsigned tail*;
- stored checkpoints: signature, chain of checkpoints, root at their size;
- an external checkpoint (exported earlier): a store shorter than it is
  *truncated*; a different root at its size is a rollback (*modified*).

Findings are data, not exceptions: the report lists them in order.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from hashlib import sha256 as _sha256
from multiprocessing import get_context
from typing import Any, Literal

import orjson

from kroonika.audit._sealer import ZERO_HASH, checkpoint_hash
from kroonika.audit.integrity import CompactRange, aligned_subtrees, leaf_hash
from kroonika.audit.signing import PublicKeys
from kroonika.audit.store._types import AuditStore, Block, Checkpoint, decode_records

Kind = Literal[
    "modified",
    "deleted",
    "inserted",
    "reordered",
    "unsigned_tail",
    "truncated",
    "bad_signature",
    "unknown_key",
    "malformed",
]


@dataclass(frozen=True, slots=True)
class Finding:
    stream: str
    seq: int
    kind: Kind
    detail: str
    expected: str | None = None
    actual: str | None = None


@dataclass(frozen=True, slots=True)
class RetainedBase:
    """Where a stream starts after a retention purge: the Merkle frontier and last
    leaf hash at ``size``; a stored, signed checkpoint at ``size`` must vouch for it."""

    stream: str
    size: int
    root: bytes
    frontier: bytes
    last_leaf: bytes


@dataclass(slots=True)
class StreamReport:
    stream: str
    base: int = 0  # records 1..base were purged by retention (vouched for by a checkpoint)
    records: int = 0
    blocks: int = 0
    signed_size: int = 0
    checkpoints: int = 0
    root: str = ""


@dataclass(slots=True)
class Report:
    streams: list[StreamReport] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    records: int = 0

    @property
    def intact(self) -> bool:
        return not self.findings

    def first(self) -> Finding | None:
        return self.findings[0] if self.findings else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "intact": self.intact,
            "records": self.records,
            "streams": [asdict(s) for s in self.streams],
            "findings": [asdict(f) for f in self.findings],
        }


MAX_FINDINGS_PER_STREAM = 100
_PREV = b'"integrity":{"prev":"'
_SCHEMA_SEQ = b'"schema":"kroonika.audit/1","seq":'


def _seq_of(body: bytes) -> int:
    """The top-level ``seq`` of a canonical record, or -1. Keys are sorted, so the
    top-level ``"seq"`` is the one right after ``"schema":"kroonika.audit/1"``."""
    i = body.find(_SCHEMA_SEQ)
    if i < 0:
        return -1
    i += len(_SCHEMA_SEQ)
    j = body.find(b",", i)
    try:
        return int(body[i:j])
    except ValueError:
        return -1


class _StreamVerifier:
    def __init__(self, stream: str, keys: PublicKeys, checkpoints: list[Checkpoint]):
        self.stream = stream
        self.keys = keys
        self.tree = CompactRange()
        self.prev = ZERO_HASH
        self.expected = 1
        self.seen_max = 0
        self.findings: list[Finding] = []
        self.report = StreamReport(stream)
        self.roots_at: dict[int, bytes] = {}
        self.want_roots = {cp.size for cp in checkpoints}
        self._late: set[int] = set()
        self.head_failed = False
        self.prev_hex = ZERO_HASH.hex().encode()
        self.stream_bytes = b'"stream":' + orjson.dumps(stream) + b","

    def add(self, seq: int, kind: Kind, detail: str, **kw: str | None) -> None:
        if len(self.findings) < MAX_FINDINGS_PER_STREAM:
            self.findings.append(Finding(self.stream, seq, kind, detail, **kw))

    def start_at(self, base: RetainedBase, checkpoints: list[Checkpoint]) -> None:
        """Resume at a retained base instead of the empty tree, if a valid signed
        checkpoint at its size has the same root as its frontier."""
        try:
            tree = CompactRange.from_bytes(base.frontier)
            root = tree.root()
        except Exception:  # noqa: BLE001  (a damaged frontier is reported below)
            tree, root = None, b""
        vouched = any(
            cp.size == base.size
            and cp.root == root
            and cp.kid in self.keys
            and self.keys.verify(cp.kid, cp.signature, cp.signed_bytes())
            for cp in checkpoints
        )
        if tree is None or tree.size != base.size or root != base.root or not vouched:
            self.add(
                1,
                "deleted",
                f"records 1..{base.size} are gone and the retained base is not vouched "
                "for by a signed checkpoint",
                expected="a signed checkpoint with the base's root",
                actual=base.root.hex(),
            )
            return
        self.tree = tree
        self.expected = base.size + 1
        self.seen_max = base.size
        self.prev = base.last_leaf
        self.prev_hex = base.last_leaf.hex().encode()
        self.roots_at[base.size] = root
        self.report.base = base.size
        self.report.signed_size = base.size

    def block(self, block: Block) -> None:
        rep = self.report
        rep.blocks += 1
        try:
            bodies = decode_records(block.data)
        except ValueError as exc:
            self.add(self.expected, "modified", f"block framing damaged: {exc}")
            self._resync(block)
            return
        before = len(self.findings)
        # Only seq and integrity.prev are read per record, straight from the canonical
        # bytes (the leaf hash covers every byte; a full JSON parse per record would
        # be most of the cost). First and last records are parsed for the columns.
        seqs = [_seq_of(body) for body in bodies]
        block_seqs = set(seqs)
        stream_bytes = self.stream_bytes
        append = self.tree.append_unchecked  # the leaf hash is made below
        want = self.want_roots
        find = bytes.find
        expected = self.expected
        prev_hex = self.prev_hex
        for seq, body in zip(seqs, bodies, strict=True):
            if seq == expected and find(body, stream_bytes) >= 0:
                i = find(body, _PREV) + 21
                if i < 21 or body[i : i + 64] != prev_hex:
                    self.prev_hex = prev_hex
                    self._chain_break(seq, body[i : i + 64] if i >= 21 else b"")
                expected = seq + 1
            else:
                self.expected = expected
                self.seen_max = max(self.seen_max, expected - 1)
                if seq < 0:
                    self.add(expected, "modified", "record has no readable seq")
                    self.expected += 1
                else:
                    self._record(seq, body, block_seqs)
                expected = self.expected
            leaf = _sha256(b"\x00" + body).digest()
            append(leaf)
            prev_hex = leaf.hex().encode()
            if want and self.tree.size in want:
                self.roots_at[self.tree.size] = self.tree.root()
        self.expected = expected
        self.seen_max = max(self.seen_max, expected - 1)
        self.prev_hex = prev_hex
        self.prev = bytes.fromhex(prev_hex.decode())
        rep.records += len(bodies)
        record_findings = len(self.findings) > before
        if not record_findings:  # else the columns differ because of what was reported
            self._columns(block, bodies)
        self._head(block, record_findings)

    def _chain_break(self, seq: int, found: bytes) -> None:
        self.add(
            seq - 1 if seq > 1 else seq,
            "modified",
            f"record {seq - 1} no longer hashes to what record {seq} chained to",
            expected=found.decode(errors="replace"),
            actual=self.prev_hex.decode(),
        )

    def _record(self, seq: int, body: bytes, block_seqs: set[int]) -> None:
        """The slow path: anything but the next seq of this stream."""
        exp = self.expected
        if seq == exp:  # right seq, but it does not name this stream
            self.add(seq, "inserted", "record names another stream", expected=self.stream)
            self.expected = seq + 1
        elif seq > exp:
            if exp in block_seqs:
                self.add(exp, "reordered", f"record {seq} stored before record {exp}")
            else:
                self.add(
                    exp,
                    "deleted",
                    f"records {exp}..{seq - 1} are missing",
                    expected=str(exp),
                    actual=str(seq),
                )
            self.expected = seq + 1
        elif seq <= self.seen_max and seq not in self._late:
            self.add(seq, "inserted", f"a second record with seq {seq}")
        self._late.discard(seq)
        if seq > exp:
            self._late.update(s for s in range(exp, seq) if s in block_seqs)
        self.seen_max = max(self.seen_max, seq)

    def _columns(self, block: Block, bodies: list[bytes]) -> None:
        try:
            first, last = orjson.loads(bodies[0]), orjson.loads(bodies[-1])
        except (orjson.JSONDecodeError, IndexError):
            self.add(block.first_seq, "modified", "block edge record is not valid JSON")
            return
        derived = {
            "first_seq": first.get("seq"),
            "last_seq": last.get("seq"),
            "count": len(bodies),
            "first_time": first.get("time"),
            "last_time": last.get("time"),
        }
        for column, value in derived.items():
            stored = getattr(block, column)
            if stored != value:
                self.add(
                    block.first_seq,
                    "modified",
                    f"indexed column {column} differs from the records",
                    expected=str(value),
                    actual=str(stored),
                )

    def _head(self, block: Block, record_findings: bool) -> None:
        head = block.head
        self.head_failed = True
        if head.kid not in self.keys:
            self.add(head.size, "unknown_key", f"tree head signed by unknown key {head.kid}")
            self._resync(block)
            return
        if not self.keys.verify(head.kid, head.signature, head.signed_bytes()):
            self.add(head.size, "bad_signature", "tree head signature does not verify")
            self._resync(block)
            return
        self.head_failed = False
        size = self.tree.size
        if head.size < size:
            self.add(
                head.size + 1,
                "unsigned_tail",
                f"records {head.size + 1}..{size} are not covered by a signed tree head",
                expected=str(head.size),
                actual=str(size),
            )
            return
        if head.size > size:
            self.add(
                size + 1,
                "deleted",
                "signed tree head covers records that are gone",
                expected=str(head.size),
                actual=str(size),
            )
            self._resync(block)
            return
        self.report.signed_size = head.size
        root = self.tree.root()
        if root != head.root:
            if not record_findings:
                self.add(
                    block.first_seq,
                    "modified",
                    f"records {block.first_seq}..{block.last_seq} do not match the "
                    "signed tree head (the chain was recomputed)",
                    expected=head.root.hex(),
                    actual=root.hex(),
                )
            self._resync(block)

    def _resync(self, block: Block) -> None:
        """After damage, continue from the block's stored frontier if it matches the
        signed head, so later damage is still located."""
        try:
            tree = CompactRange.from_bytes(block.frontier)
        except Exception:  # noqa: BLE001  (a damaged frontier just means no resync)
            return
        if tree.size == block.head.size and tree.root() == block.head.root:
            self.tree = tree
            self.expected = tree.size + 1
            with contextlib.suppress(ValueError, IndexError):
                self.prev = leaf_hash(decode_records(block.data)[-1])
                self.prev_hex = self.prev.hex().encode()


def verify_store(
    store: AuditStore,
    keys: PublicKeys,
    *,
    external: Iterable[Checkpoint] = (),
    bases: Mapping[str, RetainedBase] | None = None,
    workers: int | None = None,
    parallel_min_blocks: int = 64,
) -> Report:
    """Verify every stream. ``bases`` (default: read from the store's
    ``audit_retained_bases``) are where purged streams start again.

    Streams of at least ``parallel_min_blocks`` blocks are first checked by
    ``workers`` processes (default: one per CPU) that hash disjoint block ranges;
    the main process joins their Merkle subtrees and checks the chain, sequence
    and signed heads across ranges. Any irregularity sends the stream through the
    sequential verifier, which locates and names the damage.
    """
    report = Report()
    if bases is None:
        bases = stored_bases(store)
    all_checkpoints = store.checkpoints()
    external = list(external)
    streams = sorted(set(store.streams()) | {cp.stream for cp in external} | set(bases))
    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    pool: ProcessPoolExecutor | None = None
    try:
        for stream in streams:
            stored_cps = [cp for cp in all_checkpoints if cp.stream == stream]
            ext_cps = [cp for cp in external if cp.stream == stream]
            v = _StreamVerifier(stream, keys, stored_cps + ext_cps)
            base = bases.get(stream)
            ids = _block_ids(store, stream) if n_workers > 1 and base is None else []
            if len(ids) >= parallel_min_blocks:
                if pool is None:
                    pool = _process_pool(n_workers)
                try:
                    intact = _fast_stream(v, store, ids, pool, n_workers)
                except (BrokenProcessPool, OSError, RuntimeError):
                    intact = False  # no usable workers: the sequential pass decides
                if intact:
                    _finish_stream(v, report, stored_cps, ext_cps)
                    continue
                v = _StreamVerifier(stream, keys, stored_cps + ext_cps)
            _verify_sequentially(v, store, base, stored_cps)
            _finish_stream(v, report, stored_cps, ext_cps)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return report


def _verify_sequentially(
    v: _StreamVerifier, store: AuditStore, base: RetainedBase | None, stored_cps: list[Checkpoint]
) -> None:
    if base is not None:
        v.start_at(base, stored_cps)
    for block in store.blocks(v.stream):
        v.block(block)


def _finish_stream(
    v: _StreamVerifier, report: Report, stored_cps: list[Checkpoint], ext_cps: list[Checkpoint]
) -> None:
    size = v.tree.size
    if (
        size
        and v.report.signed_size < size
        and not v.head_failed
        and not any(f.kind == "unsigned_tail" for f in v.findings)
    ):
        v.add(v.report.signed_size + 1, "unsigned_tail", "records after the last signed head")
    _checkpoints(v, stored_cps, size, external=False)
    _checkpoints(v, ext_cps, size, external=True)
    v.report.root = v.tree.root().hex()
    v.report.checkpoints = len(stored_cps)
    report.streams.append(v.report)
    report.records += v.report.records
    report.findings.extend(sorted(v.findings, key=lambda f: f.seq))


# --- the parallel fast path ---------------------------------------------------------


def _process_pool(n_workers: int) -> ProcessPoolExecutor:
    """Fork when this process has no other threads (fast, and safe then); otherwise
    spawn fresh interpreters."""
    method = "fork" if threading.active_count() == 1 else "spawn"
    return ProcessPoolExecutor(n_workers, mp_context=get_context(method))


def _block_ids(store: AuditStore, stream: str) -> list[int]:
    get = getattr(store, "block_ids", None)
    return list(get(stream)) if get is not None else []


@dataclass(frozen=True, slots=True)
class _Summary:
    """What a worker found in one block; ``ok`` only if nothing at all is irregular."""

    ok: bool
    first_seq: int = 0
    last_seq: int = 0
    count: int = 0
    first_prev: bytes = b""
    last_leaf: bytes = b""
    subtrees: tuple[tuple[bytes, int], ...] = ()
    head_size: int = 0
    head_root: bytes = b""


_BAD = _Summary(ok=False)
_worker_state: dict[str, Any] = {}


def _summarise_range(
    url: str, keys_json: bytes, stream: str, after_id: int, upto_id: int
) -> list[_Summary]:
    """Worker process: summarise the blocks of ``stream`` with ids in (after_id, upto_id]."""
    from kroonika.audit.store.sql import SqlAuditStore

    store = _worker_state.get(url)
    if store is None:
        store = _worker_state[url] = SqlAuditStore(url, read_only=True)
    keys = _worker_state.get("keys")
    if keys is None or _worker_state.get("keys_json") != keys_json:
        keys = _worker_state["keys"] = PublicKeys.from_json(keys_json)
        _worker_state["keys_json"] = keys_json
    stream_bytes = b'"stream":' + orjson.dumps(stream) + b","
    return [
        _summarise_block(block, keys, stream_bytes)
        for block in store.blocks(stream, after_id=after_id, upto_id=upto_id)
    ]


def _summarise_block(block: Block, keys: PublicKeys, stream_bytes: bytes) -> _Summary:
    head = block.head
    if head.kid not in keys or not keys.verify(head.kid, head.signature, head.signed_bytes()):
        return _BAD
    try:
        bodies = decode_records(block.data)
    except ValueError:
        return _BAD
    n = len(bodies)
    first = block.first_seq
    if not n or n != block.count or first + n - 1 != block.last_seq or head.size != block.last_seq:
        return _BAD
    # The signed root covers every byte and the sealer wrote the stream into each
    # record, so naming the stream is checked at the block's edges only.
    if bodies[0].find(stream_bytes) < 0 or bodies[-1].find(stream_bytes) < 0:
        return _BAD
    j = bodies[0].find(_PREV) + 21
    if j < 21:
        return _BAD
    prev_hex = expected = bodies[0][j : j + 64]
    leaves: list[bytes] = []
    add = leaves.append
    seq = first
    for body in bodies:
        # seq and integrity.prev straight from the bytes; keys are sorted, so the
        # top-level seq is the one right after the schema
        if body.find(_SCHEMA_SEQ + str(seq).encode() + b",") < 0:
            return _BAD
        j = body.find(_PREV) + 21
        if j < 21 or body[j : j + 64] != expected:
            return _BAD
        leaf = _sha256(b"\x00" + body).digest()
        add(leaf)
        expected = leaf.hex().encode()
        seq += 1
    try:
        head_doc, tail_doc = orjson.loads(bodies[0]), orjson.loads(bodies[-1])
    except orjson.JSONDecodeError:
        return _BAD
    if head_doc.get("time") != block.first_time or tail_doc.get("time") != block.last_time:
        return _BAD
    return _Summary(
        ok=True,
        first_seq=first,
        last_seq=block.last_seq,
        count=n,
        first_prev=prev_hex,
        last_leaf=leaves[-1],
        subtrees=tuple(aligned_subtrees(first - 1, leaves)),
        head_size=head.size,
        head_root=head.root,
    )


def _fast_stream(
    v: _StreamVerifier,
    store: AuditStore,
    ids: list[int],
    pool: ProcessPoolExecutor,
    n_workers: int,
) -> bool:
    """Check one stream in parallel; True if it is intact (``v`` then holds the
    tree, the roots at checkpoint sizes and the counts)."""
    url = getattr(store, "url", None)
    if url is None:
        return False
    keys_json = v.keys.to_json()
    chunk = max(1, min(32, len(ids) // (n_workers * 4) or 1))
    tasks = [
        (ids[i - 1] if i else 0, ids[min(i + chunk, len(ids)) - 1])
        for i in range(0, len(ids), chunk)
    ]
    futures = [pool.submit(_summarise_range, url, keys_json, v.stream, lo, hi) for lo, hi in tasks]
    tree = v.tree
    expected = 1
    prev_hex = ZERO_HASH.hex().encode()
    last_leaf = ZERO_HASH
    for future in futures:
        for s in future.result():
            if not s.ok or s.first_seq != expected or s.first_prev != prev_hex:
                return False
            for root, height in s.subtrees:
                tree.append_subtree(root, height)
            if tree.root() != s.head_root:
                return False
            if tree.size in v.want_roots:
                v.roots_at[tree.size] = tree.root()
            expected = s.last_seq + 1
            last_leaf = s.last_leaf
            prev_hex = last_leaf.hex().encode()
            v.report.blocks += 1
            v.report.records += s.count
    v.report.signed_size = tree.size
    v.expected = expected
    v.prev = last_leaf
    v.prev_hex = prev_hex
    return True


def stored_bases(store: AuditStore) -> dict[str, RetainedBase]:
    """The retained bases recorded by retention purges (none for stores without
    the table, e.g. an old archive copy)."""
    engine = getattr(store, "engine", None)
    if engine is None:
        return {}
    from sqlalchemy import inspect, select
    from sqlalchemy.exc import SQLAlchemyError

    from kroonika.audit.store._schema import retained_bases

    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(retained_bases.name):
                return {}
            rows = conn.execute(select(retained_bases)).all()
    except SQLAlchemyError:
        return {}
    return {
        r.stream: RetainedBase(
            r.stream, int(r.size), bytes(r.root), bytes(r.frontier), bytes(r.last_leaf)
        )
        for r in rows
    }


def _checkpoints(v: _StreamVerifier, cps: list[Checkpoint], size: int, *, external: bool) -> None:
    where = "external checkpoint" if external else "checkpoint"
    prev_hash = ZERO_HASH
    for cp in cps:
        if cp.kid not in v.keys:
            v.add(cp.size, "unknown_key", f"{where} at {cp.size} signed by unknown key {cp.kid}")
            continue
        if not v.keys.verify(cp.kid, cp.signature, cp.signed_bytes()):
            v.add(cp.size, "bad_signature", f"{where} at {cp.size} signature does not verify")
            continue
        if not external:
            if cp.prev != prev_hash:
                v.add(
                    cp.size,
                    "deleted",
                    f"{where} at {cp.size} does not chain to the one before",
                    expected=prev_hash.hex(),
                    actual=cp.prev.hex(),
                )
            prev_hash = checkpoint_hash(cp)
        if cp.size > size:
            v.add(
                size + 1,
                "truncated",
                f"{where} vouches for {cp.size} records, the store has {size}",
                expected=str(cp.size),
                actual=str(size),
            )
            continue
        root = v.roots_at.get(cp.size)
        if root is not None and root != cp.root:
            v.add(
                cp.size,
                "modified",
                f"store differs from the {where} at size {cp.size} (rollback or rewrite)",
                expected=cp.root.hex(),
                actual=root.hex(),
            )
