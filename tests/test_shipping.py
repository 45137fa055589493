"""LogShipping's metrics: what an operator alerts on, read from the database."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "audit" / "sinks"))

from sink_kit import make_kit, write_events

from kroonika.audit.sinks import CapturingSink, CursorStore
from kroonika.shipping import LogShipping


@pytest.mark.asyncio
async def test_pending_dead_letters_are_a_gauge_that_a_replay_brings_down(tmp_path: Path) -> None:
    """``kroonika_audit_sink_dead_letters_pending`` counts rows no replay delivered yet, for
    every instance (the per-instance counter forgets them at a restart)."""
    kit = make_kit(f"sqlite:///{tmp_path / 'audit.db'}", tmp_path / "keys")
    try:
        write_events(kit, 3)
        shipping = LogShipping(kit.trail, kit.store, [CapturingSink("siem"), CapturingSink("ok")])
        cursors = CursorStore(kit.store.engine)
        for seq in (1, 2):
            cursors.dead_letter("siem", "web-1", seq, f"ev-{seq}", "HTTP 400", 3, "t")
        text = await shipping.prometheus()
        assert "# TYPE kroonika_audit_sink_dead_letters_pending gauge" in text
        assert 'kroonika_audit_sink_dead_letters_pending{sink="siem"} 2' in text
        assert 'kroonika_audit_sink_dead_letters_pending{sink="ok"} 0' in text
        first = cursors.dead_letters("siem")[0]["id"]
        cursors.mark_replayed([first], "2026-11-27T00:00:00Z")
        text = await shipping.prometheus()
        assert 'kroonika_audit_sink_dead_letters_pending{sink="siem"} 1' in text
    finally:
        kit.store.close()
