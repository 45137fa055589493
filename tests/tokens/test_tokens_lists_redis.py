"""List cache invalidation across instances through the real Redis."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine

from conftest import need
from kroonika.db import make_engine
from kroonika.tokens import AccessLists, FixedClock, ListSubject, RedisInvalidation, create_tables
from kroonika.tokens._lists import CHANNEL
from poll_kit import wait_until

SHARED_REDIS = "redis://127.0.0.1:6379/0"


@pytest.mark.redis
def test_change_on_one_instance_invalidates_the_other(tmp_path: Path) -> None:
    """Two list instances on one database agree after a change, via Redis pub/sub."""
    need("Redis", "127.0.0.1", 6379)
    engine = make_engine(str(tmp_path / "k.db"))
    create_tables(engine)
    clock = FixedClock(1_000)
    channel = f"kroonika:test:{uuid.uuid4().hex}"
    a = AccessLists(engine, clock=clock, max_age_s=3600)
    b = AccessLists(engine, clock=clock, max_age_s=3600)
    a.invalidation = RedisInvalidation(SHARED_REDIS, a.invalidate, channel=channel)
    b.invalidation = RedisInvalidation(SHARED_REDIS, b.invalidate, channel=channel)
    try:
        who = ListSubject(subject="EE38001085718")
        assert b.check(who).allowed  # b now holds a cached snapshot
        # a change published before b's subscription is active never reaches b: wait for
        # both (a fixed 0.3 s can be too short on a loaded machine)
        assert wait_until(lambda: _subscribers(SHARED_REDIS, channel) == 2)
        a.add("deny", "subject", "EE38001085718", reason="fraud", created_by="t")
        wait_until(lambda: not b.check(who).allowed)
        assert not b.check(who).allowed
        assert b.loads >= 2
    finally:
        a.close()
        b.close()
        engine.dispose()


def test_without_invalidation_cache_is_kept(tmp_path: Path) -> None:
    """Without pub/sub another instance keeps its snapshot until it ages out (control)."""
    engine = make_engine(str(tmp_path / "k.db"))
    create_tables(engine)
    clock = FixedClock(1_000)
    a = AccessLists(engine, clock=clock, max_age_s=3600)
    b = AccessLists(engine, clock=clock, max_age_s=3600)
    who = ListSubject(client="c1")
    assert b.check(who).allowed
    a.add("deny", "client", "c1", reason="r", created_by="t")
    assert b.check(who).allowed
    b.invalidate()
    assert not b.check(who).allowed
    engine.dispose()


def test_cidr_and_single_ip(tmp_path: Path) -> None:
    """IP entries match single addresses and CIDR ranges, v4 and v6."""
    engine = make_engine(str(tmp_path / "k.db"))
    create_tables(engine)
    lists = AccessLists(engine, clock=FixedClock(1))
    lists.add("deny", "ip", "2001:db8::/32", reason="r", created_by="t")
    lists.add("deny", "ip", "198.51.100.7", reason="r", created_by="t")
    assert not lists.check(ListSubject(ip="2001:db8::1")).allowed
    assert not lists.check(ListSubject(ip="198.51.100.7")).allowed
    assert lists.check(ListSubject(ip="198.51.100.8")).allowed
    engine.dispose()


def _redis_server(binary: str, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            redis.Redis(host="127.0.0.1", port=port).ping()
            return proc
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)


def _own_redis() -> tuple[str, int]:
    """A redis-server binary and a free port for a server of this test's own."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("KROONIKA_REQUIRE_SERVICES") == "1":
            pytest.fail("redis-server is not installed and KROONIKA_REQUIRE_SERVICES=1")
        pytest.skip("redis-server is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return binary, port


def _pair(tmp_path: Path, url: str) -> tuple[Engine, AccessLists, AccessLists]:
    """Two list instances on one database, told of changes through Redis at ``url``."""
    engine = make_engine(str(tmp_path / "k.db"))
    create_tables(engine)
    a = AccessLists(engine, clock=FixedClock(1_000), max_age_s=3600)
    b = AccessLists(engine, clock=FixedClock(1_000), max_age_s=3600)
    a.invalidation = RedisInvalidation(url, a.invalidate)
    b.invalidation = RedisInvalidation(url, b.invalidate)
    return engine, a, b


def _agree(lists: AccessLists, who: ListSubject) -> bool:
    wait_until(lambda: not lists.check(who).allowed)
    return not lists.check(who).allowed


def _subscribers(url: str, channel: str = CHANNEL) -> int:
    """How many clients the Redis at ``url`` has subscribed to ``channel`` (0 while it
    is away): what a list instance's subscriber thread has done, seen from outside."""
    try:
        with redis.Redis.from_url(url, socket_timeout=5) as r:
            return int(dict(r.pubsub_numsub(channel)).get(channel.encode(), 0))
    except redis.ConnectionError:
        return 0


@pytest.mark.redis
def test_redis_going_away_and_back(tmp_path: Path) -> None:
    """Redis stopped: a list change still succeeds (the others reload after max_age_s);
    Redis back on its address: changes reach the other instance again, no restart."""
    binary, port = _own_redis()
    url = f"redis://127.0.0.1:{port}/0"
    proc = _redis_server(binary, port)
    engine, a, b = _pair(tmp_path, url)
    try:
        assert wait_until(lambda: _subscribers(url) == 2)  # both subscriptions active
        proc.terminate()
        proc.wait(20)
        a.add("deny", "client", "c1", reason="during", created_by="t")  # not published
        proc = _redis_server(binary, port)
        # b's subscriber drops b's snapshot once it notices the outage (whenever that is)
        assert _agree(b, ListSubject(client="c1"))
        # a change published before b has subscribed again would never reach it: wait
        # for both (retried every second; a fixed 1.5 s can be too short on a loaded machine)
        assert wait_until(lambda: _subscribers(url) == 2)
        a.add("deny", "client", "c2", reason="after", created_by="t")
        assert _agree(b, ListSubject(client="c2"))
    finally:
        a.close()
        b.close()
        engine.dispose()
        proc.terminate()
        proc.wait(20)


@pytest.mark.redis
def test_redis_away_at_start(tmp_path: Path) -> None:
    """Redis not there when the lists start: they start anyway, and once Redis comes up
    changes reach the other instance, without a restart."""
    binary, port = _own_redis()
    url = f"redis://127.0.0.1:{port}/0"
    engine, a, b = _pair(tmp_path, url)
    proc = _redis_server(binary, port)
    try:
        # both subscribers retry every second: wait until both have subscribed (a fixed
        # 2.5 s can be too short on a loaded machine)
        assert wait_until(lambda: _subscribers(url) == 2)
        assert b.check(ListSubject(client="c1")).allowed  # b holds a snapshot
        a.add("deny", "client", "c1", reason="after start", created_by="t")
        assert _agree(b, ListSubject(client="c1"))
    finally:
        a.close()
        b.close()
        engine.dispose()
        proc.terminate()
        proc.wait(20)
