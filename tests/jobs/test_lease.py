"""The job lease: one holder at a time, one run per schedule slot, interrupted runs resume."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from kroonika.db import make_engine
from kroonika.db.migrate import upgrade
from kroonika.jobs import LeaseLost, Leases


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    e = make_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    upgrade(e)
    return e


def test_only_one_holder_until_the_lease_runs_out(engine: Engine) -> None:
    """A second owner is refused while the lease lasts and gets it after; the first run is
    then marked interrupted and the new one resumed; the old holder's renewal fails."""
    a = Leases(engine, owner="a", lease_s=60)
    b = Leases(engine, owner="b", lease_s=60)
    first = a.acquire("sessions", now=1000, trigger="schedule", slot=None)
    assert first is not None
    assert b.acquire("sessions", now=1030, trigger="schedule", slot=None) is None
    second = b.acquire("sessions", now=1061, trigger="schedule", slot=None)
    assert second is not None
    assert second.resumed
    with pytest.raises(LeaseLost):
        a.renew(first, now=1062, counts={})
    b.release(second, now=1070, outcome="success", counts={"x": 1}, error=None)


def test_a_slot_runs_once(engine: Engine) -> None:
    """After a run for slot S, neither owner can run S again; the next slot is free."""
    a = Leases(engine, owner="a", lease_s=60)
    b = Leases(engine, owner="b", lease_s=60)
    lease = a.acquire("flows", now=100, trigger="schedule", slot=60)
    assert lease is not None
    a.release(lease, now=101, outcome="success", counts={}, error=None)
    assert b.acquire("flows", now=102, trigger="schedule", slot=60) is None
    assert b.acquire("flows", now=121, trigger="schedule", slot=120) is not None
