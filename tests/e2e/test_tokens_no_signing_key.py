"""No signing key can sign over real HTTP: token clients get a generic 503 without the
operator's hint, and the hint goes to the operational log."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import httpx
import pytest
from login_harness import running_stack

from kroonika.db import make_engine
from kroonika.db.migrate import upgrade
from kroonika.db.tokens import signing_keys
from kroonika.settings import Settings
from kroonika.tokens import ClientRegistry, SystemClock
from kroonika.tokens._build import key_ring


def test_missing_signing_key_is_a_generic_503(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A ring whose only key is not active yet: minting and bulk minting answer 503
    ``temporarily_unavailable`` with no word about keys or the CLI (and the refusal is
    audited); the operational log names the problem and the command that fixes it."""
    url = f"sqlite:///{tmp_path / 'tokens.db'}"
    engine = make_engine(url)
    try:
        upgrade(engine)
        ring = key_ring(Settings(var_dir=tmp_path / "var", database_url=url), engine)
        ring.ensure()
        with engine.begin() as conn:  # e.g. a restored database: the key signs next year
            conn.execute(signing_keys.update().values(activates_at=2**40))
        new = ClientRegistry(engine, clock=SystemClock(), scrypt_n=2**10).register(
            "nokey", allowed_audiences=["svc-a"]
        )
    finally:
        engine.dispose()
    raw = f"{new.client.client_id}:{new.secret}".encode()
    basic = {"authorization": "Basic " + base64.b64encode(raw).decode()}
    caplog.set_level(logging.INFO, logger="kroonika")
    overrides = {"token_client_scrypt_n": 2**10, "db_auto_upgrade": False}
    with running_stack(tmp_path, database_url=url, settings_overrides=overrides) as stack:
        answers = [
            httpx.post(stack.service + "/tokens", json={"subject": "u"}, headers=basic),
            httpx.post(
                stack.service + "/tokens/bulk/issue",
                json={"items": [{"subject": "u"}]},
                headers=basic,
            ),
        ]
        issued = stack.events(types=("token.issue",))
    for r in answers:
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["error"] == "temporarily_unavailable"
        assert "kroonika" not in body["error_description"]
        assert "key" not in body["error_description"]
    assert issued
    assert all(e["outcome"] == "failure" for e in issued)
    hints = [r for r in caplog.records if "kroonika keys rotate" in r.getMessage()]
    assert hints
    assert all(r.levelno >= logging.ERROR for r in hints)
