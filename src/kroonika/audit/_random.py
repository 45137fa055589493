"""Random pieces for the event path (event ids, AES-GCM nonces), many per kernel read.

Each event needs 10 random bytes for its UUIDv7 and 12 for the nonce of its ``pii``
block. One ``os.urandom`` call per piece costs a system call each; a pool reads the
kernel's CSPRNG once per :data:`PIECES` pieces and hands them out one by one. The
bytes are the kernel's, unchanged: only the number of reads differs.

Two rules keep every piece used once:

- ``list.pop()`` hands a piece to exactly one caller, whatever the threads do (it is
  one operation under the GIL); a refill only appends fresh pieces.
- A forked child would inherit the parent's unused pieces and hand out the same
  nonces and ids as the parent; :func:`os.register_at_fork` empties every pool in
  the child, which then reads its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final, Generic, TypeVar

PIECES: Final = 256

T = TypeVar("T", bytes, str)


class RandomPool(Generic[T]):
    """Pieces of ``size`` random bytes, as ``cut`` makes them from one read."""

    __slots__ = ("_cut", "_pieces", "_size")
    _cut: Callable[[bytes, int], list[T]]
    _pieces: list[T]
    _size: int

    def __init__(self, size: int, cut: Callable[[bytes, int], list[T]]) -> None:
        self._size = size
        self._cut = cut
        self._pieces = []
        _POOLS.append(self)

    def take(self) -> T:
        try:
            return self._pieces.pop()
        except IndexError:
            return self._refill()

    def _refill(self) -> T:
        pieces = self._cut(os.urandom(self._size * PIECES), self._size)
        first = pieces.pop()
        self._pieces.extend(pieces)
        return first

    def clear(self) -> None:
        self._pieces.clear()


def _slices(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


_POOLS: list[RandomPool[bytes] | RandomPool[str]] = []


def _forget_all() -> None:
    for pool in _POOLS:
        pool.clear()


os.register_at_fork(after_in_child=_forget_all)

#: 12-byte AES-GCM nonces.
NONCES: Final[RandomPool[bytes]] = RandomPool(12, _slices)
