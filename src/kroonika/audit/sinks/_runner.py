"""The SinkRunner: feeds every sink from the store through its persisted cursor.

Per sink and stream: take ownership (database lock), read the cursor, read the
next records after it (at most ``batch_size``), send them, move the cursor. The
result is at-least-once delivery in order per stream; with ownership by lock,
several instances sharing a store deliver each stream to each sink from one
place at a time (a crash between send and cursor commit re-sends that one batch,
which carries event ids so idempotent destinations drop it).

Failures: a :class:`TransientSinkError` (or a timeout, or an OS error) is retried
forever with exponential backoff and jitter; a :class:`PermanentSinkError` is
retried ``permanent_attempts`` times, then the refused item is written as a dead
letter and skipped. The first failure of a healthy sink (not within
``report_quiet`` seconds of a reported recovery, unless it lasts), its recovery and
every dead letter are reported through ``on_event`` (the service turns them into
``audit.sink`` events), except the dead letter of an ``audit.sink`` event itself,
which would otherwise feed a destination that refuses everything without end.
Checkpoints are shipped after the records they cover. Fails open: delivery never
blocks the writer; lag is a metric.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sqlalchemy import func, select

from kroonika.audit._model import Actor, ActorType, AuditEvent, Outcome, rfc3339_micro
from kroonika.audit.sinks._base import (
    CheckpointRecord,
    Item,
    PermanentSinkError,
    Record,
    Sink,
    SinkError,
    TransientSinkError,
)
from kroonika.audit.sinks._state import (
    CorruptCursor,
    CursorStore,
    OwnershipLock,
    ownership_lock_for,
)
from kroonika.audit.store._schema import blocks as blocks_table
from kroonika.audit.store._schema import checkpoints as checkpoints_table
from kroonika.audit.store._types import Checkpoint
from kroonika.audit.store.sql import SqlAuditStore

log = logging.getLogger("kroonika.audit.sinks")

CHECKPOINT_CURSOR_SUFFIX = "@checkpoints"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits a random time in
    ``[d/2, d]`` where ``d = min(maximum, initial * factor**(n-1))``."""

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    permanent_attempts: int = 3
    send_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial or self.factor < 1:
            raise ValueError("retry policy needs 0 < initial <= maximum and factor >= 1")
        if self.permanent_attempts < 1:
            raise ValueError("permanent_attempts must be at least 1")

    def delay(self, attempt: int, rand: Callable[[], float]) -> float:
        exponent = min(max(0, attempt - 1), 64)
        d = min(self.maximum, self.initial * self.factor**exponent)
        return d / 2 + rand() * d / 2


SinkState = Literal["failed", "recovered", "dead_letter", "replayed", "replay_failed"]


@dataclass(frozen=True, slots=True)
class SinkEvent:
    """A change in a sink's health, or what happened to one item, for ``audit.sink``.
    ``stream`` is the stream being delivered; for an item (a dead letter, a replay)
    ``seq`` and ``item_id`` name it and ``item`` says ``event`` or ``checkpoint``."""

    sink: str
    state: SinkState
    error: str
    lag: int | None  # None: not known (a replay by the command line)
    stream: str = ""
    seq: int = 0
    item_id: str = ""
    item: Literal["event", "checkpoint", ""] = ""


@dataclass(slots=True)
class SinkMetrics:
    delivered: int = 0
    checkpoints: int = 0
    batches: int = 0
    failures: int = 0
    retries: int = 0
    dead_letters: int = 0
    failing: bool = False
    last_error: str = ""
    lag_events: dict[str, int] = field(default_factory=dict)
    lag_seconds: dict[str, float] = field(default_factory=dict)
    broken_cursors: dict[str, str] = field(default_factory=dict)  # cursor/stream -> why

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["failing"] = self.failing or bool(self.broken_cursors)
        doc["lag_events_total"] = sum(self.lag_events.values())
        doc["lag_seconds_max"] = max(self.lag_seconds.values(), default=0.0)
        return doc


EventCallback = Callable[[SinkEvent], Awaitable[None]]


class SinkRunner:
    """Delivers every stream of ``store`` to every sink; one task per sink."""

    def __init__(
        self,
        store: SqlAuditStore,
        sinks: Sequence[Sink],
        *,
        batch_size: int = 500,
        poll_interval: float = 0.5,
        retry: RetryPolicy | None = None,
        on_event: EventCallback | None = None,
        ship_checkpoints: bool = True,
        lock: OwnershipLock | None = None,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        streams_refresh: float = 5.0,
        report_quiet: float = 60.0,
    ) -> None:
        if not sinks:
            raise ValueError("a SinkRunner needs at least one sink")
        names = [s.name for s in sinks]
        if len(set(names)) != len(names):
            raise ValueError(f"sink names must be unique: {names}")
        for name in names:
            if not name or len(name) + len(CHECKPOINT_CURSOR_SUFFIX) > 128 or "\x00" in name:
                raise ValueError(f"bad sink name {name!r}")
        if not 1 <= batch_size <= 100_000:
            raise ValueError("batch_size must be 1..100000")
        if report_quiet < 0:
            raise ValueError("report_quiet must be >= 0")
        self.store = store
        self.sinks = tuple(sinks)
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.retry = retry or RetryPolicy()
        self.on_event = on_event
        self.ship_checkpoints = ship_checkpoints
        self.cursors = CursorStore(store.engine)
        self.lock = lock or ownership_lock_for(store.engine)
        self._clock = clock
        self._rand = rand
        self._streams_refresh = streams_refresh
        self._streams: list[str] = []
        self._streams_at = -1e18
        self._streams_lock = threading.Lock()
        self._metrics = {s.name: SinkMetrics() for s in sinks}
        # Reports are events the sink then ships: a sink failing every other request
        # would feed on them forever. So within report_quiet seconds of a reported
        # recovery a new failure is counted, not reported (unless it lasts longer).
        self.report_quiet = report_quiet
        self._reported_failing: set[str] = set()
        self._recovered_at: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._wake: list[asyncio.Event] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._opened = False

    # --- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        if self._tasks:
            return
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        await self._open()
        for sink in self.sinks:
            wake = asyncio.Event()
            self._wake.append(wake)
            self._tasks.append(asyncio.create_task(self._run(sink, wake), name=f"sink-{sink.name}"))

    async def _open(self) -> None:
        if not self._opened:
            for sink in self.sinks:
                await sink.open()
            self._opened = True

    async def stop(self, *, drain: float = 0.0) -> None:
        """Stop the sink tasks; with ``drain`` > 0 first deliver what is stored, for at
        most ``drain`` seconds (one pass at a time, so nothing is sent twice), then close
        the sinks and release ownership."""
        self._stopping = True
        for wake in self._wake:
            wake.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._wake.clear()
        if drain > 0 and self._opened:
            self._stopping = False
            try:
                await asyncio.wait_for(self.drain(), drain)
            except TimeoutError:
                log.warning("sinks not caught up after %.1fs at stop", drain)
            except Exception:
                log.exception("sinks: final delivery pass failed")
            finally:
                self._stopping = True
        for sink in self.sinks:
            with contextlib.suppress(Exception):
                await sink.close()
        self._opened = False
        await asyncio.to_thread(self.lock.close)

    def notify(self, *_: object) -> None:
        """Wake the sinks now (thread-safe; fits ``AuditTrail.on_commit`` and
        ``checkpoint_listeners``)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        for wake in self._wake:
            loop.call_soon_threadsafe(wake.set)

    def metrics(self) -> dict[str, dict[str, Any]]:
        return {name: m.to_dict() for name, m in self._metrics.items()}

    async def _run(self, sink: Sink, wake: asyncio.Event) -> None:
        broken = 0  # passes in a row that raised
        while not self._stopping:
            try:
                moved = await self.run_once(sink)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Not a delivery failure the sink knows (a bug, the store down): still a
                # failure, counted, reported and retried with back-off like one.
                log.exception("sink %s: delivery pass failed", sink.name)
                broken += 1
                await self._failing(sink, describe_error(exc), "")
                await asyncio.sleep(self.retry.delay(broken, self._rand))
                continue
            broken = 0
            if moved:
                continue
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.poll_interval)

    # --- one pass -----------------------------------------------------------------

    async def drain(self, *, max_passes: int = 100_000) -> int:
        """Deliver until every sink is caught up (tests, CLI ``sinks run --once``)."""
        await self._open()
        total = 0
        for _ in range(max_passes):
            moved = 0
            for sink in self.sinks:
                moved += await self.run_once(sink, refresh_streams=True)
            total += moved
            if not moved:
                return total
        return total

    async def run_once(self, sink: Sink, *, refresh_streams: bool = False) -> int:
        """One batch per owned stream; returns how many items were delivered."""
        if not await asyncio.to_thread(self.lock.alive):
            return 0
        moved = 0
        for stream in await self._current_streams(refresh_streams):
            if self._stopping:
                break
            key = f"{sink.name}\x00{stream}"
            if not await asyncio.to_thread(self.lock.try_acquire, key):
                self._metrics[sink.name].lag_events.pop(stream, None)
                self._metrics[sink.name].lag_seconds.pop(stream, None)
                continue
            moved += await self._stream_pass(sink, stream)
        return moved

    async def _current_streams(self, refresh: bool) -> list[str]:
        now = self._clock()
        if refresh or now - self._streams_at >= self._streams_refresh:
            streams = await asyncio.to_thread(self.store.streams)
            with self._streams_lock:
                self._streams = sorted(streams)
                self._streams_at = now
        return list(self._streams)

    async def _stream_pass(self, sink: Sink, stream: str) -> int:
        """One batch of ``stream``, then the checkpoints it covers."""
        metrics = self._metrics[sink.name]
        cursor = await self._cursor(sink, sink.name, stream)
        if cursor is None:
            return 0
        records, head = await asyncio.to_thread(self._read, stream, cursor)
        if cursor > head:
            await self._broken_cursor(sink, sink.name, stream, f"past the head ({cursor} > {head})")
            return 0
        await self._cursor_fixed(sink, sink.name, stream)
        metrics.lag_events[stream] = max(0, head - cursor)
        metrics.lag_seconds[stream] = self._age(records[0].time) if records else 0.0
        moved = 0
        if records:
            moved += await self._deliver(sink, stream, records)
        if self.ship_checkpoints and not self._stopping:
            moved += await self._checkpoint_pass(sink, stream)
        if moved:
            done = await asyncio.to_thread(self.cursors.get, sink.name, stream)
            metrics.lag_events[stream] = max(0, head - done)
            metrics.lag_seconds[stream] = 0.0 if done >= head else metrics.lag_seconds[stream]
        return moved

    async def _checkpoint_pass(self, sink: Sink, stream: str) -> int:
        cp_key = sink.name + CHECKPOINT_CURSOR_SUFFIX
        done = await asyncio.to_thread(self.cursors.get, sink.name, stream)
        cp_cursor = await self._cursor(sink, cp_key, stream)
        if cp_cursor is None:
            return 0
        if cp_cursor > done:
            await self._broken_cursor(
                sink, cp_key, stream, f"past the delivered events ({cp_cursor} > {done})"
            )
            return 0
        await self._cursor_fixed(sink, cp_key, stream)
        cps = await asyncio.to_thread(self._read_checkpoints, stream, cp_cursor, done)
        if not cps:
            return 0
        return await self._deliver(sink, stream, [CheckpointRecord(c) for c in cps])

    # --- corrupted cursors --------------------------------------------------------
    # A cursor row that cannot be a delivered position (not an integer, negative, past
    # the head) stops delivery of what it counts until an operator fixes or deletes it:
    # guessing a position could skip events or repeat the whole stream. It is reported
    # once per cursor (so a healthy stream's recoveries do not make it flap).

    async def _cursor(self, sink: Sink, name: str, stream: str) -> int | None:
        try:
            return await asyncio.to_thread(self.cursors.get, name, stream)
        except CorruptCursor:
            await self._broken_cursor(sink, name, stream, "not a sequence number")
            return None

    async def _broken_cursor(self, sink: Sink, name: str, stream: str, why: str) -> None:
        metrics = self._metrics[sink.name]
        key = f"{name}/{stream}"
        if key in metrics.broken_cursors:
            return
        error = f"corrupted cursor {name!r} on stream {stream!r}: {why}"[:300]
        metrics.broken_cursors[key] = error
        metrics.failures += 1
        metrics.last_error = error
        await self._report(sink, "failed", error, stream)

    async def _cursor_fixed(self, sink: Sink, name: str, stream: str) -> None:
        if self._metrics[sink.name].broken_cursors.pop(f"{name}/{stream}", None) is not None:
            await self._report(sink, "recovered", "", stream)

    def _age(self, when: str) -> float:
        from datetime import datetime

        try:
            t = datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return 0.0
        return max(0.0, self._clock() - t)

    def _read(self, stream: str, cursor: int) -> tuple[list[Item], int]:
        out: list[Item] = []
        gen = self.store.blocks(stream, after_seq=cursor, batch=8)
        try:
            for block in gen:
                first = block.first_seq
                for i, body in enumerate(block.records()):
                    seq = first + i
                    if seq <= cursor:
                        continue
                    out.append(Record(stream, seq, body))
                if len(out) >= self.batch_size:
                    break
        finally:
            close = getattr(gen, "close", None)
            if close is not None:
                close()
        out = out[: self.batch_size]
        with self.store.engine.connect() as conn:
            head = conn.execute(
                select(func.max(blocks_table.c.last_seq)).where(blocks_table.c.stream == stream)
            ).scalar()
        return out, int(head or 0)

    def _read_checkpoints(self, stream: str, after: int, upto: int) -> list[Checkpoint]:
        if upto <= after:
            return []
        c = checkpoints_table.c
        query = (
            select(checkpoints_table)
            .where(c.stream == stream, c.size > after, c.size <= upto)
            .order_by(c.size, c.id)
            .limit(self.batch_size)
        )
        with self.store.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            Checkpoint(
                r.stream, r.size, bytes(r.root), r.time, r.kid, bytes(r.prev), bytes(r.signature)
            )
            for r in rows
        ]

    # --- delivery with retries ----------------------------------------------------

    async def _deliver(self, sink: Sink, stream: str, items: list[Item]) -> int:
        metrics = self._metrics[sink.name]
        pending = items
        delivered = 0
        attempt = 0
        permanent = 0
        single = 0  # after a refused batch: send this many items one at a time
        while pending and not self._stopping:
            if not await asyncio.to_thread(self.lock.alive):
                return delivered  # ownership lost: another instance takes over
            chunk = pending[:1] if single else pending
            try:
                await asyncio.wait_for(sink.send(chunk), self.retry.send_timeout)
            except (TimeoutError, OSError, SinkError) as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # Cancelled as the send failed: Python 3.11's wait_for then raises
                    # the send's error, and retrying would swallow the cancellation
                    # (stop() and its bounded drain would hang on a failing sink).
                    raise asyncio.CancelledError from exc
                accepted = exc.delivered if isinstance(exc, SinkError) else 0
                accepted = max(0, min(accepted, len(chunk)))
                if accepted:
                    await self._advance(sink, stream, pending[:accepted])
                    delivered += accepted
                    pending = pending[accepted:]
                    single = max(0, single - accepted)
                    attempt = permanent = 0
                error = describe_error(exc)
                await self._failing(sink, error, stream)
                if isinstance(exc, PermanentSinkError) and pending:
                    if len(chunk) - accepted > 1:
                        # A refused batch: find the item at fault, one at a time.
                        single = len(chunk) - accepted
                        continue
                    permanent += 1
                    if permanent >= self.retry.permanent_attempts:
                        await self._dead_letter(sink, stream, pending[0], error, permanent)
                        pending = pending[1:]
                        single = max(0, single - 1)
                        delivered += 1
                        permanent = attempt = 0
                        continue
                attempt += 1
                metrics.retries += 1
                await asyncio.sleep(self.retry.delay(attempt, self._rand))
                continue
            await self._advance(sink, stream, chunk)
            delivered += len(chunk)
            metrics.batches += 1
            pending = pending[len(chunk) :]
            single = max(0, single - len(chunk))
            attempt = permanent = 0
            metrics.failing = False
            if sink.name in self._reported_failing:
                self._reported_failing.discard(sink.name)
                self._recovered_at[sink.name] = self._clock()
                await self._report(sink, "recovered", "", stream)
        return delivered

    async def _failing(self, sink: Sink, error: str, stream: str) -> None:
        """Count a failed attempt; report it unless it follows a reported recovery
        within ``report_quiet``."""
        metrics = self._metrics[sink.name]
        metrics.failures += 1
        metrics.last_error = error
        metrics.failing = True
        if sink.name not in self._reported_failing and (
            self._clock() - self._recovered_at.get(sink.name, -math.inf) >= self.report_quiet
        ):
            self._reported_failing.add(sink.name)
            await self._report(sink, "failed", error, stream)

    async def _advance(self, sink: Sink, stream: str, done: Sequence[Item]) -> None:
        metrics = self._metrics[sink.name]
        now = rfc3339_micro(int(self._clock() * 1e9))
        last = done[-1]
        if isinstance(last, Record):
            metrics.delivered += sum(1 for i in done if isinstance(i, Record))
            await asyncio.to_thread(self.cursors.set, sink.name, stream, last.seq, now)
        else:
            metrics.checkpoints += len(done)
            await asyncio.to_thread(
                self.cursors.set,
                sink.name + CHECKPOINT_CURSOR_SUFFIX,
                stream,
                last.checkpoint.size,
                now,
            )

    async def _dead_letter(
        self, sink: Sink, stream: str, item: Item, error: str, attempts: int
    ) -> None:
        metrics = self._metrics[sink.name]
        metrics.dead_letters += 1
        seq = item.seq if isinstance(item, Record) else item.checkpoint.size
        now = rfc3339_micro(int(self._clock() * 1e9))
        await asyncio.to_thread(
            self.cursors.dead_letter, sink.name, stream, seq, item.id, error, attempts, now
        )
        await self._advance(sink, stream, [item])
        log.warning(
            "sink %s: dead-lettered %s#%d after %d attempts", sink.name, stream, seq, attempts
        )
        if isinstance(item, Record) and item.doc.get("type") == "audit.sink":
            # Reported as an event, it would reach the destination that refuses
            # everything and be dead-lettered too: one more report, and so on forever.
            # The dead letter row, the metric and the log line above still record it.
            return
        await self._report(sink, "dead_letter", error, stream, item)

    async def _report(
        self,
        sink: Sink,
        state: SinkState,
        error: str,
        stream: str,
        item: Item | None = None,
    ) -> None:
        metrics = self._metrics[sink.name]
        lag = sum(metrics.lag_events.values())
        if state == "failed":
            log.warning("sink %s failing: %s", sink.name, error)
        elif state == "recovered":
            log.info("sink %s recovered", sink.name)
        if self.on_event is None:
            return
        try:
            await self.on_event(sink_event(sink.name, state, error, lag, stream, item))
        except Exception:
            log.exception("sink %s: could not report %s", sink.name, state)


def sink_event(
    sink: str,
    state: SinkState,
    error: str,
    lag: int | None,
    stream: str,
    item: Item | None = None,
) -> SinkEvent:
    """The :class:`SinkEvent` for ``state``, naming ``item`` when there is one."""
    if item is None:
        return SinkEvent(sink, state, error, lag, stream)
    if isinstance(item, Record):
        return SinkEvent(sink, state, error, lag, item.stream, item.seq, item.id, "event")
    return SinkEvent(
        sink, state, error, lag, item.stream, item.checkpoint.size, item.id, "checkpoint"
    )


def describe_error(exc: BaseException) -> str:
    """A short error text without payloads (they may hold data)."""
    if isinstance(exc, TimeoutError):
        return "timeout: the destination stalled"
    if not isinstance(exc, SinkError | OSError):
        # Unexpected: its text is nobody's choice (it could quote a header value).
        return f"{type(exc).__name__}: unexpected error, see the log"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


def trail_reporter(trail: Any) -> EventCallback:
    """``on_event`` that records each :class:`SinkEvent` as ``audit.sink`` in ``trail``
    (an :class:`~kroonika.audit.AuditTrail`)."""

    async def report(ev: SinkEvent) -> None:
        await trail.emit(audit_sink_event(ev, Actor(type=ActorType.SYSTEM)))

    return report


def audit_sink_event(ev: SinkEvent, actor: Actor, justification: str | None = None) -> AuditEvent:
    """``audit.sink`` for ``ev`` (an :class:`~kroonika.audit.AuditEvent`), acted by
    ``actor``: success for recovered and replayed, failure otherwise."""
    from kroonika.audit import events

    ok = ev.state in ("recovered", "replayed")
    return events.audit_sink(
        outcome=Outcome.SUCCESS if ok else Outcome.FAILURE,
        reason=None if ok else f"sink.{ev.state}",
        actor=actor,
        sink=ev.sink,
        state=ev.state,
        error=ev.error or None,
        lag=ev.lag,
        item=ev.item or None,
        item_stream=ev.stream or None,
        item_seq=ev.seq if ev.item else None,
        item_id=ev.item_id or None,
        justification=justification,
    )


__all__ = [
    "EventCallback",
    "PermanentSinkError",
    "RetryPolicy",
    "SinkEvent",
    "SinkMetrics",
    "SinkRunner",
    "SinkState",
    "TransientSinkError",
    "audit_sink_event",
    "describe_error",
    "sink_event",
    "trail_reporter",
]
