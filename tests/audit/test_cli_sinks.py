"""`kroonika audit sinks replay|status|dead-letters` run as an operator would, against a
real local HTTP collector (the configured webhook sink)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson
import pytest
from cli_kit import KROONIKA, Cli, assert_one_line, copied_cli, generated_var
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).parent / "sinks"))

from http_collector import Collector

from kroonika.audit import Query, SqlAuditStore, run_query
from kroonika.audit.sinks import CursorStore, RetryPolicy, SinkRunner, WebhookSink

KEY = "a-webhook-key-of-enough-length"
WHY = "SIEM index fixed, ticket SOC-1234"
FAST = RetryPolicy(initial=0.001, maximum=0.004, permanent_attempts=1, send_timeout=5)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated_var(tmp_path_factory, 3)


@pytest.fixture
def cli(generated: Path, tmp_path: Path) -> Cli:
    return copied_cli(generated, tmp_path)


def hook_env(url: str) -> dict[str, str]:
    """The environment that configures the webhook sink ``hook`` at ``url``."""
    sink = {"kind": "webhook", "name": "hook", "url": url, "secret": KEY}
    return {"KROONIKA_AUDIT_SINKS": orjson.dumps([sink]).decode()}


class Hook:
    """The collector and what it answers: 400 (refuse the event) until told otherwise."""

    def __init__(self) -> None:
        self.status = 400
        self.collector = Collector(lambda r: (self.status, b"{}"))

    def env(self) -> dict[str, str]:
        return hook_env(self.collector.url)

    async def replay(self, cli: Cli, *selection: str) -> tuple[int, str, str]:
        """``kroonika audit sinks replay --sink hook SELECTION -j WHY``."""
        args = ("audit", "sinks", "replay", "--sink", "hook", *selection, "-j", WHY)
        return await run(cli, *args, env=self.env())

    def received_ids(self) -> list[str]:
        return [
            orjson.loads(line)["id"]
            for r in self.collector.accepted
            for line in r.body.splitlines()
        ]


async def run(cli: Cli, *args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """The CLI as a subprocess while this loop keeps serving the collector."""
    proc = await asyncio.create_subprocess_exec(
        KROONIKA,
        *args,
        env={**cli.env, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return int(proc.returncode or 0), out.decode(), err.decode()


async def dead_letter_everything(cli: Cli, hook: Hook) -> list[dict[str, object]]:
    """Deliver the stored trail to the refusing hook: every item ends as a dead letter."""
    store = SqlAuditStore(str(cli.var / "audit.db"))
    try:
        sink = WebhookSink("hook", hook.collector.url, SecretStr(KEY))
        runner = SinkRunner(store, [sink], retry=FAST)
        await runner.drain()
        await runner.stop()
        rows = CursorStore(store.engine).dead_letters("hook")
    finally:
        store.close()
    assert rows
    return rows


def events_of(cli: Cli, type_: str) -> list[dict[str, object]]:
    store = SqlAuditStore(str(cli.var / "audit.db"), read_only=True)
    try:
        return [orjson.loads(b) for b in run_query(store, Query(types=(type_,)))]
    finally:
        store.close()


def pending(cli: Cli) -> list[dict[str, object]]:
    store = SqlAuditStore(str(cli.var / "audit.db"), read_only=True)
    try:
        return CursorStore(store.engine).dead_letters("hook", pending=True)
    finally:
        store.close()


def in_replay_order(rows: list[dict[str, object]]) -> list[str]:
    def key(r: dict[str, object]) -> tuple[str, int, bool]:
        return (str(r["stream"]), int(str(r["seq"])), str(r["item_id"]).startswith("checkpoint:"))

    return [str(r["item_id"]) for r in sorted(rows, key=key)]


@pytest.mark.asyncio
async def test_replay_redelivers_marks_and_records_the_operator(cli: Cli) -> None:
    """Once the SIEM is fixed: every dead letter arrives again, in order; the rows stay,
    marked replayed; the trail holds the operator's access (with the justification) and
    one audit.sink 'replayed' per item; a second run has nothing to do."""
    hook = Hook()
    await hook.collector.start()
    try:
        rows = await dead_letter_everything(cli, hook)
        hook.status = 200
        rc, out, err = await hook.replay(cli, "--all")
        assert rc == 0, err
        assert hook.received_ids() == in_replay_order(rows)
        assert pending(cli) == []
        assert f"replayed {len(rows)} of {len(rows)}" in out
        again = await hook.replay(cli, "--all")
    finally:
        await hook.collector.stop()
    assert again[0] == 0
    assert "nothing to replay" in again[1]
    assert KEY not in out + err + again[1] + again[2]
    store = SqlAuditStore(str(cli.var / "audit.db"), read_only=True)
    try:
        assert all(KEY.encode() not in b for blk in store.blocks() for b in blk.records())
    finally:
        store.close()
    access = [e["details"] for e in events_of(cli, "audit.access")]
    replay = [d for d in access if d["action"] == "sink_replay"]  # type: ignore[index]
    assert [(d["justification"], d["returned"]) for d in replay] == [(WHY, len(rows)), (WHY, 0)]  # type: ignore[index]
    reports = [e["details"] for e in events_of(cli, "audit.sink")]
    replayed = [d for d in reports if d["state"] == "replayed"]  # type: ignore[index]
    assert [d["item_id"] for d in replayed] == in_replay_order(rows)  # type: ignore[index]
    assert all(d["justification"] == WHY for d in replayed)  # type: ignore[index]


@pytest.mark.asyncio
async def test_a_replay_that_fails_again_exits_one_and_leaves_the_dead_letters(cli: Cli) -> None:
    """Still refused: exit 1 with one line naming the item and the error; every row stays
    pending and the failure is in the trail."""
    hook = Hook()
    await hook.collector.start()
    try:
        rows = await dead_letter_everything(cli, hook)
        hook.status = 503
        rc, _, err = await hook.replay(cli, "--all")
    finally:
        await hook.collector.stop()
    assert rc == 1
    assert_one_line(err)
    first = in_replay_order(rows)[0]
    assert "HTTP 503" in err
    assert "0 of" in err
    assert "stay pending" in err
    assert len(pending(cli)) == len(rows)
    failed = [e["details"] for e in events_of(cli, "audit.sink")]
    assert [d["item_id"] for d in failed if d["state"] == "replay_failed"] == [first]  # type: ignore[index]


@pytest.mark.asyncio
async def test_replay_of_chosen_items_only(cli: Cli) -> None:
    """``--seq STREAM:SEQ`` replays just the dead letters at that position (the event and
    the checkpoint of that size, which follows it); the rest stay pending."""
    hook = Hook()
    await hook.collector.start()
    try:
        rows = await dead_letter_everything(cli, hook)
        hook.status = 200
        events = [r for r in rows if not str(r["item_id"]).startswith("checkpoint:")]
        chosen = events[-1]
        rc, _, err = await hook.replay(cli, "--seq", f"{chosen['stream']}:{chosen['seq']}")
    finally:
        await hook.collector.stop()
    assert rc == 0, err
    at = [r for r in rows if (r["stream"], r["seq"]) == (chosen["stream"], chosen["seq"])]
    assert hook.received_ids() == in_replay_order(at)
    assert chosen["item_id"] in hook.received_ids()
    assert len(pending(cli)) == len(rows) - len(at)
    listed = [
        orjson.loads(line) for line in cli("audit", "sinks", "dead-letters").stdout.splitlines()
    ]
    assert sorted(r["item_id"] for r in listed if r["replayed"]) == sorted(
        str(r["item_id"]) for r in at
    )
    left = cli("audit", "sinks", "dead-letters", "--pending").stdout.splitlines()
    assert len(left) == len(rows) - len(at)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--sink", "nope", "--all", "-j", WHY], "no sink named 'nope'"),
        (["--sink", "hook", "--all"], "justification"),
        (["--sink", "hook", "--all", "-j", "short"], "justification"),
        (["--sink", "hook", "-j", WHY], "--all or --seq"),
        (["--sink", "hook", "--all", "--seq", "web-1:1", "-j", WHY], "--all or --seq"),
        (["--sink", "hook", "--seq", "web-1", "-j", WHY], "STREAM:SEQ"),
        (["--sink", "hook", "--seq", "web-1:x", "-j", WHY], "STREAM:SEQ"),
        (["--sink", "hook", "--seq", "nowhere:7", "-j", WHY], "no pending dead letter"),
    ],
)
def test_replay_usage_errors_exit_two_and_send_nothing(
    cli: Cli, args: list[str], needle: str
) -> None:
    """Each mistake is one line on stderr, exit 2, nothing recorded as replayed."""
    env = hook_env("http://127.0.0.1:9/x")
    line = cli.usage_error("audit", "sinks", "replay", *args, env=env)
    assert needle in line
    assert [e for e in events_of(cli, "audit.sink") if e["details"]["state"] == "replayed"] == []  # type: ignore[index]


def test_replay_with_a_misconfigured_sink_names_the_setting(cli: Cli) -> None:
    """The sinks are checked as the service checks them: a bad one is a usage error."""
    env = hook_env("http://192.0.2.9/x")
    line = cli.usage_error(
        "audit", "sinks", "replay", "--sink", "hook", "--all", "-j", WHY, env=env
    )
    assert "'hook'" in line
    assert "in clear" in line
    assert KEY not in line


def status(cli: Cli, env: dict[str, str]) -> tuple[int, list[str], str]:
    done = cli("audit", "sinks", "status", ok=False, env=env)
    return done.returncode, done.stdout.splitlines(), done.stderr


def test_status_shows_configured_sinks_pending_dead_letters_and_stale_cursors(cli: Cli) -> None:
    """A configured sink that delivered nothing yet is listed with its whole lag; a
    cursor of a sink no longer configured says so; pending dead letters are counted."""
    store = SqlAuditStore(str(cli.var / "audit.db"))
    cursors = CursorStore(store.engine)
    (stream,) = [s for s in store.streams() if not s.startswith("cli-")]
    cursors.set("renamed", stream, 2, "2026-11-27T00:00:00Z")
    cursors.dead_letter("hook", stream, 1, "ev-1", "HTTP 400", 3, "2026-11-27T00:00:00Z")
    head = max(b.last_seq for b in store.blocks(stream))
    store.close()
    env = hook_env("http://127.0.0.1:9/x")
    rc, lines, err = status(cli, env)
    assert rc == 0, err
    assert f"hook  {stream}  delivered_to=0  lag_events={head}" in lines
    assert f"renamed  {stream}  delivered_to=2  lag_events={head - 2}  (not configured)" in lines
    assert "hook  dead_letters_pending=1" in lines


def test_status_counts_pending_dead_letters_of_every_configured_sink(cli: Cli) -> None:
    """A configured sink with no dead letters says `dead_letters_pending=0`, as
    `/metrics` does, so a check can tell "none" from "not looked at"."""
    rc, lines, err = status(cli, hook_env("http://127.0.0.1:9/x"))
    assert rc == 0, err
    assert "hook  dead_letters_pending=0" in lines


def test_status_does_not_call_the_alert_rules_cursor_unconfigured(cli: Cli) -> None:
    """The alert evaluator reads the trail through a cursor of its own (`@alerts`): while
    alerting is on it is listed like a sink, never as a sink no longer configured."""
    store = SqlAuditStore(str(cli.var / "audit.db"))
    (stream,) = [s for s in store.streams() if not s.startswith("cli-")]
    CursorStore(store.engine).set("@alerts", stream, 2, "2026-11-27T00:00:00Z")
    store.close()
    rc, lines, err = status(cli, {})
    assert rc == 0, err
    (line,) = [x for x in lines if x.startswith("@alerts")]
    assert "not configured" not in line
    assert line.endswith("(alert rules)")
    rc, lines, err = status(cli, {"KROONIKA_ALERTS_ENABLED": "false"})
    (line,) = [x for x in lines if x.startswith("@alerts")]
    assert line.endswith("(not configured)")


def test_status_names_a_misconfigured_sink_and_a_corrupted_cursor(cli: Cli) -> None:
    """What stops the service (a sink it refuses) or a sink (a cursor that is not a
    position) is shown, exit 1, never the secret."""
    from sqlalchemy import insert

    from kroonika.audit.store._schema import sink_cursors

    store = SqlAuditStore(str(cli.var / "audit.db"))
    with store.engine.begin() as conn:
        conn.execute(
            insert(sink_cursors), {"sink": "hook", "stream": "web-9", "seq": -5, "updated": "x"}
        )
    store.close()
    env = hook_env("http://192.0.2.9/x")
    rc, lines, err = status(cli, env)
    assert rc == 1
    assert "hook  web-9  cursor corrupted: not a sequence number" in lines
    assert_one_line(err)
    assert "'hook'" in err
    assert "in clear" in err
    assert KEY not in err


def test_status_names_every_sink_the_service_refuses(cli: Cli) -> None:
    """Each refused sink has its own line (the service names only the first): events in
    clear to another host (decision 0020) and a credential in clear, exit 1, no secret."""
    sinks = [
        {"kind": "elastic_bulk", "name": "es", "url": "http://192.0.2.7:9200"},
        {"kind": "webhook", "name": "hook", "url": "http://192.0.2.9/x", "secret": KEY},
        {"kind": "nats", "name": "ok", "url": "nats://127.0.0.1:4222"},
    ]
    rc, _, err = status(cli, {"KROONIKA_AUDIT_SINKS": orjson.dumps(sinks).decode()})
    assert rc == 1
    lines = err.splitlines()
    assert [line.split("'")[1] for line in lines] == ["es", "hook"]
    assert all(line.startswith("error: ") and "in clear" in line for line in lines)
    assert "set allow_cleartext=true" in lines[0]
    assert KEY not in err


@pytest.mark.asyncio
async def test_a_replay_the_trail_cannot_record_sends_nothing(cli: Cli) -> None:
    """Fail closed: when the trail refuses the operator's audit.access, nothing is sent
    and every dead letter stays pending (exit 2, one line)."""
    from sqlalchemy import text

    hook = Hook()
    await hook.collector.start()
    try:
        rows = await dead_letter_everything(cli, hook)
        store = SqlAuditStore(str(cli.var / "audit.db"))
        with store.engine.begin() as conn:  # a command's stream takes audit.log.start only
            conn.execute(
                text(
                    "CREATE TRIGGER refuse_cli_reads BEFORE INSERT ON audit_blocks "
                    "WHEN NEW.stream LIKE 'cli-%' AND (SELECT count(*) FROM audit_blocks "
                    "WHERE stream = NEW.stream) >= 1 "
                    "BEGIN SELECT RAISE(ABORT, 'disk quota exceeded'); END"
                )
            )
        store.close()
        hook.status = 200
        hook.collector.requests.clear()
        rc, _, err = await hook.replay(cli, "--all")
    finally:
        await hook.collector.stop()
    assert rc == 2
    assert_one_line(err)
    assert "cannot record this access" in err
    assert hook.collector.requests == []
    assert len(pending(cli)) == len(rows)
