"""Syslog sinks against a real rsyslogd: octet-counted TCP and TLS, every field intact."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import orjson
import pytest
from sink_kit import Kit, Rsyslog, make_ca, start_rsyslog, stop_rsyslog, write_events

from kroonika.audit.formats import Rfc5424Renderer
from kroonika.audit.sinks import (
    CheckpointRecord,
    Record,
    RetryPolicy,
    SinkRunner,
    SyslogTcpSink,
    SyslogUdpSink,
    tls_context,
)
from poll_kit import eventually

pytestmark = pytest.mark.rsyslog
FAST = RetryPolicy(initial=0.01, maximum=0.05, send_timeout=10)
RENDERER = Rfc5424Renderer(hostname="kroonika-test", procid="4242")


def expected_messages(kit: Kit) -> list[str]:
    """Events in order, then the checkpoints in order (see ``split``)."""
    out = [RENDERER(orjson.loads(b)) for blk in kit.store.blocks("web-1") for b in blk.records()]
    out += [RENDERER(CheckpointRecord(cp).doc()) for cp in kit.store.checkpoints("web-1")]
    return out


def split(lines: list[str]) -> list[str]:
    """Received lines with events first (in arrival order), then checkpoints: a
    checkpoint follows the batch holding its size, not the record itself."""
    cps = [x for x in lines if " audit.checkpoint " in x.split("[", 1)[0]]
    return [x for x in lines if x not in cps] + cps


async def ship(kit: Kit, sink: SyslogTcpSink) -> None:
    runner = SinkRunner(kit.store, [sink], batch_size=4, retry=FAST)
    await runner.drain()
    await runner.stop()


@pytest.mark.asyncio
async def test_octet_counted_tcp_arrives_with_every_field_intact(
    kit: Kit, rsyslog: Rsyslog
) -> None:
    """rsyslog receives each RFC 5424 message byte for byte (hostile strings too)."""
    write_events(kit, 6, hostile=True)
    kit.trail.checkpoint_now()
    sink = SyslogTcpSink("rsyslog", "127.0.0.1", rsyslog.port, renderer=RENDERER)
    await ship(kit, sink)
    want = expected_messages(kit)
    got = rsyslog.wait_lines(len(want))
    assert split(got) == want
    first = orjson.loads(got[0].split("] ", 1)[1])
    stored = orjson.loads(next(iter(kit.store.blocks("web-1"))).records()[0])
    assert first == stored
    assert "Õunapuu ÄÖÜ 🦊" in first["source"]["user_agent"]


@pytest.mark.asyncio
async def test_delivery_resumes_after_rsyslog_restarts(kit: Kit, tmp_path: Path) -> None:
    """Events written while rsyslog is down arrive once it is back (none lost)."""
    first = start_rsyslog(tmp_path / "r1")
    port = first.port
    sink = SyslogTcpSink("rsyslog", "127.0.0.1", port, renderer=RENDERER)
    runner = SinkRunner(kit.store, [sink], batch_size=4, retry=FAST)
    write_events(kit, 3)
    await runner.drain()
    n1 = len(first.wait_lines(3))
    stop_rsyslog(first)
    write_events(kit, 3, start=3)
    second = start_rsyslog(tmp_path / "r2")
    sink.port = second.port
    try:
        await runner.drain()
        await runner.stop()
        want = expected_messages(kit)
        got = first.lines() + second.wait_lines(len(want) - n1)
        assert sorted(got) == sorted(want)
    finally:
        stop_rsyslog(second)


@pytest.mark.asyncio
async def test_tls_syslog_arrives_with_every_field_intact(kit: Kit, tmp_path: Path) -> None:
    """RFC 5425: rsyslog (ossl driver) receives the messages over verified TLS."""
    ca, cert, key = make_ca(tmp_path / "pki")
    server = start_rsyslog(tmp_path / "tls", tls=(ca, cert, key))
    try:
        write_events(kit, 5, hostile=True)
        kit.trail.checkpoint_now()
        sink = SyslogTcpSink(
            "rsyslog-tls",
            "127.0.0.1",
            server.port,
            renderer=RENDERER,
            tls=tls_context(str(ca)),
            server_hostname="localhost",
        )
        await ship(kit, sink)
        want = expected_messages(kit)
        assert split(server.wait_lines(len(want))) == want
    finally:
        stop_rsyslog(server)


@pytest.mark.asyncio
async def test_tls_refuses_a_server_it_cannot_verify(kit: Kit, tmp_path: Path) -> None:
    """A certificate from another CA is never sent data (the sink keeps failing)."""
    ca, cert, key = make_ca(tmp_path / "pki")
    other_ca, _, _ = make_ca(tmp_path / "other")
    server = start_rsyslog(tmp_path / "tls", tls=(ca, cert, key))
    try:
        write_events(kit, 1)
        sink = SyslogTcpSink(
            "bad-tls",
            "127.0.0.1",
            server.port,
            tls=tls_context(str(other_ca)),
            server_hostname="localhost",
        )
        runner = SinkRunner(kit.store, [sink], retry=FAST)
        task = asyncio.create_task(runner.run_once(sink, refresh_streams=True))
        # until the first handshake has failed (a fixed 0.5 s can be too short)
        await eventually(lambda: runner.metrics()["bad-tls"]["failures"] >= 1)
        task.cancel()
        await runner.stop()
        assert runner.metrics()["bad-tls"]["delivered"] == 0
        assert "CERTIFICATE_VERIFY_FAILED" in runner.metrics()["bad-tls"]["last_error"]
        assert server.lines() == []
    finally:
        stop_rsyslog(server)


@pytest.mark.asyncio
async def test_udp_truncates_oversize_messages_and_counts_them(kit: Kit) -> None:
    """UDP sends one datagram per message, cut at max_size and counted."""
    import socket

    recv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    recv.bind(("127.0.0.1", 0))
    recv.settimeout(5)
    write_events(kit, 1, hostile=True)
    sink = SyslogUdpSink("udp", "127.0.0.1", recv.getsockname()[1], renderer=RENDERER, max_size=480)
    body = next(iter(kit.store.blocks("web-1"))).records()[0]
    await sink.send([Record("web-1", 1, body)])
    data = await asyncio.to_thread(recv.recv, 65535)
    await sink.close()
    recv.close()
    full = RENDERER(orjson.loads(body)).encode()
    assert len(full) > 480
    assert full.startswith(data)
    assert len(data) <= 480
    assert sink.truncated == 1


@pytest.mark.asyncio
async def test_a_send_that_times_out_drops_the_connection_instead_of_piling_up(kit: Kit) -> None:
    """A receiver that stops reading: each timed-out attempt starts on a new connection,
    so re-sent batches never pile up unbounded in one connection's write buffer."""
    write_events(kit, 1)
    body = next(iter(kit.store.blocks("web-1"))).records()[0]
    batch = [Record("web-1", 1, body)] * 10_000  # more than the kernel buffers take
    accepted: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # never reads

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sink = SyslogTcpSink("hang", "127.0.0.1", port, renderer=RENDERER)
    try:
        for _ in range(4):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(sink.send(batch), 0.3)
        assert sink._writer is None  # nothing left buffered on this side
        assert len(accepted) == 4
    finally:
        await sink.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_a_repeat_reaches_syslog_twice_with_the_id_a_siem_can_drop_it_by(
    kit: Kit, rsyslog: Rsyslog
) -> None:
    """Syslog cannot drop a repeat: a batch sent again arrives twice at the real rsyslog,
    each copy carrying the event id (a checkpoint's too) in its structured data, where
    a SIEM can deduplicate by it."""
    write_events(kit, 2, hostile=True)
    kit.trail.checkpoint_now()
    (cp,) = kit.store.checkpoints("web-1")
    bodies = [b for blk in kit.store.blocks("web-1") for b in blk.records()]
    batch = [*(Record("web-1", n, b) for n, b in enumerate(bodies, 1)), CheckpointRecord(cp)]
    sink = SyslogTcpSink("rsyslog", "127.0.0.1", rsyslog.port, renderer=RENDERER)
    await sink.send(batch)
    await sink.send(batch)  # a re-send after a lost connection, say
    await sink.close()
    got = rsyslog.wait_lines(2 * len(batch))
    ids = [re.search(r'^[^\[]*\[kroonika@32473 id="([^"]*)"', line) for line in got]
    assert all(ids), got
    want = [i.id for i in batch]
    assert [m.group(1) for m in ids if m] == want + want
    assert want[-1] == f"checkpoint:web-1:{cp.size}"
