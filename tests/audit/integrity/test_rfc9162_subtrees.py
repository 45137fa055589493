"""Appending aligned subtrees builds the same tree as appending leaves one by one."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from kroonika.audit.integrity import CompactRange, aligned_subtrees, leaf_hash


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(hashlib.sha256(str(i).encode()).digest()) for i in range(n)]


@given(cuts=st.lists(st.integers(min_value=1, max_value=70), min_size=1, max_size=8))
def test_split_ranges_give_the_same_root(cuts: list[int]) -> None:
    """Any split of the leaves into consecutive ranges, merged as aligned subtrees,
    equals the leaf-by-leaf compact range at every range boundary."""
    leaves = _leaves(sum(cuts))
    one_by_one = CompactRange()
    merged = CompactRange()
    pos = 0
    for width in cuts:
        for leaf in leaves[pos : pos + width]:
            one_by_one.append(leaf)
        for root, height in aligned_subtrees(pos, leaves[pos : pos + width]):
            merged.append_subtree(root, height)
        pos += width
        assert merged == one_by_one
        assert merged.root() == one_by_one.root()


def test_misaligned_subtree_is_refused() -> None:
    """A subtree of 4 leaves cannot start at leaf 2."""
    import pytest

    tree = CompactRange()
    tree.append(_leaves(1)[0])
    tree.append(_leaves(2)[1])
    with pytest.raises(ValueError, match="cannot start at 2"):
        tree.append_subtree(b"\x00" * 32, 2)
