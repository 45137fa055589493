"""``kroonika alerts list|ack``: the alerts of the trail from the command line, the read
recorded, the acknowledgement recorded with its justification, refusals with exit codes."""

from __future__ import annotations

from pathlib import Path

import orjson
from audit_kit import deny_response
from cli_kit import Cli

from kroonika.audit import Actor, ActorType, Query, SqlAuditStore, Target, events, run_query
from kroonika.audit.alerting import AckArbiter
from kroonika.auditing import build_audit
from kroonika.settings import Settings

ALERT = "alr_" + "a" * 32
WHY = "INC-77 looked at the brute force alert"


def _cli_with_alert(tmp_path: Path) -> Cli:
    var = tmp_path / "var"
    cli = Cli(var)
    cli("audit", "generate", "--count", "3")
    comps = build_audit(Settings(var_dir=var, audit_strict=True), stream="test-alerts")
    try:
        comps.trail.log_start_sync()
        comps.trail.emit_sync(
            events.alert_raise(
                actor=Actor(ActorType.SYSTEM),
                target=Target("alert", ALERT),
                rule="security_anomaly",
                summary="security_anomaly: security.anomaly kind=brute_force",
                alert_id=ALERT,
            )
        )
    finally:
        comps.stop_sync()
    return cli


def _acks(cli: Cli) -> list[dict[str, object]]:
    store = SqlAuditStore(str(cli.var / "audit.db"), read_only=True)
    try:
        return [orjson.loads(b) for b in run_query(store, Query(types=("alert.acknowledge",)))]
    finally:
        store.close()


def test_list_shows_open_alerts_and_records_the_read(tmp_path: Path) -> None:
    """list: the open alert, as a line and as JSON; an audit.access (action alerts) each time."""
    cli = _cli_with_alert(tmp_path)
    assert ALERT in cli("alerts", "list").stdout
    (line,) = cli("alerts", "list", "--json").stdout.splitlines()
    assert orjson.loads(line)["state"] == "open"
    assert cli.last_access()["action"] == "alerts"
    assert "state=open" in str(cli.last_access()["query"])


def test_list_shows_the_responses_of_an_alert(tmp_path: Path) -> None:
    """An alert answered by an automated response: its line names the response and the
    entry, its JSON has it under ``responses`` (none before)."""
    cli = _cli_with_alert(tmp_path)
    (before,) = cli("alerts", "list", "--json").stdout.splitlines()
    assert orjson.loads(before)["responses"] == []
    comps = build_audit(Settings(var_dir=cli.var, audit_strict=True), stream="test-response")
    try:
        comps.trail.log_start_sync()
        comps.trail.emit_sync(
            deny_response(
                ALERT, result="done", network="81.2.69.0/24", entry_id="al_0123456789abcdef"
            )
        )
    finally:
        comps.stop_sync()
    line = cli("alerts", "list").stdout
    assert "[response: deny_network done 81.2.69.0/24 al_0123456789abcdef]" in line
    (shown,) = cli("alerts", "list", "--json").stdout.splitlines()
    (response,) = orjson.loads(shown)["responses"]
    assert (response["result"], response["entry_id"]) == ("done", "al_0123456789abcdef")


def test_ack_records_once_then_refuses(tmp_path: Path) -> None:
    """ack: alert.acknowledge with the justification and note; a second ack exits 1, so
    does an unknown id; a short justification is a usage error (2)."""
    cli = _cli_with_alert(tmp_path)
    assert cli("alerts", "ack", ALERT, "-j", "short", ok=False).returncode == 2
    cli("alerts", "ack", ALERT, "-j", WHY, "--note", "blocked at the edge")
    (ack,) = _acks(cli)
    assert ack["details"] == {
        "alert_id": ALERT,
        "justification": WHY,
        "note": "blocked at the edge",
        "repeats": 0,
    }
    again = cli("alerts", "ack", ALERT, "-j", WHY, ok=False)
    assert again.returncode == 1
    assert "was acknowledged" in again.stderr
    unknown = cli("alerts", "ack", "alr_" + "b" * 32, "-j", WHY, ok=False)
    assert unknown.returncode == 1
    assert len(_acks(cli)) == 1
    assert cli("alerts", "list").stdout == ""
    assert ALERT in cli("alerts", "list", "--state", "acknowledged").stdout


def test_ack_waits_for_an_instance_acknowledging_the_same_alert(tmp_path: Path) -> None:
    """While another process holds the alert's acknowledgement lock (an instance in the
    middle of recording one), ack records nothing: it waits, then gives up with an error."""
    cli = _cli_with_alert(tmp_path)
    store = SqlAuditStore(str(cli.var / "audit.db"))
    arbiter = AckArbiter(store.engine)
    try:
        with arbiter.held(ALERT):
            busy = cli("alerts", "ack", ALERT, "-j", WHY, ok=False)
    finally:
        arbiter.close()
        store.close()
    assert busy.returncode != 0
    assert "still being recorded" in busy.stderr
    assert _acks(cli) == []
    cli("alerts", "ack", ALERT, "-j", WHY)  # released: the next one is recorded
    assert len(_acks(cli)) == 1
