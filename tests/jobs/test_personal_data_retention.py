"""Storage limitation in the business database: ended sessions (they hold the person's
code, names, address and browser in clear) and security profiles (places, networks and
hours of a person's logins) are deleted by the cleanup jobs once their retention is
over, counted in the run's ``job.run`` event. A session an active token still names
is kept, so the sessions job can still revoke that token."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from job_kit import job_context, job_deps
from sqlalchemy import Engine, select

from kroonika.audit import AuditEvent, Fingerprinter
from kroonika.db import make_engine
from kroonika.db.migrate import upgrade
from kroonika.db.security import security_profile
from kroonika.db.sessions import session
from kroonika.db.tokens import tokens
from kroonika.jobs import JOBS
from kroonika.security.detectors import LoginObservation
from kroonika.security.profiles import ProfileStore
from kroonika.sessions import SessionRecord, SessionStore

NOW = 1_800_000_000
DAY = 86400


class Trail:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    async def emit(self, event: AuditEvent) -> None:
        self.events.append(event)

    async def emit_many(self, events: list[AuditEvent]) -> None:
        self.events.extend(events)


class Sessions:
    def __init__(self, engine: Engine) -> None:
        self.store = SessionStore(engine)
        self.fingerprinter = Fingerprinter(b"f" * 32, "t1")

    def session_ref(self, record: SessionRecord) -> str:
        return self.fingerprinter.fingerprint("session", record.ref)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    e = make_engine(f"sqlite:///{tmp_path / 'k.db'}")
    upgrade(e)
    return e


def _session(store: SessionStore, n: int, *, ended_at: int | None) -> str:
    ref = f"ref{n:08d}"
    store.add(
        SessionRecord(
            ref=ref,
            subject="EE38001085718",
            given_name="MARY ÄNN",
            family_name="O’CONNEŽ-ŠUSLIK TESTNUMBER",
            method="idcard",
            acr="high",
            flow_id=None,
            ip="193.40.12.7",
            user_agent="Firefox",
            created_at=NOW - 90 * DAY,
            last_seen_at=NOW - 90 * DAY,
            idle_expires_at=NOW + 3600,
            absolute_expires_at=NOW + 3600,
        ),
        f"{n:064x}",
    )
    if ended_at is not None:
        store.end([ref], ended_at, "logout")
    return ref


def _token(engine: Engine, jti: str, session_ref: str, state: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            tokens.insert().values(
                jti=jti,
                kid="k1",
                alg="ES256",
                token_type="session",
                subject="EE38001085718",
                session_ref=session_ref,
                audience='["a"]',
                claim_names="[]",
                iat=NOW - 60 * DAY,
                exp=NOW + DAY,
                state=state,
            )
        )


async def _run(engine: Engine, job: str, **retention: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    deps = job_deps(engine, Trail(), sessions=Sessions(engine), token_retention_s=30 * DAY,
                    **retention)  # fmt: skip
    await JOBS[job](deps, job_context(lambda: NOW, 2, counts))
    return counts


def _refs(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(session.c.ref)).scalars())


@pytest.mark.asyncio
async def test_ended_sessions_past_retention_are_deleted_unless_a_live_token_names_them(
    engine: Engine,
) -> None:
    store = SessionStore(engine)
    old = [_session(store, n, ended_at=NOW - 31 * DAY) for n in range(5)]
    recent = _session(store, 10, ended_at=NOW - 29 * DAY)
    active = _session(store, 11, ended_at=None)
    _token(engine, "j-live", old[0], "active")  # revoked by the job first, not orphaned
    _token(engine, "j-done", old[1], "revoked")
    counts = await _run(engine, "sessions", session_retention_s=30 * DAY)
    assert counts["sessions_deleted"] == 4
    assert _refs(engine) == {old[0], recent, active}
    assert await _run(engine, "sessions", session_retention_s=30 * DAY) == Counter()


def _login(profiles: ProfileStore, person: str, at: int) -> None:
    profiles.record_login(
        LoginObservation(at=at, success=True, person=person, network="193.40.12.0/24")
    )


@pytest.mark.asyncio
async def test_security_profiles_unused_past_retention_are_deleted(engine: Engine) -> None:
    profiles = ProfileStore(engine)
    _login(profiles, "p-stale", NOW - 401 * DAY)
    _login(profiles, "p-fresh", NOW - 399 * DAY)
    _login(profiles, "p-back", NOW - 500 * DAY)
    _login(profiles, "p-back", NOW - 10 * DAY)
    _login(profiles, "p-back", NOW - 450 * DAY)  # an old login folded in late
    counts = await _run(engine, "security_profiles", profile_retention_s=400 * DAY)
    assert counts == Counter({"security_profiles_deleted": 1})
    assert profiles.get("p-stale") is None
    assert profiles.get("p-fresh") is not None
    assert profiles.get("p-back") is not None


@pytest.mark.asyncio
async def test_retention_zero_keeps_everything(engine: Engine) -> None:
    """0 switches the deletion off (an operator who must keep them elsewhere)."""
    store = SessionStore(engine)
    ref = _session(store, 1, ended_at=NOW - 999 * DAY)
    _login(ProfileStore(engine), "p", NOW - 999 * DAY)
    assert await _run(engine, "sessions", session_retention_s=0) == Counter()
    assert await _run(engine, "security_profiles", profile_retention_s=0) == Counter()
    assert _refs(engine) == {ref}
    with engine.connect() as conn:
        assert conn.execute(select(security_profile.c.person)).scalars().all() == ["p"]
