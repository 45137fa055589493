"""JetStream against the real nats-server; JSONL files with rotation."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import orjson
import pytest
from sink_kit import Kit, write_events

from kroonika.audit.sinks import JetStreamSink, JsonlFileSink, Record, RetryPolicy, SinkRunner

FAST = RetryPolicy(initial=0.01, maximum=0.05, send_timeout=10)


def require_nats() -> None:
    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=0.5):
            return
    except OSError:
        if os.environ.get("KROONIKA_REQUIRE_SERVICES") == "1":
            pytest.fail("NATS is not reachable on 127.0.0.1:4222 and KROONIKA_REQUIRE_SERVICES=1")
        pytest.skip("NATS is not reachable on 127.0.0.1:4222")


@pytest.mark.nats
@pytest.mark.asyncio
async def test_jetstream_gets_one_message_per_event_and_deduplicates_resends(kit: Kit) -> None:
    """Subject per category, Nats-Msg-Id = event id; a re-sent batch is dropped by the server."""
    require_nats()
    import nats

    prefix = f"kroonika_test_{uuid.uuid4().hex[:8]}"
    nc = await nats.connect("nats://127.0.0.1:4222")
    js = nc.jetstream()
    await js.add_stream(name=prefix, subjects=[f"{prefix}.>"], duplicate_window=120)
    try:
        write_events(kit, 4)
        kit.trail.checkpoint_now()
        sink = JetStreamSink("nats", "nats://127.0.0.1:4222", subject_prefix=prefix)
        runner = SinkRunner(kit.store, [sink], batch_size=3, retry=FAST)
        await runner.drain()
        bodies = [b for blk in kit.store.blocks("web-1") for b in blk.records()]
        await sink.send([Record("web-1", i + 1, b) for i, b in enumerate(bodies)])  # re-send
        await runner.stop()
        assert sink.duplicates == len(bodies)
        sub = await js.pull_subscribe(f"{prefix}.>", durable=None)
        msgs = await sub.fetch(100, timeout=2)
        events = [m for m in msgs if not m.subject.endswith(".checkpoint")]
        assert [m.data for m in events] == bodies
        assert [m.headers["Nats-Msg-Id"] for m in events] == [orjson.loads(b)["id"] for b in bodies]
        assert {m.subject for m in events} == {f"{prefix}.authentication"}
        cps = [orjson.loads(m.data) for m in msgs if m.subject.endswith(".checkpoint")]
        assert [c["checkpoint"]["size"] for c in cps] == [
            cp.size for cp in kit.store.checkpoints("web-1")
        ]
        for m in msgs:
            await m.ack()
    finally:
        await js.delete_stream(prefix)
        await nc.close()


@pytest.mark.asyncio
async def test_jetstream_outage_is_transient(kit: Kit) -> None:
    """With no server listening the sink fails transiently and delivers nothing."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = JetStreamSink("nats", f"nats://127.0.0.1:{port}", timeout=0.5)
    write_events(kit, 1)
    body = next(iter(kit.store.blocks("web-1"))).records()[0]
    from kroonika.audit.sinks import TransientSinkError

    with pytest.raises(TransientSinkError, match="cannot connect"):
        await sink.send([Record("web-1", 1, body)])


@pytest.mark.asyncio
async def test_jsonl_file_gets_every_line_and_rotates_by_size(kit: Kit, tmp_path: Path) -> None:
    """Lines are canonical events; past max_bytes the file is renamed and a new one begun."""
    write_events(kit, 12)
    sink = JsonlFileSink("file", tmp_path / "out", max_bytes=2048, fsync=False)
    runner = SinkRunner(kit.store, [sink], batch_size=2, retry=FAST, ship_checkpoints=False)
    await runner.drain()
    await runner.stop()
    rotated = sink.rotated_files()
    assert rotated
    data = b"".join(p.read_bytes() for p in [*rotated, sink.path])
    assert data == b"".join(b + b"\n" for blk in kit.store.blocks("web-1") for b in blk.records())
    assert all(p.stat().st_size <= 2048 for p in rotated)


@pytest.mark.asyncio
async def test_jsonl_file_rotates_by_age(kit: Kit, tmp_path: Path) -> None:
    """A file older than max_age is rotated before the next write."""
    now = [1000.0]
    sink = JsonlFileSink("file", tmp_path / "out", max_age=60, fsync=False, clock=lambda: now[0])
    await sink.open()
    write_events(kit, 2)
    bodies = [b for blk in kit.store.blocks("web-1") for b in blk.records()]
    await sink.send([Record("web-1", 1, bodies[0])])
    now[0] += 61
    await sink.send([Record("web-1", 2, bodies[1])])
    assert sink.rotations == 1
    assert sink.rotated_files()[0].read_bytes() == bodies[0] + b"\n"
    assert sink.path.read_bytes() == bodies[1] + b"\n"


@pytest.mark.asyncio
async def test_jsonl_a_write_cut_short_leaves_no_torn_line(
    kit: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills up mid-batch (part written, then ENOSPC) leaves no half line
    for the retried batch to merge with: the file holds whole events, each once."""
    import errno

    write_events(kit, 4)
    sink = JsonlFileSink("file", tmp_path / "out", fsync=False)
    real_write = os.write
    full = [True]

    def disk_full(fd: int, data: bytes | memoryview) -> int:
        if full[0] and os.readlink(f"/proc/self/fd/{fd}") == str(sink.path):
            full[0] = False
            real_write(fd, bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", disk_full)
    runner = SinkRunner(kit.store, [sink], batch_size=10, retry=FAST, ship_checkpoints=False)
    await runner.drain()
    await runner.stop()
    assert not full[0]
    bodies = [b for blk in kit.store.blocks("web-1") for b in blk.records()]
    assert sink.path.read_bytes() == b"".join(b + b"\n" for b in bodies)


@pytest.mark.asyncio
async def test_jsonl_keep_removes_the_oldest_files_even_past_ten_a_second(
    kit: Kit, tmp_path: Path
) -> None:
    """Rotated names within one second count up (-0, -1, ... -10, -11): ``keep`` must
    drop the oldest of them, so what stays is the newest run of events, in order."""
    write_events(kit, 14)
    bodies = [b for blk in kit.store.blocks("web-1") for b in blk.records()]
    sink = JsonlFileSink(
        "file", tmp_path / "out", max_bytes=1024, keep=3, fsync=False, clock=lambda: 1.8e9
    )
    await sink.open()
    for seq, body in enumerate(bodies, start=1):
        await sink.send([Record("web-1", seq, body)])  # each batch rotates the last one
    kept = sink.rotated_files()
    assert len(kept) == 3
    data = b"".join(p.read_bytes() for p in [*kept, sink.path])
    assert data == b"".join(b + b"\n" for b in bodies[-4:])


@pytest.mark.nats
@pytest.mark.asyncio
async def test_a_batch_whose_acks_were_lost_is_sent_again_and_stored_once(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server stores a message but its acknowledgement is lost (a timeout): the
    runner sends the batch again from the cursor, and the stream still holds each
    event once, because the re-sent copies carry the same ``Nats-Msg-Id``."""
    require_nats()
    import nats
    from nats.js.client import JetStreamContext

    prefix = f"kroonika_test_{uuid.uuid4().hex[:8]}"
    nc = await nats.connect("nats://127.0.0.1:4222")
    js = nc.jetstream()
    await js.add_stream(name=prefix, subjects=[f"{prefix}.>"], duplicate_window=7200)
    real_publish = JetStreamContext.publish
    lost = [2]  # the acks of the first two publishes never arrive

    async def publish_losing_acks(self: JetStreamContext, *args: object, **kw: object) -> object:
        ack = await real_publish(self, *args, **kw)  # type: ignore[arg-type]
        if lost[0]:
            lost[0] -= 1
            raise nats.errors.TimeoutError
        return ack

    monkeypatch.setattr(JetStreamContext, "publish", publish_losing_acks)
    try:
        write_events(kit, 3)
        sink = JetStreamSink("nats", "nats://127.0.0.1:4222", subject_prefix=prefix)
        runner = SinkRunner(kit.store, [sink], batch_size=10, retry=FAST, ship_checkpoints=False)
        await runner.drain()
        await runner.stop()
        await sink.close()
        bodies = [b for blk in kit.store.blocks("web-1") for b in blk.records()]
        assert lost == [0]
        # sent three times, stored once: the third answer says "duplicate"
        assert sink.duplicates == 1
        sub = await js.pull_subscribe(f"{prefix}.>", durable=None)
        msgs = await sub.fetch(100, timeout=2)
        assert [m.data for m in msgs] == bodies  # each event once, in order
        assert (await js.stream_info(prefix)).state.messages == len(bodies)
    finally:
        await js.delete_stream(prefix)
        await nc.close()


@pytest.mark.nats
@pytest.mark.asyncio
async def test_a_stream_whose_duplicate_window_is_short_is_named_in_a_warning(
    kit: Kit, caplog: pytest.LogCaptureFixture
) -> None:
    """The sink reads the duplicate window of each stream its events land in (once):
    shorter than it expects, a re-send after a restart may be stored twice, so it
    warns, naming the sink, the stream and both windows; a long enough one is quiet."""
    require_nats()
    import nats

    prefix = f"kroonika_test_{uuid.uuid4().hex[:8]}"
    nc = await nats.connect("nats://127.0.0.1:4222")
    js = nc.jetstream()
    short, long = f"{prefix}_short", f"{prefix}_long"
    await js.add_stream(name=short, subjects=[f"{prefix}.authentication"], duplicate_window=30)
    await js.add_stream(name=long, subjects=[f"{prefix}.checkpoint"], duplicate_window=7200)
    try:
        write_events(kit, 2)
        kit.trail.checkpoint_now()
        sink = JetStreamSink("nats", "nats://127.0.0.1:4222", subject_prefix=prefix)
        caplog.set_level("WARNING", logger="kroonika.audit.sinks")
        runner = SinkRunner(kit.store, [sink], batch_size=1, retry=FAST)
        await runner.drain()
        await runner.stop()
        await sink.close()
        assert sink.duplicate_windows == {short: 30.0, long: 7200.0}
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 1, warnings  # once per stream, not per publish
        for part in ("'nats'", repr(short), "within 30 s", "at least 7200 s"):
            assert part in warnings[0]
    finally:
        await js.delete_stream(short)
        await js.delete_stream(long)
        await nc.close()


def test_the_duplicate_window_expected_must_be_positive() -> None:
    with pytest.raises(ValueError, match="duplicate_window"):
        JetStreamSink("nats", duplicate_window=0)
