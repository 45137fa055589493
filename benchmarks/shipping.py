"""Shipping throughput and lag: events per second delivered by the SinkRunner to a
real rsyslogd over TCP (RFC 6587 octet counting) and to a local HEC-compatible
HTTP server, and the delivery lag under a steady load of 2,000 events per second.

Usage: ``python benchmarks/shipping.py [--events N] [--seconds S] [--batch B]``.
Needs ``rsyslogd`` (Debian ``rsyslog``). Prints one line per figure.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

from kroonika.audit import (
    AuditTrail,
    Counters,
    Fingerprinter,
    KeyRing,
    Pipeline,
    SqlAuditStore,
    SqlSubjectKeys,
)
from kroonika.audit.sinks import RetryPolicy, SinkRunner, SplunkHecSink, SyslogTcpSink
from kroonika.audit.synthetic import generate_events


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_trail(path: Path, stream: str, url: str | None = None) -> tuple[AuditTrail, SqlAuditStore]:
    """A trail on the SQLite store in ``path`` (or the store at ``url``), keys in it."""
    store = SqlAuditStore(url or f"sqlite:///{path / 'audit.db'}", synchronous="NORMAL")
    store.upgrade()
    keys = SqlSubjectKeys(store, b"m" * 32)
    counters = Counters()
    pipeline = Pipeline.standard(
        fingerprinter=Fingerprinter(b"k" * 32, "p1"),
        subject_keys=keys,
        counters=counters,
        strict=False,
    )
    trail = AuditTrail(
        pipeline,
        store,
        KeyRing.open(path / "keys", create=True),
        stream=stream,
        counters=counters,
        subject_keys=keys,
    )
    return trail, store


def start_rsyslog(work: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    out = work / "received.log"
    conf = work / "rsyslog.conf"
    conf.write_text(
        f'global(workDirectory="{work}" maxMessageSize="64k")\n'
        'module(load="imtcp")\n'
        f'input(type="imtcp" address="127.0.0.1" port="{port}" '
        'SupportOctetCountedFraming="on")\n'
        'template(name="raw" type="string" string="%rawmsg%\\n")\n'
        f'action(type="omfile" file="{out}" template="raw")\n'
    )
    proc = subprocess.Popen(
        ["/usr/sbin/rsyslogd", "-n", "-f", str(conf), "-i", str(work / "pid")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                break
        except OSError:
            time.sleep(0.05)
    return proc, port, out


def count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


class HecServer:
    """A minimal HEC-compatible endpoint: counts events, answers Success."""

    def __init__(self) -> None:
        self.events = 0
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                headers = {}
                while (h := await reader.readline()) not in (b"\r\n", b""):
                    k, v = h.decode().split(":", 1)
                    headers[k.strip().lower()] = v.strip()
                del line
                body = await reader.readexactly(int(headers["content-length"]))
                self.events += body.count(b'{"event":')
                payload = b'{"text":"Success","code":0}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def fill(trail: AuditTrail, n: int) -> None:
    await trail.start()
    batch = []
    for ev in generate_events(n, seed=7):
        batch.append(ev)
        if len(batch) == 1000:
            await trail.emit_many(batch)
            batch = []
    if batch:
        await trail.emit_many(batch)
    await trail.stop()


async def throughput(n: int, batch: int, work: Path) -> None:
    trail, store = make_trail(work, "bench-1")
    await fill(trail, n)
    total = trail.size
    proc, port, out = start_rsyslog(work / "rsyslog")
    try:
        runner = SinkRunner(
            store,
            [SyslogTcpSink("rsyslog", "127.0.0.1", port)],
            batch_size=batch,
            ship_checkpoints=False,
            retry=RetryPolicy(initial=0.05),
        )
        t0 = time.perf_counter()
        await runner.drain()
        sent = time.perf_counter() - t0
        while count_lines(out) < total and time.perf_counter() - t0 < 120:  # noqa: ASYNC110  (polls a file rsyslog writes)
            await asyncio.sleep(0.01)
        received = time.perf_counter() - t0
        await runner.stop()
        print(
            f"rsyslog_tcp_events={total} sent_per_s={total / sent:,.0f} "
            f"received_per_s={count_lines(out) / received:,.0f} (written by rsyslog)"
        )
    finally:
        proc.terminate()
        proc.wait()
    hec = HecServer()
    await hec.start()
    runner = SinkRunner(
        store,
        [SplunkHecSink("hec", f"http://127.0.0.1:{hec.port}", SecretStr("bench-token"))],
        batch_size=batch,
        ship_checkpoints=False,
    )
    t0 = time.perf_counter()
    await runner.drain()
    took = time.perf_counter() - t0
    await runner.stop()
    print(f"hec_events={hec.events} per_s={hec.events / took:,.0f}")
    store.close()


async def steady(seconds: float, rate: int, work: Path) -> None:
    trail, store = make_trail(work, "bench-steady")
    hec = HecServer()
    await hec.start()
    runner = SinkRunner(
        store,
        [SplunkHecSink("hec", f"http://127.0.0.1:{hec.port}", SecretStr("bench-token"))],
        batch_size=500,
        poll_interval=0.05,
        streams_refresh=1.0,
    )
    trail.on_commit = runner.notify
    await trail.start()
    await runner.start()
    events = list(generate_events(int(seconds * rate) + rate, seed=9))
    tick = 0.01
    per_tick = rate * tick
    lags: list[float] = []
    lag_events: list[int] = []
    t0 = time.perf_counter()
    sent = 0
    next_sample = t0
    while (now := time.perf_counter()) - t0 < seconds:
        due = int((now - t0) / tick * per_tick) - sent
        if due > 0:
            await trail.emit_many(events[sent : sent + due])
            sent += due
        if now >= next_sample:
            m = runner.metrics()["hec"]
            lags.append(m["lag_seconds_max"])
            lag_events.append(m["lag_events_total"])
            next_sample = now + 0.1
        await asyncio.sleep(tick / 2)
    elapsed = time.perf_counter() - t0
    for _ in range(500):
        if hec.events >= trail.size:
            break
        await asyncio.sleep(0.01)
    drained = time.perf_counter() - t0 - elapsed
    await runner.stop()
    await trail.stop()
    store.close()
    q = statistics.quantiles(lags, n=100) if len(lags) > 2 else [0.0] * 99
    print(
        f"steady_rate={sent / elapsed:,.0f}/s for {elapsed:.1f}s: lag_seconds p50={q[49]:.3f} "
        f"p99={q[98]:.3f} max={max(lags):.3f}; lag_events max={max(lag_events)}; "
        f"drained {drained:.2f}s after the load stopped"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "rsyslog").mkdir()
        (work / "steady").mkdir()
        asyncio.run(throughput(args.events, args.batch, work))
        asyncio.run(steady(args.seconds, 2000, work / "steady"))


if __name__ == "__main__":
    main()
