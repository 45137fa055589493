"""RFC 9162 §2.1 Merkle trees: a slow reference from the RFC text, published vectors, and
properties of the verifiers."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kroonika.audit.integrity import (
    EMPTY_ROOT,
    CompactRange,
    IntegrityError,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

# --- Slow reference, written straight from RFC 9162 §2.1 -------------------------------------


def ref_mth(d: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf *inputs* (§2.1.1)."""
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) (§2.1.3.1)."""
    n = len(d)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) (§2.1.4.1)."""
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def ref_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) (§2.1.4.1), for 0 < m < n."""
    return ref_subproof(m, d, True)


INPUTS = [i.to_bytes(2, "big") for i in range(71)]
HASHES = [leaf_hash(x) for x in INPUTS]
SIZES = range(71)


@pytest.mark.parametrize("size", SIZES)
def test_roots_match_reference(size: int) -> None:
    """root_of and CompactRange give MTH for every size up to 70."""
    expected = ref_mth(INPUTS[:size])
    assert root_of(HASHES[:size]) == expected
    tree = CompactRange()
    for h in HASHES[:size]:
        tree.append(h)
    assert tree.size == size
    assert tree.root() == expected
    assert len(tree.hashes) == size.bit_count()


@pytest.mark.parametrize("size", SIZES[1:])
def test_inclusion_proofs_match_reference(size: int) -> None:
    """inclusion_proof equals PATH and verifies, for every index of every size up to 70."""
    root = ref_mth(INPUTS[:size])
    for index in range(size):
        proof = inclusion_proof(index, size, HASHES)
        assert proof == ref_path(index, INPUTS[:size])
        verify_inclusion(HASHES[index], index, size, proof, root)


@pytest.mark.parametrize("new_size", SIZES)
def test_consistency_proofs_match_reference(new_size: int) -> None:
    """consistency_proof equals PROOF and verifies, for every old size of every size to 70."""
    new_root = ref_mth(INPUTS[:new_size])
    for old_size in range(new_size + 1):
        proof = consistency_proof(old_size, new_size, HASHES)
        if 0 < old_size < new_size:
            assert proof == ref_proof(old_size, INPUTS[:new_size])
        else:
            assert proof == []
        verify_consistency(old_size, new_size, ref_mth(INPUTS[:old_size]), new_root, proof)


def test_leaf_source_may_be_a_callable() -> None:
    """Proof generation reads leaves through a callable as well as a sequence."""
    assert inclusion_proof(5, 13, HASHES.__getitem__) == inclusion_proof(5, 13, HASHES)
    assert consistency_proof(5, 13, HASHES.__getitem__) == consistency_proof(5, 13, HASHES)


# --- Published vectors: RFC 6962 test data of transparency-dev/merkle (proof/verify_test.go)
# and certificate-transparency-go ----------------------------------------------------------

VECTOR_INPUTS = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
VECTOR_LEAVES = [leaf_hash(x) for x in VECTOR_INPUTS]
VECTOR_ROOTS = [
    bytes.fromhex(h)
    for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]

# (index, size, proof); transparency-dev numbers leaves from 1, these are 0-based.
INCLUSION_VECTORS = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (0, 1, []),
]

# (old_size, new_size, proof)
CONSISTENCY_VECTORS = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


def test_empty_root_vector() -> None:
    """The empty tree's root is SHA-256 of nothing."""
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_of([]) == CompactRange().root() == EMPTY_ROOT


def test_leaf_and_node_hash_domain_separation() -> None:
    """Leaves are hashed with prefix 0x00, nodes with 0x01."""
    assert leaf_hash(b"").hex() == VECTOR_ROOTS[0].hex()
    assert node_hash(VECTOR_LEAVES[0], VECTOR_LEAVES[1]) == VECTOR_ROOTS[1]


@pytest.mark.parametrize("size", range(1, 9))
def test_root_vectors(size: int) -> None:
    """Roots of the first 1..8 vector leaves match the published roots."""
    tree = CompactRange()
    for h in VECTOR_LEAVES[:size]:
        tree.append(h)
    assert tree.root() == VECTOR_ROOTS[size - 1]
    assert root_of(VECTOR_LEAVES[:size]) == VECTOR_ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_inclusion_vectors(index: int, size: int, proof: list[str]) -> None:
    """Published inclusion proofs are generated exactly and verify."""
    expected = [bytes.fromhex(p) for p in proof]
    assert inclusion_proof(index, size, VECTOR_LEAVES) == expected
    verify_inclusion(VECTOR_LEAVES[index], index, size, expected, VECTOR_ROOTS[size - 1])


@pytest.mark.parametrize(("old_size", "new_size", "proof"), CONSISTENCY_VECTORS)
def test_consistency_vectors(old_size: int, new_size: int, proof: list[str]) -> None:
    """Published consistency proofs are generated exactly and verify."""
    expected = [bytes.fromhex(p) for p in proof]
    assert consistency_proof(old_size, new_size, VECTOR_LEAVES) == expected
    verify_consistency(
        old_size, new_size, VECTOR_ROOTS[old_size - 1], VECTOR_ROOTS[new_size - 1], expected
    )


def _corruptions(proof: list[bytes]) -> list[list[bytes]]:
    """transparency-dev/merkle's proof corruptions: garbage, roots, bit flips, removal."""
    out = [[*proof, SOME_HASH], [SOME_HASH, *proof], [*proof, EMPTY_ROOT], [b"", *proof]]
    for i in range(len(proof)):
        out.append([*proof[:i], _flip(proof[i], 3), *proof[i + 1 :]])
    if proof:
        out.append(proof[:-1])
    if len(proof) > 1:
        out.append([proof[0], SOME_HASH, *proof[1:]])
    return out


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_inclusion_vector_corruptions_fail(index: int, size: int, proof: list[str]) -> None:
    """Wrong index, size, leaf, root or proof never verifies (transparency-dev's probes)."""
    good = [bytes.fromhex(p) for p in proof]
    leaf, root = VECTOR_LEAVES[index], VECTOR_ROOTS[size - 1]
    probes = [
        (index - 1, size, leaf, root, good),
        (index + 1, size, leaf, root, good),
        (index ^ 2, size, leaf, root, good),
        (index, size * 2, leaf, root, good),
        (index, size // 2, leaf, root, good),
        (index, size, SOME_HASH, root, good),
        (index, size, leaf, EMPTY_ROOT, good),
        (index, size, leaf, SOME_HASH, good),
    ] + [(index, size, leaf, root, bad) for bad in _corruptions(good)]
    for probe in probes:
        with pytest.raises(ProofError):
            verify_inclusion(probe[2], probe[0], probe[1], probe[4], probe[3])


@pytest.mark.parametrize(("old_size", "new_size", "proof"), CONSISTENCY_VECTORS[1:])
def test_consistency_vector_corruptions_fail(
    old_size: int, new_size: int, proof: list[str]
) -> None:
    """Wrong sizes, roots or proof never verify (transparency-dev's probes)."""
    good = [bytes.fromhex(p) for p in proof]
    r1, r2 = VECTOR_ROOTS[old_size - 1], VECTOR_ROOTS[new_size - 1]
    probes = [
        (old_size - 1, new_size, r1, r2, good),
        (old_size + 1, new_size, r1, r2, good),
        (old_size ^ 2, new_size, r1, r2, good),
        (old_size, new_size * 2, r1, r2, good),
        (old_size, new_size // 2, r1, r2, good),
        (old_size, new_size, SOME_HASH, r2, good),
        (old_size, new_size, r1, SOME_HASH, good),
        (old_size, new_size, r2, r1, good),
        (old_size, new_size, r1, r2, []),
        (old_size, new_size, r1, r2, [*good, r1]),
        (old_size, new_size, r1, r2, [*good, r2]),
        (old_size, new_size, r1, r2, [r1, *good]),
        (old_size, new_size, r1, r2, [r2, *good]),
        (old_size, new_size, r1, r2, [good[0], *good]),
    ] + [(old_size, new_size, r1, r2, bad) for bad in _corruptions(good)]
    for m, n, root1, root2, bad in probes:
        with pytest.raises(ProofError):
            verify_consistency(m, n, root1, root2, bad)


# --- Verifier edge cases ------------------------------------------------------------------

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (2, 1), (1, 1), (-1, 5)])
def test_inclusion_index_outside_tree_fails(index: int, size: int) -> None:
    """An index outside the tree never verifies."""
    with pytest.raises(ProofError) as caught:
        verify_inclusion(SOME_HASH, index, size, [], SOME_HASH)
    assert caught.value.expected is None
    assert caught.value.actual is None


def test_single_leaf_tree_root_is_the_leaf() -> None:
    """In a one-leaf tree the empty proof verifies exactly the leaf hash as root."""
    verify_inclusion(SOME_HASH, 0, 1, [], SOME_HASH)
    with pytest.raises(ProofError):
        verify_inclusion(SOME_HASH, 0, 1, [], EMPTY_ROOT)


def test_root_mismatch_carries_expected_and_actual() -> None:
    """A well-formed proof against the wrong root reports both roots, like RootMismatchError."""
    proof = inclusion_proof(5, 8, VECTOR_LEAVES)
    with pytest.raises(ProofError) as caught:
        verify_inclusion(VECTOR_LEAVES[5], 5, 8, proof, VECTOR_ROOTS[6])
    assert caught.value.expected == VECTOR_ROOTS[6]
    assert caught.value.actual == VECTOR_ROOTS[7]
    assert VECTOR_ROOTS[6].hex() in str(caught.value)
    assert VECTOR_ROOTS[7].hex() in str(caught.value)
    assert isinstance(caught.value, IntegrityError)


@pytest.mark.parametrize(
    ("old_size", "new_size", "old_root", "new_root", "proof"),
    [
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT]),  # equal sizes need an empty proof
        (1, 1, SOME_HASH, EMPTY_ROOT, []),  # equal sizes need equal roots
        (0, 1, SOME_HASH, SOME_HASH, []),  # size 0 needs the empty root
        (0, 1, EMPTY_ROOT, SOME_HASH, [EMPTY_ROOT]),  # from 0 the proof is empty
        (1, 0, SOME_HASH, EMPTY_ROOT, []),  # no time travel
        (2, 1, SOME_HASH, SOME_HASH, []),
        (1, 2, SOME_HASH, SOME_HASH, []),  # a real step needs a proof
        (-1, 2, SOME_HASH, SOME_HASH, [SOME_HASH]),
    ],
)
def test_consistency_edge_cases_fail(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> None:
    """Trivial-size consistency checks are strict about proofs and roots."""
    with pytest.raises(ProofError):
        verify_consistency(old_size, new_size, old_root, new_root, proof)


def test_trivial_consistency_succeeds() -> None:
    """Equal trees and growth from the empty tree need an empty proof."""
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 5, EMPTY_ROOT, SOME_HASH, [])
    verify_consistency(3, 3, SOME_HASH, SOME_HASH, [])


@pytest.mark.parametrize("bad", [b"", b"x" * 31, b"x" * 33, bytearray(32)])
def test_malformed_proof_element_fails(bad: bytes) -> None:
    """A proof element that is not a 32-byte hash is a ProofError."""
    proof = inclusion_proof(0, 2, VECTOR_LEAVES)
    with pytest.raises(ProofError):
        verify_inclusion(VECTOR_LEAVES[0], 0, 2, [bad], VECTOR_ROOTS[1])
    with pytest.raises(ProofError):
        verify_consistency(1, 2, VECTOR_ROOTS[0], VECTOR_ROOTS[1], [*proof, bad])


@pytest.mark.parametrize(("index", "size"), [(0, 0), (3, 3), (-1, 3)])
def test_inclusion_proof_outside_tree_is_a_caller_error(index: int, size: int) -> None:
    """Asking for a proof of an index outside the tree is a ValueError."""
    with pytest.raises(ValueError, match="not in a tree"):
        inclusion_proof(index, size, HASHES)


@pytest.mark.parametrize(("old_size", "new_size"), [(3, 2), (-1, 2)])
def test_consistency_proof_bad_sizes_is_a_caller_error(old_size: int, new_size: int) -> None:
    """Asking for a consistency proof backwards is a ValueError."""
    with pytest.raises(ValueError, match="old_size"):
        consistency_proof(old_size, new_size, HASHES)


# --- Properties ---------------------------------------------------------------------------


def _leaves(n: int) -> list[bytes]:
    """Distinct leaves (with equal leaves a wrong index can legitimately verify)."""
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def _flip(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


@st.composite
def tree_and_index(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, 300))
    return size, draw(st.integers(0, size - 1))


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    new_size = draw(st.integers(2, 300))
    return draw(st.integers(1, new_size - 1)), new_size


@given(tree_and_index(), st.data())
def test_tampered_inclusion_proof_fails(tree: tuple[int, int], data: st.DataObject) -> None:
    """Any single-bit change in any proof element or the leaf is found."""
    size, index = tree
    leaves = _leaves(size)
    proof = inclusion_proof(index, size, leaves)
    root = root_of(leaves)
    verify_inclusion(leaves[index], index, size, proof, root)
    bit = data.draw(st.integers(0, 255))
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1))
        tampered = [*proof[:at], _flip(proof[at], bit), *proof[at + 1 :]]
        with pytest.raises(ProofError):
            verify_inclusion(leaves[index], index, size, tampered, root)
    with pytest.raises(ProofError):
        verify_inclusion(_flip(leaves[index], bit), index, size, proof, root)


def _shape(index: int, size: int) -> list[bool]:
    """For each proof element, bottom-up: does it sit to the left of the path?"""
    shape = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = 1
        while k * 2 < hi - lo:
            k *= 2
        shape.append(index >= lo + k)
        lo, hi = (lo + k, hi) if index >= lo + k else (lo, lo + k)
    return shape[::-1]


@given(tree_and_index(), st.data())
def test_wrong_index_fails_inclusion(tree: tuple[int, int], data: st.DataObject) -> None:
    """With distinct leaves, a proof does not verify for any other index."""
    size, index = tree
    leaves = _leaves(size)
    proof = inclusion_proof(index, size, leaves)
    other = data.draw(st.integers(-2, size + 2).filter(lambda i: i != index))
    with pytest.raises(ProofError):
        verify_inclusion(leaves[index], other, size, proof, root_of(leaves))


@given(tree_and_index(), st.data())
def test_inclusion_binds_size_only_through_path_shape(
    tree: tuple[int, int], data: st.DataObject
) -> None:
    """A proof verifies under another tree size exactly when the path has the same shape.

    (RFC 9162 proofs do not bind the size beyond that: the signed tree head binds size and
    root together, so a verifier must take both from the same signed head.)
    """
    size, index = tree
    leaves = _leaves(size)
    proof = inclusion_proof(index, size, leaves)
    other_size = data.draw(st.integers(0, 2 * size + 2).filter(lambda s: s != size))
    if index < other_size and _shape(index, other_size) == _shape(index, size):
        verify_inclusion(leaves[index], index, other_size, proof, root_of(leaves))
    else:
        with pytest.raises(ProofError):
            verify_inclusion(leaves[index], index, other_size, proof, root_of(leaves))


@given(tree_and_index(), st.binary(min_size=32, max_size=32))
def test_wrong_root_fails_inclusion(tree: tuple[int, int], wrong: bytes) -> None:
    """A proof verifies against its tree's root and no other."""
    size, index = tree
    leaves = _leaves(size)
    root = root_of(leaves)
    if wrong == root:
        return
    with pytest.raises(ProofError) as caught:
        verify_inclusion(leaves[index], index, size, inclusion_proof(index, size, leaves), wrong)
    assert caught.value.expected == wrong
    assert caught.value.actual == root


@given(tree_and_index(), st.data())
def test_truncated_or_extended_inclusion_proof_fails(
    tree: tuple[int, int], data: st.DataObject
) -> None:
    """Dropping, adding or prepending a proof element is found."""
    size, index = tree
    leaves = _leaves(size)
    proof = inclusion_proof(index, size, leaves)
    root = root_of(leaves)
    extra = data.draw(st.sampled_from([root, leaves[index], EMPTY_ROOT, SOME_HASH]))
    for bad in ([*proof, extra], [extra, *proof], proof[:-1] if proof else None):
        if bad is None:
            continue
        with pytest.raises(ProofError):
            verify_inclusion(leaves[index], index, size, bad, root)


@given(two_sizes(), st.data())
def test_tampered_consistency_proof_fails(sizes: tuple[int, int], data: st.DataObject) -> None:
    """Any single-bit change in any proof element or either root is found."""
    old_size, new_size = sizes
    leaves = _leaves(new_size)
    old_root, new_root = root_of(leaves[:old_size]), root_of(leaves)
    proof = consistency_proof(old_size, new_size, leaves)
    verify_consistency(old_size, new_size, old_root, new_root, proof)
    bit = data.draw(st.integers(0, 255))
    at = data.draw(st.integers(0, len(proof) - 1))
    tampered = [*proof[:at], _flip(proof[at], bit), *proof[at + 1 :]]
    with pytest.raises(ProofError):
        verify_consistency(old_size, new_size, old_root, new_root, tampered)
    with pytest.raises(ProofError):
        verify_consistency(old_size, new_size, _flip(old_root, bit), new_root, proof)
    with pytest.raises(ProofError):
        verify_consistency(old_size, new_size, old_root, _flip(new_root, bit), proof)
    with pytest.raises(ProofError):
        verify_consistency(old_size, new_size, old_root, new_root, proof[:-1])
    with pytest.raises(ProofError):
        verify_consistency(old_size, new_size, old_root, new_root, [*proof, new_root])


@given(two_sizes(), st.data())
def test_wrong_sizes_fail_consistency(sizes: tuple[int, int], data: st.DataObject) -> None:
    """A consistency proof does not verify for sizes whose proof has another length."""
    old_size, new_size = sizes
    leaves = _leaves(2 * new_size)
    old_root, new_root = root_of(leaves[:old_size]), root_of(leaves[:new_size])
    proof = consistency_proof(old_size, new_size, leaves)
    other_old = data.draw(st.integers(0, new_size).filter(lambda s: s != old_size))
    if len(consistency_proof(other_old, new_size, leaves)) != len(proof):
        with pytest.raises(ProofError):
            verify_consistency(other_old, new_size, old_root, new_root, proof)
    other_new = data.draw(st.integers(old_size, 2 * new_size).filter(lambda s: s != new_size))
    if len(consistency_proof(old_size, other_new, leaves)) != len(proof):
        with pytest.raises(ProofError):
            verify_consistency(old_size, other_new, old_root, new_root, proof)


# --- CompactRange ------------------------------------------------------------------------


@given(st.integers(0, 200), st.integers(0, 200))
def test_compact_range_resumes_after_serialisation(before: int, after: int) -> None:
    """to_bytes/from_bytes then appending gives the same root as never serialising."""
    leaves = _leaves(before + after)
    straight = CompactRange()
    for h in leaves:
        straight.append(h)
    first = CompactRange()
    for h in leaves[:before]:
        first.append(h)
    data = first.to_bytes()
    assert len(data) == 8 + 32 * before.bit_count()
    assert int.from_bytes(data[:8], "big") == before
    resumed = CompactRange.from_bytes(data)
    assert resumed == first
    for h in leaves[before:]:
        resumed.append(h)
    assert resumed.size == straight.size
    assert resumed.root() == straight.root() == root_of(leaves)
    assert resumed == straight


def test_compact_range_serialisation_vector() -> None:
    """Size 6 serialises as u64 6 then the roots of leaves 0..3 and 4..5."""
    tree = CompactRange()
    for h in VECTOR_LEAVES[:6]:
        tree.append(h)
    assert tree.to_bytes() == (
        (6).to_bytes(8, "big") + VECTOR_ROOTS[3] + node_hash(VECTOR_LEAVES[4], VECTOR_LEAVES[5])
    )
    assert CompactRange().to_bytes() == bytes(8)


@pytest.mark.parametrize(
    "data",
    [b"", bytes(7), bytes(9), (1).to_bytes(8, "big"), (1).to_bytes(8, "big") + bytes(33),
     (3).to_bytes(8, "big") + bytes(32), bytes(8) + bytes(32)],
)  # fmt: skip
def test_compact_range_from_malformed_bytes_fails(data: bytes) -> None:
    """A serialised range whose length does not match its size is refused."""
    with pytest.raises(ValueError, match="bytes"):
        CompactRange.from_bytes(data)


def test_compact_range_copy_is_independent() -> None:
    """Appending to a copy leaves the original unchanged."""
    tree = CompactRange()
    for h in VECTOR_LEAVES[:3]:
        tree.append(h)
    copy = tree.copy()
    copy.append(VECTOR_LEAVES[3])
    assert tree.size == 3
    assert tree.root() == VECTOR_ROOTS[2]
    assert copy.root() == VECTOR_ROOTS[3]


@pytest.mark.parametrize("bad", [b"", b"x" * 31, b"x" * 33, bytearray(32)])
def test_compact_range_refuses_non_hash(bad: bytes) -> None:
    """Only a 32-byte bytes leaf hash can be appended."""
    tree = CompactRange()
    with pytest.raises(ValueError, match="32 bytes"):
        tree.append(bad)
    assert tree.size == 0
