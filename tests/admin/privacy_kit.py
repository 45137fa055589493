"""What the privacy CLI tests read back (the events a command recorded, and every byte
stored in the var directory's SQLite files, to search them for what must not be there)
and a trail that refuses some records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from kroonika.audit import (
    AuditEvent,
    AuditTrail,
    AuditUnavailable,
    Query,
    SealedEvent,
    SqlAuditStore,
    run_query,
)
from kroonika.settings import Settings


def recorded(var: Path, kind: str) -> list[dict[str, Any]]:
    """The events of type ``kind`` in the var directory's audit store, oldest first."""
    store = SqlAuditStore(Settings(var_dir=var).resolved_audit_store_url(), read_only=True)
    try:
        return [orjson.loads(b) for b in run_query(store, Query(types=(kind,)))]
    finally:
        store.close()


def stored_bytes(var: Path) -> bytes:
    """Every byte of the var directory's SQLite files (the database, its -wal and -shm)."""
    return b"".join(p.read_bytes() for p in var.glob("*.db*") if p.is_file())


def refuse_records(monkeypatch: pytest.MonkeyPatch, *types: str) -> None:
    """Make the trail refuse (``AuditUnavailable``) every event of ``types`` recorded
    one at a time, and take every other event as before."""
    real = AuditTrail.emit_sync

    def refuse(self: AuditTrail, event: AuditEvent) -> SealedEvent | None:
        if event.type in types:
            raise AuditUnavailable("store down")
        return real(self, event)

    monkeypatch.setattr(AuditTrail, "emit_sync", refuse)
