"""Syslog sinks: RFC 5424 messages over TCP with octet counting (RFC 6587 section
3.4.1), over TLS (RFC 5425, same framing), or over UDP (RFC 5426) for those who insist.

TCP and TLS have no application-level acknowledgement: a batch counts as delivered
once it is written and drained to the kernel. A connection the receiver closed is
detected before the next write and re-opened; what was in flight is sent again
(at least once). A send that is cancelled (the runner's timeout: a receiver that
stopped reading) drops its connection, so nothing piles up in a write buffer.
UDP loses messages silently and is capped in size: a message longer than
``max_size`` is cut there (counted in ``truncated``), and a warning is logged
when the sink is built.

Plain TCP and UDP carry the events in clear: to a host that is not loopback they are
refused unless ``allow_cleartext`` says the path is protected otherwise (an IPsec
link, a mesh with mTLS). The events are pseudonymised, but still say who acted from
which network and why; use TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Sequence
from typing import Literal

from kroonika.audit._tls import client_context, without_key_log
from kroonika.audit.formats import Rfc5424Renderer, frame_octet_counted
from kroonika.audit.sinks._base import (
    CheckpointRecord,
    Item,
    TransientSinkError,
    refuse_cleartext,
)

log = logging.getLogger("kroonika.audit.sinks")


class _Rendering:
    def __init__(self, renderer: Rfc5424Renderer) -> None:
        self.renderer = renderer

    def message(self, item: Item) -> bytes:
        doc = item.doc() if isinstance(item, CheckpointRecord) else item.doc
        return self.renderer(doc).encode()


class SyslogTcpSink:
    """RFC 5424 over TCP, or TLS when ``tls`` is an :class:`ssl.SSLContext`."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        *,
        renderer: Rfc5424Renderer | None = None,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        connect_timeout: float = 10.0,
        allow_cleartext: bool = False,
    ) -> None:
        if tls is not None and tls.verify_mode != ssl.CERT_REQUIRED:
            raise ValueError("the TLS context must verify the server certificate (RFC 5425 5.1)")
        if tls is None:
            refuse_cleartext(host, allow_cleartext, use="TLS")
        self.name = name
        self.host = host
        self.port = port
        self.tls = without_key_log(tls) if tls is not None else None  # decision 0032
        self.server_hostname = server_hostname or (host if tls is not None else None)
        self.connect_timeout = connect_timeout
        self._render = _Rendering(
            renderer or Rfc5424Renderer(hostname=socket.gethostname().split(".")[0] or "-")
        )
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        """Connections are opened lazily, on the first send."""

    async def _connect(self) -> asyncio.StreamWriter:
        if self._writer is not None and self._reader is not None:
            if not self._reader.at_eof() and not self._writer.is_closing():
                return self._writer
            await self.close()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=self.server_hostname,
                ),
                self.connect_timeout,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise TransientSinkError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        self._reader, self._writer = reader, writer
        return writer

    async def send(self, batch: Sequence[Item]) -> None:
        writer = await self._connect()
        data = b"".join(frame_octet_counted(self._render.message(i)) for i in batch)
        try:
            writer.write(data)
            await writer.drain()
        except (OSError, ssl.SSLError) as exc:
            await self.close()
            raise TransientSinkError(f"write to {self.host}:{self.port} failed: {exc}") from exc
        except asyncio.CancelledError:
            # The runner's send timeout: the receiver stopped reading. Drop the
            # connection with what it still buffers, or every retry of the batch
            # would pile up in it without bound (and arrive again later).
            self._abort()
            raise

    def _abort(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.transport.abort()

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 5)


def tls_context(
    cafile: str | None, *, certfile: str | None = None, keyfile: str | None = None
) -> ssl.SSLContext:
    """A client context for RFC 5425: TLS 1.2+, the server certificate verified
    against ``cafile`` (the system's trust store when None) and its name checked;
    optional client certificate. Never logs its session keys (``SSLKEYLOGFILE``)."""
    ctx = client_context(cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if certfile is not None:
        ctx.load_cert_chain(certfile, keyfile)
    return ctx


class _UdpProtocol(asyncio.DatagramProtocol):
    def error_received(self, exc: Exception) -> None:
        log.debug("syslog udp: %s", exc)


class SyslogUdpSink:
    """RFC 5424 over UDP (RFC 5426): one message per datagram, lossy, size-capped."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        *,
        renderer: Rfc5424Renderer | None = None,
        max_size: int = 2048,
        on_oversize: Literal["truncate"] = "truncate",
        allow_cleartext: bool = False,
    ) -> None:
        if not 480 <= max_size <= 65507:
            raise ValueError("max_size must be 480..65507 (RFC 5426 3.2)")
        refuse_cleartext(host, allow_cleartext, use="TLS")
        self.name = name
        self.host = host
        self.port = port
        self.max_size = max_size
        self.on_oversize = on_oversize
        self.truncated = 0
        self._render = _Rendering(
            renderer or Rfc5424Renderer(hostname=socket.gethostname().split(".")[0] or "-")
        )
        self._transport: asyncio.DatagramTransport | None = None
        log.warning(
            "syslog sink %s uses UDP: delivery is not acknowledged and messages over %d "
            "bytes are truncated; prefer TCP or TLS",
            name,
            max_size,
        )

    async def open(self) -> None:
        """The socket is opened on the first send."""

    async def send(self, batch: Sequence[Item]) -> None:
        if self._transport is None or self._transport.is_closing():
            try:
                self._transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                    _UdpProtocol, remote_addr=(self.host, self.port)
                )
            except OSError as exc:
                raise TransientSinkError(f"cannot open UDP to {self.host}:{self.port}") from exc
        for item in batch:
            msg = self._render.message(item)
            if len(msg) > self.max_size:
                self.truncated += 1
                msg = msg[: self.max_size].decode("utf-8", "ignore").encode()
            self._transport.sendto(msg)

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
