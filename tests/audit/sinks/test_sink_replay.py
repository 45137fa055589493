"""Replaying dead letters once the destination is fixed: in order, marked (never
deleted), each reported; a replay that fails again leaves them in place."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import orjson
import pytest
from sink_kit import Kit, write_events

from kroonika.audit.sinks import (
    CapturingSink,
    CheckpointRecord,
    CursorStore,
    DeadLetterReplay,
    Item,
    PermanentSinkError,
    Record,
    RetryPolicy,
    SinkEvent,
    SinkRunner,
)

FAST = RetryPolicy(initial=0.001, maximum=0.004, permanent_attempts=2, send_timeout=5)


class PickySink(CapturingSink):
    """Refuses (permanently) the events whose seq is in ``refuse`` and the checkpoints
    whose size is in ``refuse_checkpoints``, until they are emptied."""

    def __init__(self) -> None:
        super().__init__("picky")
        self.refuse: set[int] = set()
        self.refuse_checkpoints: set[int] = set()

    async def send(self, batch: Sequence[Item]) -> None:
        for pos, item in enumerate(batch):
            bad = (
                item.seq in self.refuse
                if isinstance(item, Record)
                else item.checkpoint.size in self.refuse_checkpoints
            )
            if bad:
                await super().send(batch[:pos])
                raise PermanentSinkError("HTTP 400 refused", delivered=pos)
        await super().send(batch)


async def dead_letter_some(kit: Kit) -> tuple[PickySink, list[dict[str, object]]]:
    """Six events (a checkpoint at 5); event 2, event 4 and checkpoint 5 end as dead
    letters."""
    write_events(kit, 6)
    sink = PickySink()
    sink.refuse = {4, 2}
    sink.refuse_checkpoints = {5}
    runner = SinkRunner(kit.store, [sink], retry=FAST)
    await runner.drain()
    await runner.stop()
    rows = CursorStore(kit.store.engine).dead_letters("picky", pending=True)
    assert {(r["seq"], str(r["item_id"]).startswith("checkpoint:")) for r in rows} == {
        (2, False), (4, False), (5, True),
    }  # fmt: skip
    sink.items.clear()
    return sink, rows


def collect() -> tuple[list[SinkEvent], object]:
    seen: list[SinkEvent] = []

    async def on_event(ev: SinkEvent) -> None:
        seen.append(ev)

    return seen, on_event


@pytest.mark.asyncio
async def test_replay_redelivers_in_order_and_marks_the_rows(
    kit_factory: Callable[..., Kit], store_url: str
) -> None:
    """Event 2, event 4, then checkpoint 5 (after the events it covers) are sent again,
    each row is marked replayed and stays, and each item is reported (SQLite and
    PostgreSQL)."""
    kit = kit_factory(store_url)
    sink, rows = await dead_letter_some(kit)
    sink.refuse.clear()
    sink.refuse_checkpoints.clear()
    seen, on_event = collect()
    replay = DeadLetterReplay(kit.store, sink, list(reversed(rows)), on_event=on_event)  # type: ignore[arg-type]
    assert await replay.run() is True
    sent = [(i.seq if isinstance(i, Record) else ("cp", i.checkpoint.size)) for i in sink.items]
    assert sent == [2, 4, ("cp", 5)]
    stored = {
        r.seq: r for r in sink.records()
    }  # the very bytes that were sealed, not a re-rendering
    bodies = [b for blk in kit.store.blocks("web-1") for b in blk.records()]
    assert stored[2].canonical == bodies[1]
    assert stored[4].canonical == bodies[3]
    assert isinstance(sink.items[2], CheckpointRecord)
    cursors = CursorStore(kit.store.engine)
    assert cursors.dead_letters("picky", pending=True) == []
    every = cursors.dead_letters("picky")
    assert len(every) == 3
    assert all(r["replayed"] for r in every)
    assert [(e.state, e.item, e.stream, e.seq) for e in seen] == [
        ("replayed", "event", "web-1", 2),
        ("replayed", "event", "web-1", 4),
        ("replayed", "checkpoint", "web-1", 5),
    ]
    assert seen[0].item_id == orjson.loads(bodies[1])["id"]


@pytest.mark.asyncio
async def test_a_replay_that_fails_again_leaves_the_dead_letters(kit: Kit) -> None:
    """Still refused: the first item's failure is reported, nothing after it is sent out
    of order, and every row stays pending."""
    sink, rows = await dead_letter_some(kit)
    sink.refuse = {2}
    seen, on_event = collect()
    replay = DeadLetterReplay(kit.store, sink, rows, on_event=on_event)  # type: ignore[arg-type]
    assert await replay.run() is False
    assert sink.items == []
    assert replay.failed is not None
    assert replay.failed["seq"] == 2
    assert "HTTP 400 refused" in replay.error
    assert len(CursorStore(kit.store.engine).dead_letters("picky", pending=True)) == 3
    assert [(e.state, e.seq) for e in seen] == [("replay_failed", 2)]
    assert "HTTP 400 refused" in seen[0].error


@pytest.mark.asyncio
async def test_a_dead_letter_whose_event_is_not_in_the_store_is_not_sent(kit: Kit) -> None:
    """A row naming a seq past the head, or an id that is not the stored event's, is
    reported as missing and left pending; the others are replayed."""
    sink, _rows = await dead_letter_some(kit)
    sink.refuse.clear()
    sink.refuse_checkpoints.clear()
    cursors = CursorStore(kit.store.engine)
    cursors.dead_letter("picky", "web-1", 99, "ev-99", "HTTP 400", 2, "2026-11-27T00:00:00Z")
    cursors.dead_letter("picky", "web-1", 3, "not-event-3", "HTTP 400", 2, "2026-11-27T00:00:00Z")
    _seen, on_event = collect()
    replay = DeadLetterReplay(
        kit.store,
        sink,
        cursors.dead_letters("picky", pending=True),
        on_event=on_event,  # type: ignore[arg-type]
    )
    assert await replay.run() is False
    assert sorted(r["seq"] for r, _ in replay.missing) == [3, 99]  # type: ignore[type-var]
    assert [i.seq for i in sink.records()] == [2, 4]
    assert sorted(r["seq"] for r in cursors.dead_letters("picky", pending=True)) == [3, 99]  # type: ignore[type-var]
