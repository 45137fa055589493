"""JSON lines files for Filebeat, Vector or Fluent Bit to tail, with rotation.

The active file is ``<dir>/<basename>.jsonl``: one canonical event per line
(checkpoints as ``audit.checkpoint`` documents with the signed checkpoint). It is
rotated by rename to ``<basename>-<UTC time>-<n>.jsonl`` when it would grow past
``max_bytes`` or is older than ``max_age`` seconds; tailers follow the inode.
Each batch is written, flushed and (by default) fsynced before the cursor moves; a
batch that fails part way (a full disk) is cut off again, so no torn line is left.
``keep`` bounds how many rotated files stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson

from kroonika.audit.sinks._base import CheckpointRecord, Item, TransientSinkError


class JsonlFileSink:
    def __init__(
        self,
        name: str,
        directory: Path,
        *,
        basename: str = "audit",
        max_bytes: int = 100 * 1024 * 1024,
        max_age: float = 86400.0,
        keep: int = 30,
        fsync: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_bytes < 1024 or max_age <= 0 or keep < 1:
            raise ValueError("max_bytes >= 1024, max_age > 0 and keep >= 1 are required")
        if "/" in basename or not basename:
            raise ValueError("basename must be a plain file name")
        self.name = name
        self.directory = directory
        self.basename = basename
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.keep = keep
        self.fsync = fsync
        self._clock = clock
        self._opened_at = 0.0
        self.rotations = 0

    @property
    def path(self) -> Path:
        return self.directory / f"{self.basename}.jsonl"

    async def open(self) -> None:
        await asyncio.to_thread(self.directory.mkdir, parents=True, exist_ok=True)
        self._opened_at = self._clock()

    @staticmethod
    def encode(item: Item) -> bytes:
        if isinstance(item, CheckpointRecord):
            return orjson.dumps(item.doc(), option=orjson.OPT_SORT_KEYS) + b"\n"
        return item.canonical + b"\n"

    async def send(self, batch: Sequence[Item]) -> None:
        data = b"".join(self.encode(i) for i in batch)
        try:
            await asyncio.to_thread(self._write, data)
        except OSError as exc:
            raise TransientSinkError(f"cannot write {self.path}: {exc.strerror}") from exc

    def _write(self, data: bytes) -> None:
        path = self.path
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
            self._opened_at = self._clock()
        too_old = self._clock() - self._opened_at >= self.max_age
        if size and (size + len(data) > self.max_bytes or too_old):
            self._rotate()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            start = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                if self.fsync:
                    os.fsync(fd)
            except OSError:
                # Disk full mid-batch: cut off the part that was written, or its torn
                # last line would merge with the first line of the retried batch.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)

    def _rotate(self) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock()))
        # One more than the highest number of this second: a number freed by ``keep``
        # is not used again, so the numbers stay in the order the files were made.
        taken = [n for st, n, _ in map(self._order, self.rotated_files()) if st == stamp]
        n = max(taken, default=-1) + 1
        os.rename(self.path, self.directory / f"{self.basename}-{stamp}-{n}.jsonl")
        self._opened_at = self._clock()
        self.rotations += 1
        rotated = self.rotated_files()
        for old in rotated[: max(0, len(rotated) - self.keep)]:
            old.unlink(missing_ok=True)

    def _order(self, path: Path) -> tuple[str, int, str]:
        stamp, _, n = path.name[len(self.basename) + 1 : -len(".jsonl")].rpartition("-")
        return (stamp, int(n), path.name) if n.isdigit() else (path.name, -1, path.name)

    def rotated_files(self) -> list[Path]:
        """Rotated files, oldest first: by time, then by number (``-2`` before ``-10``)."""
        return sorted(self.directory.glob(f"{self.basename}-*.jsonl"), key=self._order)

    async def close(self) -> None:
        """Files are opened per batch; nothing to close."""
