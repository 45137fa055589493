"""The verifier: recompute everything and name the first bad position (DESIGN.md 4).

For each stream it re-reads every block in storage order and checks

- each record's canonical bytes → leaf hash, and the chain (``integrity.prev``);
- sequence numbers: gaps (*deleted*), duplicates (*inserted*), out of order
  (*reordered*);
- the indexed columns of each block against its records (*modified*);
- the Merkle root after each block against its Ed25519-signed tree head
  (*modified*, *bad signature*, *unknown key*); records after the last signed head
  are an *unsigned tail*;
- each block's stored Merkle frontier against the tree the records make
  (*modified*): a writer that restarts resumes from the newest block's frontier, so
  a forged one would otherwise be signed over later;
- stored checkpoints: signature, chain of checkpoints, root at their size;
- an external checkpoint (exported earlier): a store shorter than it is
  *truncated*; a different root at its size is a rollback (*modified*).

The verifier does not trust the store's rows to have the types the schema declares
(SQLite keeps whatever storage class it is given): a column holding the wrong kind
of value is a finding, not a crash. A store that cannot be read at all raises
:class:`~kroonika.audit.StoreError`.

Findings are data, not exceptions: the report lists them in order.
"""

from __future__ import annotations

import os
import struct
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from hashlib import sha256 as _sha256
from multiprocessing import get_context
from typing import Any, Final, Literal

import orjson
from sqlalchemy import Engine, inspect, select
from sqlalchemy.exc import SQLAlchemyError

from kroonika.audit._errors import StoreError
from kroonika.audit._sealer import ZERO_HASH, checkpoint_hash
from kroonika.audit.integrity import EMPTY_ROOT, CompactRange, aligned_subtrees, leaf_hash
from kroonika.audit.signing import PublicKeys
from kroonika.audit.store._schema import blocks as blocks_table
from kroonika.audit.store._schema import checkpoints as checkpoints_table
from kroonika.audit.store._types import (
    AuditStore,
    Block,
    Checkpoint,
    TreeHead,
    base_statement,
    decode_records,
)

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
    purged: str = ""
    kid: str = ""
    signature: bytes = b""  # by the purge, over store._types.base_statement

    def signed_bytes(self) -> bytes:
        return base_statement(
            self.stream, self.size, self.root, self.frontier, self.last_leaf, self.purged, self.kid
        )


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
_HEAD_COLUMNS: Final = ("tree_size", "root", "head_time", "kid", "signature")
_MAX_SIZE: Final = 2**63 - 1  # BigInteger, and what a signed head's JSON can hold
_LEN: Final = struct.Struct(">I")  # the record framing of store._types.encode_records
_MAX_HELD: Final = 8  # blocks held back while looking for the one stored too late


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


def _range_text(tree: CompactRange) -> str:
    return f"size {tree.size}, root {tree.root().hex()}"


def _frontier_text(data: bytes) -> str:
    try:
        return _range_text(CompactRange.from_bytes(data))
    except ValueError as exc:
        return f"unreadable: {exc}"


def _shared_subtrees_differ(ours: CompactRange, signed: CompactRange) -> bool:
    """Whether the perfect subtrees that a tree of ``ours.size`` leaves shares with the
    larger ``signed`` tree (the high bits both sizes have in common) differ."""
    common = (ours.size >> (ours.size ^ signed.size).bit_length()).bit_count()
    return ours.hashes[:common] != signed.hashes[:common]


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
        self.roots_at: dict[int, bytes] = {0: EMPTY_ROOT}
        self.want_roots = {cp.size for cp in checkpoints}
        self._late: set[int] = set()
        self.head_failed = False
        self.prev_unknown = False  # resynced to a block whose last record is unreadable
        self.prev_hex = ZERO_HASH.hex().encode()
        self.stream_bytes = b'"stream":' + orjson.dumps(stream) + b","
        self.block_first = 0  # the first seq of the block being checked
        self.missing = 0  # records this block's seq gaps reported deleted

    def lead(self, block: Block, damage: Mapping[str, str]) -> int:
        """The seq of the block's first record, or -1 if that record cannot be read
        or does not name this stream (read before the block is checked)."""
        data = block.data
        if "data" in damage or len(data) < _LEN.size:
            return -1
        (n,) = _LEN.unpack_from(data, 0)
        body = data[_LEN.size : _LEN.size + n]
        if body.find(self.stream_bytes) < 0:
            return -1
        return _seq_of(body)

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
        signed = base.kid in self.keys and self.keys.verify(
            base.kid, base.signature, base.signed_bytes()
        )
        if not signed:
            # Only the key holder's retention job leaves a base behind; one that
            # is not signed was written by someone who deleted records 1..size.
            self.add(
                1,
                "deleted",
                f"records 1..{base.size} are gone and the retained base is not signed by a "
                "known key",
                expected="a base signed by the purge",
                actual=base.kid or "no signature",
            )
            return
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

    def block(self, block: Block, damage: Mapping[str, str] | None = None) -> None:
        """Check one block; ``damage`` names columns whose stored value had the wrong
        type (they hold a neutral value in ``block``)."""
        damage = damage or {}
        rep = self.report
        rep.blocks += 1
        if "data" in damage:
            self.add(self.expected, "modified", f"block column data holds {damage['data']}")
            self._resync(block, signed=self._head_verifies(block, damage))
            return
        try:
            bodies = decode_records(block.data)
        except ValueError as exc:
            self.add(self.expected, "modified", f"block framing damaged: {exc}")
            self._resync(block, signed=self._head_verifies(block, damage))
            return
        if (
            bodies
            and bodies[0].find(self.stream_bytes) < 0
            and self._foreign(block, bodies, damage)
        ):
            return
        before = len(self.findings)
        start = self.tree.copy()
        # Only seq and integrity.prev are read per record, straight from the canonical
        # bytes (the leaf hash covers every byte; a full JSON parse per record would
        # be most of the cost). First and last records are parsed for the columns.
        seqs = [_seq_of(body) for body in bodies]
        # The block's position as its records say (the columns may be forged).
        first = seqs[0] if seqs and seqs[0] > 0 else self.expected
        self.block_first = first
        self.missing = 0
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
                    i = self.tree.size - start.size  # this record's index in the block
                    following = seqs[i + 1] if i + 1 < len(seqs) else -1
                    self._record(seq, body, block_seqs, following)
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
        self.prev_unknown = False
        rep.records += len(bodies)
        last = seqs[-1] if seqs and seqs[-1] > 0 else expected - 1
        record_findings = len(self.findings) > before
        for column, what in damage.items():
            if column not in _HEAD_COLUMNS:
                self.add(first, "modified", f"block column {column} holds {what}")
        if not record_findings:  # else the columns differ because of what was reported
            self._columns(block, bodies, first, damage)
        self._head(block, bodies, start, first, last, record_findings, damage)

    def _foreign(self, block: Block, bodies: list[bytes], damage: Mapping[str, str]) -> bool:
        """Whether the block belongs to another stream: none of its records name this
        stream, and its head verifies as signed for the stream they name. It is then
        reported as inserted at the position it was found and not checked further."""
        if any(c in damage for c in _HEAD_COLUMNS) or any(
            body.find(self.stream_bytes) >= 0 for body in bodies
        ):
            return False
        try:
            doc = orjson.loads(bodies[0])
        except orjson.JSONDecodeError:
            return False
        other = doc.get("stream") if isinstance(doc, dict) else None
        head = block.head
        if not isinstance(other, str) or other == self.stream or head.kid not in self.keys:
            return False
        theirs = TreeHead(other, head.size, head.root, head.time, head.kid, head.signature)
        if not self.keys.verify(head.kid, head.signature, theirs.signed_bytes()):
            return False
        seqs = _seq_of(bodies[0]), _seq_of(bodies[-1])
        self.add(
            self.expected,
            "inserted",
            f"a block of stream {other!a} (its records {seqs[0]}..{seqs[1]} and signed "
            "head name that stream) is stored in this stream",
            expected=self.stream,
            actual=other,
        )
        return True

    def _chain_break(self, seq: int, found: bytes) -> None:
        if self.prev_unknown and seq == self.block_first:
            # what it chains to was reported with the block before
            self.prev_unknown = False
            return
        last = self.findings[-1] if self.findings else None
        if last is not None and last.kind == "modified" and last.seq == seq - 1:
            return  # record seq - 1 was reported modified already
        self.add(
            seq - 1 if seq > 1 else seq,
            "modified",
            f"record {seq - 1} no longer hashes to what record {seq} chained to",
            expected=found.decode(errors="replace"),
            actual=self.prev_hex.decode(),
        )

    def _record(self, seq: int, body: bytes, block_seqs: set[int], following: int) -> None:
        """The slow path: anything but the next seq of this stream. ``following`` is
        the seq of the next record in the block (-1 at its end)."""
        exp = self.expected
        if seq == exp:  # right seq, but it does not name this stream (a foreign
            # block was taken out whole, so this record was edited)
            self.add(seq, "modified", "record names another stream", expected=self.stream)
            self.expected = seq + 1
            return
        if following == exp + 1:  # the records around it continue: its seq was edited
            self.add(
                exp,
                "modified",
                f"record {exp} says it is seq {seq}",
                expected=str(exp),
                actual=str(seq),
            )
            self.expected = exp + 1
            return
        if seq > exp:
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
                self.missing += seq - exp
            self.expected = seq + 1
        elif seq <= self.seen_max and seq not in self._late:
            self.add(seq, "inserted", f"a second record with seq {seq}")
        self._late.discard(seq)
        if seq > exp:
            self._late.update(s for s in range(exp, seq) if s in block_seqs)
        self.seen_max = max(self.seen_max, seq)

    def _columns(
        self, block: Block, bodies: list[bytes], first_seq: int, damage: Mapping[str, str]
    ) -> None:
        try:
            first, last = orjson.loads(bodies[0]), orjson.loads(bodies[-1])
        except (orjson.JSONDecodeError, IndexError):
            self.add(first_seq, "modified", "block edge record is not valid JSON")
            return
        if not isinstance(first, dict) or not isinstance(last, dict):
            self.add(first_seq, "modified", "block edge record is not a JSON object")
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
            if column not in damage and stored != value:
                self.add(
                    first_seq,
                    "modified",
                    f"indexed column {column} differs from the records",
                    expected=str(value),
                    actual=str(stored),
                )

    def _head_verifies(self, block: Block, damage: Mapping[str, str]) -> bool:
        head = block.head
        return (
            not any(c in damage for c in _HEAD_COLUMNS)
            and head.kid in self.keys
            and self.keys.verify(head.kid, head.signature, head.signed_bytes())
        )

    def _head(
        self,
        block: Block,
        bodies: list[bytes],
        start: CompactRange,
        first: int,
        last: int,
        record_findings: bool,
        damage: Mapping[str, str],
    ) -> None:
        """Check the block's signed head (named at ``last``, the block's last seq as
        its records say) and its stored frontier against the tree."""
        head = block.head
        self.head_failed = True
        broken = [c for c in _HEAD_COLUMNS if c in damage]
        if broken:
            self.add(
                last,
                "bad_signature",
                f"tree head column {broken[0]} holds {damage[broken[0]]}",
            )
            return
        if head.kid not in self.keys:
            self.add(last, "unknown_key", f"tree head signed by unknown key {head.kid!a}")
            self._resync(block, signed=False)
            return
        if not self.keys.verify(head.kid, head.signature, head.signed_bytes()):
            self.add(last, "bad_signature", "tree head signature does not verify")
            self._resync(block, signed=False)
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
            self._signed_part(block, bodies, start, first, record_findings, damage)
            return
        if head.size > size:
            signed = self._signed_frontier(block)
            rewritten = (
                signed is not None
                and not record_findings
                and _shared_subtrees_differ(self.tree, signed)
            )
            if rewritten:
                self.add(
                    first,
                    "modified",
                    f"records {first}..{size} do not match the signed tree head (the "
                    "chain was recomputed)",
                )
            if not (record_findings and head.size == size + self.missing):
                # (else the gap in the records was reported deleted already)
                self.add(
                    size + 1,
                    "deleted",
                    f"signed tree head covers records that are gone (with the chain "
                    f"recomputed, which of {first}..{head.size} cannot be told)"
                    if rewritten
                    else "signed tree head covers records that are gone",
                    expected=str(head.size),
                    actual=str(size),
                )
            self._resync(block, signed=True)
            return
        self.report.signed_size = head.size
        root = self.tree.root()
        if root != head.root:
            if not record_findings:
                self.add(
                    first,
                    "modified",
                    f"records {first}..{last} do not match the "
                    "signed tree head (the chain was recomputed)",
                    expected=head.root.hex(),
                    actual=root.hex(),
                )
            self._resync(block, signed=True)
            return
        self._frontier(block, self.tree, first, damage)

    def _signed_part(
        self,
        block: Block,
        bodies: list[bytes],
        start: CompactRange,
        first: int,
        record_findings: bool,
        damage: Mapping[str, str],
    ) -> None:
        """With an unsigned tail: the records the head does cover must still give its
        root (an edit can hide behind appended records)."""
        head = block.head
        covered = head.size - start.size
        if covered < 0:
            return
        tree = start.copy()
        for body in bodies[:covered]:
            tree.append_unchecked(leaf_hash(body))
        if tree.root() != head.root:
            if not record_findings:
                self.add(
                    first,
                    "modified",
                    f"records {first}..{head.size} do not match the signed tree head "
                    "(the chain was recomputed)",
                    expected=head.root.hex(),
                    actual=tree.root().hex(),
                )
            return
        self.report.signed_size = head.size
        self._frontier(block, tree, first, damage)

    def _frontier(
        self, block: Block, tree: CompactRange, first: int, damage: Mapping[str, str]
    ) -> None:
        """The stored frontier must be the tree the (verified) records make."""
        if "frontier" in damage or block.frontier == tree.to_bytes():
            return  # a damaged column is reported with the other columns
        self.add(
            first,
            "modified",
            "stored Merkle frontier differs from the records' tree (a writer resuming "
            "from it would sign over other history)",
            expected=_range_text(tree),
            actual=_frontier_text(block.frontier),
        )

    def _signed_frontier(self, block: Block) -> CompactRange | None:
        """The block's stored frontier, if it reproduces the block's head."""
        try:
            tree = CompactRange.from_bytes(block.frontier)
        except ValueError:
            return None
        if tree.size == block.head.size and tree.root() == block.head.root:
            return tree
        return None

    def _resync(self, block: Block, *, signed: bool) -> None:
        """After damage, continue from the block's stored frontier if it matches the
        head, so later damage is still located. ``signed``: the head's signature
        verified, so the records up to its size count as signed."""
        tree = self._signed_frontier(block)
        if tree is None:
            return
        self.tree = tree
        self.expected = tree.size + 1
        if signed:
            self.report.signed_size = tree.size
            if tree.size in self.want_roots:  # unless the records already gave one
                self.roots_at.setdefault(tree.size, block.head.root)
        # The next block chained to the record as signed, not as stored: a break at
        # its first record is a consequence of what was reported here.
        self.prev_unknown = True
        try:
            self.prev = leaf_hash(decode_records(block.data)[-1])
        except (ValueError, IndexError):
            return
        self.prev_hex = self.prev.hex().encode()


# --- reading the store without trusting it -----------------------------------------

_BLOCK_TYPES: Final[Mapping[str, type]] = {
    "id": int,
    "stream": str,
    "first_seq": int,
    "last_seq": int,
    "count": int,
    "first_time": str,
    "last_time": str,
    "data": bytes,
    "tree_size": int,
    "root": bytes,
    "head_time": str,
    "kid": str,
    "signature": bytes,
    "frontier": bytes,
}
_CHECKPOINT_TYPES: Final[Mapping[str, type]] = {
    "id": int,
    "stream": str,
    "size": int,
    "root": bytes,
    "time": str,
    "kid": str,
    "prev": bytes,
    "signature": bytes,
}
_BASE_TYPES: Final[Mapping[str, type]] = {
    "stream": str,
    "size": int,
    "root": bytes,
    "frontier": bytes,
    "last_leaf": bytes,
    "purged": str,
    "kid": str,  # NULL on a base no purge signed: neutral, so not signed
    "signature": bytes,
}
_NEUTRAL: Final[Mapping[type, object]] = {int: -1, str: "", bytes: b""}
_TYPE_NAMES: Final[Mapping[type, str]] = {int: "an integer", str: "text", bytes: "a blob"}


def _describe(value: object) -> str:
    """A stored value, for a finding: its kind and an ASCII-safe excerpt."""
    if value is None:
        return "NULL"
    if isinstance(value, bool | int):
        return f"the integer {int(value)}"
    if isinstance(value, float):
        return f"the real number {value!r}"
    if isinstance(value, str):
        return f"the text {value[:32]!a}"
    if isinstance(value, bytes | bytearray | memoryview):
        return f"the blob X'{bytes(value[:32]).hex().upper()}'"
    return f"a {type(value).__name__}"


def _name(value: object) -> str:
    """A stream name for a value that is not text (ASCII-safe)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "backslashreplace")
    return ascii(value)


def _typed(row: Any, types: Mapping[str, type]) -> tuple[dict[str, Any], dict[str, str]]:
    """The row's values by column, each of the declared type, and a description of
    each column that held something else (replaced by a neutral value)."""
    values: dict[str, Any] = {}
    damage: dict[str, str] = {}
    mapping = row._mapping
    for column, kind in types.items():
        value = mapping[column]
        if kind is bytes and isinstance(value, bytearray | memoryview):
            value = bytes(value)
        if type(value) is not kind:
            damage[column] = f"{_describe(value)}, not {_TYPE_NAMES[kind]}"
            value = _NEUTRAL[kind]
        values[column] = value
    return values, damage


def _block_of(values: Mapping[str, Any]) -> Block:
    return Block(
        stream=values["stream"],
        first_seq=values["first_seq"],
        last_seq=values["last_seq"],
        count=values["count"],
        first_time=values["first_time"],
        last_time=values["last_time"],
        data=values["data"],
        head=TreeHead(
            stream=values["stream"],
            size=values["tree_size"],
            root=values["root"],
            time=values["head_time"],
            kid=values["kid"],
            signature=values["signature"],
        ),
        frontier=values["frontier"],
        rowid=values["id"],
    )


def _brief(exc: BaseException) -> str:
    """First line of a driver error, without SQL parameters (they may hold data)."""
    text = str(getattr(exc, "orig", exc)) or type(exc).__name__
    return text.splitlines()[0][:200]


class _Rows:
    """The verifier's reads. On a SQL store it reads the tables itself and checks each
    column's type; a database error becomes :class:`StoreError`. Other stores are read
    through the :class:`AuditStore` protocol."""

    def __init__(self, store: AuditStore, *, allow_empty: bool = False) -> None:
        self.store = store
        self.engine: Engine | None = getattr(store, "engine", None)
        self.empty = False
        if self.engine is not None:
            self._check_tables(self.engine, allow_empty)

    def _check_tables(self, engine: Engine, allow_empty: bool) -> None:
        try:
            with engine.connect() as conn:
                insp = inspect(conn)
                present = {
                    t.name for t in (blocks_table, checkpoints_table) if insp.has_table(t.name)
                }
                no_tables = not present and not insp.get_table_names()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the audit store: {_brief(exc)}") from exc
        if no_tables and allow_empty:
            self.empty = True  # e.g. an emptied file: the external checkpoints decide
        elif not present:
            raise StoreError("not an audit store: it has no audit tables (empty or damaged)")
        elif len(present) < 2:
            missing = ({blocks_table.name, checkpoints_table.name} - present).pop()
            raise StoreError(f"the audit store is damaged: table {missing} is missing")

    def _fetch(self, query: Any) -> Sequence[Any]:
        if self.engine is None:
            return []
        try:
            with self.engine.connect() as conn:
                return list(conn.execute(query).all())
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the audit store: {_brief(exc)}") from exc

    def streams(self) -> tuple[list[str], list[Finding]]:
        """Streams that have blocks, and a finding for each block row whose stream
        column is not text (such a row belongs to no stream)."""
        if self.engine is None:
            return list(self.store.streams()), []
        if self.empty:
            return [], []
        values = [r[0] for r in self._fetch(select(blocks_table.c.stream).distinct())]
        findings = []
        for value in values:
            if type(value) is str:
                continue
            rows = self._fetch(
                select(blocks_table.c.id, blocks_table.c.first_seq)
                .where(blocks_table.c.stream == value)
                .order_by(blocks_table.c.id)
            )
            for row_id, first_seq in rows:
                findings.append(
                    Finding(
                        _name(value),
                        first_seq if type(first_seq) is int and first_seq > 0 else 1,
                        "modified",
                        f"block row {row_id}: column stream holds {_describe(value)}, not "
                        "text; the row belongs to no stream",
                    )
                )
        return [v for v in values if type(v) is str], findings

    def checkpoints(self) -> tuple[list[Checkpoint], list[Finding]]:
        """Stored checkpoints by stream and size, and a finding for each row that
        cannot be one (a wrong type in a column)."""
        if self.engine is None:
            return list(self.store.checkpoints()), []
        if self.empty:
            return [], []
        rows = self._fetch(select(checkpoints_table).order_by(checkpoints_table.c.id))
        good: list[tuple[Checkpoint, int]] = []
        findings = []
        last_size: dict[str, int] = {}  # per stream, the size of the last readable row
        for row in rows:
            values, damage = _typed(row, _CHECKPOINT_TYPES)
            stream = values["stream"] if "stream" not in damage else _name(row._mapping["stream"])
            if not damage:
                cp = Checkpoint(
                    stream,
                    values["size"],
                    values["root"],
                    values["time"],
                    values["kid"],
                    values["prev"],
                    values["signature"],
                )
                good.append((cp, values["id"]))
                last_size[stream] = cp.size
                continue
            size = values["size"] if "size" not in damage else last_size.get(stream, 0) + 1
            column = next(iter(damage))
            findings.append(
                Finding(
                    stream,
                    size,
                    "bad_signature",
                    f"checkpoint row {values['id']}: column {column} holds {damage[column]}",
                )
            )
        good.sort(key=lambda g: (g[0].stream, g[0].size, g[1]))
        return [cp for cp, _ in good], findings

    def block_ids(self, stream: str) -> list[int]:
        if self.engine is None or self.empty:
            return []
        rows = self._fetch(
            select(blocks_table.c.id)
            .where(blocks_table.c.stream == stream)
            .order_by(blocks_table.c.id)
        )
        return [r[0] for r in rows if type(r[0]) is int]

    def blocks(
        self, stream: str, *, after_id: int = 0, upto_id: int | None = None, batch: int = 16
    ) -> Iterator[tuple[Block, dict[str, str]]]:
        """The stream's blocks in storage order (by row id), with their damaged
        columns, streamed in batches of ``batch`` rows."""
        if self.engine is None:
            for block in self.store.blocks(stream):
                yield block, {}
            return
        if self.empty:
            return
        last_id = after_id
        while True:
            query = select(*(blocks_table.c[c] for c in _BLOCK_TYPES)).where(
                blocks_table.c.stream == stream, blocks_table.c.id > last_id
            )
            if upto_id is not None:
                query = query.where(blocks_table.c.id <= upto_id)
            rows = self._fetch(query.order_by(blocks_table.c.id).limit(batch))
            if not rows:
                return
            for row in rows:
                values, damage = _typed(row, _BLOCK_TYPES)
                values["stream"] = stream  # the query matched it
                damage.pop("stream", None)
                yield _block_of(values), damage
            last_id = rows[-1].id


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

    Raises :class:`StoreError` if the store cannot be read or is not an audit store
    (with ``external`` checkpoints, a store without audit tables is read as empty,
    so they report it truncated).
    """
    report = Report()
    external = list(external)
    rows = _Rows(store, allow_empty=bool(external))
    if bases is None:
        bases = stored_bases(store)
    all_checkpoints, stray = rows.checkpoints()
    block_streams, stray_blocks = rows.streams()
    stray += stray_blocks
    streams = sorted(
        set(block_streams)
        | {cp.stream for cp in all_checkpoints}
        | {cp.stream for cp in external}
        | set(bases)
        | {f.stream for f in stray}
    )
    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    pool: ProcessPoolExecutor | None = None
    try:
        for stream in streams:
            stored_cps = [cp for cp in all_checkpoints if cp.stream == stream]
            ext_cps = [cp for cp in external if cp.stream == stream]
            damaged = [f for f in stray if f.stream == stream]
            v = _StreamVerifier(stream, keys, stored_cps + ext_cps)
            base = bases.get(stream)
            ids = rows.block_ids(stream) if n_workers > 1 and base is None else []
            if len(ids) >= parallel_min_blocks:
                if pool is None:
                    pool = _process_pool(n_workers)
                try:
                    intact = _fast_stream(v, store, ids, pool, n_workers)
                except (BrokenProcessPool, OSError, RuntimeError, StoreError):
                    intact = False  # no usable workers: the sequential pass decides
                if intact:
                    _finish_stream(v, report, stored_cps, ext_cps, damaged)
                    continue
                v = _StreamVerifier(stream, keys, stored_cps + ext_cps)
            _verify_sequentially(v, rows, base, stored_cps)
            _finish_stream(v, report, stored_cps, ext_cps, damaged)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return report


def _verify_sequentially(
    v: _StreamVerifier, rows: _Rows, base: RetainedBase | None, stored_cps: list[Checkpoint]
) -> None:
    """Check the blocks in storage order. A block that starts past the next seq is
    held back (up to ``_MAX_HELD``) while a later one may start at it: that one was
    stored too late (*reordered*), and the held ones follow it in seq order.
    Otherwise the held blocks are checked in storage order (a gap: *deleted*)."""
    if base is not None:
        v.start_at(base, stored_cps)
    held: list[tuple[Block, dict[str, str], int]] = []
    for block, damage in rows.blocks(v.stream):
        lead = v.lead(block, damage)
        if lead > v.expected and len(held) < _MAX_HELD:
            held.append((block, damage, lead))
            continue
        if held and lead == v.expected:
            v.add(
                lead,
                "reordered",
                f"the block from record {lead} is stored after the block from record {held[0][2]}",
                expected=str(lead),
                actual=str(held[0][2]),
            )
            v.block(block, damage)
            while True:
                nxt = next((h for h in held if h[2] == v.expected), None)
                if nxt is None:
                    break
                held.remove(nxt)
                v.block(nxt[0], nxt[1])
            continue
        for b, d, _ in held:
            v.block(b, d)
        held = []
        v.block(block, damage)
    for b, d, _ in held:
        v.block(b, d)


def _finish_stream(
    v: _StreamVerifier,
    report: Report,
    stored_cps: list[Checkpoint],
    ext_cps: list[Checkpoint],
    damaged: list[Finding],
) -> None:
    for f in damaged:
        v.add(f.seq, f.kind, f.detail, expected=f.expected, actual=f.actual)
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
    """Fork when this process has no other threads (fast, and safe then).

    Beside other threads (a server verifying in a worker thread: ``POST /audit/verify``)
    forking could copy a lock that another thread holds, and spawning starts a fresh
    interpreter per worker on every run that imports the package and the caller's
    ``__main__`` again (seconds per worker: the API took 5-7 s where the CLI took about
    1 s). The workers are forked from a fork server instead: one single-threaded process,
    started on the first run, that has imported the modules of this package that the
    caller had loaded (so that a worker importing ``__main__``, e.g. the ``kroonika``
    console script, finds them loaded). Later runs start their workers at fork speed.
    """
    if threading.active_count() == 1:
        return ProcessPoolExecutor(n_workers, mp_context=get_context("fork"))
    context = get_context("forkserver")
    package = __name__.split(".", 1)[0]
    loaded = sorted(m for m in list(sys.modules) if m.split(".", 1)[0] == package)
    context.set_forkserver_preload(loaded)  # takes effect when the server starts
    return ProcessPoolExecutor(n_workers, mp_context=context)


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
    frontier: bytes = b""


_BAD = _Summary(ok=False)
_worker_state: dict[str, Any] = {}


def _summarise_range(
    url: str, keys_json: bytes, stream: str, after_id: int, upto_id: int
) -> list[_Summary]:
    """Worker process: summarise the blocks of ``stream`` with ids in (after_id, upto_id]."""
    from kroonika.audit.store.sql import SqlAuditStore

    rows = _worker_state.get(url)
    if rows is None:
        rows = _worker_state[url] = _Rows(SqlAuditStore(url, read_only=True))
    keys = _worker_state.get("keys")
    if keys is None or _worker_state.get("keys_json") != keys_json:
        keys = _worker_state["keys"] = PublicKeys.from_json(keys_json)
        _worker_state["keys_json"] = keys_json
    stream_bytes = b'"stream":' + orjson.dumps(stream) + b","
    return [
        _BAD if damage else _summarise_block(block, keys, stream_bytes)
        for block, damage in rows.blocks(stream, after_id=after_id, upto_id=upto_id)
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
    if not isinstance(head_doc, dict) or not isinstance(tail_doc, dict):
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
        frontier=block.frontier,
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
            if tree.root() != s.head_root or tree.to_bytes() != s.frontier:
                return False
            if tree.size in v.want_roots:
                v.roots_at[tree.size] = tree.root()
            expected = s.last_seq + 1
            last_leaf = s.last_leaf
            prev_hex = last_leaf.hex().encode()
            v.report.blocks += 1
            v.report.records += s.count
    if any(0 <= size <= tree.size and size not in v.roots_at for size in v.want_roots):
        return False  # a checkpoint inside a block: the sequential pass has every root
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
    from kroonika.audit.store._schema import retained_bases

    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(retained_bases.name):
                return {}
            rows = conn.execute(select(retained_bases)).all()
    except SQLAlchemyError:
        return {}
    bases = {}
    for r in rows:
        # A value of the wrong type is neutral (and so not vouched for); a row that
        # names no stream is left out (that stream then starts at 1).
        values, damage = _typed(r, _BASE_TYPES)
        if "stream" not in damage:
            bases[values["stream"]] = RetainedBase(
                values["stream"],
                values["size"],
                values["root"],
                values["frontier"],
                values["last_leaf"],
                values["purged"],
                values["kid"],
                values["signature"],
            )
    return bases


def _checkpoints(v: _StreamVerifier, cps: list[Checkpoint], size: int, *, external: bool) -> None:
    where = "external checkpoint" if external else "checkpoint"
    prev_hash = ZERO_HASH
    last_size = -1
    for cp in cps:
        if cp.kid not in v.keys:
            v.add(cp.size, "unknown_key", f"{where} at {cp.size} signed by unknown key {cp.kid!a}")
            continue
        if not v.keys.verify(cp.kid, cp.signature, cp.signed_bytes()):
            v.add(cp.size, "bad_signature", f"{where} at {cp.size} signature does not verify")
            continue
        if not external:
            if cp.size == last_size:  # sorted by size: a second row at a size
                v.add(cp.size, "inserted", f"a second {where} at {cp.size}")
                continue
            last_size = cp.size
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
        if cp.size < v.report.base:
            continue  # purged by retention; the signed checkpoint at the base vouches
        root = v.roots_at.get(cp.size)
        if root is None:  # never silently: a resync after damage jumped over it
            v.add(
                cp.size,
                "modified",
                f"the store's root at the {where}'s size {cp.size} cannot be recomputed "
                "(damage before it)",
                expected=cp.root.hex(),
            )
        elif root != cp.root:
            v.add(
                cp.size,
                "modified",
                f"store differs from the {where} at size {cp.size} (rollback or rewrite)",
                expected=cp.root.hex(),
                actual=root.hex(),
            )


def load_checkpoints(data: bytes) -> list[Checkpoint]:
    """Parse an exported checkpoint file (``kroonika audit checkpoint export``): an
    object with a ``checkpoints`` list, a list, or one checkpoint object. Every field
    is type-checked; ``ValueError`` says what is wrong."""
    doc = orjson.loads(data)  # orjson.JSONDecodeError is a ValueError
    if isinstance(doc, dict) and "checkpoints" in doc:
        docs = doc["checkpoints"]
    elif isinstance(doc, dict):
        docs = [doc]
    else:
        docs = doc
    if not isinstance(docs, list):
        raise ValueError("expected a JSON object with a list of checkpoints")
    if not docs:
        raise ValueError("the file holds no checkpoint")
    return [_checkpoint_from_json(i, d) for i, d in enumerate(docs)]


def _checkpoint_from_json(i: int, doc: object) -> Checkpoint:
    if not isinstance(doc, dict):
        raise ValueError(f"checkpoint {i} is not a JSON object")
    fields: dict[str, Any] = doc

    def text(key: str) -> str:
        value = fields.get(key)
        if not isinstance(value, str):
            raise ValueError(f"checkpoint {i}: {key} must be a string, got {_describe(value)}")
        return value

    def hex_bytes(key: str) -> bytes:
        value = text(key)
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise ValueError(f"checkpoint {i}: {key} is not hexadecimal") from None

    kind = fields.get("kind", "kroonika.checkpoint/1")
    if kind != "kroonika.checkpoint/1":
        raise ValueError(f"checkpoint {i}: kind is not kroonika.checkpoint/1")
    size = fields.get("size")
    if type(size) is not int or not 0 < size <= _MAX_SIZE:
        raise ValueError(f"checkpoint {i}: size must be an integer from 1 to {_MAX_SIZE}")
    stream = text("stream")
    if not stream:
        raise ValueError(f"checkpoint {i}: stream is empty")
    return Checkpoint(
        stream=stream,
        size=size,
        root=hex_bytes("root"),
        time=text("time"),
        kid=text("kid"),
        prev=hex_bytes("prev"),
        signature=hex_bytes("signature"),
    )
