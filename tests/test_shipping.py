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


@pytest.mark.asyncio
async def test_every_trail_counter_has_a_sample_from_the_start(tmp_path: Path) -> None:
    """Each known ``counter`` of ``kroonika_audit_events_total`` is 0 before it first
    moves, so ``rate()`` and ``absent()`` see the series after a restart; a counter that
    moved shows its count once."""
    from kroonika.audit.pipeline import TRAIL_COUNTERS

    kit = make_kit(f"sqlite:///{tmp_path / 'audit.db'}", tmp_path / "keys")
    try:
        shipping = LogShipping(kit.trail, kit.store, [CapturingSink("siem")])
        text = await shipping.prometheus()
        samples = [ln for ln in text.splitlines() if ln.startswith("kroonika_audit_events_total")]
        zero = [f'kroonika_audit_events_total{{counter="{c}"}} 0' for c in TRAIL_COUNTERS]
        assert samples == zero
        for name in ("validate.dropped_field", "redact.jwt", "redact.personal_code"):
            assert name in TRAIL_COUNTERS
        kit.trail.counters.add("redact.jwt", 2)
        text = await shipping.prometheus()
        assert text.count('counter="redact.jwt"') == 1
        assert 'kroonika_audit_events_total{counter="redact.jwt"} 2\n' in text
    finally:
        kit.store.close()


def test_every_counter_the_trail_adds_is_a_known_one() -> None:
    """Each ``counters.add("...")`` in the audit library names a counter of
    ``TRAIL_COUNTERS`` (and ``redact.<kind>`` each kind of the redactor), so a new counter
    cannot be left out of the zero samples."""
    import ast

    import kroonika.audit
    from kroonika.audit.pipeline import TRAIL_COUNTERS

    root = Path(kroonika.audit.__file__).parent
    seen = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add"
                and "counters" in ast.unparse(node.func.value)
            ):
                continue
            first = node.args[0]
            if isinstance(first, ast.Constant):
                seen.add(first.value)
            else:
                assert ast.unparse(first) == "f'redact.{kind}'", (path, ast.unparse(first))
    assert seen
    assert seen <= set(TRAIL_COUNTERS)
    assert {"redact.jwt", "redact.secret", "redact.personal_code"} <= set(TRAIL_COUNTERS)
    assert "redact.digest" not in TRAIL_COUNTERS  # a digest is left as it is, not counted
