"""Fixtures shared by the whole-system tests: a real rsyslogd and a nats-server of the
test's own (helpers in ``tests/audit/sinks/sink_kit.py``)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "audit" / "sinks"))

from sink_kit import OwnNats, Rsyslog, free_port, own_nats_server, start_rsyslog, stop_rsyslog

#: the subjects the NATS sink publishes to (its default prefix)
SUBJECTS = "kroonika.audit"


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    """rsyslogd on a free loopback port, writing what it receives to a file."""
    r = start_rsyslog(tmp_path / "rsyslog")
    yield r
    stop_rsyslog(r)


async def _make_stream(url: str) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().add_stream(
            name="AUDIT", subjects=[f"{SUBJECTS}.>"], duplicate_window=7200
        )
    finally:
        await nc.close()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[tuple[OwnNats, int]]:
    """A nats-server of the test's own with the stream ``AUDIT`` for the sink's subjects,
    and its monitoring port."""
    monitor = free_port()
    (tmp_path / "nats").mkdir()
    with own_nats_server(tmp_path / "nats", f'http: "127.0.0.1:{monitor}"\n') as server:
        asyncio.run(_make_stream(server.url))
        yield server, monitor
