"""The `kroonika audit` commands, run as a user would run them."""

from __future__ import annotations

import hashlib
import shutil
import stat
from pathlib import Path

import orjson
import pytest
from cli_kit import Cli, copied_cli, generated_var

from kroonika.audit import SqlAuditStore
from kroonika.audit.integrity import verify_inclusion


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated_var(tmp_path_factory, 3000)


@pytest.fixture
def cli(generated: Path, tmp_path: Path) -> Cli:
    return copied_cli(generated, tmp_path)


def test_verify_intact_exits_zero(cli: Cli) -> None:
    """An untouched trail verifies with exit 0 and a JSON report that says so."""
    done = cli("audit", "verify", "--json")
    report = orjson.loads(done.stdout)
    assert report["intact"] is True
    assert report["records"] >= 3002


def test_verify_damage_exits_one_and_names_it(cli: Cli) -> None:
    """A flipped byte in the database makes verify exit 1 naming kind and seq."""
    from sqlalchemy import text

    store = SqlAuditStore(str(cli.var / "audit.db"))
    with store.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER audit_blocks_no_update"))
        row = conn.execute(
            text("SELECT id, data FROM audit_blocks ORDER BY id LIMIT 1 OFFSET 1")
        ).one()
        data = bytearray(row.data)
        data[len(data) // 2] ^= 0x01
        conn.execute(
            text("UPDATE audit_blocks SET data = :d WHERE id = :i"), {"d": bytes(data), "i": row.id}
        )
    store.close()
    done = cli("audit", "verify", "--json", ok=False)
    assert done.returncode == 1
    first = orjson.loads(done.stdout)["findings"][0]
    assert first["kind"] in {"modified", "reordered", "deleted", "inserted"}
    assert first["seq"] > 0
    human = cli("audit", "verify", ok=False)
    assert human.returncode == 1
    assert "DAMAGE" in human.stdout


def test_verify_usage_errors_exit_two(cli: Cli, tmp_path: Path) -> None:
    """A missing store or unreadable key file is exit 2 with a clear message."""
    missing = cli("audit", "verify", "--store", str(tmp_path / "nope.db"), ok=False)
    assert missing.returncode == 2
    assert "no audit store" in missing.stderr
    bad_keys = tmp_path / "keys.json"
    bad_keys.write_text("not json")
    done = cli("audit", "verify", "--keys", str(bad_keys), ok=False)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr


def test_truncation_found_with_exported_checkpoint(cli: Cli, tmp_path: Path) -> None:
    """checkpoint export, then dropping the newest block: verify --checkpoint exits 1."""
    cp_file = tmp_path / "cp.json"
    cli("audit", "checkpoint", "export", "-o", str(cp_file))
    from sqlalchemy import text

    store = SqlAuditStore(str(cli.var / "audit.db"))
    with store.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER audit_blocks_no_delete"))
        conn.execute(text("DROP TRIGGER audit_checkpoints_no_delete"))
        stream = orjson.loads(cp_file.read_bytes())["checkpoints"][0]["stream"]
        conn.execute(
            text(
                "DELETE FROM audit_blocks WHERE id = "
                "(SELECT max(id) FROM audit_blocks WHERE stream = :s)"
            ),
            {"s": stream},
        )
        conn.execute(text("DELETE FROM audit_checkpoints"))
    store.close()
    assert cli("audit", "verify", "--json", ok=False).returncode in (0, 1)
    done = cli("audit", "verify", "--json", "--checkpoint", str(cp_file), ok=False)
    assert done.returncode == 1
    kinds = {f["kind"] for f in orjson.loads(done.stdout)["findings"]}
    assert "truncated" in kinds


def test_query_filters_and_jsonl(cli: Cli) -> None:
    """query --type --outcome -o jsonl prints only matching canonical records."""
    done = cli("audit", "query", "--type", "auth.login", "--outcome", "failure", "-o", "jsonl")
    docs = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert docs
    assert {d["type"] for d in docs} == {"auth.login"}
    assert {d["outcome"] for d in docs} == {"failure"}


def test_query_takes_several_actors_as_alternatives(cli: Cli) -> None:
    """--actor repeated finds the events of any of them (one person under the pseudonym
    of each key they were named with), and export takes it the same way."""
    docs = [orjson.loads(x) for x in cli("audit", "query", "-o", "jsonl").stdout.splitlines()]
    a, b, *_ = sorted({p for d in docs if (p := d.get("actor", {}).get("pseudonym"))})
    args = ("--actor", a, "--actor", b)
    done = cli("audit", "query", *args, "-o", "jsonl")
    found = [orjson.loads(x) for x in done.stdout.splitlines()]
    assert found == [d for d in docs if d.get("actor", {}).get("pseudonym") in (a, b)]
    assert {d["actor"]["pseudonym"] for d in found} == {a, b}
    exported = cli("audit", "export", *args, "--format", "json").stdout.splitlines()
    assert len(exported) == len(found)


def test_every_read_is_recorded_as_audit_access(cli: Cli) -> None:
    """query, verify, export and proof each leave an audit.access event."""
    before = len(cli.access_events())
    cli("audit", "query", "--type", "token", "--limit", "5")
    cli("audit", "verify")
    cli("audit", "export", "--format", "cef", "--type", "auth.login")
    stream = next(
        s for s in SqlAuditStore(str(cli.var / "audit.db"), read_only=True).streams()
        if not s.startswith("cli-")
    )  # fmt: skip
    cli("audit", "proof", "--seq", "3", "--stream", stream)
    cli("audit", "checkpoint", "export", "-o", str(cli.var / "cp.json"))
    cli("audit", "sinks", "dead-letters")
    accesses = cli.access_events()[before:]
    assert [a["details"]["action"] for a in accesses] == [  # type: ignore[index]
        "query", "verify", "export", "proof", "checkpoint_export", "dead_letters",
    ]  # fmt: skip
    export = accesses[2]["details"]
    assert export["format"] == "cef"  # type: ignore[index]
    assert export["returned"] > 0  # type: ignore[index,operator]


def test_proof_verifies_against_the_signed_root(cli: Cli) -> None:
    """The inclusion proof printed for an event checks out with RFC 9162."""
    store = SqlAuditStore(str(cli.var / "audit.db"), read_only=True)
    stream = next(s for s in store.streams() if not s.startswith("cli-"))
    store.close()
    proof = orjson.loads(cli("audit", "proof", "--seq", "1234", "--stream", stream).stdout)
    verify_inclusion(
        bytes.fromhex(proof["leaf_hash"]),
        proof["leaf_index"],
        proof["tree_size"],
        [bytes.fromhex(h) for h in proof["proof"]],
        bytes.fromhex(proof["root"]),
    )
    assert proof["record"]["seq"] == 1234


def test_read_only_copy_is_not_written(cli: Cli, tmp_path: Path) -> None:
    """verify, query and export work on a read-only evidence copy and change no byte."""
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    checkpointed = SqlAuditStore(str(cli.var / "audit.db"))
    with checkpointed.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    checkpointed.close()
    shutil.copy(cli.var / "audit.db", evidence / "audit.db")
    (evidence / "audit.db").chmod(stat.S_IRUSR | stat.S_IRGRP)
    evidence.chmod(stat.S_IRUSR | stat.S_IXUSR)
    before = hashlib.sha256((evidence / "audit.db").read_bytes()).hexdigest()
    try:
        url = str(evidence / "audit.db")
        assert cli("audit", "verify", "--store", url).returncode == 0
        assert cli("audit", "query", "--store", url, "--limit", "3").stdout.count("\n") == 3
        assert "CEF:0" in cli("audit", "export", "--store", url, "--format", "cef").stdout
        assert sorted(p.name for p in evidence.iterdir()) == ["audit.db"]
        assert hashlib.sha256((evidence / "audit.db").read_bytes()).hexdigest() == before
    finally:
        evidence.chmod(stat.S_IRWXU)


def test_keys_rotate_then_old_and_new_verify(cli: Cli) -> None:
    """After rotation new heads use the new key and the whole trail still verifies."""
    out = cli("audit", "keys", "rotate").stdout
    assert "->" in out
    cli("audit", "generate", "--count", "10")
    listed = cli("audit", "keys", "list").stdout.splitlines()
    assert len(listed) == 2
    assert sum("(active)" in line for line in listed) == 1
    assert orjson.loads(cli("audit", "verify", "--json").stdout)["intact"] is True


def test_each_cli_command_checkpoints_its_stream(cli: Cli) -> None:
    """A command's own stream (its audit.access) is covered by a stored checkpoint,
    so an exported witness makes deleting that stream detectable."""
    cli("audit", "query", "--type", "token", "--limit", "1")
    store = SqlAuditStore(str(cli.var / "audit.db"), read_only=True)
    try:
        cli_streams = [s for s in store.streams() if s.startswith("cli-")]
        assert cli_streams
        for stream in cli_streams:
            sizes = [cp.size for cp in store.checkpoints(stream)]
            last = max(b.last_seq for b in store.blocks(stream))
            assert sizes, stream
            assert max(sizes) == last
    finally:
        store.close()


def test_dead_letters_are_listed_one_json_object_per_line(cli: Cli) -> None:
    """Each dead letter is printed as one JSON line, its hostile error text escaped."""
    from kroonika.audit.sinks import CursorStore

    store = SqlAuditStore(str(cli.var / "audit.db"))
    cursors = CursorStore(store.engine)
    cursors.dead_letter(
        "hec", "web-1", 7, "ev-7", "HTTP 400 \x1b[31mred\r\n", 3, "2026-11-27T00:00:00Z"
    )
    store.close()
    done = cli("audit", "sinks", "dead-letters", "--sink", "hec")
    (line,) = done.stdout.splitlines()
    assert "\x1b" not in line
    row = orjson.loads(line)
    assert (row["sink"], row["stream"], row["seq"], row["item_id"], row["attempts"]) == (
        "hec", "web-1", 7, "ev-7", 3,
    )  # fmt: skip
    assert row["error"] == "HTTP 400 \x1b[31mred\r\n"
