"""Counters of what the pipeline drops, redacts and refuses (Vector-style instrumentation)."""

from __future__ import annotations

import threading
from collections import Counter


class Counters:
    """Thread-safe named counters; ``snapshot()`` feeds metrics and tests."""

    __slots__ = ("_counts", "_lock")

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def get(self, name: str) -> int:
        return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
