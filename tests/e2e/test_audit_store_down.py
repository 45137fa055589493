"""The auditor's read API when the audit store cannot be read: 503 ``audit_unavailable``
(the shape of every other audit outage), never a 500, a traceback or a cut stream."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
from admin_harness import AdminStack, admin_stack

READS = [
    ("POST", "/audit/verify"),
    ("GET", "/audit/events"),
    ("GET", "/audit/events?format=jsonl"),
    ("GET", "/audit/events/01a21cc0-e43d-74ce-9403-c7588f8addf0"),
    ("GET", "/audit/checkpoints"),
]


def _assert_unavailable(stack: AdminStack, method: str, path: str) -> str:
    r = stack.call(method, path, role="auditor", why=None)
    assert r.status_code == 503, r.text
    assert r.json() == {"error": "audit_unavailable", "request_id": r.headers["x-request-id"]}
    return r.headers["x-request-id"]


def _replace_with_garbage(store: Path, keep: Path) -> None:
    """Put a file that is not a database where the store was. The writer keeps its open
    files (hard links in ``keep`` let the test read what it wrote)."""
    keep.mkdir()
    for suffix in ("", "-wal", "-shm"):
        os.link(f"{store}{suffix}", keep / f"audit.db{suffix}")
    junk = store.with_name("junk")
    junk.write_bytes(b"this is not an SQLite database\n" * 300)
    os.replace(junk, store)
    for suffix in ("-wal", "-shm"):
        Path(f"{store}{suffix}").unlink()


@pytest.mark.parametrize(("method", "path"), READS, ids=[f"{m} {p}" for m, p in READS])
def test_a_store_that_is_not_a_database_is_503(tmp_path: Path, method: str, path: str) -> None:
    """An SQLite store replaced by garbage: each audit read answers 503 and its
    ``admin.request`` records the 503 (the writer still writes its own files)."""
    with admin_stack(tmp_path) as stack:
        assert stack.call("POST", "/audit/verify", role="auditor", why=None).status_code == 200
        url = stack.stack.settings.resolved_audit_store_url()
        keep = tmp_path / "kept"
        _replace_with_garbage(Path(url.split(":///", 1)[1]), keep)
        rid = _assert_unavailable(stack, method, path)
        stack.stack.settings.audit_store_url = f"sqlite:///{keep / 'audit.db'}"
        (req,) = stack.events(types=("admin.request",), correlation=rid)
        assert (req["details"]["status"], req["reason"]) == (503, "http_503")


@pytest.mark.parametrize("why", ["name too long", "permission denied"])
def test_a_store_path_that_cannot_be_looked_at_is_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, why: str
) -> None:
    """The store's file cannot even be looked at (a directory on its path the service
    may not search; a name too long for the file system): each audit read answers 503
    audit_unavailable, not 500, and its admin.request records the 503."""
    with admin_stack(tmp_path) as stack:
        settings = stack.stack.settings
        own = settings.audit_store_url
        if why == "name too long":
            settings.audit_store_url = f"sqlite:///{tmp_path / ('x' * 300) / 'audit.db'}"
        else:
            hidden = tmp_path / "hidden"
            hidden.mkdir()
            (hidden / "audit.db").write_bytes(b"")
            settings.audit_store_url = f"sqlite:///{hidden / 'audit.db'}"
            stat = Path.stat

            def refuse(self: Path, **kw: bool) -> os.stat_result:
                if self.is_relative_to(hidden):  # EACCES, as a directory mode 0700 of another user
                    raise PermissionError(13, "Permission denied", str(self))
                return stat(self, **kw)

            monkeypatch.setattr(Path, "stat", refuse)
        try:
            rids = [_assert_unavailable(stack, method, path) for method, path in READS]
        finally:
            settings.audit_store_url = own
            monkeypatch.undo()
        for rid in rids:
            (req,) = stack.events(types=("admin.request",), correlation=rid)
            assert (req["details"]["status"], req["reason"]) == (503, "http_503")


@pytest.mark.postgres
def test_a_postgres_store_refusing_connections_is_503_then_recovers(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    """The PostgreSQL audit database refuses new connections (the writer keeps the ones it
    has): reads answer 503 and are recorded; once it accepts them again, reads work."""
    server, name = fresh_postgres_url.rsplit("/", 1)

    def allow(on: bool) -> None:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(on).lower()}')

    with admin_stack(tmp_path, overrides={"audit_store_url": fresh_postgres_url}) as stack:
        assert stack.call("POST", "/audit/verify", role="auditor", why=None).status_code == 200
        allow(False)
        try:
            rids = [_assert_unavailable(stack, method, path) for method, path in READS]
        finally:
            allow(True)
        assert stack.call("POST", "/audit/verify", role="auditor", why=None).status_code == 200
        for rid in rids:
            (req,) = stack.events(types=("admin.request",), correlation=rid)
            assert req["details"]["status"] == 503
