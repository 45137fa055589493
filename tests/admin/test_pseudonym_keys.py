"""The key id of the pseudonymisation key in use, kept in the business database so that
the first start under a new key records its rotation once (decision 0022)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from kroonika.admin._pseudonym_keys import InUse, give_back, in_use, take_over
from kroonika.audit import (
    Actor,
    ActorType,
    AuditEvent,
    AuditUnavailable,
    Query,
    SqlAuditStore,
    events,
    run_query,
)
from kroonika.db import make_engine
from kroonika.db.migrate import upgrade
from kroonika.settings import Settings
from kroonika.web import create_app

P1 = base64.b64encode(b"1" * 32).decode()
P2 = base64.b64encode(b"2" * 32).decode()


@pytest.fixture
def engine(fresh_postgres_url: str) -> Any:
    engine = make_engine(fresh_postgres_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def test_only_a_change_of_key_id_is_a_rotation(engine: Any) -> None:
    """The first start keeps its id and reports nothing; the same id again is nothing;
    another id reports the one it replaces."""
    assert take_over(engine, "p1", 100) is None
    assert take_over(engine, "p1", 200) is None
    assert take_over(engine, "p2", 300) == InUse("p1", 100)
    assert in_use(engine) == InUse("p2", 300)


def test_of_instances_starting_together_under_a_new_key_one_records(engine: Any) -> None:
    """The second instance finds the new id already in use: nothing for it to record."""
    take_over(engine, "p1", 100)
    assert take_over(engine, "p2", 300) == InUse("p1", 100)
    assert take_over(engine, "p2", 301) is None


def test_a_rotation_given_back_is_reported_again(engine: Any) -> None:
    """Undone after the trail refused its record, the next start reports it again."""
    take_over(engine, "p1", 100)
    replaced = take_over(engine, "p2", 300)
    assert replaced is not None
    give_back(engine, replaced, "p2")
    assert in_use(engine) == InUse("p1", 100)
    assert take_over(engine, "p2", 400) == InUse("p1", 100)


def _settings(tmp_path: Path, url: str, kid: str, key: str, **kw: Any) -> Settings:
    nobody = "http://127.0.0.1:9"  # TARA is not needed to start in development
    return Settings(
        var_dir=tmp_path / "var",
        database_url=url,
        pseudonym_kid=kid,
        pseudonym_key=SecretStr(key),
        tara_issuer=nobody,
        tara_client_secret=SecretStr("s" * 32),
        jobs_enabled=False,
        **kw,
    )


def _rotations(settings: Settings) -> list[dict[str, Any]]:
    store = SqlAuditStore(settings.resolved_audit_store_url(), read_only=True)
    try:
        docs = [orjson.loads(b) for b in run_query(store, Query(types=("key.rotate",)))]
    finally:
        store.close()
    return [d["details"] for d in docs if d["details"]["purpose"] == "pseudonymisation"]


@pytest.mark.asyncio
async def test_a_rotation_the_trail_refuses_stops_the_start(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    """The trail refuses key.rotate: the start under p2 fails and p1 stays the key id in
    use; the next start under p2 records the rotation once."""
    first = create_app(_settings(tmp_path, fresh_postgres_url, "p1", P1))
    async with first.router.lifespan_context(first):
        pass
    after = _settings(tmp_path, fresh_postgres_url, "p2", P2, pseudonym_previous_keys={"p1": P1})
    refused = create_app(after)
    trail = refused.state.services.audit.trail
    original = trail.emit

    async def emit(event: AuditEvent) -> Any:
        if event.type == "key.rotate":
            raise AuditUnavailable("store down")
        return await original(event)

    trail.emit = emit
    with pytest.raises(AuditUnavailable):
        async with refused.router.lifespan_context(refused):
            pass
    # the failed start stopped the trail it had started, saying why
    probe = events.audit_access(actor=Actor(ActorType.SYSTEM), action="query", interface="cli")
    with pytest.raises(AuditUnavailable, match="not running"):
        await original(probe)
    store = SqlAuditStore(after.resolved_audit_store_url(), read_only=True)
    try:
        stops = [orjson.loads(b) for b in run_query(store, Query(types=("audit.log.stop",)))]
    finally:
        store.close()
    assert sorted(s["reason"] for s in stops) == ["shutdown", "startup_failed"]
    engine = make_engine(fresh_postgres_url)
    try:
        state = in_use(engine)
    finally:
        engine.dispose()
    assert state is not None
    assert state.kid == "p1"
    assert _rotations(after) == []
    again = create_app(after)
    async with again.router.lifespan_context(again):
        pass
    assert [(d["old_kid"], d["new_kid"]) for d in _rotations(after)] == [("p1", "p2")]
