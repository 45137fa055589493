"""Fixtures for the token tests: a real audit trail, the token service on SQLite or
on the real PostgreSQL, a fixed clock."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import Engine

from kroonika.audit import SqlAuditStore
from kroonika.auditing import AuditComponents, build_audit
from kroonika.db import make_engine
from kroonika.settings import Settings
from kroonika.tokens import (
    Client,
    FixedClock,
    NewClient,
    TokenComponents,
    build_tokens,
)

REQUIRE = os.environ.get("KROONIKA_REQUIRE_SERVICES") == "1"
PG_ADMIN = os.environ.get("KROONIKA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
ISSUER = "https://kroonika.test"


def need(name: str, host: str, port: int) -> None:
    """Skip when a real service is missing; fail when KROONIKA_REQUIRE_SERVICES=1."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return
    except OSError:
        pass
    if REQUIRE:
        pytest.fail(f"{name} is not reachable on {host}:{port} and KROONIKA_REQUIRE_SERVICES=1")
    pytest.skip(f"{name} is not reachable on {host}:{port}")


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    need("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    name = f"kroonika_tok_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Tests taking this run on SQLite and on the real PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "kroonika.db")
    url: str = request.getfixturevalue("pg_database")
    return url


def make_settings(tmp_path: Path, db: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "var_dir": tmp_path / "var",
        "database_url": db,
        "token_issuer": ISSUER,
        "token_client_scrypt_n": 2**10,
        "token_key_publish_lead_s": 600,
        "token_key_rotation_interval_s": 0,
        "redis_url": None,
        "audit_strict": True,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Kit:
    settings: Settings
    engine: Engine
    audit: AuditComponents
    tokens: TokenComponents
    clock: FixedClock
    secrets: list[str]

    @property
    def service(self) -> Any:
        return self.tokens.service

    def client(self, name: str = "svc", **kw: Any) -> Client:
        kw.setdefault("allowed_audiences", ["svc-a", "svc-b"])
        kw.setdefault("allowed_claims", ["role", "dept"])
        new: NewClient = self.tokens.clients.register(name, **kw)
        self.secrets.append(new.secret)
        return new.client

    def new_client(self, name: str = "svc", **kw: Any) -> NewClient:
        kw.setdefault("allowed_audiences", ["svc-a"])
        new: NewClient = self.tokens.clients.register(name, **kw)
        self.secrets.append(new.secret)
        return new

    def stored_events(self) -> list[bytes]:
        store = SqlAuditStore(self.settings.resolved_audit_store_url(), read_only=True)
        try:
            return [body for block in store.blocks() for body in block.records()]
        finally:
            store.close()


async def open_kit(tmp_path: Path, db: str, **overrides: Any) -> Kit:
    settings = make_settings(tmp_path, db, **overrides)
    audit = build_audit(settings, stream=f"test-{uuid.uuid4().hex[:6]}")
    await audit.trail.start()
    engine = make_engine(settings.resolved_database_url())
    clock = FixedClock(int(time.time()))
    comps = build_tokens(
        settings, engine=engine, trail=audit.trail, fingerprinter=audit.fingerprinter, clock=clock
    )
    await comps.start()
    return Kit(settings, engine, audit, comps, clock, [])


async def close_kit(kit: Kit) -> None:
    await kit.tokens.aclose()
    await kit.audit.trail.stop()
    kit.audit.store.close()
    kit.engine.dispose()


@pytest_asyncio.fixture
async def kit(tmp_path: Path, db_url: str) -> AsyncIterator[Kit]:
    k = await open_kit(tmp_path, db_url)
    try:
        yield k
    finally:
        await close_kit(k)


@pytest_asyncio.fixture
async def lite(tmp_path: Path) -> AsyncIterator[Kit]:
    """SQLite only (for tests whose behaviour does not depend on the database)."""
    k = await open_kit(tmp_path, str(tmp_path / "kroonika.db"))
    try:
        yield k
    finally:
        await close_kit(k)
