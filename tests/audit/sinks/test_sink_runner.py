"""The SinkRunner: cursor, order, checkpoints, retries, dead letters, ownership."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import orjson
import pytest
from sink_kit import Kit, write_events

from kroonika.audit.sinks import (
    CapturingSink,
    CursorStore,
    Item,
    PermanentSinkError,
    Record,
    RetryPolicy,
    SinkEvent,
    SinkRunner,
    TransientSinkError,
)
from poll_kit import eventually

FAST = RetryPolicy(initial=0.001, maximum=0.004, permanent_attempts=3, send_timeout=5)


def seqs(sink: CapturingSink, stream: str = "web-1") -> list[int]:
    return [r.seq for r in sink.records() if r.stream == stream]


@pytest.mark.asyncio
async def test_delivers_every_record_in_order_with_its_canonical_bytes(kit: Kit) -> None:
    """Every stored record reaches the sink once, in seq order, byte for byte."""
    write_events(kit, 12)
    sink = CapturingSink()
    runner = SinkRunner(kit.store, [sink], batch_size=5, retry=FAST)
    await runner.drain()
    stored = [b for blk in kit.store.blocks("web-1") for b in blk.records()]
    assert [r.canonical for r in sink.records()] == stored
    assert seqs(sink) == list(range(1, len(stored) + 1))


@pytest.mark.asyncio
async def test_cursor_persists_so_a_new_runner_resumes_without_resending(kit: Kit) -> None:
    """A second runner (a restart) continues after the persisted cursor."""
    write_events(kit, 4)
    first = CapturingSink("s")
    runner = SinkRunner(kit.store, [first], retry=FAST)
    await runner.drain()
    await runner.stop()  # releases ownership, as a process exit would
    before = seqs(first)
    write_events(kit, 3, start=4)
    second = CapturingSink("s")
    await SinkRunner(kit.store, [second], retry=FAST).drain()
    assert seqs(second) == list(range(before[-1] + 1, before[-1] + 4))
    assert CursorStore(kit.store.engine).get("s", "web-1") == before[-1] + 3


@pytest.mark.asyncio
async def test_checkpoints_are_shipped_after_the_records_they_cover(kit: Kit) -> None:
    """Each stored checkpoint is delivered once, after the record at its size."""
    write_events(kit, 11)  # checkpoint_every=5
    sink = CapturingSink()
    await SinkRunner(kit.store, [sink], batch_size=3, retry=FAST).drain()
    stored = [cp.size for cp in kit.store.checkpoints("web-1")]
    shipped = [c.checkpoint.size for c in sink.checkpoints()]
    assert shipped == stored
    assert stored
    for cp in sink.checkpoints():
        pos = sink.items.index(cp)
        delivered_before = [i.seq for i in sink.items[:pos] if isinstance(i, Record)]
        assert max(delivered_before) >= cp.checkpoint.size


class FlakySink(CapturingSink):
    """Fails with a transient error for the first ``outage`` sends."""

    def __init__(self, outage: int) -> None:
        super().__init__("flaky")
        self.outage = outage
        self.calls = 0

    async def send(self, batch: Sequence[Item]) -> None:
        self.calls += 1
        if self.calls <= self.outage:
            raise TransientSinkError("connection refused")
        await super().send(batch)


@pytest.mark.asyncio
async def test_transient_outage_is_retried_and_reported_once_each_way(kit: Kit) -> None:
    """An outage is retried with backoff; one 'failed' and one 'recovered' event."""
    write_events(kit, 6)
    seen: list[SinkEvent] = []

    async def on_event(ev: SinkEvent) -> None:
        seen.append(ev)

    sink = FlakySink(outage=4)
    runner = SinkRunner(kit.store, [sink], retry=FAST, on_event=on_event)
    await runner.drain()
    assert seqs(sink) == list(range(1, kit.trail.size + 1))
    assert [e.state for e in seen] == ["failed", "recovered"]
    m = runner.metrics()["flaky"]
    assert (m["retries"], m["failures"], m["failing"]) == (4, 4, False)


class PoisonSink(CapturingSink):
    """Refuses (permanently) any batch holding the record with seq ``poison``."""

    def __init__(self, poison: int) -> None:
        super().__init__("poison")
        self.poison = poison

    async def send(self, batch: Sequence[Item]) -> None:
        for pos, item in enumerate(batch):
            if isinstance(item, Record) and item.seq == self.poison:
                raise PermanentSinkError("HTTP 400", delivered=0)
            del pos
        await super().send(batch)


@pytest.mark.asyncio
async def test_a_permanently_refused_record_becomes_one_dead_letter(kit: Kit) -> None:
    """Only the refused record is dead-lettered; everything else is delivered."""
    write_events(kit, 8)
    seen: list[SinkEvent] = []

    async def on_event(ev: SinkEvent) -> None:
        seen.append(ev)

    sink = PoisonSink(poison=4)
    runner = SinkRunner(kit.store, [sink], batch_size=100, retry=FAST, on_event=on_event)
    await runner.drain()
    total = kit.trail.size
    assert seqs(sink) == [s for s in range(1, total + 1) if s != 4]
    letters = CursorStore(kit.store.engine).dead_letters("poison")
    assert [(d["stream"], d["seq"], d["attempts"]) for d in letters] == [("web-1", 4, 3)]
    assert "dead_letter" in [e.state for e in seen]
    assert runner.metrics()["poison"]["dead_letters"] == 1


@pytest.mark.asyncio
async def test_a_dead_letter_report_names_the_event_the_siem_is_missing(kit: Kit) -> None:
    """The audit.sink dead_letter event carries the refused event's stream, seq and id
    (declared details), so an operator can find it; a failure names the stream."""
    from kroonika.audit.sinks import trail_reporter

    await kit.trail.start()
    try:
        write_events(kit, 6)
        poisoned = orjson.loads(
            next(r for blk in kit.store.blocks("web-1") for r in blk.records() if b'"seq":4,' in r)
        )
        sink = PoisonSink(poison=4)
        runner = SinkRunner(kit.store, [sink], retry=FAST, on_event=trail_reporter(kit.trail))
        await asyncio.wait_for(runner.drain(), 20)
    finally:
        await kit.trail.stop()
    bodies = [orjson.loads(b) for blk in kit.store.blocks("web-1") for b in blk.records()]
    reports = {b["details"]["state"]: b["details"] for b in bodies if b["type"] == "audit.sink"}
    assert poisoned["seq"] == 4
    dead = reports["dead_letter"]
    assert (dead["sink"], dead["item"], dead["item_stream"], dead["item_seq"]) == (
        "poison", "event", "web-1", 4,
    )  # fmt: skip
    assert dead["item_id"] == poisoned["id"]
    assert reports["failed"]["item_stream"] == "web-1"
    (letter,) = CursorStore(kit.store.engine).dead_letters("poison")
    assert (letter["stream"], letter["seq"], letter["item_id"]) == (
        dead["item_stream"], dead["item_seq"], dead["item_id"],
    )  # fmt: skip


@pytest.mark.asyncio
async def test_partial_acceptance_moves_the_cursor_past_what_was_accepted(kit: Kit) -> None:
    """A failure that names accepted leading items does not re-send them."""
    write_events(kit, 6)
    sink = CapturingSink("partial")
    sink.fail_with = TransientSinkError("busy", delivered=2)
    sink.fail_times = 1
    await SinkRunner(kit.store, [sink], retry=FAST).drain()
    assert seqs(sink) == list(range(1, kit.trail.size + 1))


@pytest.mark.asyncio
async def test_two_runners_on_one_store_deliver_each_record_once(
    kit: Kit, kit_factory: Callable[..., Kit]
) -> None:
    """Ownership by lock: two runners sharing a sink name never both deliver a stream."""
    other = kit_factory(stream="web-2")
    write_events(kit, 10)
    write_events(other, 10)
    a, b = CapturingSink("siem"), CapturingSink("siem")
    ra = SinkRunner(kit.store, [a], batch_size=3, retry=FAST)
    rb = SinkRunner(other.store, [b], batch_size=3, retry=FAST)
    await asyncio.gather(ra.drain(), rb.drain())
    await ra.drain()
    got = [(r.stream, r.seq) for r in a.records() + b.records()]
    assert len(got) == len(set(got))
    expected = {
        (s, q) for s, k in (("web-1", kit), ("web-2", other)) for q in range(1, k.trail.size + 1)
    }
    assert set(got) == expected
    ra.lock.close()
    rb.lock.close()


@pytest.mark.asyncio
async def test_lag_metrics_count_what_is_not_delivered_yet(kit: Kit) -> None:
    """Lag in events falls to zero once the sink caught up."""
    write_events(kit, 5)
    sink = CapturingSink("lag")
    sink.fail_with = TransientSinkError("down")
    sink.fail_times = -1  # fail forever
    runner = SinkRunner(kit.store, [sink], retry=FAST)
    task = asyncio.create_task(runner.run_once(sink, refresh_streams=True))
    # the runner measures the lag once it has read the stream: wait for that (on a
    # loaded machine a fixed sleep was sometimes too short), then for it to stay put
    await eventually(lambda: "web-1" in runner.metrics()["lag"]["lag_events"])
    assert runner.metrics()["lag"]["lag_events"]["web-1"] == kit.trail.size
    sink.fail_times = 0
    await task
    await runner.drain()
    assert runner.metrics()["lag"]["lag_events_total"] == 0
    assert runner.metrics()["lag"]["delivered"] == kit.trail.size


@pytest.mark.asyncio
async def test_start_notify_stop_delivers_new_events_without_polling_delay(kit: Kit) -> None:
    """A started runner delivers what the trail commits (notify wakes it)."""
    sink = CapturingSink("live")
    runner = SinkRunner(kit.store, [sink], retry=FAST, poll_interval=30, streams_refresh=0)
    kit.trail.on_commit = runner.notify
    await runner.start()
    try:
        write_events(kit, 3)
        # 20 s: far above what notify takes even on a loaded machine (200 x 20 ms was
        # not), yet below the 30 s poll that would deliver them without notify
        await eventually(lambda: len(seqs(sink)) >= kit.trail.size, within=20)
    finally:
        await runner.stop()
    assert seqs(sink) == list(range(1, kit.trail.size + 1))


def test_records_decode_to_the_stored_event(kit: Kit) -> None:
    """Record.doc is the decoded canonical JSON."""
    write_events(kit, 1)
    body = next(iter(kit.store.blocks("web-1"))).records()[0]
    rec = Record("web-1", 1, body)
    assert rec.doc == orjson.loads(body)
    assert rec.id == rec.doc["id"]


def test_bad_configuration_is_refused_when_built(kit: Kit) -> None:
    """Duplicate sink names and empty sink lists are refused at construction."""
    with pytest.raises(ValueError, match="unique"):
        SinkRunner(kit.store, [CapturingSink("x"), CapturingSink("x")])
    with pytest.raises(ValueError, match="at least one"):
        SinkRunner(kit.store, [])
    with pytest.raises(ValueError, match="initial"):
        RetryPolicy(initial=0)


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    """Delay for attempt n is within [d/2, d], d = min(max, initial*2**(n-1))."""
    policy = RetryPolicy(initial=1, maximum=8)
    delays = [policy.delay(n, r) for n, r in ((1, lambda: 0.0), (1, lambda: 1.0), (3, lambda: 1.0))]
    assert delays == [0.5, 1.0, 4.0]
    assert (policy.delay(10, lambda: 1.0), policy.delay(10, lambda: 0.0)) == (8.0, 4.0)


@pytest.mark.parametrize("corrupt", ["garbage", 10**12, -5])
@pytest.mark.asyncio
async def test_a_corrupted_cursor_is_reported_and_delivers_nothing_until_fixed(
    kit: Kit, corrupt: object
) -> None:
    """A cursor row that is no sequence number, or lies past the stream's head, makes the
    sink fail loudly (not crash, not skip events silently); once the row is deleted the
    stream is delivered from its start."""
    from sqlalchemy import text

    write_events(kit, 5)  # and a checkpoint (checkpoint_every=5)
    seen: list[SinkEvent] = []

    async def on_event(ev: SinkEvent) -> None:
        seen.append(ev)

    sink = CapturingSink("siem")
    runner = SinkRunner(kit.store, [sink], retry=FAST, on_event=on_event)
    await runner.drain()
    with kit.store.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_sink_cursors SET seq = :v WHERE sink = 'siem'"), {"v": corrupt}
        )
    write_events(kit, 2, start=5)
    delivered = len(sink.items)
    await runner.drain()
    assert len(sink.items) == delivered
    assert runner.metrics()["siem"]["failing"] is True
    assert [(e.state, "cursor" in e.error) for e in seen] == [("failed", True)]
    assert ("siem@checkpoints", "web-1") in CursorStore(kit.store.engine).all()
    with kit.store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_sink_cursors WHERE sink = 'siem'"))
    await runner.drain()
    assert seqs(sink)[-kit.trail.size :] == list(range(1, kit.trail.size + 1))
    assert [e.state for e in seen] == ["failed", "recovered"]


@pytest.mark.asyncio
async def test_a_corrupted_checkpoint_cursor_stops_checkpoints_not_events(kit: Kit) -> None:
    """A broken checkpoint cursor is reported; events keep flowing meanwhile."""
    from sqlalchemy import text

    write_events(kit, 5)
    seen: list[SinkEvent] = []

    async def on_event(ev: SinkEvent) -> None:
        seen.append(ev)

    sink = CapturingSink("siem")
    runner = SinkRunner(kit.store, [sink], batch_size=2, retry=FAST, on_event=on_event)
    await runner.drain()
    shipped = len(sink.checkpoints())
    with kit.store.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_sink_cursors SET seq = 'x' WHERE sink = 'siem@checkpoints'")
        )
    write_events(kit, 6, start=5)
    await runner.drain()
    assert seqs(sink) == list(range(1, kit.trail.size + 1))
    assert len(sink.checkpoints()) == shipped
    assert [(e.state, "'siem@checkpoints'" in e.error) for e in seen] == [("failed", True)]
    assert runner.metrics()["siem"]["failing"] is True


class RefuseAllSink(CapturingSink):
    """Refuses every item permanently (say, HEC answering 400 'Incorrect index')."""

    async def send(self, batch: Sequence[Item]) -> None:
        raise PermanentSinkError("HTTP 400", delivered=0)


@pytest.mark.asyncio
async def test_a_sink_refusing_everything_does_not_feed_on_its_own_reports(kit: Kit) -> None:
    """Each dead letter is an audit.sink event, which the refusing sink dead-letters in
    turn: that must end (no dead-letter report about an audit.sink event), not loop."""
    from kroonika.audit.sinks import trail_reporter

    await kit.trail.start()
    try:
        write_events(kit, 3)
        first = kit.trail.size
        sink = RefuseAllSink("refuse")
        runner = SinkRunner(kit.store, [sink], retry=FAST, on_event=trail_reporter(kit.trail))
        await asyncio.wait_for(runner.drain(), 20)
    finally:
        await kit.trail.stop()
    bodies = [orjson.loads(b) for blk in kit.store.blocks("web-1") for b in blk.records()]
    reports = [b for b in bodies if b["type"] == "audit.sink"]
    letters = CursorStore(kit.store.engine).dead_letters("refuse")
    lettered = {d["item_id"] for d in letters}
    assert {b["id"] for b in bodies[:first]} <= lettered
    assert {b["id"] for b in reports} <= lettered  # recorded, but not reported again
    not_reports = lettered - {b["id"] for b in reports}  # events before, and checkpoints
    assert [r["details"]["state"] for r in reports] == ["failed"] + ["dead_letter"] * len(
        not_reports
    )


class FlappingSink(CapturingSink):
    """Every other send fails (a load balancer with one bad backend)."""

    def __init__(self) -> None:
        super().__init__("flapping")
        self.calls = 0

    async def send(self, batch: Sequence[Item]) -> None:
        self.calls += 1
        if self.calls % 2:
            raise TransientSinkError("HTTP 503")
        await super().send(batch)


@pytest.mark.asyncio
async def test_a_flapping_sink_does_not_feed_on_its_own_reports(kit: Kit) -> None:
    """failed/recovered reports are new events the flapping sink fails on again: within
    report_quiet of a recovery a new failure is counted, not reported, so it ends."""
    from kroonika.audit.sinks import trail_reporter

    now = [1_800_000_000.0]
    await kit.trail.start()
    try:
        write_events(kit, 3)
        sink = FlappingSink()
        runner = SinkRunner(
            kit.store,
            [sink],
            retry=FAST,
            on_event=trail_reporter(kit.trail),
            clock=lambda: now[0],
            report_quiet=60,
        )
        await asyncio.wait_for(runner.drain(), 20)
        now[0] += 61  # after the quiet period a failure is reported again
        write_events(kit, 1, start=3)
        await asyncio.wait_for(runner.drain(), 20)
    finally:
        await kit.trail.stop()
    bodies = [orjson.loads(b) for blk in kit.store.blocks("web-1") for b in blk.records()]
    reports = [b["details"]["state"] for b in bodies if b["type"] == "audit.sink"]
    assert reports == ["failed", "recovered"] * 2
    assert runner.metrics()["flapping"]["failures"] > 2


class BuggySink(CapturingSink):
    """A sink with a bug: every send raises something that is no SinkError."""

    def __init__(self) -> None:
        super().__init__("buggy")
        self.calls = 0

    async def send(self, batch: Sequence[Item]) -> None:
        self.calls += 1
        raise KeyError("a bug")


@pytest.mark.asyncio
async def test_a_sink_bug_is_a_reported_failure_with_backoff(kit: Kit) -> None:
    """An exception that is no SinkError (a bug) still marks the sink failing, is
    reported once and is retried with back-off, not every poll interval."""
    write_events(kit, 2)
    seen: list[SinkEvent] = []

    async def on_event(ev: SinkEvent) -> None:
        seen.append(ev)

    sink = BuggySink()
    slow = RetryPolicy(initial=0.4, maximum=1.0, send_timeout=5)
    runner = SinkRunner(
        kit.store, [sink], retry=slow, on_event=on_event, poll_interval=0.01, rand=lambda: 1.0
    )
    await runner.start()
    # The first retry comes 0.4 s after the first call, the next 0.8 s after that: wait
    # for the retry (a fixed second can be too short on a loaded machine), then
    # watch a while for more: without back-off the 0.01 s poll would call it ~20 times.
    await eventually(lambda: sink.calls >= 2)
    await asyncio.sleep(0.2)  # checks that nothing happens: load only makes fewer calls
    await runner.stop()
    m = runner.metrics()["buggy"]
    error = "KeyError: unexpected error, see the log"  # not its text: it could quote a secret
    assert (m["failing"], m["delivered"], m["last_error"]) == (True, 0, error)
    assert 2 <= sink.calls <= 3  # at 0 s, 0.4 s and perhaps 0.4 + 0.8 s: not 20 times
    assert m["failures"] == sink.calls
    assert [(e.state, e.error) for e in seen] == [("failed", error)]


class GateSink(CapturingSink):
    """Each send waits for the gate, then fails: the test decides the moment."""

    def __init__(self) -> None:
        super().__init__("gate")
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def send(self, batch: Sequence[Item]) -> None:
        self.waiting.set()
        await self.gate.wait()
        self.gate.clear()
        raise TransientSinkError("down")


@pytest.mark.asyncio
async def test_cancelling_delivery_stops_it_even_as_a_send_fails(kit: Kit) -> None:
    """A cancellation that arrives as the send fails (asyncio.wait_for in Python 3.11
    then raises the send's error instead) still ends delivery: stop and the stop-time
    drain cannot hang on a failing sink."""
    write_events(kit, 1)
    sink = GateSink()
    runner = SinkRunner(kit.store, [sink], retry=FAST)
    task = asyncio.create_task(runner.drain())
    await sink.waiting.wait()
    sink.gate.set()
    task.cancel()  # in the same step as the send's failure
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    runner.lock.close()
