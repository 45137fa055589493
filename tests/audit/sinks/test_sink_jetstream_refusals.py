"""JetStream: what the server will never take is dead-lettered, not retried for ever;
an id with a non-ASCII stream name is delivered and deduplicated (real nats-server)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from sink_kit import Kit, OwnNats, own_nats_server, write_events
from test_sink_jetstream_file import require_nats

from kroonika.audit.sinks import (
    CheckpointRecord,
    CursorStore,
    Item,
    JetStreamSink,
    PermanentSinkError,
    Record,
    RetryPolicy,
    SinkRunner,
    TransientSinkError,
)

FAST = RetryPolicy(initial=0.01, maximum=0.05, send_timeout=10, permanent_attempts=2)


@contextlib.asynccontextmanager
async def jetstream(url: str, prefix: str) -> AsyncIterator[Any]:
    """A stream bound to ``<prefix>.>`` on ``url`` for the test; deleted after."""
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name=prefix, subjects=[f"{prefix}.>"], duplicate_window=7200)
    try:
        yield nc, js
    finally:
        await js.delete_stream(prefix)
        await nc.close()


async def deliver_all(kit: Kit, sink: JetStreamSink, **runner_options: Any) -> SinkRunner:
    """Drain ``kit``'s store to ``sink`` (a runner with the fast retry policy), then
    stop the runner and close the sink; return the runner for its metrics."""
    runner = SinkRunner(kit.store, [sink], retry=FAST, **runner_options)
    try:
        await runner.drain()
    finally:
        await runner.stop()
        await sink.close()
    return runner


async def stored_messages(js: Any, prefix: str) -> list[Any]:
    sub = await js.pull_subscribe(f"{prefix}.>", durable=None)
    return list(await sub.fetch(100, timeout=2))


class OversizedSink(JetStreamSink):
    """Pads the payload of one chosen event to ``size`` bytes (trailing JSON white
    space), standing in for an event the server's ``max_payload`` cannot hold."""

    def __init__(self, *args: Any, oversized: str, size: Callable[[], int], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.oversized = oversized
        self.size = size

    def payload(self, item: Item) -> bytes:
        body = super().payload(item)
        if item.id == self.oversized:
            return body + b" " * (self.size() - len(body))
        return body


@pytest.mark.nats
@pytest.mark.parametrize("extra", [1, 0], ids=["payload-over", "headers-tip-it-over"])
@pytest.mark.asyncio
async def test_an_event_over_the_servers_max_payload_is_dead_lettered_and_the_rest_delivered(
    kit: Kit, extra: int
) -> None:
    """The server's ``max_payload`` (from its INFO) is a limit no retry gets past: the
    event over it (its payload alone, or payload and ``Nats-Msg-Id`` header together)
    becomes a dead letter and the events after it are delivered, in order."""
    require_nats()
    prefix = f"kroonika_test_{uuid.uuid4().hex[:8]}"
    async with jetstream("nats://127.0.0.1:4222", prefix) as (nc, js):
        limit = nc.max_payload  # what the server announced in INFO
        assert limit > 0
        write_events(kit, 4)
        bodies = [b for blk in kit.store.blocks("web-1") for b in blk.records()]
        big = orjson.loads(bodies[1])["id"]
        sink = OversizedSink(
            "nats",
            "nats://127.0.0.1:4222",
            subject_prefix=prefix,
            timeout=2,
            oversized=big,
            size=lambda: limit + extra,
        )
        runner = await deliver_all(kit, sink, batch_size=10, ship_checkpoints=False)
        (dead,) = CursorStore(kit.store.engine).dead_letters("nats")
        assert (dead["stream"], dead["seq"], dead["item_id"]) == ("web-1", 2, big)
        assert dead["error"].startswith("PermanentSinkError: ")
        assert "max_payload" in dead["error"]
        msgs = await stored_messages(js, prefix)
        assert [m.data for m in msgs] == [bodies[0], *bodies[2:]]
        assert runner.metrics()["nats"]["delivered"] == len(bodies)


@pytest.mark.nats
@pytest.mark.asyncio
async def test_an_event_over_the_streams_max_msg_size_is_dead_lettered(kit: Kit) -> None:
    """The stream's own ``max_msg_size`` (a JetStream 400 answer) refuses the event for
    good: a dead letter naming the stream's reason; the events after it arrive."""
    require_nats()
    import nats

    prefix = f"kroonika_test_{uuid.uuid4().hex[:8]}"
    nc = await nats.connect("nats://127.0.0.1:4222")
    js = nc.jetstream()
    await js.add_stream(name=prefix, subjects=[f"{prefix}.>"], max_msg_size=16384)
    try:
        write_events(kit, 3)
        bodies = [b for blk in kit.store.blocks("web-1") for b in blk.records()]
        big = orjson.loads(bodies[0])["id"]
        sink = OversizedSink(
            "nats", subject_prefix=prefix, timeout=2, oversized=big, size=lambda: 20000
        )
        await deliver_all(kit, sink, batch_size=10, ship_checkpoints=False)
        (dead,) = CursorStore(kit.store.engine).dead_letters("nats")
        assert (dead["seq"], dead["item_id"]) == (1, big)
        assert dead["error"].startswith("PermanentSinkError: ")
        assert "the stream refuses the message" in dead["error"]
        assert [m.data for m in await stored_messages(js, prefix)] == bodies[1:]
    finally:
        await js.delete_stream(prefix)
        await nc.close()


@pytest.mark.nats
@pytest.mark.asyncio
async def test_the_sink_says_which_limit_an_oversized_item_is_over(kit: Kit) -> None:
    """The refusal is permanent at the item's position and names the subject, the
    size and the server's limit (never the payload)."""
    require_nats()
    prefix = f"kroonika_test_{uuid.uuid4().hex[:8]}"
    async with jetstream("nats://127.0.0.1:4222", prefix) as (nc, _js):
        write_events(kit, 2)
        bodies = [b for blk in kit.store.blocks("web-1") for b in blk.records()]
        big = orjson.loads(bodies[1])["id"]
        sink = OversizedSink(
            "nats", subject_prefix=prefix, oversized=big, size=lambda: nc.max_payload * 2
        )
        try:
            with pytest.raises(PermanentSinkError) as caught:
                await sink.send([Record("web-1", i + 1, b) for i, b in enumerate(bodies)])
        finally:
            await sink.close()
        assert caught.value.delivered == 1
        message = str(caught.value)
        assert f"{prefix}.authentication" in message
        assert f"max_payload ({nc.max_payload} bytes)" in message
        assert big not in message


def nats_server_denying(tmp: Path, subject: str) -> contextlib.AbstractContextManager[OwnNats]:
    """A nats-server of our own whose anonymous user may publish to everything but
    ``subject``."""
    return own_nats_server(
        tmp,
        "accounts { A { jetstream: enabled\n"
        '  users: [ { user: "pub", password: "not-used-by-the-sink",\n'
        f'    permissions: {{ publish: {{ deny: ["{subject}"] }} }} }} ] }} }}\n'
        'no_auth_user: "pub"\n',
    )


@pytest.mark.nats
@pytest.mark.asyncio
async def test_a_subject_the_credentials_may_not_publish_to_is_dead_lettered(
    kit: Kit, tmp_path: Path
) -> None:
    """A permissions violation (here on the checkpoint subject) is permanent: those
    items become dead letters naming the violation, and delivery does not stall on
    them; the events, on a subject allowed, all arrive."""
    prefix = f"kroonika_test_{uuid.uuid4().hex[:8]}"
    with nats_server_denying(tmp_path, f"{prefix}.checkpoint") as server:
        url = server.url
        async with jetstream(url, prefix) as (_nc, js):
            write_events(kit, 5)  # and a checkpoint at 5
            kit.trail.checkpoint_now()
            sink = JetStreamSink("nats", url, subject_prefix=prefix, timeout=1)
            await deliver_all(kit, sink, batch_size=10)
            dead = CursorStore(kit.store.engine).dead_letters("nats")
            checkpoints = [cp.size for cp in kit.store.checkpoints("web-1")]
            assert checkpoints
            assert [d["seq"] for d in dead] == checkpoints
            assert all(d["item_id"].startswith("checkpoint:") for d in dead)
            assert all("permissions violation" in d["error"] for d in dead)
            bodies = [b for blk in kit.store.blocks("web-1") for b in blk.records()]
            assert [m.data for m in await stored_messages(js, prefix)] == bodies


@pytest.mark.nats
@pytest.mark.asyncio
async def test_no_stream_bound_to_the_subject_stays_a_transient_failure(kit: Kit) -> None:
    """No stream for the subject (no responders) is the server's to fix: retried, not
    dead-lettered."""
    require_nats()
    write_events(kit, 1)
    body = next(iter(kit.store.blocks("web-1"))).records()[0]
    sink = JetStreamSink("nats", subject_prefix=f"kroonika_none_{uuid.uuid4().hex[:8]}", timeout=1)
    try:
        with pytest.raises(TransientSinkError):
            await sink.send([Record("web-1", 1, body)])
    finally:
        await sink.close()


@pytest.mark.nats
@pytest.mark.asyncio
async def test_a_checkpoint_of_a_long_non_ascii_stream_is_delivered_and_deduplicated(
    kit_factory: Callable[..., Kit],
) -> None:
    """``Nats-Msg-Id`` holds the stream name: with 128 multibyte letters the header is
    UTF-8 and still names the checkpoint; the server stores it once, and drops the
    re-send as a duplicate."""
    require_nats()
    stream = "tõrva-" + "\U0001d51e" * 122  # 128 letters, 495 bytes of UTF-8
    kit = kit_factory(stream=stream)
    prefix = f"kroonika_test_{uuid.uuid4().hex[:8]}"
    async with jetstream("nats://127.0.0.1:4222", prefix) as (_nc, js):
        write_events(kit, 5)  # and a checkpoint at 5
        sink = JetStreamSink("nats", subject_prefix=prefix)
        runner = SinkRunner(kit.store, [sink], batch_size=10, retry=FAST)
        try:
            await runner.drain()
            (cp,) = kit.store.checkpoints(stream)
            await sink.send([CheckpointRecord(cp)])  # sent again
        finally:
            await runner.stop()
            await sink.close()
        assert runner.metrics()["nats"]["checkpoints"] == 1
        assert sink.duplicates == 1
        cps = [m for m in await stored_messages(js, prefix) if m.subject.endswith(".checkpoint")]
        assert [m.headers["Nats-Msg-Id"] for m in cps] == [f"checkpoint:{stream}:5"]
        assert orjson.loads(cps[0].data)["checkpoint"]["stream"] == stream
