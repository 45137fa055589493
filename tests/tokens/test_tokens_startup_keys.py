"""The signing key the service makes at start-up is recorded before it can sign."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import update

from conftest import close_kit, make_settings, open_kit
from kroonika.audit import AuditEvent, AuditUnavailable, Fingerprinter
from kroonika.db import make_engine
from kroonika.db.tokens import signing_keys
from kroonika.tokens import FixedClock, build_tokens


def _rotations(events: list[bytes]) -> list[dict[str, Any]]:
    docs = [orjson.loads(b) for b in events]
    return [d["details"] for d in docs if d["type"] == "key.rotate"]


@pytest.mark.asyncio
async def test_first_key_and_a_rotation_due_at_start_up_are_recorded(
    tmp_path: Path, db_url: str
) -> None:
    kit = await open_kit(tmp_path, db_url, token_key_rotation_interval_s=3600)
    try:
        (first,) = [k.kid for k in kit.tokens.keys.published()]
        assert kit.tokens.keys.current().kid == first
        with kit.engine.begin() as conn:  # the key grows older than the interval
            conn.execute(update(signing_keys).values(created_at=int(time.time()) - 7200))
    finally:
        await close_kit(kit)
    kit = await open_kit(tmp_path, db_url, token_key_rotation_interval_s=3600)
    try:
        rotations = _rotations(kit.stored_events())
        assert [(r.get("old_kid"), r["justification"]) for r in rotations] == [
            (None, "first signing key"),
            (first, "scheduled rotation at start-up (token_key_rotation_interval_s)"),
        ]
        assert rotations[0]["new_kid"] == first
        second = rotations[1]["new_kid"]
        assert [k.kid for k in kit.tokens.keys.published()] == [first, second]
        assert kit.tokens.keys.current().kid == first  # the new one waits its publish lead
    finally:
        await close_kit(kit)


class _RefusingTrail:
    async def emit(self, event: AuditEvent) -> None:
        raise AuditUnavailable("the audit store is down")

    async def emit_many(self, batch: list[AuditEvent]) -> None:
        raise AuditUnavailable("the audit store is down")


@pytest.mark.asyncio
async def test_a_first_key_the_trail_refuses_is_not_kept(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, str(tmp_path / "k.db"))
    engine = make_engine(settings.resolved_database_url())
    comps = build_tokens(
        settings,
        engine=engine,
        trail=_RefusingTrail(),  # type: ignore[arg-type]
        fingerprinter=Fingerprinter(b"f" * 32, "t1"),
        clock=FixedClock(int(time.time())),
    )
    try:
        with pytest.raises(AuditUnavailable):
            await comps.start()
        assert comps.keys.published() == []
    finally:
        await comps.aclose()
        engine.dispose()
