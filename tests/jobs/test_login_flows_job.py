"""The login_flows job with an injected clock: which flows count as abandoned, and a trail
that refuses the events leaves the flows open for the next run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from job_kit import job_context, job_deps
from sqlalchemy import Engine, select

from kroonika.audit import AuditEvent, AuditUnavailable
from kroonika.db import make_engine
from kroonika.db.migrate import upgrade
from kroonika.db.sessions import login_flow
from kroonika.jobs.cleanup import login_flows
from kroonika.sessions import FlowStore, LoginFlow, ManualClock

NOW = 1_700_000_000


class Trail:
    """Captures emitted events; refuses them while ``down``."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.down = False

    async def emit_many(self, events: list[AuditEvent]) -> None:
        if self.down:
            raise AuditUnavailable("store down")
        self.events.extend(events)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    e = make_engine(f"sqlite:///{tmp_path / 'flows.db'}")
    upgrade(e)
    return e


def _flow(flows: FlowStore, n: int, status: str, expires_at: int, consumed: bool = False) -> str:
    flow_id = f"00000000-0000-0000-0000-{n:012d}"
    flows.add(
        LoginFlow(
            flow_id=flow_id,
            state_digest=f"{n:064d}",
            nonce_digest="n" * 64,
            acr_requested="high",
            methods=(),
            ui_locales="et",
            return_to="/",
            status=status,
            created_at=expires_at - 600,
            expires_at=expires_at,
        )
    )
    if consumed:
        flows.consume(flow_id, expires_at - 300)
    return flow_id


async def _run(engine: Engine, trail: Trail, clock: ManualClock) -> Counter[str]:
    counts: Counter[str] = Counter()
    deps = job_deps(engine, trail, token_retention_s=0)
    await login_flows(deps, job_context(lambda: int(clock()), 2, counts))
    return counts


def _status(engine: Engine, flow_id: str) -> str | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(login_flow.c.status).where(login_flow.c.flow_id == flow_id)
        ).first()
    return None if row is None else str(row.status)


@pytest.mark.asyncio
async def test_only_open_unconsumed_expired_flows_are_abandoned(engine: Engine) -> None:
    """Expired started/redirected flows are concluded; live, failed, completed and consumed
    flows are left alone; the clock decides when a live flow becomes abandoned."""
    flows = FlowStore(engine)
    clock = ManualClock(NOW)
    open_a = _flow(flows, 1, "started", NOW - 1)
    open_b = _flow(flows, 2, "redirected", NOW - 50)
    open_c = _flow(flows, 3, "redirected", NOW - 100)
    live = _flow(flows, 4, "redirected", NOW + 60)
    _flow(flows, 5, "failed", NOW - 10)
    _flow(flows, 6, "session_created", NOW - 10, consumed=True)
    _flow(flows, 7, "redirected", NOW - 10, consumed=True)  # a callback in flight
    trail = Trail()
    counts = await _run(engine, trail, clock)
    assert counts == {"login_flows_abandoned": 3}
    logins = [e for e in trail.events if e.type == "auth.login"]
    assert sorted(e.correlation.flow_id for e in logins if e.correlation) == sorted(
        [open_a, open_b, open_c]
    )
    assert {e.reason for e in logins} == {"flow_abandoned"}
    moves = [
        (e.details["from_state"], e.details["to_state"])
        for e in trail.events
        if e.type == "auth.flow.transition"
    ]
    assert sorted(moves) == [
        ("redirected", "failed"),
        ("redirected", "failed"),
        ("started", "failed"),
    ]
    assert _status(engine, live) == "redirected"
    clock.advance(61)
    assert await _run(engine, trail, clock) == {"login_flows_abandoned": 1}
    assert _status(engine, live) == "failed"


@pytest.mark.asyncio
async def test_refused_events_leave_the_flow_open_for_the_next_run(engine: Engine) -> None:
    """When the trail refuses the events the claim is undone, so the next run concludes the
    flow instead of losing its auth.login."""
    flows = FlowStore(engine)
    clock = ManualClock(NOW)
    flow_id = _flow(flows, 1, "redirected", NOW - 1)
    trail = Trail()
    trail.down = True
    with pytest.raises(AuditUnavailable):
        await _run(engine, trail, clock)
    assert _status(engine, flow_id) == "redirected"
    trail.down = False
    assert await _run(engine, trail, clock) == {"login_flows_abandoned": 1}
    assert [e.reason for e in trail.events if e.type == "auth.login"] == ["flow_abandoned"]


@pytest.mark.asyncio
async def test_open_flows_are_concluded_before_they_are_deleted(engine: Engine) -> None:
    """Past the retention an open flow is first concluded, then deleted, in one run."""
    flows = FlowStore(engine)
    clock = ManualClock(NOW)
    flow_id = _flow(flows, 1, "redirected", NOW - 7200)
    trail = Trail()
    counts = await _run(engine, trail, clock)
    assert counts == {"login_flows_abandoned": 1, "login_flows_deleted": 1}
    assert _status(engine, flow_id) is None
    assert [e.type for e in trail.events] == ["auth.flow.transition", "auth.login"]
