"""Counters shared through the real Redis; failing open when Redis goes away."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from rl_kit import (
    Recorded,
    free_port,
    make_app,
    make_trail,
    require_redis,
    require_redis_server_binary,
    serve,
)

from kroonika.ratelimit import RateLimiter, RateLimitPolicy, make_storage

pytestmark = pytest.mark.redis


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own, deleted afterwards from the shared Redis."""
    require_redis()
    value = f"kroonika-test-{uuid.uuid4().hex[:12]}"
    yield value
    client = redis.Redis(host="127.0.0.1", port=6379)
    try:
        for key in client.scan_iter(f"{value}*"):
            client.delete(key)
    finally:
        client.close()


def test_two_instances_share_one_limit_through_redis(tmp_path: Path, prefix: str) -> None:
    """Two service instances on the same Redis enforce one combined limit."""
    url = "redis://127.0.0.1:6379/0"
    policy = RateLimitPolicy.build({"login_start:ip": "4/minute"})
    rec_a, rec_b = Recorded(), Recorded()
    trail_a = make_trail(tmp_path, rec_a, stream="a")
    trail_b = make_trail(tmp_path, rec_b, stream="b")
    a = RateLimiter(policy, storage=make_storage(url, key_prefix=prefix), emit=trail_a.emit)
    b = RateLimiter(policy, storage=make_storage(url, key_prefix=prefix), emit=trail_b.emit)
    with (
        serve(make_app(a, trail_a)) as base_a,
        serve(make_app(b, trail_b)) as base_b,
        httpx.Client() as http,
    ):
        codes = [http.get(f"{base}/auth/login").status_code for base in (base_a, base_b) * 2]
        fifth = http.get(f"{base_b}/auth/login")
    assert codes == [200, 200, 200, 200]
    assert fifth.status_code == 429
    assert int(fifth.headers["retry-after"]) >= 1
    assert [e["details"]["limit"] for e in rec_b.of_type("security.rate_limit")] == [
        "login_start:ip"
    ]
    keys = redis.Redis(host="127.0.0.1", port=6379).keys(f"{prefix}*")
    assert keys
    assert not any(b"127.0.0.1" in k for k in keys)


@pytest.fixture
def own_redis() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A redis-server of this test's own on a free port (no persistence)."""
    binary = require_redis_server_binary()
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            redis.Redis(host="127.0.0.1", port=port).ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    yield port, proc
    if proc.poll() is None:
        proc.terminate()
        proc.wait(20)


def test_limiter_fails_open_when_redis_stops(
    tmp_path: Path, own_redis: tuple[int, subprocess.Popen[bytes]]
) -> None:
    """With its Redis stopped the service keeps answering, counts the failures and
    records one limiter_unavailable event for the outage."""
    port, proc = own_redis
    recorded = Recorded()
    trail = make_trail(tmp_path, recorded)
    rl = RateLimiter(
        RateLimitPolicy.build({"login_start:ip": "2/minute"}),
        storage=make_storage(f"redis://127.0.0.1:{port}/0"),
        emit=trail.emit,
    )
    with serve(make_app(rl, trail)) as base, httpx.Client(base_url=base) as http:
        before = [http.get("/auth/login").status_code for _ in range(3)]
        proc.terminate()
        proc.wait(20)
        during = [http.get("/auth/login").status_code for _ in range(5)]
    assert before == [200, 200, 429]
    assert during == [200] * 5
    assert rl.counts["storage_errors"] == 5
    outage = [
        e
        for e in recorded.of_type("security.rate_limit")
        if e.get("reason") == "limiter_unavailable"
    ]
    assert outage[0]["outcome"] == "unknown"
    assert outage[0]["details"]["count"] == 1
    assert outage[-1]["details"].get("summary") is True  # flushed on shutdown
    assert outage[-1]["details"]["count"] == 4
