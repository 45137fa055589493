"""What `kroonika audit` does with input that is wrong, foreign or hostile: one line on standard
error and exit 2, never a traceback; and the details of reads that it records."""

from __future__ import annotations

import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from audit_kit import TrailKit, make_kit
from cli_kit import KROONIKA, Cli, assert_one_line, copied_cli, generated_var

from kroonika.audit import (
    Actor,
    ActorType,
    AuditEvent,
    Correlation,
    Outcome,
    Query,
    Source,
    SqlAuditStore,
    events,
    run_query,
)
from kroonika.audit.integrity import CompactRange, inclusion_proof, leaf_hash, verify_inclusion
from kroonika.audit.query import time_bound
from kroonika.audit.retention import RetentionJob, RetentionPolicy

DAY = 86400.0


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated_var(tmp_path_factory, 300)


@pytest.fixture
def cli(generated: Path, tmp_path: Path) -> Cli:
    return copied_cli(generated, tmp_path)


def _records(done: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    docs = [orjson.loads(line) for line in done.stdout.splitlines()]
    return [d for d in docs if not str(d["stream"]).startswith("cli-")]


# --- 1. --from / --to ---------------------------------------------------------------------


def test_time_bound_is_the_stored_form() -> None:
    """RFC 3339 bounds become UTC with microseconds and Z; a date alone is its midnight."""
    assert time_bound("2026-11-27T10:01:53Z") == "2026-11-27T10:01:53.000000Z"
    assert time_bound("2026-11-27T12:01:53.5+02:00") == "2026-11-27T10:01:53.500000Z"
    assert time_bound("2026-11-27t00:30:00-01:00") == "2026-11-27T01:30:00.000000Z"
    assert time_bound("2026-11-27") == "2026-11-27T00:00:00.000000Z"
    assert time_bound("2026-11-27T10:01:53.1234561Z") == "2026-11-27T10:01:53.123457Z"
    assert time_bound("2026-11-27T10:01:53.1234569Z", end=True) == "2026-11-27T10:01:53.123456Z"


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2026-11-27T10:01:53",
        "2026-11-27T10:01Z",
        "2026-13-01",
        "2026-02-30T00:00:00Z",
        "2026-11-27T25:00:00Z",
        "2026-11-27T10:00:00+24:00",
        "0001-01-01T00:00:00+01:00",
    ],
)
def test_time_bound_refuses_what_is_not_rfc3339(value: str) -> None:
    """Anything but an RFC 3339 date-time with offset, or a date, is refused."""
    with pytest.raises(ValueError, match=r"RFC 3339|valid time"):
        time_bound(value)


def test_from_and_to_compare_times_not_strings(cli: Cli) -> None:
    """--from at a record's whole second finds it, --to there excludes it, and an offset
    means the same instant as Z."""
    everything = _records(cli("audit", "query", "-o", "jsonl"))
    record = next(d for d in everything if not str(d["time"]).endswith(".000000Z"))
    second = str(record["time"])[:19]  # 2026-11-27T10:01:53
    since = _records(cli("audit", "query", "-o", "jsonl", "--from", f"{second}Z"))
    assert record["id"] in {d["id"] for d in since}
    until = _records(cli("audit", "query", "-o", "jsonl", "--to", f"{second}Z"))
    assert record["id"] not in {d["id"] for d in until}
    assert all(str(d["time"]) <= f"{second}.000000Z" for d in until)
    hour = int(second[11:13])
    shifted = f"{second[:11]}{hour:02d}{second[13:]}+00:00"
    same = _records(cli("audit", "query", "-o", "jsonl", "--from", shifted))
    assert [d["id"] for d in same] == [d["id"] for d in since]
    day = _records(cli("audit", "export", "--from", second[:10]))
    assert len(day) == len(everything)


@pytest.mark.parametrize(
    "bounds",
    [
        ("--from", "yesterday"),
        ("--to", "2026-11-27T10:01:53"),
        ("--from", "2026-11-27T10:00:00Z", "--to", "2026-11-27T09:00:00Z"),
        ("--from", "2026-11-27T10:00:00-02:00", "--to", "2026-11-27T11:00:00Z"),
    ],
)
@pytest.mark.parametrize("command", ["query", "export"])
def test_bad_or_reversed_time_range_is_a_usage_error(
    cli: Cli, command: str, bounds: tuple[str, ...]
) -> None:
    """An unparsable or reversed range is exit 2, not an empty result."""
    cli.usage_error("audit", command, *bounds)


# --- 2. --store that is not an audit store ------------------------------------------------

READERS: list[tuple[str, ...]] = [
    ("query",),
    ("tail",),
    ("export",),
    ("proof", "--seq", "1"),
    ("checkpoint", "export", "-o", "{tmp}/cp.json"),
    ("sinks", "status"),
    ("sinks", "dead-letters"),
]


def _not_a_store(kind: str, tmp_path: Path, audit_db: Path) -> Path:
    path = tmp_path / f"{kind}.db"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("root:x:0:0:root:/root:/bin/bash\n")
    elif kind == "truncated":
        path.write_bytes(audit_db.read_bytes()[:20000])
    else:
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
        conn.close()
    return path


@pytest.mark.parametrize("kind", ["empty", "text", "truncated", "other_sqlite"])
@pytest.mark.parametrize("command", READERS, ids=lambda c: "-".join(c[:2]))
def test_a_file_that_is_not_an_audit_store_is_a_usage_error(
    cli: Cli, tmp_path: Path, command: tuple[str, ...], kind: str
) -> None:
    """Every reading command refuses a foreign or broken --store with one line, exit 2."""
    path = _not_a_store(kind, tmp_path, cli.var / "audit.db")
    args = [a.format(tmp=tmp_path) for a in command]
    cli.usage_error("audit", *args, "--store", str(path))


@pytest.mark.parametrize("command", READERS, ids=lambda c: "-".join(c[:2]))
def test_empty_store_option_is_an_error(cli: Cli, tmp_path: Path, command: tuple[str, ...]) -> None:
    """--store '' is refused, not read as "the configured trail"."""
    args = [a.format(tmp=tmp_path) for a in command]
    assert "--store" in cli.usage_error("audit", *args, "--store", "")


# --- 3. tail -f -----------------------------------------------------------------------------


def _login(n: int) -> AuditEvent:
    return events.auth_login(
        outcome=Outcome.FAILURE,
        actor=Actor(ActorType.USER, subject="EE38001085718"),
        source=Source(ip="192.0.2.17"),
        correlation=Correlation(request_id=f"req-{n}"),
    )


def _read_until(proc: subprocess.Popen[bytes], needle: bytes, timeout: float) -> bytes:
    assert proc.stdout is not None
    seen = b""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        if sel.select(timeout=0.1):
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            seen += chunk
    return seen


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_tail_follow_sees_events_written_after_it_started(
    cli: Cli, tmp_path: Path, stop: signal.Signals
) -> None:
    """tail -f on a store that had no -wal file when it started shows later commits, and
    Ctrl-C or SIGTERM ends it cleanly: exit 0, its audit.log.stop recorded."""
    url = str(tmp_path / "live.db")
    kit = make_kit(url, tmp_path / "keys", stream="live")
    kit.trail.emit_sync(_login(1))
    kit.store.close()
    assert not Path(f"{url}-wal").exists()
    proc = subprocess.Popen(
        [KROONIKA, "audit", "tail", "-f", "--interval", "0.1", "--store", url],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert b"live#1" in _read_until(proc, b"live#1", 30)
        writer = make_kit(url, tmp_path / "keys", stream="live")
        writer.trail.emit_sync(_login(2))
        writer.store.close()
        assert b"live#2" in _read_until(proc, b"live#2", 10)
    finally:
        proc.send_signal(stop)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    assert proc.returncode == 0, err
    assert b"Traceback" not in err
    (access,) = [
        e
        for e in cli.access_events()
        if e["details"]["action"] == "tail"  # type: ignore[index]
    ]
    store = SqlAuditStore(str(cli.var / "audit.db"), read_only=True)
    try:
        stops = [orjson.loads(b) for b in run_query(store, Query(types=("audit.log.stop",)))]
    finally:
        store.close()
    assert access["stream"] in {e["stream"] for e in stops}


# --- 4. --ip --------------------------------------------------------------------------------


@pytest.mark.parametrize("ip", ["not-an-ip", "10.0.0.0/99", "62.245.240.0/24x", "999.1.1.1/24"])
def test_invalid_ip_is_a_usage_error(cli: Cli, ip: str) -> None:
    """An --ip that is no address or prefix is exit 2, not an empty result."""
    assert "--ip" in cli.usage_error("audit", "query", "--ip", ip)
    cli.usage_error("audit", "export", "--ip", ip)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--type", "auth.logon"),
        ("--type", "x" * 5000),
        ("--type", "auth.login\nerror: forged\x1b[2J"),
        ("--category", "authn"),
        ("--outcome", "failed"),
    ],
)
@pytest.mark.parametrize("command", ["query", "export"])
def test_a_filter_value_no_event_can_have_is_a_usage_error(
    cli: Cli, command: str, option: str, value: str
) -> None:
    """A type, category or outcome outside the catalogue is exit 2 naming the option,
    shown short and escaped, before the trail is read or the read recorded."""
    before = len(cli.access_events())
    err = cli.usage_error("audit", command, option, value)
    assert option in err
    assert len(err) < 400
    assert len(cli.access_events()) == before


def test_ip_prefix_still_matches(cli: Cli) -> None:
    """A valid address or prefix filters as before."""
    docs = _records(cli("audit", "query", "-o", "jsonl", "--ip", "0.0.0.0/0"))
    assert docs
    assert all(d.get("source", {}).get("ip") for d in docs)  # type: ignore[union-attr]


# --- 5. undecodable and hostile text --------------------------------------------------------


def test_argument_that_is_not_utf8_is_refused(cli: Cli) -> None:
    """Bytes that are not UTF-8 in an argument: one line, exit 2, shown escaped."""
    done = subprocess.run(
        [KROONIKA, "audit", "query", "--actor", b"\xff"],
        env=cli.env,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 2
    stderr = done.stderr.decode()
    assert_one_line(stderr)
    assert "UTF-8" in stderr


@pytest.mark.parametrize(
    "args",
    [
        ("audit", "query", "--store", "{tmp}/x\nerror: forged\x1b[31m.db"),
        ("audit", "proof", "--seq", "1", "--stream", "web\nerror: forged\x1b]0;t\x07"),
        ("audit", "query", "--ip", "1.2.3.4\nerror: forged\x1b[2J"),
        ("audit", "query", "--from", "2026\nerror: forged\x1b[2J"),
        ("audit", "checkpoint", "export", "-o", "{tmp}/no\ndir\x1b[31m/cp.json"),
    ],
)
def test_messages_do_not_echo_user_text_raw(
    cli: Cli, tmp_path: Path, args: tuple[str, ...]
) -> None:
    """A path or name holding a newline or escape sequence cannot forge a line or reach
    the terminal as a control sequence."""
    cli.usage_error(*(a.format(tmp=tmp_path) for a in args))


# --- 6. last-resort guard and the listed cases ----------------------------------------------


def test_unexpected_exception_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An exception nothing else handles is `error: Type: message`, exit 2."""
    from kroonika import cli as cli_module

    def boom() -> None:
        raise RuntimeError("boom\n\x1b[31mforged")

    monkeypatch.setattr(cli_module, "app", boom)
    monkeypatch.setattr(sys, "argv", ["kroonika"])
    monkeypatch.delenv("KROONIKA_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exited:
        cli_module.main()
    assert exited.value.code == 2
    assert_one_line(capsys.readouterr().err)
    monkeypatch.setenv("KROONIKA_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli_module.main()


def test_typer_exit_and_usage_errors_keep_their_codes(cli: Cli) -> None:
    """The guard does not change click's own exits (no arguments, an unknown option)."""
    assert cli("audit", "query", "--no-such-option", ok=False).returncode == 2
    assert cli("audit", "query", "--limit", "3").returncode == 0


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "postgresql://u:pw-SECRET@127.0.0.1:notaport/db",
        "postgresql+asyncpg://u:pw-SECRET@127.0.0.1/db",
    ],
)
def test_bad_store_urls_are_usage_errors_without_the_password(cli: Cli, url: str) -> None:
    """A malformed URL or one naming a missing driver: one line, password not shown."""
    err = cli.usage_error("audit", "query", "--store", url)
    assert "SECRET" not in err


def test_configured_store_that_cannot_be_created(cli: Cli, tmp_path: Path) -> None:
    """KROONIKA_AUDIT_STORE_URL in a directory that cannot exist: one line, exit 2."""
    (tmp_path / "file").write_text("x")
    env = {"KROONIKA_AUDIT_STORE_URL": str(tmp_path / "file" / "audit.db")}
    cli.usage_error("audit", "generate", "--count", "1", env=env)
    cli.usage_error("audit", "query", env=env)


@pytest.mark.parametrize("where", ["{tmp}/nonexist/cp.json", "{tmp}"])
def test_output_that_cannot_be_written(cli: Cli, tmp_path: Path, where: str) -> None:
    """checkpoint export / keys export to a missing directory or a directory: exit 2."""
    out = where.format(tmp=tmp_path)
    assert "cannot write" in cli.usage_error("audit", "checkpoint", "export", "-o", out)
    assert "cannot write" in cli.usage_error("audit", "keys", "export", "-o", out)


def test_junk_public_key_file_is_a_usage_error(cli: Cli) -> None:
    """A *.pub that is not a key: keys export and verify say so in one line."""
    (cli.var / "keys" / "audit" / "junk.pub").write_text("junk")
    cli.usage_error("audit", "keys", "export")
    cli.usage_error("audit", "verify")


def test_keys_directory_that_cannot_be_made(cli: Cli, tmp_path: Path) -> None:
    """keys rotate with an impossible keys directory: one line, exit 2."""
    (tmp_path / "file").write_text("x")
    env = {"KROONIKA_AUDIT_KEYS_DIR": str(tmp_path / "file" / "keys")}
    cli.usage_error("audit", "keys", "rotate", env=env)
    cli.usage_error("audit", "keys", "list", env=env)


# --- 7. keys rotate is never unaudited ------------------------------------------------------


def test_keys_rotate_refused_when_the_trail_cannot_be_written(cli: Cli, tmp_path: Path) -> None:
    """No writable trail, no rotation: the active key and the key files stay as they were."""
    keys = cli.var / "keys" / "audit"
    before = sorted(p.name for p in keys.iterdir()), (keys / "active").read_text()
    (tmp_path / "file").write_text("x")
    env = {"KROONIKA_AUDIT_STORE_URL": str(tmp_path / "file" / "audit.db")}
    cli.usage_error("audit", "keys", "rotate", env=env)
    assert (sorted(p.name for p in keys.iterdir()), (keys / "active").read_text()) == before


# --- 8. a read cut short --------------------------------------------------------------------


def test_read_cut_short_is_still_recorded(cli: Cli) -> None:
    """`query -o jsonl | head -n 3`: quiet exit, and audit.access counts what was written."""
    proc = subprocess.Popen(
        [KROONIKA, "audit", "query", "-o", "jsonl"],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    lines = [proc.stdout.readline() for _ in range(3)]
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    proc.wait(timeout=60)
    assert all(lines)
    assert proc.returncode in (0, 1)
    assert err == b""
    details = cli.last_access()
    assert details["action"] == "query"
    assert details["result"] == "incomplete"
    assert isinstance(details["returned"], int)
    assert details["returned"] >= 3


# --- 9. which store was read ----------------------------------------------------------------


def test_access_records_name_the_store_and_limit(cli: Cli, tmp_path: Path) -> None:
    """query, export, tail, proof, verify and checkpoint export record the store they
    read in the catalogue's own fields; query its limit."""
    store = cli.var / "audit.db"
    cli("audit", "query", "--limit", "5", "--store", str(store))
    details = cli.last_access()
    assert details["limit"] == 5
    assert details["store"] == f"sqlite:///{store}"
    assert "store=" not in str(details["query"])
    stream = next(
        s for s in SqlAuditStore(str(store), read_only=True).streams() if not s.startswith("cli-")
    )
    for args in [
        ("export", "--format", "cef"),
        ("tail", "-n", "2"),
        ("proof", "--seq", "2", "--stream", stream),
        ("checkpoint", "export", "-o", str(tmp_path / "cp.json")),
        ("verify",),
    ]:
        cli("audit", *args)
        details = cli.last_access()
        assert details["store"] == f"sqlite:///{store}", args
        assert "limit" not in details, args


def test_store_password_is_not_recorded() -> None:
    """The recorded store URL has its password masked."""
    from kroonika.cli import _redact_url

    assert _redact_url("postgresql+psycopg://u:p@ss/w@h:5432/db") == (
        "postgresql+psycopg://u:***@ss/w@h:5432/db"
    )
    assert _redact_url("postgresql://u@h/db?password=s3cret&x=1") == (
        "postgresql://u@h/db?password=***&x=1"
    )
    assert _redact_url("sqlite:////var/a:b@c/audit.db") == "sqlite:////var/a:b@c/audit.db"


# --- 10. proofs after a retention purge -----------------------------------------------------


@pytest.fixture
def purged(tmp_path: Path) -> TrailKit:
    """A store whose stream `web` lost records 1..20 to retention; 21..24 are kept."""
    kit = make_kit(
        f"sqlite:///{tmp_path / 'purged.db'}", tmp_path / "keys", stream="web", checkpoint_every=5
    )
    for n in range(10):
        kit.trail.emit_sync(_login(n))
    kit.trail.emit_many_sync([_login(n) for n in range(10, 20)])
    kit.trail.emit_many_sync([_login(n) for n in range(20, 23)])  # no checkpoint after 20
    kit.trail.emit_sync(_login(23))
    (result,) = RetentionJob(
        kit.store, RetentionPolicy(), clock=lambda: time.time() + 401 * DAY, keyring=kit.keyring
    ).run()
    assert (result.first_seq, result.last_seq) == (1, 20)
    kit.store.close()
    return kit


def test_proof_of_a_purged_record_says_so(cli: Cli, purged: TrailKit, tmp_path: Path) -> None:
    """proof --seq N for a purged record: one line naming retention, exit 2."""
    url = str(tmp_path / "purged.db")
    for seq in ("1", "20"):
        err = cli.usage_error("audit", "proof", "--seq", seq, "--stream", "web", "--store", url)
        assert "purged by retention" in err


@pytest.mark.parametrize("seq", [21, 22, 24])
def test_proof_of_a_retained_record_verifies(
    cli: Cli, purged: TrailKit, tmp_path: Path, seq: int
) -> None:
    """A record kept after a purge gets an inclusion proof that checks out."""
    url = str(tmp_path / "purged.db")
    done = cli("audit", "proof", "--seq", str(seq), "--stream", "web", "--store", url)
    proof = orjson.loads(done.stdout)
    assert proof["record"]["seq"] == seq
    verify_inclusion(
        bytes.fromhex(proof["leaf_hash"]),
        proof["leaf_index"],
        proof["tree_size"],
        [bytes.fromhex(h) for h in proof["proof"]],
        bytes.fromhex(proof["root"]),
    )
    assert proof["tree_size"] == 24


def test_proof_after_base_equals_the_full_proof() -> None:
    """For every base, leaf and size up to 40, the path from the frontier is RFC 9162's."""
    from kroonika.audit.proofs import inclusion_proof_after_base

    leaves = [leaf_hash(str(i).encode()) for i in range(40)]
    for size in range(1, 41):
        for base_size in range(size):
            base = CompactRange()
            for leaf in leaves[:base_size]:
                base.append(leaf)
            at: Callable[[int], bytes] = leaves.__getitem__
            for index in range(base_size, size):
                assert inclusion_proof_after_base(index, size, base, at) == inclusion_proof(
                    index, size, leaves
                ), (size, base_size, index)


# --- 11. empty key lists --------------------------------------------------------------------


def test_keys_export_without_keys_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    """Exporting no keys at all is exit 2, not `{"keys": []}`."""
    env = {"KROONIKA_AUDIT_KEYS_DIR": str(tmp_path / "nokeys")}
    cli.usage_error("audit", "keys", "export", env=env)
    cli.usage_error("audit", "keys", "export", "-o", str(tmp_path / "k.json"), env=env)
    assert not (tmp_path / "k.json").exists()


def test_verify_with_an_empty_key_file_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    """verify --keys FILE with no keys in it is exit 2, not "every head unknown_key"."""
    keys = tmp_path / "keys.json"
    keys.write_text('{"keys": []}')
    cli.usage_error("audit", "verify", "--keys", str(keys))


def test_an_unknown_export_format_lists_each_format_once(cli: Cli) -> None:
    """The refusal names the formats the auditor guide lists, each once."""
    err = cli.usage_error("audit", "export", "--format", "rfc5424")
    listed = err.rstrip("\n").rsplit("one of ", 1)[1].split(", ")
    assert sorted(listed) == ["cef", "ecs", "json", "leef", "ocsf"], err
