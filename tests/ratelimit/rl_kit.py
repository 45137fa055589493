"""A small service over real HTTP (uvicorn on a free loopback port) with the rate
limiter installed and a real audit trail (SQLite store) recording its events."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request

from kroonika.audit import (
    AuditTrail,
    Counters,
    Fingerprinter,
    KeyRing,
    Pipeline,
    SealedEvent,
    SqlAuditStore,
    SqlSubjectKeys,
)
from kroonika.ratelimit import RateLimiter, RouteGroup, install_rate_limiting


@dataclass
class Recorded:
    records: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, sealed: list[SealedEvent]) -> None:
        self.records.extend(orjson.loads(s.canonical) for s in sealed)

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["type"] == event_type]


def make_trail(tmp: Path, recorded: Recorded, stream: str = "rl-test") -> AuditTrail:
    store = SqlAuditStore(f"sqlite:///{tmp / f'audit-{stream}.db'}")
    store.upgrade()
    counters = Counters()
    keys = SqlSubjectKeys(store, b"m" * 32)
    pipeline = Pipeline.standard(
        fingerprinter=Fingerprinter(b"k" * 32, "p1"),
        subject_keys=keys,
        counters=counters,
        strict=True,
    )
    return AuditTrail(
        pipeline,
        store,
        KeyRing.open(tmp / "keys", create=True),
        stream=stream,
        counters=counters,
        subject_keys=keys,
        checkpoint_interval=3600,
        on_commit=recorded,
    )


def make_app(limiter: RateLimiter, trail: AuditTrail) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await trail.start()
        yield
        await limiter.stop()
        await trail.stop()

    app = FastAPI(lifespan=lifespan)

    @app.get("/auth/login")
    async def login_start() -> dict[str, str]:
        return {"ok": "login"}

    @app.post("/tokens")
    async def token(request: Request) -> dict[str, str]:
        client = request.headers.get("x-client", "unknown")
        await limiter.hit(
            RouteGroup.TOKEN_MINT, ip=request.client.host if request.client else None, client=client
        )
        return {"ok": "token"}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"ok": "health"}

    install_rate_limiting(app, limiter)
    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


REQUIRE_SERVICES = __import__("os").environ.get("KROONIKA_REQUIRE_SERVICES") == "1"


def require_redis(host: str = "127.0.0.1", port: int = 6379) -> None:
    """Skip without the real Redis; fail instead in CI (KROONIKA_REQUIRE_SERVICES=1)."""
    import pytest

    try:
        with socket.create_connection((host, port), timeout=0.5):
            return
    except OSError:
        message = f"Redis is not reachable on {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} and KROONIKA_REQUIRE_SERVICES=1")
    pytest.skip(message)


def require_redis_server_binary() -> str:
    import shutil

    import pytest

    path = shutil.which("redis-server")
    if path is None:
        if REQUIRE_SERVICES:
            pytest.fail("redis-server is not installed and KROONIKA_REQUIRE_SERVICES=1")
        pytest.skip("redis-server is not installed")
    return path
