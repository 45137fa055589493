"""emit() and the ordered processors; the writer with group commit; fail closed.

    validate → redact → pseudonymise → protect_pii → anonymise_ip → enrich → filter
    → seal → store

Application code awaits :meth:`AuditTrail.emit`. It runs the processors in the
caller (they are cheap and synchronous), then hands the record to the stream's
writer task and waits until the block holding it is durably committed. Events
that arrive while a commit is in flight are committed together (group commit).
The queue is bounded: when it is full, ``emit`` waits (back-pressure). When the
store cannot be written every waiting ``emit`` raises :class:`AuditUnavailable`:
the caller must not act unaudited. Nothing is dropped silently: the only deliberate
drop is the filter's, which raises :class:`EventFiltered` internally and is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from kroonika.audit._counters import Counters
from kroonika.audit._errors import AuditUnavailable, EventFiltered
from kroonika.audit._model import (
    Actor,
    ActorType,
    AuditEvent,
    SealedEvent,
    rfc3339_micro,
    uuid7,
)
from kroonika.audit._sealer import StreamSealer
from kroonika.audit.privacy import Fingerprinter, SubjectKeys
from kroonika.audit.processors.anonymise_ip import AnonymiseIp
from kroonika.audit.processors.enrich import Enrich, Enricher
from kroonika.audit.processors.filter import Filter
from kroonika.audit.processors.protect_pii import ProtectPersonalData
from kroonika.audit.processors.pseudonymise import Pseudonymise
from kroonika.audit.processors.redact import COUNTED_KINDS, Redact
from kroonika.audit.processors.validate import Validate
from kroonika.audit.signing import KeyRing
from kroonika.audit.store._types import AuditStore, Checkpoint

log = logging.getLogger("kroonika.audit")

Processor = Callable[[AuditEvent], AuditEvent]

_VERSION = "0.1.0"


#: Every counter the trail's :class:`Counters` may show, so metrics can give each one a
#: sample of 0 before it first moves (Prometheus convention; decision 0034, 2026-11-28).
#: A test checks that every ``counters.add`` of the library names one of these.
TRAIL_COUNTERS: Final = tuple(
    sorted(
        {
            "enrich.dropped_field",
            "filter.dropped",
            "validate.dropped_field",
            "validate.dropped_personal",
            "writer.failed_events",
            "writer.listener_errors",
            "writer.rejected_events",
            *(f"redact.{kind}" for kind in COUNTED_KINDS),
        }
    )
)


class Pipeline:
    """The ordered processors; each takes an event and returns it."""

    def __init__(self, processors: Sequence[Processor]) -> None:
        if not processors:
            raise ValueError("a pipeline needs processors")
        self.processors = tuple(processors)

    @classmethod
    def standard(
        cls,
        *,
        fingerprinter: Fingerprinter,
        subject_keys: SubjectKeys,
        counters: Counters,
        strict: bool,
        enrichers: Sequence[Enricher] = (),
        event_filter: Filter | None = None,
        anonymise_ip: AnonymiseIp | None = None,
    ) -> Pipeline:
        return cls(
            [
                Validate(strict=strict, counters=counters),
                Redact(counters),
                Pseudonymise(fingerprinter),
                ProtectPersonalData(subject_keys),
                anonymise_ip or AnonymiseIp(),
                Enrich(enrichers, counters),
                event_filter or Filter(counters=counters),
            ]
        )

    def __call__(self, event: AuditEvent) -> AuditEvent:
        for process in self.processors:
            event = process(event)
        return event


class AuditTrail:
    """One stream's writer: ``emit`` (async, group commit) and ``emit_sync``."""

    def __init__(
        self,
        pipeline: Pipeline,
        store: AuditStore,
        keyring: KeyRing,
        *,
        stream: str | None = None,
        counters: Counters | None = None,
        queue_size: int = 10_000,
        batch_max: int = 4096,
        checkpoint_every: int = 1000,
        checkpoint_interval: float = 1.0,
        clock: Callable[[], int] = time.time_ns,
        on_commit: Callable[[list[SealedEvent]], None] | None = None,
        subject_keys: SubjectKeys | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.store = store
        self.counters = counters or Counters()
        self.stream = stream or default_stream_name()
        self._clock = clock
        self._sealer = StreamSealer(
            store,
            self.stream,
            keyring,
            checkpoint_every=checkpoint_every,
            checkpoint_interval=checkpoint_interval,
            clock=clock,
            subject_keys=subject_keys,
        )
        self._queue_size = queue_size
        self._batch_max = batch_max
        self._queue: asyncio.Queue[tuple[list[dict[str, Any]], asyncio.Future[Any]] | None] | None
        self._queue = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: list[tuple[list[dict[str, Any]], asyncio.Future[Any]]] = []
        # One commit or checkpoint at a time: a commit orphaned by a cancelled writer
        # task still runs in its thread while stop() publishes the checkpoint.
        self._seal_lock = threading.Lock()
        self._closing = False
        # set when a stop gave up waiting for the writer: no commit starts after that
        self._abandoned = False
        self.started_sync = False
        self._emitted = 0
        self.on_commit = on_commit
        self.checkpoint_listeners: list[Callable[[Checkpoint], None]] = []
        self._sealer.on_checkpoint = self._checkpointed

    # --- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return
        self._queue = asyncio.Queue(self._queue_size)
        self._closing = False
        self._abandoned = False
        self._task = asyncio.create_task(self._writer(), name=f"audit-writer-{self.stream}")
        self._task.add_done_callback(self._writer_ended)
        await self.emit(self._start_event())

    async def stop(self, reason: str = "shutdown") -> None:
        """Record ``audit.log.stop``, commit everything queued and end the writer. A
        stop cancelled before that (the service's bound on it ran out: a commit hangs)
        gives the writer up: see :meth:`_abandon`."""
        if self._task is None:
            return
        from kroonika.audit import events

        task = self._task
        try:
            with contextlib.suppress(AuditUnavailable):
                await self.emit(
                    events.audit_log_stop(
                        actor=Actor(type=ActorType.SYSTEM), events=self._emitted, reason=reason
                    )
                )
            # A sentinel, not cancel(): everything queued before it is committed (and
            # its caller answered) before the writer ends; later emits fail closed.
            self._closing = True
            if self._queue is not None and not task.done():
                await self._queue.put(None)  # room is made if the writer dies meanwhile
            await asyncio.wait({task})  # whatever ended it, without raising it here
        except asyncio.CancelledError:
            self._abandon(task)
            raise
        self._task = None
        with contextlib.suppress(AuditUnavailable):
            await asyncio.to_thread(self.checkpoint_now)

    def _abandon(self, task: asyncio.Task[None]) -> None:
        """The stop was cut off while the writer still runs (a commit hangs): no commit
        starts any more (:meth:`_commit` refuses), every caller still waiting gets
        AuditUnavailable (the writer is cancelled), and :meth:`close_store` leaves the
        store open while the commit in flight still holds it. Nothing a caller was told
        is recorded is lost (it was committed before it was told); a caller told
        AuditUnavailable may find its event stored if the hung commit completes."""
        self._closing = True
        self._abandoned = True
        self._task = None
        if not task.done():
            task.cancel()  # _writer_ended answers every waiting caller
        log.error("audit writer of stream %s given up at the stop", self.stream)

    def close_store(self) -> bool:
        """Close the store unless a commit is still in it (a stop gave the writer up
        while its commit hung): a closed store is never written to, and an open one
        is closed by the process's exit. True if it was closed."""
        if not self._seal_lock.acquire(blocking=False):
            log.error(
                "audit store of stream %s left open: a commit is still in flight", self.stream
            )
            return False
        try:
            self._abandoned = True  # nothing commits into a closed store
            self.store.close()
        finally:
            self._seal_lock.release()
        return True

    def _writer_ended(self, task: asyncio.Task[None]) -> None:
        """Answer every caller still waiting when the writer task ends: those of the
        block it was committing and those queued behind it. After a normal stop
        there are none; after a cancel or a crash they get AuditUnavailable (a
        block whose commit was cut off may still have been stored)."""
        if task.cancelled():
            log.error("audit writer of stream %s was cancelled", self.stream)
        elif (exc := task.exception()) is not None:
            log.error("audit writer of stream %s crashed: %s", self.stream, type(exc).__name__)
        waiting = self._inflight
        self._inflight = []
        queue = self._queue
        while queue is not None and not queue.empty():
            item = queue.get_nowait()
            if item is not None:
                waiting.append(item)
        for _, fut in waiting:
            if not fut.done():
                fut.set_exception(AuditUnavailable("the audit writer stopped"))

    def _start_event(self) -> AuditEvent:
        from kroonika.audit import events

        return events.audit_log_start(
            actor=Actor(type=ActorType.SYSTEM),
            clock="system clock (CLOCK_REALTIME), UTC",
            version=_VERSION,
            store=self.store.url.split(":", 1)[0],
            host=socket.gethostname()[:128],
            pid=os.getpid(),
        )

    # --- emitting -----------------------------------------------------------------

    def prepare(self, event: AuditEvent) -> dict[str, Any] | None:
        """Stamp and process one event; ``None`` if the filter dropped it."""
        now = self._clock()
        event.id = uuid7(now)
        event.time = rfc3339_micro(now)
        try:
            event = self.pipeline(event)
        except EventFiltered:
            return None
        return event.to_record()

    async def emit(self, event: AuditEvent) -> SealedEvent | None:
        """Process, seal and durably store one event; returns once it is committed."""
        record = self.prepare(event)
        if record is None:
            return None
        result = await self._submit([record])
        return result[0]

    async def emit_many(self, batch: Iterable[AuditEvent]) -> list[SealedEvent]:
        """Emit several events that belong together (a bulk operation's items);
        they are committed in order, in the same or consecutive blocks."""
        records = [r for r in (self.prepare(e) for e in batch) if r is not None]
        if not records:
            return []
        return await self._submit(records)

    async def _submit(self, records: list[dict[str, Any]]) -> list[SealedEvent]:
        task = self._task
        if self._queue is None or task is None or task.done() or self._closing:
            raise AuditUnavailable("the audit writer is not running")
        fut: asyncio.Future[list[SealedEvent]] = asyncio.get_running_loop().create_future()
        await self._queue.put((records, fut))
        if task.done() and not fut.done():  # it ended while this caller waited for room
            fut.cancel()
            raise AuditUnavailable("the audit writer stopped")
        return await fut

    def emit_sync(self, event: AuditEvent) -> SealedEvent | None:
        """Synchronous emit for CLI commands and jobs outside an event loop. Must not
        be mixed with a running ``start()``ed writer of the same trail."""
        record = self.prepare(event)
        if record is None:
            return None
        sealed = self._commit_sync([record])
        return sealed[0]

    def emit_many_sync(self, batch: Iterable[AuditEvent]) -> list[SealedEvent]:
        """Synchronous ``emit_many``: one block for the whole batch."""
        records = [r for r in (self.prepare(e) for e in batch) if r is not None]
        return self._commit_sync(records) if records else []

    def _commit_sync(self, records: list[dict[str, Any]]) -> list[SealedEvent]:
        try:
            return self._commit(records)
        except AuditUnavailable:
            raise
        except Exception as exc:  # re-raised as AuditUnavailable (see _commit_each)
            self.counters.add("writer.rejected_events", len(records))
            raise AuditUnavailable(f"audit writer could not seal the event: {exc!r:.200}") from exc

    def log_start_sync(self) -> None:
        self.emit_sync(self._start_event())
        self.started_sync = True

    @property
    def emitted(self) -> int:
        """Events this writer has committed."""
        return self._emitted

    def _commit(self, records: list[dict[str, Any]]) -> list[SealedEvent]:
        try:
            with self._seal_lock:
                if self._abandoned:
                    raise AuditUnavailable("the audit writer was stopped")
                sealed = self._sealer.commit(records)
        except AuditUnavailable:
            self.counters.add("writer.failed_events", len(records))
            raise
        self._emitted += len(sealed)
        if self.on_commit is not None:
            # The block is durable: a listener's failure must not make the writer
            # think it was not (it would commit the records a second time).
            try:
                self.on_commit(sealed)
            except Exception:  # noqa: BLE001
                self.counters.add("writer.listener_errors")
        return sealed

    async def _writer(self) -> None:
        queue = self._queue
        if queue is None:  # start() sets it before creating this task
            raise RuntimeError("audit writer started without a queue")
        batch_max = self._batch_max
        stopping = False
        while not stopping:
            first = await queue.get()
            if first is None:
                return
            items = [first]
            size = len(first[0])
            while size < batch_max and not queue.empty():
                item = queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                items.append(item)
                size += len(item[0])
            records = [r for recs, _ in items for r in recs]
            self._inflight = items
            try:
                sealed = await asyncio.to_thread(self._commit, records)
            except AuditUnavailable as exc:
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(AuditUnavailable(str(exc)))
                continue
            except Exception:  # noqa: BLE001  (a bug must fail the callers, not hang them)
                # One record the sealer cannot take (a value validate let through)
                # must not fail the others committed with it: commit each caller's
                # records alone, so only the bad one's caller gets the error.
                await self._commit_each(items)
                continue
            pos = 0
            for recs, fut in items:
                n = len(recs)
                if not fut.done():
                    fut.set_result(sealed[pos : pos + n])
                pos += n

    async def _commit_each(
        self, items: list[tuple[list[dict[str, Any]], asyncio.Future[Any]]]
    ) -> None:
        for records, fut in items:
            try:
                sealed = await asyncio.to_thread(self._commit, records)
            except AuditUnavailable as exc:
                if not fut.done():
                    fut.set_exception(AuditUnavailable(str(exc)))
            except Exception as exc:  # noqa: BLE001
                self.counters.add("writer.rejected_events", len(records))
                if not fut.done():
                    fut.set_exception(
                        AuditUnavailable(f"audit writer could not seal the event: {exc!r:.200}")
                    )
            else:
                if not fut.done():
                    fut.set_result(sealed)

    def _checkpointed(self, checkpoint: Checkpoint) -> None:
        for listener in self.checkpoint_listeners:
            listener(checkpoint)

    def checkpoint_now(self) -> Checkpoint | None:
        with self._seal_lock:
            return self._sealer.checkpoint_now()

    @property
    def size(self) -> int:
        return self._sealer.size

    @property
    def keyring(self) -> KeyRing:
        """The signing keys of this stream (retention signs its bases with them)."""
        return self._sealer.keyring


def default_stream_name() -> str:
    """``<host>-<pid>-<random>``: unique per writer process."""
    host = socket.gethostname().split(".")[0][:64] or "host"
    return f"{host}-{os.getpid()}-{os.urandom(3).hex()}"
