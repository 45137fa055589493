"""Events in clear: a sink that ships the trail over a connection that is not TLS to a
host that is not loopback lets anyone on the path read pseudonyms, IP prefixes, event
types and admin justifications. Refused when the sinks are built, in every mode, unless
the sink says ``allow_cleartext``: plain syslog (decision 0019), and the HTTP and NATS
sinks with or without a credential (decision 0020; a credential needs
``allow_cleartext_credentials`` besides). Checked against the real rsyslogd, an HTTP
collector and the real nats-server (through a recording proxy) listening on this host's
non-loopback address."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from http_collector import Collector
from pydantic import SecretStr
from sink_kit import Kit, Rsyslog, make_ca, start_rsyslog, stop_rsyslog, write_events
from test_sink_credentials import SECRET, nats_proxy, one_record, outward_address
from test_sink_jetstream_file import require_nats
from test_sink_syslog import FAST

from kroonika.audit.sinks import (
    ElasticBulkSink,
    JetStreamSink,
    SinkRunner,
    SplunkHecSink,
    SyslogTcpSink,
    SyslogUdpSink,
    TransientSinkError,
    WebhookSink,
    tls_context,
)
from kroonika.settings import AuditSinkSettings, Settings, SettingsError
from kroonika.shipping import build_sinks

REMOTE = ["192.0.2.2", "logs.example.ee", "10.0.0.5", "[2001:db8::5]", "127.0.0.1.example"]


def _build(spec: dict[str, object], **settings: object) -> list[object]:
    sinks = [AuditSinkSettings.model_validate(spec)]
    return build_sinks(Settings(audit_sinks=sinks, **settings))  # type: ignore[arg-type,return-value]


def _refusal(spec: dict[str, object], **settings: object) -> str:
    with pytest.raises(SettingsError) as info:
        _build(spec, **settings)
    text = str(info.value)
    assert repr(spec["name"]) in text
    assert SECRET not in text
    assert "pw-0123456789" not in text
    return text


def _address() -> str:
    address = outward_address()
    if address is None:
        pytest.skip("no non-loopback IPv4 address on this host")
    return address


@pytest.mark.parametrize("kind", ["syslog_tcp", "syslog_udp"])
@pytest.mark.parametrize("host", REMOTE)
@pytest.mark.parametrize("env", ["development", "production"])
def test_plain_syslog_to_a_remote_host_is_refused(kind: str, host: str, env: str) -> None:
    """In any mode the refusal names the sink, says why, and names both ways out."""
    text = _refusal({"kind": kind, "name": "siem", "host": host, "port": 514}, env=env)
    assert "in clear" in text
    assert "syslog_tls" in text
    assert "allow_cleartext=true" in text


@pytest.mark.parametrize("kind", ["syslog_tcp", "syslog_udp"])
@pytest.mark.parametrize("host", ["127.0.0.1", "127.9.9.9", "localhost", "::1"])
def test_plain_syslog_to_loopback_is_allowed(kind: str, host: str) -> None:
    """A relay on this host (rsyslog forwarding over TLS) may take the events in clear:
    they never leave the machine."""
    (sink,) = _build({"kind": kind, "name": "relay", "host": host, "port": 514}, env="production")
    assert sink.name == "relay"  # type: ignore[attr-defined]


def test_tls_syslog_to_a_remote_host_is_allowed() -> None:
    """syslog_tls is the intended way to a remote collector."""
    (sink,) = _build({"kind": "syslog_tls", "name": "siem", "host": "192.0.2.2", "port": 6514})
    assert sink.tls is not None  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["syslog_tcp", "syslog_udp"])
def test_the_opt_out_is_explicit_and_logged(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """``allow_cleartext=true`` builds the sink, in production too, and logs a warning
    naming it at every start."""
    spec = {"kind": kind, "name": "siem", "host": "192.0.2.2", "port": 514}
    with caplog.at_level(logging.WARNING, logger="kroonika.shipping"):
        _build(spec | {"allow_cleartext": True}, env="production")
    (line,) = [r.getMessage() for r in caplog.records if r.name == "kroonika.shipping"]
    assert "'siem'" in line
    assert "in clear" in line


@pytest.mark.parametrize(
    ("spec", "key", "hint"),
    [
        (
            {"kind": "syslog_tcp", "name": "s", "host": "h", "port": 514}
            | {"allow_cleartext_credentials": True},
            "allow_cleartext_credentials",
            "allow_cleartext=true",
        ),
        (
            {"kind": "syslog_tls", "name": "s", "host": "h", "port": 6514}
            | {"allow_cleartext": True},
            "allow_cleartext",
            "",
        ),
        (
            {"kind": "jsonl", "name": "s", "directory": "d"} | {"allow_cleartext": True},
            "allow_cleartext",
            "",
        ),
    ],
)
def test_the_wrong_opt_out_is_refused_with_the_right_one(
    spec: dict[str, object], key: str, hint: str
) -> None:
    """The credentials opt-out does nothing for syslog (it carries no credential), the
    events opt-out nothing for TLS syslog or a file: refused by name, pointing to the
    one that applies."""
    text = _refusal(spec)
    assert repr(key) in text
    assert hint in text


def test_the_library_sinks_refuse_clear_text_to_a_remote_host_too() -> None:
    """Used outside this service, the audit library's sinks refuse the same (and take
    the same opt-out)."""
    with pytest.raises(ValueError, match="in clear"):
        SyslogTcpSink("s", "192.0.2.2", 514)
    with pytest.raises(ValueError, match="in clear"):
        SyslogUdpSink("s", "192.0.2.2", 514)
    SyslogTcpSink("s", "192.0.2.2", 514, allow_cleartext=True)
    SyslogUdpSink("s", "192.0.2.2", 514, allow_cleartext=True)
    SyslogTcpSink("s", "192.0.2.2", 6514, tls=tls_context(None))


async def _ship(kit: Kit, sink: object) -> None:
    runner = SinkRunner(kit.store, [sink], batch_size=4, retry=FAST)  # type: ignore[list-item]
    await runner.drain()
    await runner.stop()


@pytest.mark.rsyslog
@pytest.mark.asyncio
async def test_a_remote_rsyslog_gets_events_over_tls_and_in_clear_only_when_opted_out(
    kit: Kit, tmp_path: Path
) -> None:
    """The real rsyslogd on this host's non-loopback address: plain syslog_tcp to it
    does not start; with allow_cleartext it delivers; syslog_tls delivers."""
    address = _address()
    write_events(kit, 3)
    plain: Rsyslog = start_rsyslog(tmp_path / "plain", address=address)
    try:
        spec = {"kind": "syslog_tcp", "name": "siem", "host": address, "port": plain.port}
        _refusal(spec)
        (sink,) = _build(spec | {"allow_cleartext": True})
        await _ship(kit, sink)
        assert len(plain.wait_lines(3)) == 3
    finally:
        stop_rsyslog(plain)
    ca, cert, key = make_ca(tmp_path / "pki")
    tls = start_rsyslog(tmp_path / "tls", tls=(ca, cert, key), address=address)
    try:
        (sink,) = _build(
            {"kind": "syslog_tls", "name": "siem-tls", "host": address, "port": tls.port}
            | {"ca_file": str(ca), "server_hostname": "localhost"}
        )
        await _ship(kit, sink)
        assert len(tls.wait_lines(3)) == 3
    finally:
        stop_rsyslog(tls)


# --- HTTP and NATS: the events, with or without a credential (decision 0020) ---------

EVENTS_IN_CLEAR = [
    {"kind": "elastic_bulk", "name": "es", "url": "http://es.example:9200"},
    {"kind": "elastic_bulk", "name": "es", "url": "http://10.0.0.5:9200/"},
    {"kind": "elastic_bulk", "name": "es", "url": "http://[2001:db8::5]:9200"},
    {"kind": "nats", "name": "nats", "url": "nats://nats.example:4222"},
    {"kind": "nats", "name": "nats", "url": "tls://nats-1.example:4222, nats://192.0.2.7:4222"},
]


@pytest.mark.parametrize("spec", EVENTS_IN_CLEAR)
@pytest.mark.parametrize("env", ["development", "production"])
def test_events_without_a_credential_in_clear_to_a_remote_host_are_refused(
    spec: dict[str, object], env: str
) -> None:
    """An Elastic sink without an API key over http://, a nats:// server without a token:
    refused in any mode, naming the sink, ``url``, TLS and the opt-out."""
    text = _refusal(spec, env=env)
    assert "url" in text
    assert "the events would travel in clear" in text
    assert ("https://" if spec["kind"] == "elastic_bulk" else "tls://") in text
    assert "set allow_cleartext=true" in text


WITH_A_CREDENTIAL = [
    {"kind": "splunk_hec", "name": "hec", "url": "http://splunk.example:8088", "secret": SECRET},
    {"kind": "webhook", "name": "hook", "url": "http://192.0.2.9/hook", "secret": SECRET},
    {"kind": "elastic_bulk", "name": "es", "url": "http://es.example:9200", "secret": SECRET},
    {"kind": "elastic_bulk", "name": "es", "url": "http://elastic:pw-0123456789@es.example"},
    {"kind": "nats", "name": "nats", "url": "nats://nats.example:4222", "secret": SECRET},
]


@pytest.mark.parametrize("spec", WITH_A_CREDENTIAL)
def test_the_credentials_opt_out_does_not_let_the_events_out(spec: dict[str, object]) -> None:
    """``allow_cleartext_credentials`` accepts the credential in clear, not the events:
    still refused, naming the key that is missing and what the given one covers."""
    text = _refusal(spec | {"allow_cleartext_credentials": True}, env="production")
    assert "the credential and the events would travel in clear" in text
    assert "set allow_cleartext=true if" in text
    assert "allow_cleartext_credentials=true covers the credential only" in text


@pytest.mark.parametrize("spec", WITH_A_CREDENTIAL)
def test_the_events_opt_out_does_not_let_the_credential_out(spec: dict[str, object]) -> None:
    """``allow_cleartext`` accepts the events in clear, not the credential."""
    text = _refusal(spec | {"allow_cleartext": True}, env="production")
    assert "set allow_cleartext_credentials=true if" in text
    assert "allow_cleartext=true covers the events only" in text


@pytest.mark.parametrize("spec", WITH_A_CREDENTIAL + EVENTS_IN_CLEAR)
def test_with_every_opt_out_it_needs_the_sink_is_built_and_logged_once(
    spec: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    """Both keys for a credential, ``allow_cleartext`` alone without one: built, in
    production too, with one warning naming the sink and what goes in clear."""
    credential = "secret" in spec or "@" in str(spec["url"])
    opt_outs = {"allow_cleartext": True} | (
        {"allow_cleartext_credentials": True} if credential else {}
    )
    with caplog.at_level(logging.WARNING, logger="kroonika.shipping"):
        (sink,) = _build(spec | opt_outs, env="production")
    assert sink.name == spec["name"]  # type: ignore[attr-defined]
    (line,) = [r.getMessage() for r in caplog.records if r.name == "kroonika.shipping"]
    assert repr(spec["name"]) in line
    assert (
        "the credential and the events in clear" if credential else "the events in clear"
    ) in line
    assert SECRET not in caplog.text
    assert "pw-0123456789" not in caplog.text


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "elastic_bulk", "name": "es", "url": "http://127.0.0.1:9200"},
        {"kind": "elastic_bulk", "name": "es", "url": "https://es.example:9200"},
        {"kind": "splunk_hec", "name": "hec", "url": "http://[::1]:8088", "secret": SECRET},
        {"kind": "webhook", "name": "hook", "url": "https://192.0.2.9/hook", "secret": SECRET},
        {"kind": "nats", "name": "nats", "url": "nats://127.0.0.1:4222"},
        {"kind": "nats", "name": "nats", "url": "nats://localhost:4222", "secret": SECRET},
        {"kind": "nats", "name": "nats", "url": "tls://nats.example:4222", "secret": SECRET},
    ],
)
def test_loopback_or_tls_needs_no_opt_out(spec: dict[str, object]) -> None:
    """A forwarder on this host, or TLS to another: built in production, no key needed."""
    (sink,) = _build(spec, env="production")
    assert sink.name == spec["name"]  # type: ignore[attr-defined]


LIBRARY_SINKS: list[Callable[..., object]] = [
    lambda **kw: ElasticBulkSink("es", "http://192.0.2.2:9200", **kw),
    lambda **kw: SplunkHecSink("hec", "http://splunk.example:8088", SecretStr(SECRET), **kw),
    lambda **kw: WebhookSink("hook", "http://10.1.2.3/hook", SecretStr(SECRET), **kw),
    lambda **kw: JetStreamSink("nats", ["tls://a.example", "nats://b.example"], **kw),
]


@pytest.mark.parametrize("make", LIBRARY_SINKS)
def test_the_library_http_and_nats_sinks_refuse_clear_text_to_a_remote_host_too(
    make: Callable[..., object],
) -> None:
    """Used outside this service, the library's sinks refuse the same and take the same
    opt-out."""
    with pytest.raises(ValueError, match="in clear"):
        make()
    make(allow_cleartext=True)


@pytest.mark.asyncio
async def test_a_remote_http_collector_gets_events_in_clear_only_when_opted_out(kit: Kit) -> None:
    """An HTTP collector on this host's non-loopback address: an Elastic sink without an
    API key over http:// to it does not start; with allow_cleartext it delivers."""
    address = _address()
    write_events(kit, 3)
    es = Collector(lambda r: (200, b'{"errors":false,"items":[]}'), host=address)
    await es.start()
    try:
        spec = {"kind": "elastic_bulk", "name": "es", "url": es.url}
        _refusal(spec)
        (sink,) = _build(spec | {"allow_cleartext": True})
        runner = SinkRunner(kit.store, [sink], retry=FAST, ship_checkpoints=False)  # type: ignore[list-item]
        await runner.drain()
        await runner.stop()
    finally:
        await es.stop()
    docs = [orjson.loads(line) for r in es.accepted for line in r.body.splitlines()[1::2]]
    assert len(docs) == 3


@pytest.mark.nats
@pytest.mark.asyncio
async def test_a_remote_nats_server_gets_events_in_clear_only_when_opted_out(kit: Kit) -> None:
    """The real nats-server behind a proxy on this host's non-loopback address: a nats://
    sink without a token does not start, and the library's sink refuses to be built;
    with allow_cleartext the event reaches the stream."""
    require_nats()
    address = _address()
    import nats

    prefix = f"kroonika_test_{uuid.uuid4().hex[:8]}"
    nc = await nats.connect("nats://127.0.0.1:4222")
    js = nc.jetstream()
    await js.add_stream(name=prefix, subjects=[f"{prefix}.>"])
    try:
        async with nats_proxy(address) as proxy:
            spec = {"kind": "nats", "name": "nats", "url": f"nats://{address}:{proxy.port}"}
            _refusal(spec | {"subject_prefix": prefix})
            with pytest.raises(ValueError, match="in clear"):
                JetStreamSink("nats", str(spec["url"]), subject_prefix=prefix)
            assert proxy.sent == b""
            (sink,) = _build(spec | {"subject_prefix": prefix, "allow_cleartext": True})
            await sink.send([one_record(kit)])  # type: ignore[attr-defined]
            await sink.close()  # type: ignore[attr-defined]
        assert (await js.stream_info(prefix)).state.messages == 1
    finally:
        await js.delete_stream(prefix)
        await nc.close()


@pytest.mark.nats
@pytest.mark.asyncio
@pytest.mark.parametrize("token", [None, SECRET])
async def test_a_tls_url_to_a_server_that_does_not_start_tls_gets_nothing_at_all(
    kit: Kit, tmp_path: Path, token: str | None
) -> None:
    """``tls://`` to the real nats-server, which does not start TLS: the sink fails
    before its first byte, so not even CONNECT (let alone an event) goes in clear."""
    require_nats()
    ca, _, _ = make_ca(tmp_path / "pki")
    async with nats_proxy() as proxy:
        sink = JetStreamSink(
            "nats",
            f"tls://127.0.0.1:{proxy.port}",
            token=SecretStr(token) if token else None,
            tls=tls_context(str(ca)),
            timeout=2,
        )
        for _ in range(2):  # the runner's retry is refused the same way
            with pytest.raises(TransientSinkError, match="did not start TLS"):
                await sink.send([one_record(kit)])
        await sink.close()
    assert proxy.sent == b""


@pytest.mark.asyncio
async def test_plain_http_to_loopback_does_not_go_through_a_proxy_from_the_environment(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``HTTP_PROXY`` would carry a plain http:// request, in clear, to wherever the proxy
    is: a loopback URL means this host, so the sink ignores the environment's proxy for
    http:// (a second collector stands in for the proxy and must see nothing)."""
    write_events(kit, 2)
    answer = (200, b'{"errors":false,"items":[]}')
    es, proxy = Collector(lambda r: answer), Collector(lambda r: answer)
    await es.start()
    await proxy.start()
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, proxy.url)
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    try:
        (sink,) = _build({"kind": "elastic_bulk", "name": "es", "url": es.url})
        runner = SinkRunner(kit.store, [sink], retry=FAST, ship_checkpoints=False)  # type: ignore[list-item]
        await runner.drain()
        await runner.stop()
    finally:
        await es.stop()
        await proxy.stop()
    assert proxy.requests == []
    assert len(es.accepted) >= 1
