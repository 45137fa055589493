"""The JWKS cache tells its owner when trust in the cached key set changes (for the
``idp.keys`` audit event): once when an outage of TARA's key set begins (stale), once
when the stale-if-error window runs out (expired) and once when it ends (recovered),
however many logins ask for the keys meanwhile."""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from kroonika.tara import IdpUnavailable, JwksCache, KeySetChange

pytestmark = pytest.mark.asyncio

TTL, WINDOW = 60, 600


@functools.cache
def _jwk(kid: str) -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


class Tara:
    """A JWKS endpoint that can be down, with the kids it publishes."""

    def __init__(self) -> None:
        self.down = False
        self.kids = ["k1", "k2"]
        self.fetches = 0

    async def fetch(self) -> dict[str, Any]:
        self.fetches += 1
        await asyncio.sleep(0)  # let the other callers pile up behind the attempt
        if self.down:
            raise IdpUnavailable("GET https://tara.mock.test/oidc/jwks answered 503")
        return {"keys": [_jwk(k) for k in self.kids]}


def _cache(tara: Tara, now: list[float], seen: list[KeySetChange]) -> JwksCache:
    async def on_change(change: KeySetChange) -> None:
        await asyncio.sleep(0)  # recording takes a moment: others ask meanwhile
        seen.append(change)

    return JwksCache(
        tara.fetch,
        ttl=TTL,
        cooldown=10,
        clock=lambda: now[0],
        stale_if_error=WINDOW,
        retry_after=30,
        on_change=on_change,
    )


async def _many(cache: JwksCache, n: int = 20) -> list[Any]:
    return await asyncio.gather(*(cache.keys() for _ in range(n)), return_exceptions=True)


async def test_each_transition_is_reported_once_under_concurrent_logins() -> None:
    """Twenty concurrent callers at each stage: one stale, one expired, one recovered,
    with the age of the cached set, its kids and the window; nothing while fresh."""
    tara, now, seen = Tara(), [0.0], []
    cache = _cache(tara, now, seen)
    await _many(cache)
    now[0] = TTL + 1.0
    await _many(cache)
    assert seen == []  # fresh again after a refresh: nothing to say
    tara.down, now[0] = True, 2 * TTL + 5.0
    got = await _many(cache)
    assert all(set(keys) == {"k1", "k2"} for keys in got)
    now[0] += 40  # the retry is due: it fails again, still the same outage
    await _many(cache)
    now[0] = TTL + 1.0 + TTL + WINDOW + 1  # past the window: logins fail
    failed = await _many(cache)
    assert all(isinstance(r, IdpUnavailable) for r in failed)
    now[0] += 40
    await _many(cache)
    tara.down, tara.kids = False, ["k2", "k3"]  # TARA withdrew k1 meanwhile
    now[0] += 40
    got = await _many(cache)
    assert all(set(keys) == {"k2", "k3"} for keys in got)
    assert [c.state for c in seen] == ["stale", "expired", "recovered"]
    stale, expired, recovered = seen
    assert (stale.age_s, stale.kids, stale.window_s) == (TTL + 4, ("k1", "k2"), WINDOW)
    assert "answered 503" in stale.error
    assert expired.age_s == TTL + WINDOW + 1
    assert expired.kids == ("k1", "k2")
    assert recovered.kids == ("k2", "k3")
    assert recovered.withdrawn == ("k1",)
    assert recovered.outage_s == int(now[0] - (2 * TTL + 5))  # since stale was seen
    assert recovered.age_s == int(now[0] - (TTL + 1))  # the set it replaced
    assert recovered.error == ""


async def test_a_window_that_ran_out_unseen_is_reported_expired() -> None:
    """No login during the window: the first one after it finds the set expired
    (one event, no stale one first); the recovery follows."""
    tara, now, seen = Tara(), [0.0], []
    cache = _cache(tara, now, seen)
    await cache.keys()
    tara.down, now[0] = True, TTL + WINDOW + 10.0
    failed = await _many(cache, 5)
    assert all(isinstance(r, IdpUnavailable) for r in failed)
    tara.down, now[0] = False, now[0] + 30  # the next try is due
    await _many(cache, 5)
    assert [c.state for c in seen] == ["expired", "recovered"]
    assert seen[1].withdrawn == ()


async def test_a_window_that_ran_out_unseen_is_an_outage_tried_every_retry_after() -> None:
    """Found expired without a stale phase before it, the outage is still on: /ready
    says expired, and the key set is fetched again once per ``retry_after``, not by
    every login (each one used to try TARA anew while it was down)."""
    tara, now, seen = Tara(), [0.0], []
    cache = _cache(tara, now, seen)
    await cache.keys()
    tara.down, now[0] = True, TTL + WINDOW + 10.0
    assert cache.health(now[0]) is None  # nobody has asked: nothing known yet
    await _many(cache, 5)
    tried = tara.fetches
    for _ in range(3):
        now[0] += 5  # within retry_after (30 s)
        failed = await _many(cache, 5)
        assert all(isinstance(r, IdpUnavailable) for r in failed)
    assert tara.fetches == tried
    state = cache.health(now[0])
    assert state is not None
    assert state[0] == "expired"
    now[0] += 30  # the retry is due
    await _many(cache, 5)
    assert tara.fetches == tried + 1
    assert [c.state for c in seen] == ["expired"]


async def test_a_change_that_could_not_be_recorded_is_reported_again() -> None:
    """The owner's callback fails (the audit store is down): the caller gets its error
    (fail closed), and the next caller reports the same change again."""
    tara, now = Tara(), [0.0]
    calls: list[str] = []
    broken = True

    async def on_change(change: KeySetChange) -> None:
        calls.append(change.state)
        if broken:
            raise RuntimeError("the audit store is down")

    cache = JwksCache(
        tara.fetch,
        ttl=TTL,
        cooldown=10,
        clock=lambda: now[0],
        stale_if_error=WINDOW,
        on_change=on_change,
    )
    await cache.keys()
    tara.down, now[0] = True, TTL + 1.0
    with pytest.raises(RuntimeError):
        await cache.keys()
    broken = False
    await cache.keys()
    await cache.keys()
    assert calls == ["stale", "stale"]


async def test_an_outage_never_recorded_leaves_nothing_for_the_next() -> None:
    """A stale change that could not be recorded, then TARA back before anyone asked
    again: the next outage is reported as its own, timed from its own start."""
    tara, now = Tara(), [0.0]
    seen: list[KeySetChange] = []
    broken = True

    async def on_change(change: KeySetChange) -> None:
        if broken:
            raise RuntimeError("the audit store is down")
        seen.append(change)

    cache = JwksCache(
        tara.fetch, ttl=TTL, cooldown=10, clock=lambda: now[0], stale_if_error=WINDOW,
        on_change=on_change,
    )  # fmt: skip
    await cache.keys()
    tara.down, now[0] = True, TTL + 1.0
    with pytest.raises(RuntimeError):
        await cache.keys()
    broken, tara.down, now[0] = False, False, TTL + 100.0
    await cache.keys()  # fresh again: the unrecorded outage is forgotten
    tara.down, now[0] = True, 2 * TTL + 200.0
    await cache.keys()
    tara.down, now[0] = False, 2 * TTL + 300.0
    await cache.keys()
    assert [c.state for c in seen] == ["stale", "recovered"]
    assert seen[1].outage_s == 100


async def test_without_a_cached_set_nothing_is_reported() -> None:
    """A key set that was never fetched is no stale trust: the failure is the login's."""
    tara, now, seen = Tara(), [0.0], []
    tara.down = True
    cache = _cache(tara, now, seen)
    with pytest.raises(IdpUnavailable):
        await cache.keys()
    assert seen == []
