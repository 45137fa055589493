"""Every step of the service's stop is bounded (decision 0010, 2026-11-28): a step that
hangs or fails is logged and the steps after it still run, so the trail still records
``audit.log.stop`` and the Redis connections (the rate limiter's pool, the list notices,
the detector windows) are still closed. The real Redis counts them by client name."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

import httpx
import orjson
import pytest
import redis
from pydantic import SecretStr

from kroonika.audit import Query, SqlAuditStore, run_query
from kroonika.settings import Settings
from kroonika.web import _app, create_app

pytestmark = pytest.mark.redis


def redis_connections(name: str) -> int:
    with redis.Redis(host="127.0.0.1", port=6379) as r:
        return sum(1 for c in r.client_list() if c.get("name") == name)


async def _hangs() -> None:
    await asyncio.Event().wait()


async def _fails() -> None:
    raise RuntimeError("a part of the stop failed")


@pytest.mark.asyncio
@pytest.mark.parametrize("step", ["hangs", "fails"])
async def test_a_step_that_hangs_or_fails_does_not_keep_the_rest_from_stopping(
    step: str,
    tmp_path: Path,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = f"kroonika-stop-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        var_dir=tmp_path / "var",
        tara_issuer="http://127.0.0.1:9",  # development starts with TARA unreachable
        tara_client_secret=SecretStr("stop-test-secret-0123456789"),
        cookie_secure=False,
        jobs_enabled=False,
        redis_url=f"{redis_url}?client_name={name}",
    )
    monkeypatch.setattr(_app, "PART_STOP_S", 0.5)
    caplog.set_level(logging.ERROR, logger="kroonika.web")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        monkeypatch.setattr(app.state.alerting, "stop", _hangs if step == "hangs" else _fails)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            for _ in range(3):  # the rate limiter counts them in Redis
                await c.get("/auth/login?method=idcard")
        assert await asyncio.to_thread(redis_connections, name) > 0
    assert await asyncio.to_thread(redis_connections, name) == 0
    said = "did not stop within" if step == "hangs" else "failed to stop (RuntimeError)"
    assert any(said in r.getMessage() and "alerting" in r.getMessage() for r in caplog.records)
    store = SqlAuditStore(settings.resolved_audit_store_url(), read_only=True)
    try:
        stops = [orjson.loads(raw) for raw in run_query(store, Query(types=("audit.log.stop",)))]
    finally:
        store.close()
    assert [s["reason"] for s in stops] == ["shutdown"]
