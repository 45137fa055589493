"""Merkle tree hashing of RFC 9162 (Certificate Transparency 2.0), section 2.1.

The audit trail is an append-only list of leaves; the tree over it is the RFC 9162 tree (the
same as RFC 6962's), so standard tooling can check our roots and proofs.

- §2.1.1 Merkle Tree Hash: :func:`leaf_hash` is ``SHA-256(0x00 || data)``, :func:`node_hash`
  is ``SHA-256(0x01 || left || right)``, the empty tree's hash is :data:`EMPTY_ROOT`
  (``SHA-256()``), and :func:`root_of` is the recursive ``MTH`` definition, kept for
  reference and small inputs.
- :class:`CompactRange` maintains the root incrementally (the "Merkle frontier": the roots of
  the perfect subtrees the leaves so far decompose into, as in transparency-dev/merkle's
  compact range starting at 0). ``append`` is amortised one hash per leaf; ``root`` folds at
  most ``log2(size)`` hashes.
- §2.1.3 inclusion proofs: :func:`inclusion_proof` builds ``PATH(m, D[n])``,
  :func:`verify_inclusion` runs the §2.1.3.2 verification algorithm.
- §2.1.4 consistency proofs: :func:`consistency_proof` builds ``PROOF(m, D[n])``,
  :func:`verify_consistency` runs the §2.1.4.2 verification algorithm.

Proof *generation* reads leaf hashes through ``leaf_at`` (a ``Sequence[bytes]`` or a
``Callable[[int], bytes]``), descends the tree iteratively and computes each sibling subtree
root with a compact range over its leaves: O(n) hashing, O(log n) memory, no deep recursion.

Errors (see ``_errors``)::

    IntegrityError(Exception)
    ├── ProofError          verification failed; .expected / .actual roots on a mismatch
    └── CanonicalisationError(ValueError)      (RFC 8785, not raised here)

Caller bugs -- a hash that is not 32 bytes of ``bytes``, an index or size outside the tree
when building a proof, a malformed serialised frontier -- raise ``TypeError``/``ValueError``.
Verification never raises those for bad proof *data*: a proof element of the wrong length or
an index outside the tree is a :class:`ProofError`.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from hashlib import sha256
from typing import Final, TypeAlias

from kroonika.audit.integrity._errors import ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "LeafSource",
    "ProofError",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE: Final = 32
"""Bytes in a SHA-256 hash, and so in every leaf hash, node hash, root and proof element."""

EMPTY_ROOT: Final = sha256(b"").digest()
"""MTH({}) = SHA-256() (§2.1.1): the root of the empty tree."""

_LEAF_PREFIX: Final = b"\x00"
_NODE_PREFIX: Final = b"\x01"
_SIZE_BYTES: Final = 8

LeafSource: TypeAlias = Callable[[int], bytes] | Sequence[bytes]
"""Where proof generation reads leaf hashes: a sequence, or a function from index to hash."""


def leaf_hash(data: bytes) -> bytes:
    """Return ``SHA-256(0x00 || data)``, the hash of one leaf (§2.1.1)."""
    return sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return ``SHA-256(0x01 || left || right)``, the hash of an interior node (§2.1.1)."""
    return sha256(_NODE_PREFIX + left + right).digest()


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return MTH over ``leaf_hashes`` by the recursive definition of §2.1.1.

    For reference and small inputs; :class:`CompactRange` gives the same root incrementally.
    """
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = _split(n)
    return node_hash(root_of(leaf_hashes[:k]), root_of(leaf_hashes[k:]))


class CompactRange:
    """The Merkle frontier of leaves ``[0, size)``: enough to go on appending and to compute
    the root, without the leaves.

    ``hashes`` holds the roots of the perfect subtrees that ``[0, size)`` decomposes into, the
    largest (leftmost) first; there is one for each bit set in ``size``. Not thread-safe:
    ``copy()`` before appending speculatively.

    Serialised form (:meth:`to_bytes`): ``size`` as 8 bytes unsigned big-endian, followed by
    the ``popcount(size)`` 32-byte hashes, largest subtree first. 8 bytes for an empty range,
    at most 8 + 64 * 32 bytes.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @property
    def size(self) -> int:
        """Number of leaves appended so far (the tree size)."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The frontier: subtree roots, largest (leftmost) subtree first."""
        return tuple(self._hashes)

    def append(self, leaf_hash: bytes) -> None:
        """Add the next leaf, given by its leaf hash (:func:`leaf_hash`)."""
        if type(leaf_hash) is not bytes or len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, got {leaf_hash!r}")
        self.append_unchecked(leaf_hash)

    def append_unchecked(self, leaf_hash: bytes) -> None:
        """:meth:`append` for a caller that made the 32-byte hash itself (the sealer)."""
        hashes = self._hashes
        node = leaf_hash
        # Each trailing 1 bit of the old size is a perfect subtree of the same height as the
        # one we carry: merge them, as in binary addition.
        n = self._size
        while n & 1:
            node = sha256(_NODE_PREFIX + hashes.pop() + node).digest()
            n >>= 1
        hashes.append(node)
        self._size += 1

    def extend_unchecked(self, leaf_hashes: Sequence[bytes]) -> None:
        """:meth:`append_unchecked` for each of ``leaf_hashes`` in order, in one call."""
        hashes = self._hashes
        pop, push = hashes.pop, hashes.append
        n = self._size
        for node in leaf_hashes:
            carry = n
            while carry & 1:
                node = sha256(_NODE_PREFIX + pop() + node).digest()
                carry >>= 1
            push(node)
            n += 1
        self._size = n

    def append_subtree(self, root: bytes, height: int) -> None:
        """Add a perfect subtree of ``2**height`` leaves given by its root. The current
        size must be a multiple of ``2**height`` (the subtree is aligned), as the
        pieces from :func:`aligned_subtrees` are."""
        width = 1 << height
        if height < 0 or self._size % width:
            raise ValueError(f"a subtree of height {height} cannot start at {self._size}")
        hashes = self._hashes
        node = root
        n = self._size >> height
        while n & 1:
            node = sha256(_NODE_PREFIX + hashes.pop() + node).digest()
            n >>= 1
        hashes.append(node)
        self._size += width

    def root(self) -> bytes:
        """Return the Merkle Tree Hash of leaves ``[0, size)`` (:data:`EMPTY_ROOT` if empty)."""
        hashes = self._hashes
        if not hashes:
            return EMPTY_ROOT
        root = hashes[-1]
        for node in reversed(hashes[:-1]):
            root = sha256(_NODE_PREFIX + node + root).digest()
        return root

    def copy(self) -> CompactRange:
        """Return an independent copy."""
        other = CompactRange.__new__(CompactRange)
        other._size = self._size
        other._hashes = self._hashes.copy()
        return other

    def to_bytes(self) -> bytes:
        """Serialise as ``size`` (u64 big-endian) followed by the frontier hashes."""
        return self._size.to_bytes(_SIZE_BYTES, "big") + b"".join(self._hashes)

    @classmethod
    def from_bytes(cls, data: bytes) -> CompactRange:
        """Rebuild a range from :meth:`to_bytes` output; ``ValueError`` if malformed."""
        if len(data) < _SIZE_BYTES:
            raise ValueError(f"a serialised compact range has at least {_SIZE_BYTES} bytes")
        size = int.from_bytes(data[:_SIZE_BYTES], "big")
        count = size.bit_count()
        if len(data) != _SIZE_BYTES + count * HASH_SIZE:
            raise ValueError(
                f"a compact range of size {size} serialises to "
                f"{_SIZE_BYTES + count * HASH_SIZE} bytes, got {len(data)}"
            )
        other = cls.__new__(cls)
        other._size = size
        other._hashes = [
            bytes(data[i : i + HASH_SIZE]) for i in range(_SIZE_BYTES, len(data), HASH_SIZE)
        ]
        return other

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompactRange):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()})"


def aligned_subtrees(start: int, leaves: Sequence[bytes]) -> list[tuple[bytes, int]]:
    """Split the leaves ``[start, start + len(leaves))`` into the aligned perfect
    subtrees a :class:`CompactRange` of size ``start`` can take with
    :meth:`CompactRange.append_subtree`, left to right, as ``(root, height)``.

    This lets independent workers hash disjoint ranges of one tree in parallel; the
    result is the same tree as appending the leaves one by one.
    """
    out: list[tuple[bytes, int]] = []
    pos, end, i = start, start + len(leaves), 0
    while pos < end:
        width = pos & -pos if pos else 1 << (end - pos).bit_length()
        while pos + width > end:
            width >>= 1
        level = list(leaves[i : i + width])
        height = 0
        while len(level) > 1:
            level = [
                sha256(_NODE_PREFIX + level[j] + level[j + 1]).digest()
                for j in range(0, len(level), 2)
            ]
            height += 1
        out.append((level[0], height))
        pos += width
        i += width
    return out


def inclusion_proof(index: int, size: int, leaf_at: LeafSource) -> list[bytes]:
    """Return the audit path ``PATH(index, D[size])`` of §2.1.3.1, bottom-up.

    ``leaf_at`` gives the leaf hash at each index in ``[0, size)``.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    get = _getter(leaf_at)
    proof: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + _split(hi - lo)
        if index < mid:
            proof.append(_range_root(mid, hi, get))
            hi = mid
        else:
            proof.append(_range_root(lo, mid, get))
            lo = mid
    proof.reverse()
    return proof


def consistency_proof(old_size: int, new_size: int, leaf_at: LeafSource) -> list[bytes]:
    """Return ``PROOF(old_size, D[new_size])`` of §2.1.4.1, bottom-up.

    Empty when ``old_size`` is 0 or equal to ``new_size`` (nothing to prove).
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"need 0 <= old_size <= new_size, got {old_size} and {new_size}")
    if old_size in (0, new_size):
        return []
    get = _getter(leaf_at)
    proof: list[bytes] = []
    # SUBPROOF(m, D[lo:hi], b), unrolled; m is relative to lo.
    lo, hi, m, whole = 0, new_size, old_size, True
    while m != hi - lo:
        mid = lo + _split(hi - lo)
        if lo + m <= mid:
            proof.append(_range_root(mid, hi, get))
            hi = mid
        else:
            proof.append(_range_root(lo, mid, get))
            m -= mid - lo
            lo = mid
            whole = False
    if not whole:
        proof.append(_range_root(lo, hi, get))
    proof.reverse()
    return proof


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` with ``root``.

    The algorithm of §2.1.3.2. Returns ``None`` on success, raises :class:`ProofError`
    otherwise (with ``expected=root`` and ``actual`` = the root the proof leads to when the
    proof is well formed but the roots differ).
    """
    _check_hashes(proof)
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofError(f"inclusion proof is too long for index {index} of size {size}")
        if fn & 1 or fn == sn:
            r = sha256(_NODE_PREFIX + p + r).digest()
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = sha256(_NODE_PREFIX + r + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"inclusion proof is too short for index {index} of size {size}")
    _check_root("inclusion proof does not lead to the tree root", expected=root, actual=r)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``old_size`` with ``old_root`` is a prefix of the tree of
    ``new_size`` with ``new_root``.

    The algorithm of §2.1.4.2 for ``0 < old_size < new_size``. For equal sizes the proof must
    be empty and the roots equal. For ``old_size == 0`` the proof must be empty and
    ``old_root`` must be :data:`EMPTY_ROOT` (transparency-dev/merkle accepts any
    ``old_root`` there; we are stricter). Raises :class:`ProofError` on failure.
    """
    _check_hashes(proof)
    if not 0 <= old_size <= new_size:
        raise ProofError(f"need 0 <= old_size <= new_size, got {old_size} and {new_size}")
    if old_size == new_size or old_size == 0:
        if proof:
            raise ProofError(f"consistency proof from {old_size} to {new_size} must be empty")
        if old_size == 0:
            _check_root("old root is not the empty tree's", expected=EMPTY_ROOT, actual=old_root)
        else:
            _check_root("trees of equal size differ", expected=old_root, actual=new_root)
        return
    if not proof:
        raise ProofError(f"consistency proof from {old_size} to {new_size} is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of 2: the old root is a node of the new tree
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"consistency proof from {old_size} to {new_size} is too long")
        if fn & 1 or fn == sn:
            fr = sha256(_NODE_PREFIX + c + fr).digest()
            sr = sha256(_NODE_PREFIX + c + sr).digest()
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = sha256(_NODE_PREFIX + sr + c).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"consistency proof from {old_size} to {new_size} is too short")
    _check_root("consistency proof does not lead to the old root", expected=old_root, actual=fr)
    _check_root("consistency proof does not lead to the new root", expected=new_root, actual=sr)


def _split(n: int) -> int:
    """The largest power of 2 strictly below ``n`` (``n >= 2``): the left subtree's size."""
    return 1 << ((n - 1).bit_length() - 1)


def _getter(leaf_at: LeafSource) -> Callable[[int], bytes]:
    if isinstance(leaf_at, Sequence):
        return leaf_at.__getitem__
    return leaf_at


def _range_root(lo: int, hi: int, get: Callable[[int], bytes]) -> bytes:
    """MTH(D[lo:hi]) with a compact range over the leaves: hi - lo - 1 node hashes."""
    stack: list[bytes] = []
    for i in range(lo, hi):
        node = get(i)
        if type(node) is not bytes or len(node) != HASH_SIZE:
            raise ValueError(f"leaf hash {i} is not {HASH_SIZE} bytes: {node!r}")
        n = i - lo
        while n & 1:
            node = sha256(_NODE_PREFIX + stack.pop() + node).digest()
            n >>= 1
        stack.append(node)
    root = stack.pop()
    while stack:
        root = sha256(_NODE_PREFIX + stack.pop() + root).digest()
    return root


def _check_hashes(proof: Sequence[bytes]) -> None:
    for i, p in enumerate(proof):
        if type(p) is not bytes or len(p) != HASH_SIZE:
            raise ProofError(f"proof element {i} is not a {HASH_SIZE}-byte hash: {p!r}")


def _check_root(message: str, *, expected: bytes, actual: bytes) -> None:
    if not hmac.compare_digest(expected, actual):
        raise ProofError(message, expected=expected, actual=actual)
