"""In-memory, expiring, single-process stores for login requests, codes and access tokens.

Keys are 256-bit random handles from :mod:`secrets`. Entries are kept in insertion order, and
all entries of one store share a lifetime, so expired entries are dropped from the front on each
insert. A store also holds at most ``max_entries`` so a load test cannot exhaust memory: the
mock fails open on capacity, by forgetting grants. Each entry has an owner (the pending logins':
the client address); a full store drops the oldest entry of the owner holding the most, so
whoever floods it pushes out its own entries first and another owner's only once every owner
holds as few. A store whose entries all have one owner drops its oldest, as a plain FIFO.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import OrderedDict
from typing import Generic, TypeVar

from kroonika.tara.mock.config import Clock

T = TypeVar("T")

logger = logging.getLogger("kroonika.tara.mock")

#: A full store logs its first drop and then every this many, not one line per request.
_LOG_EVERY = 10_000


class _Owners:
    """Each owner's handles, oldest first, and which owner holds the most, in O(1).

    ``_holding[n]`` is the owners holding exactly ``n`` entries, an ordered set (the first
    reached ``n`` first) kept in an OrderedDict: its first key is found in O(1) however
    many were deleted before it, a dict's is not (100,000 one-entry owners: 43 against
    6 microseconds an insert). An insert or a removal moves one owner by one, so the
    largest count moves by at most one too."""

    def __init__(self) -> None:
        self._handles: dict[str, OrderedDict[str, None]] = {}
        self._holding: dict[int, OrderedDict[str, None]] = {}
        self._most = 0

    def add(self, owner: str, handle: str) -> None:
        handles = self._handles.setdefault(owner, OrderedDict())
        handles[handle] = None
        self._move(owner, len(handles) - 1, len(handles))

    def remove(self, owner: str, handle: str) -> None:
        handles = self._handles[owner]
        del handles[handle]
        self._move(owner, len(handles) + 1, len(handles))
        if not handles:
            del self._handles[owner]

    def oldest_of_the_largest(self) -> str:
        """The oldest handle of the owner holding the most (the store is not empty)."""
        owner = next(iter(self._holding[self._most]))
        return next(iter(self._handles[owner]))

    def _move(self, owner: str, old: int, new: int) -> None:
        if old:
            bucket = self._holding[old]
            del bucket[owner]
            if not bucket:
                del self._holding[old]
                if old == self._most:
                    self._most = new
        if new:
            self._holding.setdefault(new, OrderedDict())[owner] = None
            self._most = max(self._most, new)


class ExpiringStore(Generic[T]):
    """Values that live ``ttl_seconds`` from insertion, found by a random handle."""

    def __init__(
        self,
        ttl_seconds: float,
        clock: Clock,
        prefix: str = "",
        max_entries: int = 100_000,
        *,
        name: str = "store",
        owned_by: str | None = None,
    ) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        self._prefix = prefix
        self._max = max_entries
        self._name = name
        self._whose = f" of the {owned_by} holding the most" if owned_by else ""
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, str, T]] = OrderedDict()
        self._owners = _Owners()
        self.dropped = 0
        """How many live entries a full store has dropped (expired ones are not counted)."""

    def put(self, value: T, *, owner: str = "") -> str:
        """Store ``value`` for ``owner`` and return its new handle."""
        handle = self._prefix + secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            while self._entries:
                oldest, (created, oldest_owner, _) = next(iter(self._entries.items()))
                if now - created <= self._ttl:
                    break
                self._remove(oldest, oldest_owner)
            if len(self._entries) >= self._max:
                victim = self._owners.oldest_of_the_largest()
                self._remove(victim, self._entries[victim][1])
                self.dropped += 1
                if self.dropped % _LOG_EVERY == 1:
                    logger.warning(
                        "%s full (%d entries): %d dropped so far, each the oldest%s",
                        self._name,
                        self._max,
                        self.dropped,
                        self._whose,
                    )
            self._entries[handle] = (now, owner, value)
            self._owners.add(owner, handle)
        return handle

    def get(self, handle: str) -> T | None:
        """The live value under ``handle``, or None if unknown or expired."""
        with self._lock:
            entry = self._entries.get(handle)
        return self._live(entry)

    def take(self, handle: str) -> T | None:
        """Remove and return the live value under ``handle`` (single use), or None."""
        with self._lock:
            entry = self._entries.get(handle)
            if entry is not None:
                self._remove(handle, entry[1])
        return self._live(entry)

    def _remove(self, handle: str, owner: str) -> None:
        del self._entries[handle]
        self._owners.remove(owner, handle)

    def _live(self, entry: tuple[float, str, T] | None) -> T | None:
        if entry is None:
            return None
        created, _, value = entry
        if self._clock() - created > self._ttl:
            return None
        return value

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
