"""The inclusion proof of one stored event (RFC 9162 section 2.1.3) against its stream's
latest signed tree head: one builder and one answer for ``kroonika audit proof`` and
``GET /audit/events/{id}``, so the two cannot drift apart (decision 0034).

The hash list is called ``proof``, the name the CLI has printed from the start (the
command is a stable interface, DESIGN.md section 8); RFC 9162 calls it the inclusion
path. After a retention purge the stream's blocks start past 1 and the proof is made
from the retained base's Merkle frontier and the kept leaves. Every proof is checked
against the head's root before it is given (the head's signature is the verifier's to
check).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from kroonika.audit._errors import AuditError
from kroonika.audit.formats._text import escape_unprintable
from kroonika.audit.integrity import (
    CompactRange,
    ProofError,
    inclusion_proof,
    leaf_hash,
    verify_inclusion,
)
from kroonika.audit.store._types import AuditStore
from kroonika.audit.verify import stored_bases

#: Why there is no proof: the record was purged by retention, is not in the store (or
#: the stream is empty), comes after the last signed head, or the store is damaged.
Unavailable = Literal["purged", "missing", "unsigned", "damaged"]


class ProofUnavailable(AuditError):
    """No inclusion proof can be given for the record; ``kind`` says why, the message
    says it for a person (a stream name in it is escaped, never raw)."""

    def __init__(self, kind: Unavailable, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _shown(value: str) -> str:
    """A stream name for a message: what would forge a line or act on a terminal escaped."""
    return escape_unprintable(value, lambda ch: ascii(ch)[1:-1])


def event_proof(store: AuditStore, stream: str, seq: int) -> tuple[dict[str, Any], bytes]:
    """The inclusion proof of record ``seq`` of ``stream`` against its latest signed
    head, and the record's stored bytes. :class:`ProofUnavailable` when there is none."""
    name = _shown(stream)
    leaves: list[bytes] = []
    first: int | None = None
    head = None
    record = None
    for block in store.blocks(stream):
        if first is None:
            first = block.first_seq
        for body in block.records():
            leaves.append(leaf_hash(body))
            if first + len(leaves) - 1 == seq:
                record = body
        head = block.head
    if first is None or head is None:
        raise ProofUnavailable("missing", f"stream {name} has no records in this store")
    gone = first - 1  # records 1..gone are not in the store
    base = stored_bases(store).get(stream) if gone else None
    if seq <= gone:
        if base is not None:
            raise ProofUnavailable(
                "purged", f"record {seq} was purged by retention; see the archive"
            )
        raise ProofUnavailable(
            "missing",
            f"record {seq} is not in this store (stream {name} starts at {first} and no "
            "retained base says why; run `kroonika audit verify`)",
        )
    if record is None:
        raise ProofUnavailable("missing", f"stream {name} has no signed record {seq}")
    if seq > head.size:
        raise ProofUnavailable("unsigned", f"stream {name} has no signed record {seq}")
    index = seq - 1
    try:
        if gone:
            if base is None:
                raise ValueError(f"records 1..{gone} are missing and no retained base is stored")
            tree = CompactRange.from_bytes(base.frontier)
            if tree.size != gone:
                raise ValueError(
                    f"the retained base is at {tree.size}, the stream starts at {first}"
                )
            path = inclusion_proof_after_base(index, head.size, tree, lambda i: leaves[i - gone])
        else:
            path = inclusion_proof(index, head.size, leaves.__getitem__)
        verify_inclusion(leaves[index - gone], index, head.size, path, head.root)
    except (ValueError, TypeError, ProofError) as exc:  # TypeError: a damaged base row
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise ProofUnavailable(
            "damaged",
            f"cannot prove record {seq} of stream {name}: {first_line} "
            "(run `kroonika audit verify`)",
        ) from None
    proof = {
        "stream": stream,
        "seq": seq,
        "leaf_index": index,
        "leaf_hash": leaves[index - gone].hex(),
        "tree_size": head.size,
        "root": head.root.hex(),
        "head": {"time": head.time, "kid": head.kid, "signature": head.signature.hex()},
        "proof": [h.hex() for h in path],
    }
    return proof, record


def inclusion_proof_after_base(
    index: int, size: int, base: CompactRange, leaf_at: Callable[[int], bytes]
) -> list[bytes]:
    """``PATH(index, D[size])`` of RFC 9162 section 2.1.3.1, bottom-up, when the leaves
    ``[0, base.size)`` are gone (purged by retention) and only their Merkle frontier
    ``base`` is kept; ``leaf_at(i)`` gives the kept leaf hashes, ``i >= base.size``.

    For a leaf at or after the base this is always possible: a subtree of the path that is
    right of the leaf holds only kept leaves; one left of it is aligned and perfect, and
    either lies inside ``[0, base.size)`` (then it is a node of the frontier) or ends after
    it (then it starts at a frontier node, and the frontier's remaining nodes with the kept
    leaves after them make it). ``ValueError`` for a purged leaf.
    """
    k = base.size
    if not k <= index < size:
        raise ValueError(f"leaf {index} is not kept in a tree of size {size} based at {k}")
    spans: list[tuple[int, int, bytes]] = []  # (start, width, root) of the frontier's nodes
    start = 0
    widths = [1 << b for b in range(k.bit_length() - 1, -1, -1) if k >> b & 1]
    for width, node in zip(widths, base.hashes, strict=True):
        spans.append((start, width, node))
        start += width

    def subtree(lo: int, hi: int) -> bytes:
        if lo >= k:
            tree = CompactRange()
            for i in range(lo, hi):
                tree.append(leaf_at(i))
            return tree.root()
        tail = [(s, w, h) for s, w, h in spans if s >= lo]
        if not tail or tail[0][0] != lo:
            raise ValueError(f"subtree [{lo}, {hi}) is not made of frontier nodes")
        if hi <= k:
            if tail[0][1] != hi - lo:
                raise ValueError(f"subtree [{lo}, {hi}) is not a frontier node")
            return tail[0][2]
        tree = CompactRange.from_bytes((k - lo).to_bytes(8, "big") + b"".join(h for *_, h in tail))
        for i in range(k, hi):
            tree.append(leaf_at(i))
        return tree.root()

    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + (1 << ((hi - lo - 1).bit_length() - 1))  # the largest power of 2 < hi - lo
        if index < mid:
            path.append(subtree(mid, hi))
            hi = mid
        else:
            path.append(subtree(lo, mid))
            lo = mid
    path.reverse()
    return path
