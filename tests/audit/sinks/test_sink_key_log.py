"""``SSLKEYLOGFILE`` does not make a sink write its TLS session keys: Python's
``ssl.create_default_context()`` honours the variable, and anyone holding the file and
a capture could read every event shipped (decision 0032)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from http_collector import Collector
from sink_kit import Kit, make_ca, write_events
from test_sink_credentials import SECRET, tls_nats_server

from kroonika.audit.sinks import JetStreamSink, RetryPolicy, SinkRunner, tls_context
from kroonika.settings import AuditSinkSettings, Settings
from kroonika.shipping import build_sink

FAST = RetryPolicy(initial=0.01, maximum=0.05, send_timeout=10)


@pytest.fixture
def key_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``SSLKEYLOGFILE`` names a temporary file (which must stay empty or absent)."""
    path = tmp_path / "keys.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(path))
    return path


def admin_tls(ca: Path) -> ssl.SSLContext:
    """The test's own NATS client context, which logs nothing (SSLContext, not
    create_default_context), so the file shows what the sink did."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    return ctx


def written(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


async def https_collector(tmp: Path) -> tuple[Collector, Path]:
    """An HTTPS collector whose own context logs nothing (so the file shows the client)."""
    ca, cert, key = make_ca(tmp)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # not create_default_context: no key log
    server.load_cert_chain(cert, key)
    collector = Collector(lambda r: (200, b'{"errors":false}'), tls=server)
    await collector.start()
    return collector, ca


@pytest.mark.asyncio
async def test_the_variable_does_log_keys_of_a_default_context(
    tmp_path: Path, key_log: Path
) -> None:
    """The control: a context Python makes by default writes the keys to the file."""
    collector, ca = await https_collector(tmp_path / "pki")
    try:
        ctx = ssl.create_default_context(cafile=str(ca))
        _, writer = await asyncio.open_connection("127.0.0.1", collector.port, ssl=ctx)
        writer.close()
        await writer.wait_closed()
    finally:
        await collector.stop()
    assert b"TRAFFIC_SECRET" in written(key_log)


@pytest.mark.parametrize("kind", ["splunk_hec", "elastic_bulk", "webhook"])
@pytest.mark.parametrize("trust", ["ca_file", "SSL_CERT_FILE"])
@pytest.mark.asyncio
async def test_an_https_sink_writes_no_keys(
    kit: Kit, tmp_path: Path, key_log: Path, monkeypatch: pytest.MonkeyPatch, kind: str, trust: str
) -> None:
    """Built from settings, trusting its ``ca_file`` or the process's trust store, an
    HTTPS sink delivers and leaves the key log empty."""
    write_events(kit, 2)
    collector, ca = await https_collector(tmp_path / "pki")
    spec: dict[str, object] = {
        "kind": kind,
        "name": "s",
        "url": collector.url,
        "secret": "s3cr3t-" * 4,
    }
    if trust == "ca_file":
        spec["ca_file"] = str(ca)
    else:
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    sink = build_sink(AuditSinkSettings.model_validate(spec), Settings())
    runner = SinkRunner(kit.store, [sink], retry=FAST, ship_checkpoints=False)
    try:
        await runner.drain()
    finally:
        await runner.stop()
        await collector.stop()
    assert len(collector.accepted) == 1
    assert written(key_log) == b""


@pytest.mark.nats
@pytest.mark.asyncio
async def test_a_nats_sink_over_tls_writes_no_keys(kit: Kit, tmp_path: Path, key_log: Path) -> None:
    """A ``tls://`` NATS sink built from settings (its ``ca_file``) delivers to a real
    nats-server that requires TLS and writes no keys."""
    import nats

    with tls_nats_server(tmp_path, SECRET) as (port, ca):
        url = f"tls://127.0.0.1:{port}"
        nc = await nats.connect(url, tls=admin_tls(ca), token=SECRET)
        js = nc.jetstream()
        await js.add_stream(name="AUDIT", subjects=["kroonika.audit.>"])
        try:
            spec = {"kind": "nats", "name": "n", "url": url, "secret": SECRET, "ca_file": str(ca)}
            sink = build_sink(AuditSinkSettings.model_validate(spec), Settings())
            write_events(kit, 1)
            runner = SinkRunner(kit.store, [sink], retry=FAST, ship_checkpoints=False)
            try:
                await runner.drain()
            finally:
                await runner.stop()
            assert written(key_log) == b""
            assert (await js.stream_info("AUDIT")).state.messages == 1
        finally:
            await nc.close()


@pytest.mark.nats
@pytest.mark.asyncio
async def test_a_nats_server_that_asks_for_tls_on_a_nats_url_gets_no_keys_logged(
    kit: Kit, tmp_path: Path, key_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``nats://`` to a loopback server whose INFO says ``tls_required``: nats-py
    upgrades with a context of its own unless given one; the sink gives one, so no
    keys are written."""
    import nats

    with tls_nats_server(tmp_path, SECRET) as (port, ca):
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))
        nc = await nats.connect(f"tls://127.0.0.1:{port}", tls=admin_tls(ca), token=SECRET)
        js = nc.jetstream()
        await js.add_stream(name="AUDIT", subjects=["kroonika.audit.>"])
        try:
            from pydantic import SecretStr

            sink = JetStreamSink("n", f"nats://127.0.0.1:{port}", token=SecretStr(SECRET))
            write_events(kit, 1)
            runner = SinkRunner(kit.store, [sink], retry=FAST, ship_checkpoints=False)
            try:
                await runner.drain()
            finally:
                await runner.stop()
            assert (await js.stream_info("AUDIT")).state.messages == 1
            assert written(key_log) == b""
        finally:
            await nc.close()


def test_the_syslog_and_nats_tls_context_logs_no_keys(tmp_path: Path, key_log: Path) -> None:
    """``tls_context`` (syslog over TLS, NATS, an HTTP sink's ``ca_file``) never names a
    key log file, whatever the environment says."""
    del key_log
    ca, _, _ = make_ca(tmp_path)
    assert tls_context(str(ca)).keylog_filename is None
    assert tls_context(None).keylog_filename is None


def test_a_context_handed_to_a_sink_stops_logging_keys(tmp_path: Path, key_log: Path) -> None:
    """A library caller's own context (made while the variable was set) logs no keys
    once a syslog, NATS or HTTP sink holds it."""
    from kroonika.audit.sinks import ElasticBulkSink, SyslogTcpSink

    ca, _, _ = make_ca(tmp_path)
    given = [ssl.create_default_context(cafile=str(ca)) for _ in range(3)]
    assert all(ctx.keylog_filename == str(key_log) for ctx in given)
    SyslogTcpSink("s", "127.0.0.1", 6514, tls=given[0])
    JetStreamSink("n", "tls://127.0.0.1:4222", tls=given[1])
    ElasticBulkSink("e", "https://127.0.0.1:9200", verify=given[2])
    assert [ctx.keylog_filename for ctx in given] == [None, None, None]
