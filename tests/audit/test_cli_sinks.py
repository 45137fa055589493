"""`kroonika audit sinks replay|status|dead-letters` run as an operator would, against a
real local HTTP collector (the configured webhook sink)."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import orjson
import pytest
from cli_kit import KROONIKA, Cli, assert_one_line
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
    var = tmp_path_factory.mktemp("var")
    Cli(var)("audit", "generate", "--count", "3")
    return var


@pytest.fixture
def cli(generated: Path, tmp_path: Path) -> Cli:
    var = tmp_path / "var"
    shutil.copytree(generated, var)
    return Cli(var)


class Hook:
    """The collector and what it answers: 400 (refuse the event) until told otherwise."""

    def __init__(self) -> None:
        self.status = 400
        self.collector = Collector(lambda r: (self.status, b"{}"))

    def env(self) -> dict[str, str]:
        sink = {"kind": "webhook", "name": "hook", "url": self.collector.url, "secret": KEY}
        return {"KROONIKA_AUDIT_SINKS": orjson.dumps([sink]).decode()}

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
    env = {
        "KROONIKA_AUDIT_SINKS": orjson.dumps(
            [{"kind": "webhook", "name": "hook", "url": "http://127.0.0.1:9/x", "secret": KEY}]
        ).decode()
    }
    line = cli.usage_error("audit", "sinks", "replay", *args, env=env)
    assert needle in line
    assert [e for e in events_of(cli, "audit.sink") if e["details"]["state"] == "replayed"] == []  # type: ignore[index]


def test_replay_with_a_misconfigured_sink_names_the_setting(cli: Cli) -> None:
    """The sinks are checked as the service checks them: a bad one is a usage error."""
    env = {
        "KROONIKA_AUDIT_SINKS": orjson.dumps(
            [{"kind": "webhook", "name": "hook", "url": "http://192.0.2.9/x", "secret": KEY}]
        ).decode()
    }
    line = cli.usage_error(
        "audit", "sinks", "replay", "--sink", "hook", "--all", "-j", WHY, env=env
    )
    assert "'hook'" in line
    assert "in clear" in line
    assert KEY not in line
