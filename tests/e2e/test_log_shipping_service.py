"""Log shipping wired into the service: sinks from settings (a real rsyslog over TCP and
the JSONL segment output), /metrics, and refusal of bad sink configuration."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
from login_harness import running_stack
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).parents[1] / "audit" / "sinks"))

from sink_kit import Rsyslog

from kroonika.settings import AuditSinkSettings, Settings, SettingsError
from kroonika.shipping import build_sinks
from kroonika.web import create_app

pytestmark = pytest.mark.rsyslog

TOKEN = "metrics-token-0123456789abcdef"


def wait_for(predicate: object, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_service_ships_to_rsyslog_and_jsonl_and_reports_metrics(
    tmp_path: Path, rsyslog: Rsyslog
) -> None:
    """A login's events reach rsyslog (RFC 5424 over TCP) and the JSONL file, the monitor
    still sees commits, and /metrics shows deliveries to a loopback scraper."""
    jsonl = tmp_path / "jsonl"
    sinks = [{"kind": "syslog_tcp", "name": "rsyslog", "host": "127.0.0.1", "port": rsyslog.port}]
    overrides = {"audit_sinks": sinks, "audit_jsonl_dir": jsonl}
    with running_stack(tmp_path, settings_overrides=overrides) as stack:
        with stack.browser() as browser:
            landed = browser.get(stack.service + "/auth/login?method=idcard&return_to=/")
            assert landed.status_code == 200
            rid = landed.history[-1].headers["x-request-id"]
        (login,) = stack.events(types=("auth.login",), correlation=rid)

        def in_jsonl() -> bool:
            path = jsonl / "audit.jsonl"
            return path.exists() and login["id"].encode() in path.read_bytes()

        assert wait_for(in_jsonl)
        assert wait_for(lambda: any(login["id"] in line for line in rsyslog.lines()))
        stored = [e for e in stack.raw_events() if login["id"].encode() in e]
        lines = (jsonl / "audit.jsonl").read_bytes().splitlines()
        assert stored[0] in lines  # the canonical bytes, one event per line
        monitor = stack.services.audit.trail.on_commit.__self__  # type: ignore[union-attr]
        assert monitor._previous is not None  # the shipping listener, chained, not replaced
        assert wait_for(lambda: monitor.counts["observed"] >= 1)
        metrics = httpx.get(stack.service + "/metrics", timeout=10)
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        delivered = [
            line
            for line in metrics.text.splitlines()
            if line.startswith('kroonika_audit_sink_delivered_total{sink="rsyslog"}')
        ]
        assert delivered
        assert int(delivered[0].split()[-1]) >= 1
        assert 'kroonika_audit_sink_lag_events{sink="jsonl",stream=' in metrics.text
    received = [orjson.loads(line[line.index("{") :]) for line in rsyslog.lines()]
    types = [e["type"] for e in received]
    assert "audit.log.stop" in types  # shipped by the final catch-up at shutdown


def test_metrics_token_is_required_when_set(tmp_path: Path) -> None:
    """With a metrics token, /metrics answers 401 without it and 200 with it."""
    overrides = {"metrics_token": SecretStr(TOKEN), "audit_jsonl_dir": tmp_path / "j"}
    with running_stack(tmp_path, settings_overrides=overrides) as stack:
        assert httpx.get(stack.service + "/metrics", timeout=10).status_code == 401
        wrong = {"authorization": "Bearer " + "x" * len(TOKEN)}
        assert httpx.get(stack.service + "/metrics", headers=wrong, timeout=10).status_code == 401
        ok = httpx.get(
            stack.service + "/metrics", headers={"authorization": f"Bearer {TOKEN}"}, timeout=10
        )
        assert ok.status_code == 200
        assert "kroonika_audit_sink_delivered_total" in ok.text


@pytest.mark.parametrize(
    ("sink", "needle"),
    [
        ({"kind": "splunk_hec", "name": "hec", "url": "https://h:8088"}, "secret"),
        (
            {"kind": "webhook", "name": "w", "url": "https://h/x", "secret": "changeme"},
            "placeholder",
        ),
        ({"kind": "syslog_tcp", "name": "s", "host": "127.0.0.1"}, "host and port"),
        ({"kind": "elastic_bulk", "name": "e", "url": "ftp://h"}, "http"),
        ({"kind": "jsonl", "name": "j"}, "directory"),
        ({"kind": "nats", "name": "n", "url": "http://h"}, "nats://"),
        (
            {"kind": "splunk_hec", "name": "h", "url": "https://h", "secret": "t" * 20}
            | {"ca_file": "/nonexistent/ca.pem"},
            "ca_file: FileNotFoundError",
        ),
        (
            {"kind": "elastic_bulk", "name": "e", "url": "https://h", "ca_file": __file__},
            "ca_file: SSLError",
        ),
        ({"kind": "webhook", "name": "w", "url": "https:///hook", "secret": "k" * 20}, "no host"),
        (
            {"kind": "splunk_hec", "name": "h", "url": "https://h", "secret": "tok\u00a0en-1234"},
            "printable ASCII",
        ),
        (
            {"kind": "elastic_bulk", "name": "e", "url": "https://h", "secret": "key\nX-A: b"},
            "printable ASCII",
        ),
    ],
)
def test_bad_sink_configuration_refuses_to_build(sink: dict[str, object], needle: str) -> None:
    """Each unusable sink is refused when the sinks are built, naming the sink."""
    settings = Settings(audit_sinks=[AuditSinkSettings.model_validate(sink)])
    with pytest.raises(SettingsError, match=needle) as info:
        build_sinks(settings)
    assert repr(sink["name"]) in str(info.value)


def test_unknown_keys_are_named_but_their_values_never_echoed() -> None:
    """A misspelt key (here holding a secret) is refused without printing its value."""
    secret = "hec-token-value-very-secret-123"
    spec = AuditSinkSettings.model_validate(
        {"kind": "splunk_hec", "name": "hec", "url": "https://h", "tokn": secret}
    )
    with pytest.raises(SettingsError, match="tokn") as info:
        build_sinks(Settings(audit_sinks=[spec]))
    assert secret not in str(info.value)


@pytest.mark.parametrize(
    "sink",
    [
        {"kind": "splunk_hec", "name": "hec", "url": "http://h:8088", "secret": "t" * 20},
        {"kind": "elastic_bulk", "name": "es", "url": "http://elastic:pw-0123456789@h:9200"},
    ],
)
def test_production_refuses_credentials_over_plain_http(sink: dict[str, object]) -> None:
    """In production a HEC token, or a password in the URL, may not travel over http://
    (and the refusal does not echo the password)."""
    spec = AuditSinkSettings.model_validate(sink)
    with pytest.raises(SettingsError, match="plain http") as info:
        build_sinks(Settings(env="production", audit_sinks=[spec]))
    assert "pw-0123456789" not in str(info.value)


def test_create_app_refuses_a_bad_sink(tmp_path: Path) -> None:
    """The app factory refuses to build with an unusable sink (STYLE.md 6)."""
    spec = AuditSinkSettings.model_validate({"kind": "webhook", "name": "w", "url": "https://h"})
    settings = Settings(var_dir=tmp_path / "var", audit_sinks=[spec])
    with pytest.raises(SettingsError, match="'w'"):
        create_app(settings)


@pytest.mark.parametrize("kind", ["syslog_tcp", "syslog_udp"])
def test_the_service_does_not_start_with_plain_syslog_to_a_remote_host(
    tmp_path: Path, kind: str
) -> None:
    """The app factory refuses, in development too, to ship the trail in clear to a
    collector on another host; the error names the sink and the way out (decision 0019)."""
    spec = AuditSinkSettings.model_validate(
        {"kind": kind, "name": "siem", "host": "192.0.2.2", "port": 514}
    )
    settings = Settings(var_dir=tmp_path / "var", audit_sinks=[spec])
    with pytest.raises(SettingsError, match="'siem'") as info:
        create_app(settings)
    assert "syslog_tls" in str(info.value)


def test_duplicate_sink_names_are_refused(tmp_path: Path) -> None:
    """The JSONL output is the sink 'jsonl'; another sink of that name is refused."""
    spec = AuditSinkSettings.model_validate({"kind": "jsonl", "name": "jsonl", "directory": "x"})
    with pytest.raises(SettingsError, match="unique"):
        build_sinks(Settings(audit_sinks=[spec], audit_jsonl_dir=tmp_path))


def test_tls_verify_false_is_only_explicit_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Verification is on by default; switching it off (development only) is a warning
    that names the sink."""
    base = {"kind": "webhook", "name": "hook", "url": "https://h/x", "secret": "k" * 20}
    with caplog.at_level("WARNING", logger="kroonika.shipping"):
        build_sinks(Settings(audit_sinks=[AuditSinkSettings.model_validate(base)]))
        assert caplog.records == []
        off = AuditSinkSettings.model_validate(base | {"tls_verify": False})
        build_sinks(Settings(audit_sinks=[off]))
    (record,) = caplog.records
    assert "'hook'" in record.getMessage()
    assert "does not verify" in record.getMessage()
