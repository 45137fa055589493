"""Several instances behind a load balancer: the brute-force and credential-stuffing
windows shared through the real Redis add up one attacker's failures over every
instance and raise each finding once; an erasure on one instance forgets the person
on all; Redis away falls back to each instance's own windows."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from security_kit import Kit, drop_redis_keys, make_kit, redis_windows
from test_monitor import ATTACKER_IP, login

from kroonika.security.windows import RedisWindows


@pytest_asyncio.fixture(params=["shared", "per-process"])
async def pair(
    tmp_path: Path, redis_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Kit, Kit]]:
    """Two instances (each its own trail and monitor), on one moved clock; their
    windows in one Redis, or each in its own process (the control)."""
    prefix = f"kroonika-test:{uuid.uuid4().hex}"
    kits = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        shared = request.param == "shared"
        kits.append(
            make_kit(tmp_path / name, windows=redis_windows(redis_url, prefix) if shared else None)
        )
    a, b = kits
    for k in kits:
        await k.trail.start()
        await k.monitor.start()
    yield a, b
    for k in kits:
        await k.monitor.stop()
        await k.trail.stop()
        k.store.close()
    drop_redis_keys(redis_url, prefix)


def _tick(a: Kit, b: Kit, seconds: float) -> None:
    """Both instances' clocks move together (one wall clock)."""
    a.clock.advance(seconds)
    b.clock.advance(seconds)


def _found(*kits: Kit) -> list[tuple[str, str]]:
    return sorted((r["details"]["key_kind"], kind) for k in kits for kind, r in k.anomalies())


@pytest.mark.asyncio
async def test_brute_force_spread_over_two_instances_is_found_once(
    pair: tuple[Kit, Kit], request: pytest.FixtureRequest
) -> None:
    """Eight failures of one person from one network, alternating between the
    instances: with shared windows one finding per key in all; per process none (each
    instance saw four, under the threshold of eight)."""
    a, b = pair
    for i in range(8):
        _tick(a, b, 5)
        await login(a if i % 2 else b, ATTACKER_IP, ok=False)
    for i in range(4):  # the attack goes on: still one finding per key per window
        _tick(a, b, 5)
        await login(a if i % 2 else b, ATTACKER_IP, ok=False)
    expected = [("ip", "brute_force"), ("person", "brute_force")]
    assert _found(a, b) == (expected if "shared" in request.node.callspec.id else [])


@pytest.mark.asyncio
async def test_credential_stuffing_spread_over_two_instances_is_found_once(
    pair: tuple[Kit, Kit], request: pytest.FixtureRequest
) -> None:
    """Fifteen people failing from one network, eight on one instance and seven on the
    other: credential stuffing once when shared."""
    a, b = pair
    for i in range(15):
        _tick(a, b, 20)
        await login(a if i < 8 else b, ATTACKER_IP, person=f"3800108{i:04d}", ok=False)
    expected = [("ip", "credential_stuffing")]
    assert _found(a, b) == (expected if "shared" in request.node.callspec.id else [])


@pytest.mark.asyncio
async def test_an_erasure_on_one_instance_forgets_the_person_on_the_other(
    tmp_path: Path, redis_url: str
) -> None:
    """Seven failures seen by instance A; the privacy officer's erasure reaches
    instance B; one more failure on A starts a fresh window for the person (no brute
    force on them), while the network keeps its count (brute force on the address)."""
    prefix = f"kroonika-test:{uuid.uuid4().hex}"
    (tmp_path / "a").mkdir()
    a = make_kit(tmp_path / "a", windows=redis_windows(redis_url, prefix))
    b_windows = redis_windows(redis_url, prefix)
    await a.trail.start()
    await a.monitor.start()
    try:
        for _ in range(7):
            a.clock.advance(5)
            await login(a, ATTACKER_IP, ok=False)
        assert b_windows.forget([a.fingerprinter.pseudonym("EE38001085718")]) == 7
        a.clock.advance(5)
        await login(a, ATTACKER_IP, ok=False)
        assert _found(a) == [("ip", "brute_force")]
    finally:
        await a.monitor.stop()
        await a.trail.stop()
        a.store.close()
        b_windows.close()
        drop_redis_keys(redis_url, prefix)


@pytest.mark.asyncio
async def test_redis_away_falls_back_to_the_instances_own_windows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing listens where the windows' Redis should be: detection goes on with the
    process's own windows (fail open), counted, and one warning for the outage."""
    caplog.set_level(logging.WARNING, logger="kroonika.security")
    windows = RedisWindows("redis://127.0.0.1:9/0")  # the discard port: refused
    k = make_kit(tmp_path, windows=windows)
    await k.trail.start()
    await k.monitor.start()
    try:
        for _ in range(8):
            k.clock.advance(5)
            await login(k, ATTACKER_IP, ok=False)
        # an erasure meanwhile: done in the process, and said what stays in Redis
        assert windows.forget([k.fingerprinter.pseudonym("EE38001085718")]) == 8
    finally:
        await k.monitor.stop()
        await k.trail.stop()
        k.store.close()
    assert _found(k) == [("ip", "brute_force"), ("person", "brute_force")]
    assert windows.errors >= 17
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "Redis unreachable" in m]) == 1
    assert len([m for m in messages if "stay in Redis until they expire" in m]) == 1
