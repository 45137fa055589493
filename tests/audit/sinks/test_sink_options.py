"""Sink options of decision 0030: the JetStream duplicate window the sink expects, an
HTTP sink's explicit proxy (and nothing from the environment), NATS TLS before INFO."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from http_collector import ConnectProxy, pipe
from sink_kit import Kit, make_ca, write_events
from test_sink_credentials import build, one_record, refusal
from test_sink_http import tls_collector
from test_sink_jetstream_file import require_nats

from kroonika.audit.sinks import ElasticBulkSink, JetStreamSink, TransientSinkError, tls_context
from kroonika.audit.sinks.jetstream import DEFAULT_DUPLICATE_WINDOW


def test_the_nats_duplicate_window_expected_is_two_hours_unless_told() -> None:
    default = build({"kind": "nats", "name": "n"})
    told = build({"kind": "nats", "name": "n", "duplicate_window_s": 600})
    assert isinstance(default, JetStreamSink)
    assert isinstance(told, JetStreamSink)
    assert default.duplicate_window == DEFAULT_DUPLICATE_WINDOW == 7200
    assert told.duplicate_window == 600


def test_the_duplicate_window_is_a_nats_key_only() -> None:
    text = refusal(
        {
            "kind": "webhook",
            "name": "hook",
            "url": "https://h.example/x",
            "secret": "k" * 20,
            "duplicate_window_s": 600,
        }
    )
    assert "'duplicate_window_s' has no effect" in text


def test_the_duplicate_window_is_checked_unless_the_sink_says_not_to() -> None:
    """``check_duplicate_window = false`` (a publisher without
    ``$JS.API.STREAM.INFO``) reaches the sink; it is a ``nats`` key only."""
    default = build({"kind": "nats", "name": "n"})
    off = build({"kind": "nats", "name": "n", "check_duplicate_window": False})
    assert isinstance(default, JetStreamSink)
    assert isinstance(off, JetStreamSink)
    assert default.check_duplicate_window is True
    assert off.check_duplicate_window is False
    text = refusal(
        {
            "kind": "syslog_tls",
            "name": "s",
            "host": "h",
            "port": 6514,
            "check_duplicate_window": False,
        }
    )
    assert "'check_duplicate_window' has no effect" in text


def test_a_duplicate_window_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="duplicate_window_s"):
        build({"kind": "nats", "name": "n", "duplicate_window_s": 0})


# --- HTTP sinks: what the environment may not decide ---------------------------------


def https_elastic(url: str, ca: Path, **kw: object) -> ElasticBulkSink:
    return ElasticBulkSink("es", url, verify=tls_context(str(ca)), **kw)  # type: ignore[arg-type]


BULK_OK = (200, b'{"errors":false,"items":[]}')


@pytest.mark.asyncio
async def test_an_https_sink_ignores_a_proxy_from_the_environment(
    kit: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``HTTPS_PROXY`` would route the events through whatever proxy the process
    inherited: the sink connects directly (a recording proxy sees nothing)."""
    write_events(kit, 1)
    es, ca = tls_collector(tmp_path / "pki", lambda r: BULK_OK)
    proxy = ConnectProxy()
    await es.start()
    await proxy.start()
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, proxy.url)
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    sink = https_elastic(es.url, ca)
    try:
        await sink.send([one_record(kit)])
    finally:
        await sink.close()
        await es.stop()
        await proxy.stop()
    assert proxy.connects == []
    assert len(es.accepted) == 1


@pytest.mark.asyncio
async def test_an_https_sink_goes_through_the_proxy_it_is_given(
    kit: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``proxy`` in the sink's settings: the request is tunnelled (CONNECT) through that
    proxy, TLS end to end, the server verified against the sink's ``ca_file``."""
    write_events(kit, 1)
    es, ca = tls_collector(tmp_path / "pki", lambda r: BULK_OK)
    proxy = ConnectProxy()
    await es.start()
    await proxy.start()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # not read either
    spec = {"kind": "elastic_bulk", "name": "es", "url": es.url, "ca_file": str(ca)}
    sink = build({**spec, "proxy": proxy.url})
    assert isinstance(sink, ElasticBulkSink)
    try:
        await sink.send([one_record(kit)])
    finally:
        await sink.close()
        await es.stop()
        await proxy.stop()
    assert [line for line, _ in proxy.connects] == [f"CONNECT 127.0.0.1:{es.port} HTTP/1.1"]
    assert len(es.accepted) == 1


@pytest.mark.asyncio
async def test_an_https_sink_sends_no_credential_from_netrc(
    kit: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``~/.netrc`` entry for the collector's host adds no ``Authorization`` the
    operator did not configure (an Elastic sink without an API key sends none)."""
    home = tmp_path / "home"
    home.mkdir()
    netrc = home / ".netrc"
    netrc.write_text("machine 127.0.0.1 login siem password pw-0123456789\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NETRC", str(netrc))
    write_events(kit, 1)
    es, ca = tls_collector(tmp_path / "pki", lambda r: BULK_OK)
    await es.start()
    sink = https_elastic(es.url, ca)
    try:
        await sink.send([one_record(kit)])
    finally:
        await sink.close()
        await es.stop()
    assert [r.headers.get("authorization") for r in es.requests] == [None]


@pytest.mark.asyncio
async def test_an_https_sink_still_trusts_the_ca_of_ssl_cert_file(
    kit: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``ca_file`` the sink trusts the process's trust store, which
    ``SSL_CERT_FILE`` sets as for every other TLS client (OpenSSL reads it too): not
    reading the environment's proxies must not change whom the sink trusts."""
    write_events(kit, 1)
    es, ca = tls_collector(tmp_path / "pki", lambda r: BULK_OK)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    await es.start()
    sink = ElasticBulkSink("es", es.url)
    try:
        await sink.send([one_record(kit)])
    finally:
        await sink.close()
        await es.stop()
    assert len(es.accepted) == 1


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ({"url": "http://127.0.0.1:9200"}, "a proxy would read"),
        ({"proxy": "socks5://127.0.0.1:1080"}, "proxy must be http:// or https://"),
        ({"proxy": "http://u:pw-0123456789@proxy.example:3128"}, "proxy must not hold"),
        ({"proxy": "http://"}, "proxy"),
    ],
)
def test_a_proxy_that_cannot_work_is_refused_without_echo(
    spec: dict[str, object], why: str
) -> None:
    base = {"kind": "elastic_bulk", "name": "es", "url": "https://es.example:9200"}
    text = refusal({**base, "proxy": "http://proxy.example:3128", **spec})
    assert why in text
    assert "proxy.example" not in text


def test_a_proxy_is_an_http_sink_key_only() -> None:
    text = refusal({"kind": "nats", "name": "n", "proxy": "http://proxy.example:3128"})
    assert "'proxy' has no effect" in text


def test_an_unreadable_ssl_cert_file_is_a_refusal_not_a_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    text = refusal({"kind": "elastic_bulk", "name": "es", "url": "https://es.example:9200"})
    assert "SSL_CERT_FILE or SSL_CERT_DIR cannot be used" in text
    assert "missing.pem" not in text


# --- NATS: TLS before INFO -------------------------------------------------------------


@contextlib.asynccontextmanager
async def tls_first_nats(tmp: Path) -> AsyncIterator[tuple[int, Path]]:
    """The real nats-server behind a listener that, like a server with
    ``handshake_first`` (nats-server 2.10+) or a TLS-terminating load balancer, starts
    TLS before it says anything: nothing reaches the server until the handshake."""
    ca, cert, key = make_ca(tmp)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    tasks: set[asyncio.Task[None]] = set()

    async def serve(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection("127.0.0.1", 4222)
        tasks.update({asyncio.create_task(pipe(cr, sw)), asyncio.create_task(pipe(sr, cw))})

    listener = await asyncio.start_server(
        serve, "127.0.0.1", 0, ssl=server_tls, ssl_handshake_timeout=5
    )
    try:
        yield listener.sockets[0].getsockname()[1], ca
    finally:
        listener.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.nats
@pytest.mark.asyncio
async def test_a_server_that_starts_tls_first_is_reached_only_with_tls_handshake_first(
    kit: Kit, tmp_path: Path
) -> None:
    """Without the option nats-py waits for INFO in clear and the server for a TLS
    handshake: nothing is delivered, a transient failure. With it (from the settings)
    the sink starts TLS first, its channel check sees TLS, and the event is stored."""
    require_nats()
    import nats

    prefix = f"kroonika_test_{uuid.uuid4().hex[:8]}"
    nc = await nats.connect("nats://127.0.0.1:4222")
    js = nc.jetstream()
    await js.add_stream(name=prefix, subjects=[f"{prefix}.>"])
    record = one_record(kit)
    try:
        async with tls_first_nats(tmp_path / "pki") as (port, ca):
            spec = {
                "kind": "nats",
                "name": "n",
                "url": f"tls://127.0.0.1:{port}",
                "ca_file": str(ca),
                "subject_prefix": prefix,
                "timeout_s": 1,
            }
            plain = build(spec)
            assert isinstance(plain, JetStreamSink)
            with pytest.raises(TransientSinkError, match="cannot connect"):
                await plain.send([record])
            await plain.close()
            first = build({**spec, "tls_handshake_first": True})
            assert isinstance(first, JetStreamSink)
            await first.send([record])
            await first.close()
        assert (await js.stream_info(prefix)).state.messages == 1
    finally:
        await js.delete_stream(prefix)
        await nc.close()


@pytest.mark.asyncio
async def test_tls_handshake_first_reaches_nats_py_connect(
    monkeypatch: pytest.MonkeyPatch, kit: Kit
) -> None:
    """The option is handed to nats-py's ``connect()`` (and off unless asked)."""
    from nats.aio.client import Client
    from nats.errors import NoServersError

    seen: list[object] = []

    async def connect(self: Client, **kw: object) -> None:
        seen.append(kw.get("tls_handshake_first", "absent"))
        raise NoServersError

    monkeypatch.setattr(Client, "connect", connect)
    record = one_record(kit)
    for first in (True, False):
        sink = JetStreamSink("n", "tls://nats.example:4222", tls_handshake_first=first)
        with pytest.raises(TransientSinkError):
            await sink.send([record])
    assert seen == [True, False]


def test_tls_handshake_first_needs_tls_servers() -> None:
    with pytest.raises(ValueError, match="tls_handshake_first"):
        JetStreamSink("n", "nats://127.0.0.1:4222", tls_handshake_first=True)
    text = refusal(
        {
            "kind": "nats",
            "name": "n",
            "url": "tls://a.example:4222,nats://127.0.0.1:4222",
            "tls_handshake_first": True,
        }
    )
    assert "tls_handshake_first" in text
    assert "tls://" in text


def test_tls_handshake_first_is_a_nats_key_only() -> None:
    text = refusal(
        {"kind": "syslog_tls", "name": "s", "host": "h", "port": 6514, "tls_handshake_first": True}
    )
    assert "'tls_handshake_first' has no effect" in text
