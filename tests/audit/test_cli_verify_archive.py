"""``kroonika audit verify --archive FILE``: 0 intact, 1 damaged, 2 usage error."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).parent / "sinks"))

from cli_kit import Cli
from sink_kit import make_kit, write_events

from kroonika.audit.retention import RetentionJob, RetentionPolicy

KROONIKA = str(Path(sys.executable).parent / "kroonika")


def run(var: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KROONIKA_VAR_DIR": str(var)}
    return subprocess.run(
        [KROONIKA, "audit", "verify", *args], env=env, capture_output=True, text=True, check=False
    )


@pytest.fixture
def archived(tmp_path: Path) -> tuple[Path, Path]:
    """A var dir whose audit keys signed the archive of a purged range 1..10."""
    var = tmp_path / "var"
    kit = make_kit(f"sqlite:///{var / 'audit.db'}", var / "keys" / "audit", checkpoint_every=5)
    try:
        write_events(kit, 12)
        later = time.time() + 401 * 86400
        (result,) = RetentionJob(
            kit.store,
            RetentionPolicy(),
            archive_dir=tmp_path / "arch",
            clock=lambda: later,
            keyring=kit.keyring,
        ).run()
    finally:
        kit.store.close()
    assert result.archive is not None
    return var, result.archive


def test_intact_archive_exits_zero(archived: tuple[Path, Path]) -> None:
    """An untouched archive verifies on its own with exit 0 and a JSON report."""
    var, archive = archived
    done = run(var, "--archive", str(archive), "--json")
    assert done.returncode == 0, done.stderr
    report = orjson.loads(done.stdout)
    assert report["intact"] is True
    assert report["records"] == 10
    access = Cli(var).last_access()
    assert (access["action"], access["store"]) == ("verify", f"archive:{archive}")
    assert access["returned"] == 10


def test_modified_archive_exits_one_naming_the_damage(archived: tuple[Path, Path]) -> None:
    """One changed record in the archive is exit 1 with its kind and position."""
    var, archive = archived
    lines = gzip.decompress(archive.read_bytes()).splitlines()
    lines[4] = lines[4].replace(b"idcard", b"mobile")
    archive.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    done = run(var, "--archive", str(archive))
    assert done.returncode == 1
    assert "DAMAGE modified" in done.stdout


def test_missing_archive_exits_two(archived: tuple[Path, Path], tmp_path: Path) -> None:
    """A path that is not a file is a usage error, exit 2."""
    var, _ = archived
    done = run(var, "--archive", str(tmp_path / "nope.jsonl.gz"))
    assert done.returncode == 2
    assert "no archive" in done.stderr


def _rewrite(archive: Path, change: Callable[[list[bytes]], list[bytes]]) -> None:
    lines = gzip.decompress(archive.read_bytes()).splitlines()
    archive.write_bytes(gzip.compress(b"\n".join(change(lines)) + b"\n"))


def _findings(var: Path, archive: Path) -> list[tuple[str, int]]:
    done = run(var, "--archive", str(archive), "--json")
    assert done.returncode == 1, (done.stdout, done.stderr)
    return [(f["kind"], f["seq"]) for f in orjson.loads(done.stdout)["findings"]]


def test_a_modified_record_is_named_at_its_own_seq(archived: tuple[Path, Path]) -> None:
    """Line 5 holds seq 4 (line 1 is the header): the store verifier's rule, the
    record whose bytes broke the next one's chain hash is the modified one."""
    var, archive = archived
    _rewrite(archive, lambda ls: [*ls[:4], ls[4].replace(b"idcard", b"mobile"), *ls[5:]])
    assert _findings(var, archive)[0] == ("modified", 4)


def test_a_deleted_record_is_one_finding(archived: tuple[Path, Path]) -> None:
    var, archive = archived
    _rewrite(archive, lambda ls: [*ls[:4], *ls[5:]])  # seq 4 gone
    found = _findings(var, archive)
    assert found[0] == ("deleted", 4)
    assert [k for k, _ in found].count("deleted") == 1


def test_a_truncated_archive_names_the_first_missing_seq(archived: tuple[Path, Path]) -> None:
    var, archive = archived
    _rewrite(archive, lambda ls: ls[:-2])  # seqs 9 and 10 gone
    assert ("truncated", 9) in _findings(var, archive)


@pytest.mark.parametrize(
    "header",
    [
        b'{"kind":"kroonika.archive/1","stream":"s"}',
        b'{"kind":"kroonika.archive/1","checkpoint":5}',
    ],
)
def test_a_damaged_header_is_damage_not_a_crash(archived: tuple[Path, Path], header: bytes) -> None:
    var, archive = archived
    _rewrite(archive, lambda ls: [header, *ls[1:]])
    done = run(var, "--archive", str(archive))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "DAMAGE modified" in done.stdout


def test_a_base_with_bad_hex_is_damage_not_a_crash(archived: tuple[Path, Path]) -> None:
    var, archive = archived

    def change(ls: list[bytes]) -> list[bytes]:
        header = orjson.loads(ls[0])
        header["base"] = {"size": 3, "frontier": "zz", "last_leaf": "00", "checkpoint": {}}
        return [orjson.dumps(header), *ls[1:]]

    _rewrite(archive, change)
    done = run(var, "--archive", str(archive))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("content", [b"root:x:0:0\n", gzip.compress(b""), gzip.compress(b"[1]\n")])
def test_a_file_that_is_no_archive_is_a_usage_error(
    archived: tuple[Path, Path], tmp_path: Path, content: bytes
) -> None:
    var, _ = archived
    other = tmp_path / "other.jsonl.gz"
    other.write_bytes(content)
    done = run(var, "--archive", str(other))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
