"""The service's Redis going away and coming back: the rate limiter fails open, says so
in one event and in ``/metrics``, and limits again once Redis is back, without a restart."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from admin_harness import admin_stack
from login_harness import free_socket

pytestmark = pytest.mark.redis


class OwnRedis:
    """A redis-server of this test's own on a free port (no persistence)."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        with free_socket() as sock:
            self.port = sock.getsockname()[1]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis(host="127.0.0.1", port=self.port).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    pytest.fail("redis-server did not start")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    server = OwnRedis(binary)
    server.start()
    yield server
    server.stop()


def _metric(base: str, counter: str) -> int:
    text = httpx.get(base + "/metrics").text
    (line,) = [
        ln for ln in text.splitlines() if f'kroonika_ratelimit_total{{counter="{counter}"}}' in ln
    ]
    return int(line.rsplit(" ", 1)[1])


def test_limiter_fails_open_and_recovers(tmp_path: Path, own_redis: OwnRedis) -> None:
    """Redis stopped: logins still start, storage_errors counts them in /metrics, one
    limiter_unavailable event (without the Redis URL); Redis back: the limit holds again."""
    url = f"redis://:hunter2-redis-pass@127.0.0.1:{own_redis.port}/0"
    overrides = {
        "redis_url": url,
        "ratelimit_enabled": True,
        "ratelimit_limits": {"login_start:ip": "2/minute"},
    }
    with admin_stack(tmp_path, overrides=overrides) as stack:

        def logins() -> list[int]:
            return [httpx.get(stack.url + "/auth/login").status_code for _ in range(3)]

        assert logins() == [302, 302, 429]
        own_redis.stop()
        assert logins() == [302, 302, 302]
        assert _metric(stack.url, "storage_errors") == 3
        own_redis.start()
        assert logins() == [302, 302, 429]
        assert _metric(stack.url, "storage_errors") == 3
        (outage,) = [
            e
            for e in stack.events(types=("security.rate_limit",))
            if e["reason"] == "limiter_unavailable"
        ]
        assert outage["outcome"] == "unknown"
        assert "hunter2" not in str(stack.stack.raw_events())
