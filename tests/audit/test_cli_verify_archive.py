"""``kroonika audit verify --archive FILE``: 0 intact, 1 damaged, 2 usage error."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).parent / "sinks"))

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
