"""A small HTTP/1.1 server for the HTTP sink tests: records requests and can
fail, stall or be down on command."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


#: Answers (status, body) or (status, body, extra response headers).
Handler = Callable[[Request], tuple[int, bytes] | tuple[int, bytes, dict[str, str]]]


@dataclass
class Collector:
    handler: Handler
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    accepted: list[Request] = field(default_factory=list)
    script: list[str] = field(default_factory=list)  # per request: "ok", "503", "stall"
    stall_seconds: float = 3.0
    tls: ssl.SSLContext | None = None  # serve HTTPS with this server context
    host: str = "127.0.0.1"  # another address of this host stands in for a remote collector
    _server: asyncio.Server | None = None
    _connections: Connections = field(default_factory=lambda: Connections())

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._connections.accepting(self._serve), self.host, self.port, ssl=self.tls
        )
        self.port = self._server.sockets[0].getsockname()[1]
        RUNNING[id(self)] = (self, asyncio.get_running_loop())

    async def stop(self) -> None:
        """Go down: close the listener (connections are refused until start()) and every
        connection, each socket closed before this returns."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        await self._connections.close()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1)
        RUNNING.pop(id(self), None)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, path, _ = line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (h := await reader.readline()) not in (b"\r\n", b""):
                    k, v = h.decode().split(":", 1)
                    headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                req = Request(method, path, headers, body)
                self.requests.append(req)
                mode = self.script.pop(0) if self.script else "ok"
                if mode == "stall":
                    await asyncio.sleep(self.stall_seconds)
                    return
                extra: dict[str, str] = {}
                if mode == "ok":
                    answer = self.handler(req)
                    status, payload = answer[0], answer[1]
                    if len(answer) == 3:
                        extra = answer[2]
                else:
                    status, payload = int(mode), b'{"text":"Server is busy","code":9}'
                if 200 <= status < 300:
                    self.accepted.append(req)
                more = "".join(f"{k}: {v}\r\n" for k, v in extra.items())
                writer.write(
                    f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{more}"
                    f"content-length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            return
        except asyncio.CancelledError:
            return
        finally:
            await close_writer(writer)


@dataclass
class ConnectProxy:
    """An HTTP proxy that takes ``CONNECT host:port`` (a TLS tunnel), records the
    request line and headers, and pipes the bytes to the target it names."""

    host: str = "127.0.0.1"
    port: int = 0
    connects: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _connections: Connections = field(default_factory=lambda: Connections())

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._connections.accepting(self._serve), self.host, self.port
        )
        self.port = self._server.sockets[0].getsockname()[1]
        RUNNING[id(self)] = (self, asyncio.get_running_loop())

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        await self._connections.close()
        RUNNING.pop(id(self), None)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._tunnel(reader, writer)
        except (ConnectionError, OSError, asyncio.CancelledError):
            await close_writer(writer)

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = (await reader.readline()).decode()
        headers: dict[str, str] = {}
        while (h := await reader.readline()) not in (b"\r\n", b""):
            k, v = h.decode().split(":", 1)
            headers[k.strip().lower()] = v.strip()
        self.connects.append((line.strip(), headers))
        method, target, _ = line.split(" ", 2)
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 X\r\ncontent-length: 0\r\n\r\n")
            writer.close()
            return
        host, port = target.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        self._connections.writers.add(up_writer)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        for t in (
            asyncio.create_task(pipe(reader, up_writer)),
            asyncio.create_task(pipe(up_reader, writer)),
        ):
            self._connections.tasks.add(t)


async def pipe(
    r: asyncio.StreamReader, w: asyncio.StreamWriter, record: bytearray | None = None
) -> None:
    """Copy ``r`` to ``w`` (and to ``record``) until either end goes away, then close ``w``."""
    with contextlib.suppress(ConnectionError, asyncio.CancelledError, ssl.SSLError):
        while data := await r.read(65536):
            if record is not None:
                record += data
            w.write(data)
            await w.drain()
    await close_writer(w)


#: Every collector and proxy started and not stopped yet (by id: they compare by value):
#: the sink tests' conftest stops what a failing test left running, in its event loop.
RUNNING: dict[int, tuple[Collector | ConnectProxy, asyncio.AbstractEventLoop]] = {}


async def stop_leftovers() -> None:
    """Stop every collector and proxy that this event loop started and left running."""
    loop = asyncio.get_running_loop()
    for server, started_in in list(RUNNING.values()):
        if started_in is loop:
            await server.stop()


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close a connection and return once its socket is closed, not only scheduled to
    be (a socket left to the GC is reported unclosed in whatever test runs then). A
    TLS close waits for the peer's answer: a peer that never gives one is cut off."""
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 1)
    except (Exception, asyncio.CancelledError):
        writer.transport.abort()  # closes the socket in the loop's next step
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)


@dataclass
class Connections:
    """The connections a server accepted, each served by a task of its own, so that
    ``close()`` can end them all (including one accepted a moment before)."""

    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def accepting(
        self, serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], None]:
        """A ``start_server`` callback that registers each connection as it is accepted
        (a coroutine callback registers only once its task first runs: a connection
        accepted just before stop() would outlive the server)."""

        def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.writers.add(writer)
            task = asyncio.ensure_future(serve(reader, writer))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

        return accept

    async def close(self) -> None:
        while self.tasks:  # a tunnel being set up adds its pipes while we wait
            tasks = list(self.tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.tasks.difference_update(tasks)
        # a task cancelled before it first ran never closed its connection
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()
        await asyncio.sleep(0)
