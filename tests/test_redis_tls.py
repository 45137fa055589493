"""Redis over TLS writes no session keys whatever ``SSLKEYLOGFILE`` says: every client
Kroonika makes (the list notices, the shared detector windows, the rate limiter's
storage) connects through ``kroonika._redis`` (decision 0034). The real Redis speaks
plain TCP, so the tests reach it through a TLS-terminating proxy of their own."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import secrets
import socket
import ssl
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
import redis.asyncio
import redis.connection

from kroonika._redis import (
    RedisTlsUnsupported,
    async_redis_options,
    check_redis_py,
    redis_client,
    uses_tls,
)
from kroonika.ratelimit._limiter import make_storage
from kroonika.security.windows import RedisWindows
from kroonika.tokens._lists import RedisInvalidation

sys.path.insert(0, str(Path(__file__).resolve().parent / "audit" / "sinks"))
from sink_kit import OwnCa, make_ca

pytestmark = pytest.mark.redis


class TlsProxy:
    """Accepts TLS on a loopback port and forwards the clear bytes to Redis; its own
    context is a plain ``SSLContext``, which logs no keys (so the file shows the client)."""

    def __init__(
        self,
        cert: Path,
        key: Path,
        target: tuple[str, int],
        *,
        client_ca: Path | None = None,
        maximum_version: ssl.TLSVersion | None = None,
    ) -> None:
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(cert, key)
        if client_ca is not None:  # clients must show a certificate this CA signed
            self._ctx.load_verify_locations(client_ca)
            self._ctx.verify_mode = ssl.CERT_REQUIRED
        if maximum_version is not None:
            self._ctx.maximum_version = maximum_version
        self._target = target
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._open: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._start(self._accept)

    def _start(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self._start(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        try:
            tls = self._ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            conn.close()
            return
        upstream = socket.create_connection(self._target)
        self._open += [tls, upstream]
        self._start(self._pump, upstream, tls)
        self._pump(tls, upstream)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop every thread: closing a socket another thread is blocked on does not wake
        it on Linux, a shutdown does (a thread left accepting outlived its test and
        changed what later tests saw, e.g. how many threads the process has)."""
        for s in (self._server, *self._open):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()
        for thread in self._threads:
            thread.join(timeout=10)


@pytest.fixture
def key_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``SSLKEYLOGFILE`` names a temporary file (which must stay empty or absent)."""
    path = tmp_path / "keys.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(path))
    return path


@pytest.fixture
def tls_url(redis_url: str, tmp_path: Path) -> Iterator[str]:
    """A ``rediss://`` URL to the real Redis through :class:`TlsProxy`, trusting the
    test's CA (``ssl_ca_certs``, as an operator would give a private CA)."""
    ca, cert, key = make_ca(tmp_path / "pki")
    proxy = TlsProxy(cert, key, ("127.0.0.1", 6379))
    try:
        yield f"rediss://localhost:{proxy.port}/0?ssl_ca_certs={quote(str(ca))}"
    finally:
        proxy.close()


def written(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


def test_redis_py_on_its_own_does_log_the_keys(tls_url: str, key_log: Path) -> None:
    """The control: redis-py's own TLS connection writes the secrets to the file."""
    client = redis.Redis.from_url(tls_url, socket_timeout=5)
    try:
        assert client.ping()
    finally:
        client.close()
    assert b"TRAFFIC_SECRET" in written(key_log)


def test_kroonikas_client_talks_tls_and_logs_no_keys(tls_url: str, key_log: Path) -> None:
    """Through the proxy, a command round-trips and the file is neither made nor written."""
    client = redis_client(tls_url, socket_timeout=5)
    name = f"kroonika:test:tls:{secrets.token_hex(4)}"
    try:
        client.set(name, b"1", ex=60)
        assert client.get(name) == b"1"
        client.delete(name)
    finally:
        client.close()
    assert written(key_log) == b""


def test_the_server_is_still_verified(tls_url: str, key_log: Path) -> None:
    """Without the CA that signed the proxy's certificate, the handshake is refused (the
    URL's ``ssl_*`` options mean what they meant with redis-py's own class)."""
    untrusting = tls_url.split("?", 1)[0]
    client = redis_client(untrusting, socket_timeout=5)
    try:
        with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            client.ping()
    finally:
        client.close()
    assert written(key_log) == b""


def test_the_urls_ssl_options_are_honoured(tls_url: str, key_log: Path) -> None:
    """``ssl_cert_reqs=none`` (a development Redis with a self-made certificate) connects
    without the CA, as with redis-py's own class, and logs nothing either."""
    unverified = tls_url.split("?", 1)[0] + "?ssl_cert_reqs=none"
    client = redis_client(unverified, socket_timeout=5)
    try:
        assert client.ping()
    finally:
        client.close()
    assert written(key_log) == b""


def test_the_shared_detector_windows_log_no_keys(tls_url: str, key_log: Path) -> None:
    """The windows claim a finding in Redis over TLS (the first claim wins, the second
    does not) with no error counted, and the file stays empty."""
    windows = RedisWindows(tls_url, prefix=f"kroonika:test:{secrets.token_hex(4)}")
    try:
        fired = ("impossible_travel", "person", "p1:" + "A" * 24)
        assert windows.claim(fired, 1000.0, 60.0, 60.0)
        assert not windows.claim(fired, 1001.0, 60.0, 60.0)
        assert windows.errors == 0
    finally:
        windows.close()
    assert written(key_log) == b""


def test_the_list_notices_log_no_keys(tls_url: str, key_log: Path) -> None:
    """A published change comes back to the subscriber over TLS; the file stays empty."""
    heard = threading.Event()
    notices = RedisInvalidation(tls_url, heard.set, channel=f"kroonika:test:{secrets.token_hex(4)}")
    try:
        heard.clear()  # subscribing may already have said "changed"
        notices.publish()
        assert heard.wait(10), "the notice did not come back"
    finally:
        notices.close()
    assert written(key_log) == b""


@pytest.mark.asyncio
async def test_the_rate_limiter_storage_logs_no_keys(tls_url: str, key_log: Path) -> None:
    """The limits storage (redis-py's asyncio client) counts over TLS; the file stays
    empty."""
    storage = make_storage(tls_url, timeout_s=5, key_prefix=f"kroonika:test:{secrets.token_hex(4)}")
    try:
        assert await storage.check()
        assert await storage.incr("k", 60) == 1
        assert await storage.incr("k", 60) == 2
        await storage.reset()
    finally:
        # limits has no close of its own; the pool is ours (decision 0034)
        await storage.bridge.get_connection().aclose(close_connection_pool=True)
    assert written(key_log) == b""


@pytest.mark.parametrize(
    ("url", "tls"),
    [
        ("rediss://h:6380/0", True),
        ("async+rediss://h/0", True),
        ("REDISS://h", True),
        ("redis://h:6379/0", False),
        ("async+redis://h", False),
        ("unix:///run/redis.sock", False),
    ],
)
def test_only_tls_urls_get_the_keyless_class(url: str, tls: bool) -> None:
    """A plain or Unix-socket URL keeps redis-py's own connection class."""
    assert uses_tls(url) is tls


# --- what the URL's ssl_* options ask for, through both clients ---------------------

CLIENTS = ["sync", "asyncio"]


async def _async_ping(url: str) -> bool:
    client = redis.asyncio.Redis(**async_redis_options(url, socket_timeout=5))
    try:
        return bool(await client.ping())
    finally:
        await client.aclose(close_connection_pool=True)


def ping(kind: str, url: str) -> bool:
    """A PING through Kroonika's synchronous client (the list notices, the detector
    windows) or its asyncio one (the rate limiter's storage)."""
    if kind == "asyncio":
        return asyncio.run(_async_ping(url))
    client = redis_client(url, socket_timeout=5)
    try:
        return bool(client.ping())
    finally:
        client.close()


@pytest.fixture
def pki(tmp_path: Path) -> OwnCa:
    return OwnCa.make(tmp_path / "pki")


@contextlib.contextmanager
def proxy_to_redis(cert: tuple[Path, Path], **options: Any) -> Iterator[int]:
    proxy = TlsProxy(*cert, ("127.0.0.1", 6379), **options)
    try:
        yield proxy.port
    finally:
        proxy.close()


@pytest.mark.parametrize("kind", CLIENTS)
def test_the_servers_name_is_checked_unless_the_url_says_not_to(
    kind: str, pki: OwnCa, key_log: Path
) -> None:
    """A certificate the CA signed for another name is refused (``ssl_check_hostname``
    is on by default, as with redis-py's own class); ``ssl_check_hostname=false`` takes
    it."""
    with proxy_to_redis(pki.issue("other", ["redis.internal"])) as port:
        url = f"rediss://localhost:{port}/0?ssl_ca_certs={quote(str(pki.path))}"
        with pytest.raises(redis.ConnectionError, match="Hostname mismatch"):
            ping(kind, url)
        assert ping(kind, url + "&ssl_check_hostname=false")
    assert written(key_log) == b""


@pytest.mark.parametrize("kind", CLIENTS)
def test_the_client_certificate_of_the_url_is_shown(kind: str, pki: OwnCa, key_log: Path) -> None:
    """A server that requires a client certificate refuses a client without one and
    takes the one ``ssl_certfile``/``ssl_keyfile`` name."""
    cert, key = pki.issue("client", ["kroonika"])
    with proxy_to_redis(pki.issue("server"), client_ca=pki.path) as port:
        url = f"rediss://localhost:{port}/0?ssl_ca_certs={quote(str(pki.path))}"
        with pytest.raises(redis.ConnectionError):
            ping(kind, url)
        assert ping(kind, f"{url}&ssl_certfile={quote(str(cert))}&ssl_keyfile={quote(str(key))}")
    assert written(key_log) == b""


@pytest.mark.parametrize("kind", CLIENTS)
def test_the_minimum_tls_version_of_the_url_is_kept(kind: str, pki: OwnCa, key_log: Path) -> None:
    """``ssl_min_version`` (a ``TLSVersion`` value, 772 for TLS 1.3) refuses a server
    that speaks at most TLS 1.2; without it the same server is reached."""
    with proxy_to_redis(pki.issue("server"), maximum_version=ssl.TLSVersion.TLSv1_2) as port:
        url = f"rediss://localhost:{port}/0?ssl_ca_certs={quote(str(pki.path))}"
        assert ping(kind, url)
        with pytest.raises(
            redis.ConnectionError, match=r"(?i)protocol.version|unsupported.protocol"
        ):
            ping(kind, f"{url}&ssl_min_version={ssl.TLSVersion.TLSv1_3.value}")
    assert written(key_log) == b""


# --- the parts of redis-py that are not its public API (decision 0034, 2026-11-28) ---


def test_redis_py_still_wraps_its_sockets_where_kroonika_builds_the_context() -> None:
    """redis-py 8.1 takes no TLS context from its caller, so the synchronous class
    overrides ``SSLConnection._wrap_socket_with_ssl(self, sock)``, a private method, and
    both classes read every ``ssl_*`` option themselves. An upgrade that renames the
    method, stops calling it or adds an option fails here (and the clients refuse to
    connect over TLS) instead of quietly using redis-py's own context again."""
    check_redis_py()
    hook = redis.connection.SSLConnection._wrap_socket_with_ssl
    assert list(inspect.signature(hook).parameters) == ["self", "sock"]


def test_a_redis_py_without_the_hook_is_refused_loudly(
    monkeypatch: pytest.MonkeyPatch, tls_url: str
) -> None:
    """Stands in for a redis-py release without ``_wrap_socket_with_ssl`` (the machine
    has only the one installed): no client over TLS is made, and the error names the
    version and what is missing."""
    monkeypatch.delattr(redis.connection.SSLConnection, "_wrap_socket_with_ssl")
    with pytest.raises(RedisTlsUnsupported, match=rf"redis-py {redis.__version__}.*_wrap_socket"):
        redis_client(tls_url)
    with pytest.raises(RedisTlsUnsupported):
        async_redis_options(tls_url)
    redis_client("redis://127.0.0.1:6379/0").close()  # plain TCP does not need it


def test_a_redis_py_with_an_ssl_option_kroonika_does_not_know_is_refused(
    monkeypatch: pytest.MonkeyPatch, tls_url: str
) -> None:
    """An ``ssl_*`` option of a later release would be dropped by Kroonika's context,
    silently: it is refused by name instead."""
    init = redis.asyncio.connection.SSLConnection.__init__

    def newer(self: Any, ssl_server_name: str | None = None, **kwargs: Any) -> None:
        init(self, **kwargs)

    monkeypatch.setattr(redis.asyncio.connection.SSLConnection, "__init__", newer)
    with pytest.raises(RedisTlsUnsupported, match="ssl_server_name"):
        async_redis_options(tls_url)
