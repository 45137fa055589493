"""Events in clear: plain syslog (``syslog_tcp``, ``syslog_udp``) to a host that is not
loopback ships IP prefixes, event types and admin justifications readable by anyone on
the path. Refused when the sinks are built, in every mode, unless the sink says
``allow_cleartext`` (decision 0019); ``syslog_tls`` is the way. Checked against the
real rsyslogd listening on this host's non-loopback address."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sink_kit import Kit, Rsyslog, make_ca, start_rsyslog, stop_rsyslog, write_events
from test_sink_credentials import outward_address
from test_sink_syslog import FAST

from kroonika.audit.sinks import SinkRunner, SyslogTcpSink, SyslogUdpSink, tls_context
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
            {"kind": "splunk_hec", "name": "s", "url": "http://h", "secret": "t" * 20}
            | {"allow_cleartext": True},
            "allow_cleartext",
            "allow_cleartext_credentials=true",
        ),
    ],
)
def test_the_wrong_opt_out_is_refused_with_the_right_one(
    spec: dict[str, object], key: str, hint: str
) -> None:
    """The credentials opt-out does nothing for syslog (it carries no credential) and
    the events opt-out nothing for the other kinds: refused by name, pointing to the
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
