"""Opening SQLite stores: exactly the file named, and evidence left untouched."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from audit_kit import TrailKit, make_kit

from kroonika.audit import Actor, ActorType, SqlAuditStore, StoreError, events
from kroonika.audit.store.sql import normalise_url


def _write(kit: TrailKit, n: int) -> None:
    kit.trail.emit_many_sync([events.auth_login(actor=Actor(ActorType.USER))] * n)


def _count(store: SqlAuditStore) -> int:
    return sum(b.count for b in store.blocks())


def _state(directory: Path) -> dict[str, tuple[int, int, bytes]]:
    return {
        p.name: (p.stat().st_mtime_ns, p.stat().st_size, p.read_bytes())
        for p in sorted(directory.iterdir())
    }


@pytest.mark.parametrize("name", ["case%41.db", "case#7.db", "what?.db", "ümlaut 1.db"])
def test_a_file_name_is_a_file_name_not_url_syntax(tmp_path: Path, name: str) -> None:
    """``%41`` is not ``A``, ``#`` and ``?`` do not end the path: the writer and the
    read-only reader both use exactly the file named, never a neighbour."""
    decoy = make_kit(normalise_url(str(tmp_path / "caseA.db")), tmp_path / "keys", stream="decoy")
    _write(decoy, 7)
    decoy.store.close()
    kit = make_kit(normalise_url(str(tmp_path / name)), tmp_path / "keys")
    _write(kit, 3)
    kit.store.close()
    assert (tmp_path / name).is_file()
    assert not (tmp_path / "case").exists()
    store = SqlAuditStore(str(tmp_path / name), read_only=True)
    assert store.streams() == ["test-stream"]
    assert _count(store) == 3
    store.close()


def test_a_url_without_a_file_is_refused() -> None:
    with pytest.raises(StoreError, match="names a file"):
        SqlAuditStore("sqlite://", read_only=True)


@pytest.fixture
def live_copy(tmp_path: Path) -> Path:
    """A copy of a store taken while its writer ran: ``-wal`` and ``-shm`` beside it,
    the last commits only in the ``-wal``."""
    live = tmp_path / "live"
    kit = make_kit(f"sqlite:///{live / 'audit.db'}", tmp_path / "keys")
    _write(kit, 4)
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    for f in live.iterdir():
        shutil.copy(f, evidence / f.name)
    kit.store.close()
    assert (evidence / "audit.db-wal").stat().st_size > 0
    return evidence


def test_a_read_only_copy_with_its_wal_is_read_and_not_touched(live_copy: Path) -> None:
    for f in live_copy.iterdir():
        f.chmod(0o444)
    before = _state(live_copy)
    store = SqlAuditStore(str(live_copy / "audit.db"), read_only=True)
    assert _count(store) == 4  # the commits in the -wal are seen
    store.close()
    assert _state(live_copy) == before


def test_a_copy_with_a_wal_and_no_shm_gets_no_shm(live_copy: Path) -> None:
    (live_copy / "audit.db-shm").unlink()
    before = _state(live_copy)
    store = SqlAuditStore(str(live_copy / "audit.db"), read_only=True)
    assert _count(store) == 4
    scratch = store._scratch  # read from a private copy...
    assert scratch is not None
    assert scratch.is_dir()
    store.close()
    assert not scratch.exists()  # ...removed on close
    assert _state(live_copy) == before


def test_follow_sees_commits_made_after_it_opened(tmp_path: Path) -> None:
    """``audit tail -f`` on a store closed cleanly (no ``-wal``, so it would be
    opened ``immutable``) still sees what a writer commits later."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    kit = make_kit(url, tmp_path / "keys")
    _write(kit, 2)
    kit.store.close()
    assert not (tmp_path / "audit.db-wal").exists()
    reader = SqlAuditStore(str(tmp_path / "audit.db"), read_only=True, follow=True)
    assert _count(reader) == 2
    kit = make_kit(url, tmp_path / "keys")
    _write(kit, 3)
    assert _count(reader) == 5
    reader.close()
    kit.store.close()


def test_a_path_that_cannot_be_looked_at_is_a_store_error(tmp_path: Path) -> None:
    """A store whose path the system refuses to look up (here a name too long for the
    file system; a directory that may not be searched is the same) is a StoreError,
    which callers report as the store being unavailable, not an unexpected OSError."""
    with pytest.raises(StoreError, match="cannot open the audit store"):
        SqlAuditStore(str(tmp_path / ("x" * 300) / "audit.db"), read_only=True)


def test_a_copy_that_cannot_be_made_is_a_store_error_and_leaves_no_scratch(
    live_copy: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The private copy of a WAL store cannot be made (its files unreadable, the disk
    full): a StoreError, and the half-made scratch directory is removed."""
    (live_copy / "audit.db-shm").unlink()
    scratch_root = tmp_path / "scratch"
    scratch_root.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch_root))

    def refuse(src: object, dst: object) -> None:
        raise PermissionError(13, "Permission denied", str(src))

    monkeypatch.setattr(shutil, "copyfile", refuse)
    with pytest.raises(StoreError, match="Permission denied"):
        SqlAuditStore(str(live_copy / "audit.db"), read_only=True)
    assert list(scratch_root.iterdir()) == []
