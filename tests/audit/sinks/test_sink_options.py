"""Sink options of decision 0030: the JetStream duplicate window the sink expects, an
HTTP sink's explicit proxy (and nothing from the environment), NATS TLS before INFO."""

from __future__ import annotations

from pathlib import Path

import pytest
from http_collector import ConnectProxy
from sink_kit import Kit, write_events
from test_sink_credentials import build, one_record, refusal
from test_sink_http import tls_collector

from kroonika.audit.sinks import ElasticBulkSink, JetStreamSink, tls_context
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
