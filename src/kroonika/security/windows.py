"""The brute-force and credential-stuffing windows: recent failed logins per person
and per network, and which findings were raised lately.

:class:`MemoryWindows` keeps them in the process (one instance, or several that
each see only their own logins). :class:`RedisWindows` keeps them in Redis, so that
instances behind a load balancer add up one attacker's failures and raise a
finding once between them, and an erasure forgets the person everywhere.

Both hold only what the trail holds in clear: pseudonyms and anonymised networks
(/24, /48); Redis key names are SHA-256 of them. Times are the events' own times, so
several instances agree on a window whatever their clocks' drift in delivering it.
Redis away fails open: the failure goes to the in-process windows (counted, logged
once per outage), as before shared windows existed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import secrets
import threading
from collections import deque
from collections.abc import Collection, Sequence
from typing import Any, Literal, Protocol, get_args

import orjson

from kroonika.security.detectors import AnomalyKind, LoginObservation

log = logging.getLogger("kroonika.security")

KeyKind = Literal["person", "ip"]
FiredKey = tuple[str, str, str]  # (finding kind, key kind, key)
SWEEP_EVERY = 1024  # failures between sweeps of keys that left the window
FIRED_MAX = 10_000  # remembered findings before the old ones are swept
ANOMALY_KINDS: tuple[AnomalyKind, ...] = get_args(AnomalyKind)


class FailureWindows(Protocol):
    #: True when calls do network I/O (the monitor runs them off the event loop).
    blocking: bool

    def remember(
        self, key_kind: KeyKind, key: str, obs: LoginObservation, horizon: float, cap: int
    ) -> Sequence[LoginObservation]:
        """Add a failure to its key's window (at most ``cap`` newest, none before
        ``horizon``) and return the window."""
        ...

    def claim(self, fired: FiredKey, now: float, span: float, keep: float) -> bool:
        """True, and remembered, if no finding of this kind and key was raised in
        the ``span`` seconds before ``now``; ``keep`` is the longest span of all."""
        ...

    def forget(self, pseudonyms: Collection[str]) -> int:
        """Forget the people (an erasure); see :meth:`SecurityMonitor.forget`."""
        ...

    def close(self) -> None: ...


def _stand_in() -> str:
    return "erased:" + secrets.token_hex(6)


class MemoryWindows:
    blocking = False

    def __init__(self) -> None:
        self._index: dict[KeyKind, dict[str, deque[LoginObservation]]] = {
            "person": {},
            "ip": {},
        }
        self._fired: dict[FiredKey, float] = {}
        self._since_sweep = 0
        self._lock = threading.Lock()  # the Redis fallback is called from threads

    def remember(
        self, key_kind: KeyKind, key: str, obs: LoginObservation, horizon: float, cap: int
    ) -> Sequence[LoginObservation]:
        with self._lock:
            self._sweep(horizon)
            index = self._index[key_kind]
            recent = index.get(key)
            if recent is None:
                recent = index[key] = deque()
            recent.append(obs)
            while recent and (recent[0].at < horizon or len(recent) > cap):
                recent.popleft()
            return list(recent)

    def _sweep(self, horizon: float) -> None:
        """Now and then forget the keys with no failure left in the window, so that
        many distinct people or networks cannot grow the state without bound."""
        self._since_sweep += 1
        if self._since_sweep < SWEEP_EVERY:
            return
        self._since_sweep = 0
        for index in self._index.values():
            for key in [k for k, d in index.items() if not d or d[-1].at < horizon]:
                del index[key]

    def claim(self, fired: FiredKey, now: float, span: float, keep: float) -> bool:
        with self._lock:
            last = self._fired.get(fired)
            if last is not None and now - last < span:
                return False
            self._fired[fired] = now
            if len(self._fired) > FIRED_MAX:
                for k, t in list(self._fired.items()):
                    if now - t >= keep:
                        del self._fired[k]
            return True

    def forget(self, pseudonyms: Collection[str]) -> int:
        forgotten = 0
        with self._lock:
            for pseudonym in pseudonyms:
                forgotten += len(self._index["person"].pop(pseudonym, ()))
                stand_in = _stand_in()
                for recent in self._index["ip"].values():
                    for i, obs in enumerate(recent):
                        if obs.person == pseudonym:
                            recent[i] = dataclasses.replace(obs, person=stand_in)
                for key in [k for k in self._fired if k[1] == "person" and k[2] == pseudonym]:
                    del self._fired[key]
        return forgotten

    def close(self) -> None:
        """Nothing to release."""


# KEYS[1] the fired key; ARGV: now, span, seconds to keep. Atomic across instances.
_CLAIM = """
local last = redis.call('GET', KEYS[1])
if last and tonumber(ARGV[1]) - tonumber(last) < tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"""


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


class RedisWindows:
    """The windows in Redis: one sorted set per key (score = the failure's time,
    member = the observation), trimmed to the window and the cap on every add and
    expiring a minute after the window; one string per raised finding."""

    blocking = True

    def __init__(
        self, url: str, *, prefix: str = "kroonika:security", fallback: MemoryWindows | None = None
    ) -> None:
        import redis

        self._error: type[Exception] = redis.RedisError
        from kroonika._redis import redis_client

        self._redis = redis_client(url, socket_timeout=2, socket_connect_timeout=2)
        self._claim = self._redis.register_script(_CLAIM)
        self._prefix = prefix
        self.fallback = fallback or MemoryWindows()
        self.errors = 0
        self._down = False

    def _key(self, key_kind: KeyKind, key: str) -> str:
        return f"{self._prefix}:window:{key_kind}:{_digest(key)}"

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        if not self._down:
            self._down = True
            log.warning(
                "security windows: Redis unreachable (%s); using this process's own windows",
                type(exc).__name__,
            )

    def _up(self) -> None:
        if self._down:
            self._down = False
            log.warning("security windows: Redis is back; windows are shared again")

    def remember(
        self, key_kind: KeyKind, key: str, obs: LoginObservation, horizon: float, cap: int
    ) -> Sequence[LoginObservation]:
        name = self._key(key_kind, key)
        member = orjson.dumps([obs.at, obs.person, obs.network, secrets.token_hex(4)])
        ttl = max(1, math.ceil(obs.at - horizon)) + 60
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.zadd(name, {member: obs.at})
            pipe.zremrangebyscore(name, "-inf", f"({horizon!r}")
            pipe.zremrangebyrank(name, 0, -(cap + 1))
            pipe.expire(name, ttl)
            pipe.zrange(name, 0, -1)
            raw: list[bytes] = pipe.execute()[-1]
        except self._error as exc:
            self._failed(exc)
            return self.fallback.remember(key_kind, key, obs, horizon, cap)
        self._up()
        return [_observation(m) for m in raw]

    def claim(self, fired: FiredKey, now: float, span: float, keep: float) -> bool:
        name = f"{self._prefix}:fired:{_digest(*fired)}"
        try:
            won = self._claim(keys=[name], args=[repr(now), repr(span), math.ceil(keep) + 60])
        except self._error as exc:
            self._failed(exc)
            return self.fallback.claim(fired, now, span, keep)
        self._up()
        return bool(won)

    def forget(self, pseudonyms: Collection[str]) -> int:
        """Drops the people's windows and findings, and in every network window puts a
        stand-in in place of each of their failures (the network's counts stay). With
        Redis away the erasure itself stands: what Redis holds of them (pseudonyms, no
        personal data) expires with the window, which the warning says."""
        forgotten = self.fallback.forget(pseudonyms)
        try:
            forgotten += self._forget_shared(pseudonyms)
        except self._error as exc:
            self._failed(exc)
            log.warning(
                "security windows: an erased person's recent failures stay in Redis until "
                "they expire (at most the detection window and a minute)"
            )
        return forgotten

    def _forget_shared(self, pseudonyms: Collection[str]) -> int:
        forgotten = 0
        r = self._redis
        for pseudonym in pseudonyms:
            forgotten += int(r.zcard(self._key("person", pseudonym)))
            r.delete(self._key("person", pseudonym))
            r.delete(
                *(
                    f"{self._prefix}:fired:{_digest(kind, 'person', pseudonym)}"
                    for kind in ANOMALY_KINDS
                )
            )
            stand_in = _stand_in()
            for name in r.scan_iter(match=f"{self._prefix}:window:ip:*", count=500):
                scored: Any = r.zrange(name, 0, -1, withscores=True)
                for member, score in scored:
                    at, person, network, tag = orjson.loads(member)
                    if person != pseudonym:
                        continue
                    pipe = r.pipeline(transaction=True)
                    pipe.zrem(name, member)
                    pipe.zadd(name, {orjson.dumps([at, stand_in, network, tag]): score})
                    pipe.execute()
        return forgotten

    def close(self) -> None:
        self._redis.close()


def _observation(member: Any) -> LoginObservation:
    at, person, network, _ = orjson.loads(member)
    return LoginObservation(at=float(at), success=False, person=person, network=network)
