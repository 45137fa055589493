"""Credentials in transit: a sink never sends a token, an API key or a password over a
connection that is not TLS, unless the host is loopback or the operator opted out by
name (``allow_cleartext_credentials``). Checked when the sinks are built, and for NATS
again on the wire (nats-py upgrades to TLS only when the server asks for it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from http_collector import Collector, pipe
from pydantic import SecretStr
from sink_kit import Kit, make_ca, own_nats_server, write_events
from test_sink_jetstream_file import require_nats

from kroonika.audit.sinks import (
    JetStreamSink,
    Record,
    RetryPolicy,
    SinkRunner,
    TransientSinkError,
    tls_context,
)
from kroonika.settings import AuditSinkSettings, Settings, SettingsError
from kroonika.shipping import build_sink, build_sinks

SECRET = "tok-0123456789-very-secret"
FAST = RetryPolicy(initial=0.01, maximum=0.05, send_timeout=10)


def build(spec: dict[str, object], **settings: object) -> object:
    return build_sink(AuditSinkSettings.model_validate(spec), Settings(**settings))  # type: ignore[arg-type]


def refusal(spec: dict[str, object], **settings: object) -> str:
    with pytest.raises(SettingsError) as info:
        build_sinks(Settings(audit_sinks=[AuditSinkSettings.model_validate(spec)], **settings))  # type: ignore[arg-type]
    text = str(info.value)
    assert repr(spec["name"]) in text
    assert SECRET not in text
    assert "pw-0123456789" not in text
    return text


# --- checked when the sinks are built -----------------------------------------------

REMOTE_CLEARTEXT = [
    {"kind": "splunk_hec", "name": "hec", "url": "http://splunk.example:8088", "secret": SECRET},
    {"kind": "elastic_bulk", "name": "es", "url": "http://es.example:9200", "secret": SECRET},
    {"kind": "elastic_bulk", "name": "es", "url": "http://elastic:pw-0123456789@es.example"},
    {"kind": "webhook", "name": "hook", "url": "http://192.0.2.9/hook", "secret": SECRET},
    {"kind": "nats", "name": "nats", "url": "nats://nats.example:4222", "secret": SECRET},
    {
        "kind": "nats",
        "name": "nats",
        "url": "tls://nats-1.example:4222, nats://nats-2.example:4222",
        "secret": SECRET,
    },
]


@pytest.mark.parametrize("spec", REMOTE_CLEARTEXT)
@pytest.mark.parametrize("env", ["development", "production"])
def test_a_credential_in_clear_to_a_remote_host_is_refused(
    spec: dict[str, object], env: str
) -> None:
    """In any mode: the refusal names the sink, the setting and the way out, never the value."""
    text = refusal(spec, env=env)
    assert "in clear" in text
    assert "url" in text
    assert "allow_cleartext_credentials" in text


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8088", "http://127.3.4.5:8088", "http://[::1]:8088", "http://localhost"],
)
def test_a_credential_over_http_to_loopback_is_allowed(url: str) -> None:
    """A collector on this host (a forwarder sidecar) may take the token in clear."""
    build({"kind": "splunk_hec", "name": "hec", "url": url, "secret": SECRET}, env="production")


def test_a_nats_token_needs_tls_or_loopback() -> None:
    """tls:// servers and a loopback nats:// server take the token; a remote nats:// one
    only with the opt-out (and the events' own, decision 0020)."""
    build({"kind": "nats", "name": "n", "url": "tls://nats.example:4222", "secret": SECRET})
    build({"kind": "nats", "name": "n", "url": "nats://127.0.0.1:4222", "secret": SECRET})
    remote = {"kind": "nats", "name": "n", "url": "nats://nats.example:4222", "secret": SECRET}
    assert "allow_cleartext_credentials" in refusal(remote | {"allow_cleartext": True})
    build(remote | {"allow_cleartext": True, "allow_cleartext_credentials": True})


def test_the_opt_out_is_explicit_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    """``allow_cleartext_credentials=true`` (with ``allow_cleartext`` for the events the
    credential travels with) builds the sink and logs a warning naming it (never the
    credential)."""
    spec = REMOTE_CLEARTEXT[0] | {"allow_cleartext_credentials": True, "allow_cleartext": True}
    with caplog.at_level(logging.WARNING, logger="kroonika.shipping"):
        build(spec, env="production")
    (record,) = caplog.records
    assert "'hec'" in record.getMessage()
    assert "in clear" in record.getMessage()
    assert SECRET not in caplog.text


def test_a_credential_in_a_nats_url_is_refused_without_echo() -> None:
    """``nats://user:password@host`` would bypass every check: refused, pointing to secret."""
    text = refusal({"kind": "nats", "name": "n", "url": "tls://u:pw-0123456789@nats.example"})
    assert "secret" in text


def test_nats_tls_files_with_a_plain_nats_url_are_refused() -> None:
    """A ``ca_file`` says TLS is wanted, but nats:// lets a server that does not ask for
    TLS talk in clear: the url must say tls://."""
    text = refusal({"kind": "nats", "name": "n", "url": "nats://nats.example", "ca_file": "c"})
    assert "tls://" in text


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        (
            {"kind": "syslog_tcp", "name": "s", "host": "h", "port": 514, "ca_file": "ca.pem"},
            "ca_file",
        ),
        ({"kind": "syslog_tcp", "name": "s", "host": "h", "port": 514, "secret": SECRET}, "secret"),
        (
            {"kind": "syslog_udp", "name": "s", "host": "h", "port": 514, "cert_file": "c"},
            "cert_file",
        ),
        ({"kind": "jsonl", "name": "j", "directory": "d", "secret": SECRET}, "secret"),
        (
            {"kind": "webhook", "name": "w", "url": "https://h", "secret": SECRET, "key_file": "k"},
            "key_file",
        ),
        ({"kind": "nats", "name": "n", "tls_verify": False}, "tls_verify"),
    ],
)
def test_a_key_that_does_nothing_for_its_kind_is_refused(spec: dict[str, object], key: str) -> None:
    """A TLS file on plain syslog, a secret nothing sends: refused by name, not ignored
    (the operator believes they are in effect)."""
    text = refusal(spec)
    assert repr(key) in text


# --- HTTP: a real collector on loopback ---------------------------------------------


@pytest.mark.asyncio
async def test_a_loopback_http_collector_gets_the_token(kit: Kit) -> None:
    """Built from settings, a HEC sink on loopback http:// delivers with its token."""
    write_events(kit, 2)
    hec = Collector(lambda r: (200, b'{"text":"Success","code":0}'))
    await hec.start()
    sink = build({"kind": "splunk_hec", "name": "hec", "url": hec.url, "secret": SECRET})
    runner = SinkRunner(kit.store, [sink], retry=FAST, ship_checkpoints=False)  # type: ignore[list-item]
    try:
        await runner.drain()
    finally:
        await runner.stop()
        await hec.stop()
    assert [r.headers["authorization"] for r in hec.accepted] == [f"Splunk {SECRET}"]


# --- NATS: on the wire, through a recording proxy in front of the real server --------


@dataclass
class Proxy:
    """A TCP forwarder to the real nats-server that records what the client sends."""

    host: str
    port: int = 0
    sent: bytearray = field(default_factory=bytearray)


@contextlib.asynccontextmanager
async def nats_proxy(host: str = "127.0.0.1") -> AsyncIterator[Proxy]:
    proxy = Proxy(host)
    tasks: set[asyncio.Task[None]] = set()

    async def serve(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection("127.0.0.1", 4222)
        for t in (
            asyncio.create_task(pipe(cr, sw, proxy.sent)),
            asyncio.create_task(pipe(sr, cw)),
        ):
            tasks.add(t)

    server = await asyncio.start_server(serve, host, 0)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def one_record(kit: Kit) -> Record:
    write_events(kit, 1)
    return Record("web-1", 1, next(iter(kit.store.blocks("web-1"))).records()[0])


@pytest.mark.nats
@pytest.mark.asyncio
async def test_a_token_to_the_loopback_server_in_clear_is_delivered(kit: Kit) -> None:
    """nats://127.0.0.1 with a token: the credential stays on this host, delivery works."""
    require_nats()
    import nats

    prefix = f"kroonika_test_{uuid.uuid4().hex[:8]}"
    nc = await nats.connect("nats://127.0.0.1:4222")
    js = nc.jetstream()
    await js.add_stream(name=prefix, subjects=[f"{prefix}.>"])
    try:
        sink = JetStreamSink(
            "nats", "nats://127.0.0.1:4222", token=SecretStr(SECRET), subject_prefix=prefix
        )
        await sink.send([one_record(kit)])
        await sink.close()
        assert (await js.stream_info(prefix)).state.messages == 1
    finally:
        await js.delete_stream(prefix)
        await nc.close()


def outward_address() -> str | None:
    """This host's address on a non-loopback interface (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(s.getsockname()[0])
    return None if address.startswith("127.") else address


@pytest.mark.nats
@pytest.mark.asyncio
async def test_a_token_to_a_remote_server_in_clear_is_withheld_unless_opted_out(kit: Kit) -> None:
    """A plain connection to a host that is not loopback (a server found through cluster
    gossip, say) does not get the token, nor anything else, though the sink may send
    the events in clear; with the credentials opt-out it does."""
    require_nats()
    address = outward_address()
    if address is None:
        pytest.skip("no non-loopback IPv4 address on this host")
    record = one_record(kit)
    async with nats_proxy(address) as proxy:
        url = f"nats://{address}:{proxy.port}"
        sink = JetStreamSink("nats", url, token=SecretStr(SECRET), timeout=2, allow_cleartext=True)
        with pytest.raises(TransientSinkError, match="the credential"):
            await sink.send([record])
        await sink.close()
        assert proxy.sent == b""
        opted = JetStreamSink(
            "nats",
            url,
            token=SecretStr(SECRET),
            timeout=2,
            subject_prefix=f"kroonika_test_{uuid.uuid4().hex[:8]}",
            allow_cleartext_credentials=True,
            allow_cleartext=True,
        )
        with contextlib.suppress(TransientSinkError):  # no stream bound: publish fails
            await opted.send([record])
        await opted.close()
    assert SECRET.encode() in proxy.sent


@contextlib.contextmanager
def tls_nats_server(tmp: Path, token: str) -> Iterator[tuple[int, Path]]:
    """A nats-server of our own with JetStream that requires TLS and ``token``."""
    ca, cert, key = make_ca(tmp / "pki")
    conf = (
        f'tls {{ cert_file: "{cert}"\n key_file: "{key}" }}\nauthorization {{ token: "{token}" }}\n'
    )
    with own_nats_server(tmp, conf) as server:
        yield server.port, ca


@pytest.mark.nats
@pytest.mark.asyncio
async def test_a_token_over_tls_reaches_a_server_that_requires_both(
    kit: Kit, tmp_path: Path
) -> None:
    """Built from settings, a tls:// NATS sink with a token delivers to a real server that
    requires TLS and that token: the check lets a TLS connection through."""
    import nats

    with tls_nats_server(tmp_path, SECRET) as (port, ca):
        url = f"tls://127.0.0.1:{port}"
        nc = await nats.connect(url, tls=tls_context(str(ca)), token=SECRET)
        js = nc.jetstream()
        await js.add_stream(name="AUDIT", subjects=["kroonika.audit.>"])
        try:
            sink = build(
                {"kind": "nats", "name": "n", "url": url, "secret": SECRET, "ca_file": str(ca)}
            )
            assert isinstance(sink, JetStreamSink)
            await sink.send([one_record(kit)])
            await sink.close()
            assert (await js.stream_info("AUDIT")).state.messages == 1
        finally:
            await nc.close()


def test_connect_options_cannot_carry_a_credential() -> None:
    """The guard cannot be bypassed by passing nats-py's own credential options."""
    for key in ("token", "user", "password", "tls", "nkeys_seed", "user_credentials"):
        with pytest.raises(ValueError, match=key):
            JetStreamSink("n", connect_options={key: "x"})
