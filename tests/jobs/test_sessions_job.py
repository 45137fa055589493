"""The sessions job with the real token service: a trail that refuses the revocations
after the endings were recorded leaves no token revoked unaudited, and the next run
revokes every token of the ended sessions."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from job_kit import job_context, job_deps
from sqlalchemy import Engine, select

from kroonika.audit import AuditEvent, AuditUnavailable, Fingerprinter
from kroonika.db import make_engine
from kroonika.db.migrate import upgrade
from kroonika.db.tokens import tokens
from kroonika.jobs.cleanup import sessions
from kroonika.sessions import SessionRecord, SessionStore
from kroonika.settings import Settings
from kroonika.tokens import FixedClock, TokenComponents, build_tokens

NOW = 1_700_000_000
SUBJECT = "EE38001085718"


class Trail:
    """Captures emitted events; refuses those whose type is in ``refused``."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.refused: set[str] = set()

    async def emit(self, event: AuditEvent) -> None:
        await self.emit_many([event])

    async def emit_many(self, events: list[AuditEvent]) -> None:
        if any(e.type in self.refused for e in events):
            raise AuditUnavailable("store down")
        self.events.extend(events)

    def types(self) -> list[str]:
        return [e.type for e in self.events]


class Sessions:
    """What the job uses of the session manager."""

    def __init__(self, engine: Engine, fingerprinter: Fingerprinter) -> None:
        self.store = SessionStore(engine)
        self.fingerprinter = fingerprinter

    def session_ref(self, record: SessionRecord) -> str:
        return self.fingerprinter.fingerprint("session", record.ref)


def _session(store: SessionStore, n: int) -> str:
    ref = f"ref{n:08d}"
    store.add(
        SessionRecord(
            ref=ref,
            subject=SUBJECT,
            given_name=None,
            family_name=None,
            method="idcard",
            acr="high",
            flow_id=None,
            ip=None,
            user_agent=None,
            created_at=NOW - 5000,
            last_seen_at=NOW - 4000,
            idle_expires_at=NOW - 100,
            absolute_expires_at=NOW + 1000,
        ),
        f"{n:064x}",
    )
    return ref


async def _run(engine: Engine, trail: Trail, sessions_: Sessions, comps: Any) -> Counter[str]:
    counts: Counter[str] = Counter()
    deps = job_deps(
        engine, trail, sessions=sessions_, tokens=comps, flow_retention_s=0, token_retention_s=0
    )
    await sessions(deps, job_context(lambda: NOW, 10, counts))
    return counts


def _states(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(tokens.c.state).order_by(tokens.c.jti)).scalars())


@pytest.mark.asyncio
async def test_revocations_the_trail_refuses_are_done_by_the_next_run(tmp_path: Path) -> None:
    """The endings are recorded, then the trail refuses the first session's token.revoke:
    the run fails with no token revoked (none unaudited); the next run revokes the tokens
    of both ended sessions, one token.revoke each."""
    engine = make_engine(f"sqlite:///{tmp_path / 'k.db'}")
    upgrade(engine)
    settings = Settings(
        var_dir=tmp_path / "var",
        database_url=str(tmp_path / "k.db"),
        token_issuer="https://kroonika.test",
        token_key_rotation_interval_s=0,
        redis_url=None,
    )
    trail = Trail()
    fingerprinter = Fingerprinter(b"f" * 32, "t1")
    comps: TokenComponents = build_tokens(
        settings,
        engine=engine,
        trail=trail,  # type: ignore[arg-type]
        fingerprinter=fingerprinter,
        clock=FixedClock(NOW),
        create=False,
    )
    await comps.start()
    store = Sessions(engine, fingerprinter)
    for n in range(2):
        ref = _session(store.store, n)
        await comps.service.issue_session_token(session_ref=ref, subject=SUBJECT)
    trail.events.clear()
    trail.refused = {"token.revoke"}
    with pytest.raises(AuditUnavailable):
        await _run(engine, trail, store, comps)
    assert trail.types() == ["session.terminate", "session.terminate"]
    assert _states(engine) == ["active", "active"]
    trail.refused = set()
    counts = await _run(engine, trail, store, comps)
    assert counts == Counter({"tokens_revoked": 2})
    assert trail.types()[2:] == ["token.revoke", "token.revoke"]
    assert _states(engine) == ["revoked", "revoked"]
    assert await _run(engine, trail, store, comps) == Counter()
    await comps.aclose()
    engine.dispose()
