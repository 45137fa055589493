"""``kroonika keys rotate`` and ``kroonika clients add`` (through the Typer app)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from kroonika.cli import app
from kroonika.db import make_engine
from kroonika.db.migrate import upgrade
from kroonika.settings import Settings
from kroonika.tokens import ClientRegistry, SystemClock
from kroonika.tokens._build import key_ring


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("KROONIKA_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("KROONIKA_TOKEN_CLIENT_SCRYPT_N", "1024")
    return Settings(var_dir=tmp_path / "var")


def test_clients_add_prints_secret_once_and_stores_hash(env: Settings) -> None:
    """The id and secret are printed; the secret authenticates and is not stored."""
    result = CliRunner().invoke(app, ["clients", "add", "portal", "-a", "svc-a", "-c", "role"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    engine = make_engine(env.resolved_database_url())
    try:
        client = ClientRegistry(engine, clock=SystemClock()).authenticate(
            lines["client_id"], lines["client_secret"]
        )
        assert client.allowed_audiences == ("svc-a",)
    finally:
        engine.dispose()
    db = Path(env.resolved_database_url().split("///", 1)[1]).read_bytes()
    assert lines["client_secret"].encode() not in db


def test_keys_rotate_publishes_new_key(env: Settings) -> None:
    """Rotation adds a published key that signs after the lead; the old one stays."""
    engine = make_engine(env.resolved_database_url())
    upgrade(engine)
    ring = key_ring(env, engine)
    first = ring.ensure()
    result = CliRunner().invoke(app, ["keys", "rotate", "-j", "test"])
    assert result.exit_code == 0, result.output
    ring.refresh()
    kids = [k.kid for k in ring.published()]
    assert first in kids
    assert len(kids) == 2
    assert ring.current().kid == first
    engine.dispose()
