"""JetStream: the parts of nats-py the transport check hooks into, none of them its
public API, are still there; a nats-py without them is refused when the sink is built,
before anything could be sent unchecked (decision 0030, 2026-11-28)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nats.aio import client, transport
from test_sink_credentials import refusal
from test_sink_jetstream_file import require_nats

from kroonika.audit.sinks import JetStreamSink
from kroonika.audit.sinks.jetstream import NatsPyUnsupported, _guarded_client, check_nats_py


@pytest.mark.nats
@pytest.mark.asyncio
async def test_the_check_sees_the_server_and_the_socket_before_connect() -> None:
    """On the real NATS: the check runs once before CONNECT is written, and through the
    private attributes it reads it sees the server it is talking to and the socket's
    writer (where TLS would show)."""
    require_nats()
    check_nats_py()
    seen: list[tuple[Any, Any]] = []

    def check(nc: Any) -> None:
        seen.append((nc._current_server.uri.hostname, nc._transport._io_writer))

    nc = _guarded_client()(check)
    await asyncio.wait_for(nc.connect(servers=["nats://127.0.0.1:4222"], allow_reconnect=False), 10)
    try:
        assert nc.is_connected
    finally:
        await nc.close()
    ((host, writer),) = seen
    assert host == "127.0.0.1"
    assert isinstance(writer, asyncio.StreamWriter)
    assert writer.get_extra_info("ssl_object") is None  # nats:// on loopback, in clear


def test_a_nats_py_without_the_hook_is_refused_when_the_sink_is_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stands in for a nats-py release without ``Client._connect_command`` (the machine
    has only the one installed): the library's sink is not built, and the service
    refuses the sink by name."""
    monkeypatch.delattr(client.Client, "_connect_command")
    with pytest.raises(NatsPyUnsupported, match=rf"nats-py {client.__version__}.*_connect_command"):
        JetStreamSink("nats", "nats://127.0.0.1:4222")
    assert "_connect_command" in refusal({"kind": "nats", "name": "nats"})


def test_a_nats_py_whose_transport_keeps_no_writer_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without ``TcpTransport._io_writer`` the check could not see TLS (it would refuse
    every server but a loopback ``nats://``): refused, naming the attribute."""
    init = transport.TcpTransport.__init__

    def renamed(self: Any) -> None:
        init(self)

    monkeypatch.setattr(transport.TcpTransport, "__init__", renamed)
    with pytest.raises(NatsPyUnsupported, match="TcpTransport no longer keeps _io_writer"):
        JetStreamSink("nats", "nats://127.0.0.1:4222")
