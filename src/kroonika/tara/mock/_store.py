"""In-memory, expiring, single-process stores for login requests, codes and access tokens.

Keys are 256-bit random handles from :mod:`secrets`. Entries are kept in insertion order, and
all entries of one store share a lifetime, so expired entries are dropped from the front on each
insert. A store also holds at most ``max_entries`` (oldest dropped first) so a load test cannot
exhaust memory: the mock fails open on capacity, by forgetting the oldest grants.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from typing import Generic, TypeVar

from kroonika.tara.mock.config import Clock

T = TypeVar("T")


class ExpiringStore(Generic[T]):
    """Values that live ``ttl_seconds`` from insertion, found by a random handle."""

    def __init__(
        self, ttl_seconds: float, clock: Clock, prefix: str = "", max_entries: int = 100_000
    ) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        self._prefix = prefix
        self._max = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, T]] = OrderedDict()

    def put(self, value: T) -> str:
        """Store ``value`` and return its new handle."""
        handle = self._prefix + secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            while self._entries:
                oldest, (created, _) = next(iter(self._entries.items()))
                if now - created <= self._ttl and len(self._entries) < self._max:
                    break
                del self._entries[oldest]
            self._entries[handle] = (now, value)
        return handle

    def get(self, handle: str) -> T | None:
        """The live value under ``handle``, or None if unknown or expired."""
        with self._lock:
            entry = self._entries.get(handle)
        return self._live(entry)

    def take(self, handle: str) -> T | None:
        """Remove and return the live value under ``handle`` (single use), or None."""
        with self._lock:
            entry = self._entries.pop(handle, None)
        return self._live(entry)

    def _live(self, entry: tuple[float, T] | None) -> T | None:
        if entry is None:
            return None
        created, value = entry
        if self._clock() - created > self._ttl:
            return None
        return value

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
