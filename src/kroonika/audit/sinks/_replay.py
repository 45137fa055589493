"""Replaying dead letters: re-deliver what a sink refused, once its destination is fixed.

The items are read again from the store (the sealed bytes, never a copy kept with the
dead letter), checked to be the item the row names (same id), and sent one at a time
in order: per stream by seq, a checkpoint after the events it covers. Each delivered
item is reported (``replayed``) and then its rows are marked ``replayed``; rows are
never deleted, so the table keeps what a destination refused and when it got it. The
first failure is reported (``replay_failed``) and ends the replay: nothing after it is
sent out of order and its rows stay pending. A row whose item is not in the store
(purged by retention, or a row that does not match the store) is left pending and
listed in ``missing``.

A replay does not move cursors and takes no ownership lock: it sends items the cursor
has already passed, so it cannot collide with the running delivery except by sending an
item twice (at least once, as always; event ids let a destination drop the repeat).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from kroonika.audit._model import rfc3339_micro
from kroonika.audit.sinks._base import CheckpointRecord, Item, Record, Sink, SinkError
from kroonika.audit.sinks._runner import EventCallback, describe_error, sink_event
from kroonika.audit.sinks._state import CursorStore
from kroonika.audit.store.sql import SqlAuditStore

Row = dict[str, Any]


def _order(row: Row) -> tuple[str, int, bool, int]:
    return (
        str(row["stream"]),
        int(row["seq"]),
        str(row["item_id"]).startswith("checkpoint:"),
        int(row["id"]),
    )


def load_item(store: SqlAuditStore, row: Row) -> Item | str:
    """The stored item a dead-letter row names, or why it cannot be replayed."""
    stream, seq, item_id = str(row["stream"]), int(row["seq"]), str(row["item_id"])
    if item_id.startswith("checkpoint:"):
        for cp in store.checkpoints(stream):
            if cp.size == seq and CheckpointRecord(cp).id == item_id:
                return CheckpointRecord(cp)
        return "the checkpoint is not in the store"
    blocks = store.blocks(stream, after_seq=seq - 1, batch=1)
    try:
        block = next(iter(blocks), None)
    finally:
        close = getattr(blocks, "close", None)
        if close is not None:
            close()
    if block is None or not block.first_seq <= seq <= block.last_seq:
        return "the event is not in the store (purged by retention?)"
    record = Record(stream, seq, block.records()[seq - block.first_seq])
    if record.id != item_id:
        return "the stored event at this seq has another id"
    return record


class DeadLetterReplay:
    """Replays ``rows`` (dead letters of ``sink``) through ``sink``; ``run()`` says
    whether every row was delivered. Progress stays readable after an exception (an
    ``on_event`` that could not record): ``replayed`` lists the rows delivered."""

    def __init__(
        self,
        store: SqlAuditStore,
        sink: Sink,
        rows: Sequence[Row],
        *,
        on_event: EventCallback,
        send_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        others = sorted({str(r["sink"]) for r in rows} - {sink.name})
        if others:
            raise ValueError(
                f"rows of other sinks {others} cannot be replayed through {sink.name!r}"
            )
        self.store = store
        self.sink = sink
        self.on_event = on_event
        self.send_timeout = send_timeout
        self._clock = clock
        self.cursors = CursorStore(store.engine)
        # one send per item, even if it was dead-lettered twice (two instances)
        self._items: list[tuple[Item, list[Row]]] = []
        self.missing: list[tuple[Row, str]] = []
        seen: dict[tuple[str, int, str], list[Row]] = {}
        for row in sorted(rows, key=_order):
            key = (str(row["stream"]), int(row["seq"]), str(row["item_id"]))
            if key in seen:
                seen[key].append(row)
                continue
            item = load_item(store, row)
            if isinstance(item, str):
                self.missing.append((row, item))
                continue
            seen[key] = [row]
            self._items.append((item, seen[key]))
        self.replayed: list[Row] = []
        self.failed: Row | None = None  # the first row of the item refused again
        self.error = ""

    @property
    def count(self) -> int:
        """How many items will be sent."""
        return len(self._items)

    async def run(self) -> bool:
        await self.sink.open()
        try:
            for item, rows in self._items:
                try:
                    await asyncio.wait_for(self.sink.send([item]), self.send_timeout)
                except (TimeoutError, OSError, SinkError) as exc:
                    self.failed, self.error = rows[0], describe_error(exc)
                    await self.on_event(
                        sink_event(self.sink.name, "replay_failed", self.error, None, "", item)
                    )
                    return False
                await self.on_event(sink_event(self.sink.name, "replayed", "", None, "", item))
                now = rfc3339_micro(int(self._clock() * 1e9))
                await asyncio.to_thread(self.cursors.mark_replayed, [r["id"] for r in rows], now)
                self.replayed.extend(rows)
        finally:
            await self.sink.close()
        return not self.missing
