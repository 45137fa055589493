"""The token_keys job rotates on schedule, audits it, and retires old keys."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from job_kit import job_context, job_deps
from sqlalchemy import select

from kroonika.audit import AuditEvent, AuditUnavailable
from kroonika.db import make_engine
from kroonika.db.migrate import upgrade
from kroonika.db.tokens import signing_keys
from kroonika.jobs.cleanup import token_keys
from kroonika.tokens._clock import FixedClock
from kroonika.tokens._keys import SigningKeyRing

NOW = 1_700_000_000
DAY = 86_400


class Trail:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.down = False
        self.ring: SigningKeyRing | None = None
        self.current_at_emit: list[str] = []

    async def emit_many(self, events: list[AuditEvent]) -> None:
        if self.ring is not None:  # what signs while the rotation is being recorded
            self.current_at_emit.append(self.ring.current().kid)
        if self.down:
            raise AuditUnavailable("store down")
        self.events.extend(events)


class Comps:
    def __init__(self, keys: SigningKeyRing) -> None:
        self.keys = keys


async def _run(keys: SigningKeyRing, trail: Trail) -> Counter[str]:
    counts: Counter[str] = Counter()
    deps = job_deps(trail=trail, tokens=Comps(keys), flow_retention_s=0, token_retention_s=0)
    await token_keys(deps, job_context(lambda: NOW, 10, counts))
    return counts


@pytest.mark.asyncio
async def test_rotation_happens_when_due_and_is_audited(tmp_path: Path) -> None:
    """Nothing happens while the key is young; after the interval one new key is made,
    published, and recorded as key.rotate; superseded keys retire after their tokens."""
    engine = make_engine(f"sqlite:///{tmp_path / 'k.db'}")
    upgrade(engine)
    clock = FixedClock(NOW)
    keys = SigningKeyRing(engine, b"m" * 32, clock=clock, alg="ES256", rsa_bits=2048,
                          publish_lead_s=3600, rotation_interval_s=30 * DAY,
                          max_token_lifetime_s=3600)  # fmt: skip
    first = keys.ensure()
    trail = Trail()
    assert await _run(keys, trail) == Counter({"keys_retired": 0})
    assert trail.events == []
    clock.advance(31 * DAY)
    counts = await _run(keys, trail)
    assert counts["keys_rotated"] == 1
    (event,) = trail.events
    assert event.type == "key.rotate"
    assert event.details["old_kid"] == first
    new_kid = event.details["new_kid"]
    assert [k.kid for k in keys.published()] == [first, new_kid]
    clock.advance(2 * 3600 + 3600 + 1)  # new key active, then the old one's tokens are gone
    counts = await _run(keys, trail)
    assert counts["keys_retired"] == 1
    assert [k.kid for k in keys.published()] == [new_kid]


@pytest.mark.asyncio
async def test_a_rotation_the_trail_refuses_never_signs(tmp_path: Path) -> None:
    """Even with no publish lead, the new key does not sign while its key.rotate is
    being recorded; refused, it is discarded (unpublished again) and the run fails; the
    next run rotates with its event and the key signs from then on."""
    engine = make_engine(f"sqlite:///{tmp_path / 'k.db'}")
    upgrade(engine)
    clock = FixedClock(NOW)
    keys = SigningKeyRing(engine, b"m" * 32, clock=clock, alg="ES256", rsa_bits=2048,
                          publish_lead_s=0, rotation_interval_s=30 * DAY,
                          max_token_lifetime_s=3600)  # fmt: skip
    first = keys.ensure()
    trail = Trail()
    trail.ring = keys
    trail.down = True
    clock.advance(31 * DAY)
    with pytest.raises(AuditUnavailable):
        await _run(keys, trail)
    assert trail.current_at_emit == [first]
    assert [k.kid for k in keys.published()] == [first]
    with engine.connect() as conn:
        assert conn.execute(select(signing_keys.c.kid)).scalars().all() == [first]
    trail.down = False
    assert (await _run(keys, trail))["keys_rotated"] == 1
    assert trail.current_at_emit == [first, first]
    (event,) = trail.events
    assert [k.kid for k in keys.published()] == [first, event.details["new_kid"]]
    assert keys.current().kid == event.details["new_kid"]


def test_a_staged_key_signs_only_once_activated_and_not_before_its_lead(
    tmp_path: Path,
) -> None:
    """A staged key is published at once but signs nothing until activated; activated,
    it still waits out the publish lead counted from its publication."""
    engine = make_engine(f"sqlite:///{tmp_path / 'k.db'}")
    upgrade(engine)
    clock = FixedClock(NOW)
    keys = SigningKeyRing(engine, b"m" * 32, clock=clock, alg="ES256", rsa_bits=2048,
                          publish_lead_s=600, rotation_interval_s=DAY,
                          max_token_lifetime_s=3600)  # fmt: skip
    first = keys.ensure()
    clock.advance(2 * DAY)
    rotated = keys.rotate_if_due(staged=True)
    assert rotated is not None
    _, new = rotated
    assert [k.kid for k in keys.published()] == [first, new]
    clock.advance(900)  # longer than the lead: still staged, so not signing
    assert keys.current().kid == first
    keys.activate(new)
    assert keys.current().kid == new  # the lead had passed since publication
    clock.advance(DAY)
    _, newer = keys.rotate_if_due(staged=True) or (None, "")
    clock.advance(100)
    keys.activate(newer)  # within the lead: not yet
    assert keys.current().kid == new
    clock.advance(500)
    assert keys.current().kid == newer


def _ring(tmp_path: Path, clock: FixedClock, **kw: Any) -> tuple[Any, SigningKeyRing]:
    engine = make_engine(f"sqlite:///{tmp_path / 'k.db'}")
    upgrade(engine)
    options: dict[str, Any] = {
        "publish_lead_s": 600,
        "rotation_interval_s": 30 * DAY,
        "max_token_lifetime_s": 3600,
        **kw,
    }
    return engine, SigningKeyRing(engine, b"m" * 32, clock=clock, alg="ES256", **options)


@pytest.mark.asyncio
async def test_a_staged_key_left_behind_is_discarded_once_safely_old(tmp_path: Path) -> None:
    """A key staged by a rotation whose process died (neither activated nor discarded) is
    kept for the publish lead plus an hour, then the job discards it and counts it; the
    signing key is untouched and the run rotates nothing."""
    clock = FixedClock(NOW)
    engine, keys = _ring(tmp_path, clock)
    first = keys.ensure()
    clock.advance(DAY)
    _, stale = keys.rotate(staged=True)  # ... and the process dies here
    trail = Trail()
    clock.advance(600 + 3600)  # exactly the lead plus an hour: a rotation may still be on
    counts = await _run(keys, trail)
    assert counts["keys_discarded"] == 0
    assert [k.kid for k in keys.published()] == [first, stale]
    clock.advance(1)
    counts = await _run(keys, trail)
    assert counts["keys_discarded"] == 1
    assert counts["keys_rotated"] == 0
    assert trail.events == []
    assert [k.kid for k in keys.published()] == [first]
    assert keys.jwks()["keys"][0]["kid"] == first
    assert keys.current().kid == first
    with engine.connect() as conn:
        assert conn.execute(select(signing_keys.c.kid)).scalars().all() == [first]


@pytest.mark.asyncio
async def test_activated_and_pending_keys_are_never_discarded(tmp_path: Path) -> None:
    """Only staged keys are discarded: a superseded key, the signing key (once staged,
    then activated) and a pending one within its lead stay published however old."""
    clock = FixedClock(NOW)
    _, keys = _ring(tmp_path, clock, max_token_lifetime_s=400 * DAY)
    first = keys.ensure()
    clock.advance(DAY)
    _, second = keys.rotate(staged=True)
    keys.activate(second)  # signs from its lead on
    clock.advance(10 * DAY)
    _, third = keys.rotate()  # published, pending for its lead
    counts = await _run(keys, Trail())
    assert counts["keys_discarded"] == 0
    assert [k.kid for k in keys.published()] == [first, second, third]


@pytest.mark.asyncio
async def test_a_left_behind_staged_key_does_not_hold_back_a_due_rotation(
    tmp_path: Path,
) -> None:
    """A stale staged key is the newest key but signs nothing: once discarded, the same
    run rotates the old signing key that is due."""
    clock = FixedClock(NOW)
    _, keys = _ring(tmp_path, clock)
    first = keys.ensure()
    clock.advance(29 * DAY)
    _, stale = keys.rotate(staged=True)
    clock.advance(2 * DAY)  # the signing key is 31 days old, the stale one 2 days
    trail = Trail()
    counts = await _run(keys, trail)
    assert (counts["keys_discarded"], counts["keys_rotated"]) == (1, 1)
    (event,) = trail.events
    assert event.details["old_kid"] == first
    assert [k.kid for k in keys.published()] == [first, event.details["new_kid"]]
    assert stale not in [k["kid"] for k in keys.jwks()["keys"]]
