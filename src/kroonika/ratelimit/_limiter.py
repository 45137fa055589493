"""The limiter: ``limits`` moving windows on memory or Redis, penalties, events.

Keys never hold a clear identifier: the IP, client id and person reference are
hashed (SHA-256, truncated) before they become storage keys, so Redis holds no
addresses. Pass a pseudonym or keyed fingerprint as ``person``, never a personal code.

Failure policy: **fails open**. If the storage (Redis) cannot be reached the
request is allowed, the failure is counted (:attr:`RateLimiter.counts`) and a
``security.rate_limit`` event with reason ``limiter_unavailable`` is emitted (the
first at once, then at most one per minute with the count).

Events are summarised per limit and key: the first violation is emitted at once,
the rest of that minute become one summary event (``summary=true``, ``count``), so
a flood cannot flood the trail.

The audit trail refusing an event (store down) fails the request that sent it, as
everywhere, but loses no violation: the count of a refused summary is kept, and a
refused first event is added to it, for the next flush to send. Each refusal is
counted (``audit_errors``); ``events`` counts the recorded ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, replace
from typing import Any

from limits import RateLimitItem
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from kroonika.audit import (
    Actor,
    ActorType,
    AuditEvent,
    AuditUnavailable,
    Correlation,
    Outcome,
    Source,
    events,
)
from kroonika.audit.processors.anonymise_ip import source_network
from kroonika.ratelimit._errors import RateLimitConfigError, RateLimited
from kroonika.ratelimit._policy import (
    CLIENT_OWN,
    KeyKind,
    RateLimitPolicy,
    RouteGroup,
    client_limit,
)

Emit = Callable[[AuditEvent], Awaitable[Any]]
log = logging.getLogger("kroonika.ratelimit")
SUMMARY_S = 60.0
PREFIX = "kroonika"


def _h(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:24]


def make_storage(
    redis_url: str | None, *, timeout_s: float = 0.5, key_prefix: str = f"{PREFIX}:rl"
) -> Storage:
    """Memory storage, or Redis (shared by all instances) when a URL is given."""
    if not redis_url:
        return MemoryStorage(wrap_exceptions=True)
    from kroonika._redis import async_redis_options

    uri = redis_url if redis_url.startswith("async+") else f"async+{redis_url}"
    return RedisStorage(
        uri,
        wrap_exceptions=True,
        implementation="redispy",
        key_prefix=key_prefix,
        # over TLS, connections whose context logs no keys (decision 0034)
        **async_redis_options(uri, socket_timeout=timeout_s, socket_connect_timeout=timeout_s),
    )


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: str | None = None
    retry_after: int = 0
    penalty_level: int = 0
    failed_open: bool = False


@dataclass
class _Flood:
    start: float
    suppressed: int
    event: AuditEvent


class RateLimiter:
    def __init__(
        self,
        policy: RateLimitPolicy,
        *,
        storage: Storage | None = None,
        emit: Emit | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._policy = policy
        self.storage = storage or MemoryStorage(wrap_exceptions=True)
        self._strategy = MovingWindowRateLimiter(self.storage)
        self._emit = emit
        self._clock = clock
        self._floods: dict[tuple[str, str], _Flood] = {}
        self._bad_limits: set[str] = set()
        self._outage: _Flood | None = None
        self._task: asyncio.Task[None] | None = None
        self.counts: dict[str, int] = {
            "checked": 0,
            "limited": 0,
            "exempt": 0,
            "storage_errors": 0,
            "events": 0,
            "suppressed": 0,
            "audit_errors": 0,
            "bad_client_limits": 0,
        }

    @property
    def flusher(self) -> asyncio.Task[None] | None:
        return self._task

    @property
    def policy(self) -> RateLimitPolicy:
        return self._policy

    def configure(self, policy: RateLimitPolicy) -> None:
        """Swap the policy at runtime (the admin configuration calls this)."""
        self._policy = policy

    # --- lifecycle: a task flushes flood summaries once a minute ends

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._flusher(), name="ratelimit-summaries")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush(force=True)

    async def close(self) -> None:
        """Close the storage's connections (the service's stop calls this after the
        trail has stopped: the flush in :meth:`stop` may still write to it). A Redis
        storage's pool (made by limits from the URL, or over TLS by
        :func:`kroonika._redis.async_redis_options`) was never closed: each stop left
        its connections to Redis open for as long as the process lived."""
        client = getattr(getattr(self.storage, "bridge", None), "storage", None)
        pool = getattr(client, "connection_pool", None)
        if pool is not None:
            await pool.disconnect()

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(5)
            with contextlib.suppress(Exception):  # refusals are counted and kept
                await self.flush()

    # --- checking

    async def check(
        self,
        group: RouteGroup,
        *,
        ip: str | None,
        client: str | None = None,
        person: str | None = None,
        request_id: str | None = None,
        user_agent: str | None = None,
        kinds: Collection[KeyKind] | None = None,
        client_limit: str | None = None,
        actor: Actor | None = None,
    ) -> Decision:
        """Count one request of ``group`` against every applicable limit (only those of
        ``kinds`` if given: a route that knows the client or person counts those, the
        middleware has already counted the IP), and against ``client_limit``, the
        authenticated ``client``'s own limit (one window per client over all groups,
        whatever ``kinds`` says). ``actor`` is who a violation's event names (by default
        the client, the person's pseudonym or nobody); an administrator is named as
        the admin API names them."""
        policy = self._policy
        self.counts["checked"] += 1
        if not policy.enabled:
            return Decision(True)
        if policy.exempted(ip):
            self.counts["exempt"] += 1
            return Decision(True)
        # an IPv6 source is counted per /64 (decision 0029), an IPv4 one per address
        values = {
            KeyKind.IP: source_network(ip) if ip is not None else None,
            KeyKind.CLIENT: client,
            KeyKind.PERSON: person,
        }
        rules: list[tuple[str, KeyKind, str, RateLimitItem]] = []
        for kind, item in policy.rules_for(group):
            value = values[kind]
            if value is None or (kinds is not None and kind not in kinds):
                continue
            rules.append((f"{group.value}:{kind.value}", kind, value, item))
        if client is not None and client_limit is not None:
            own = self._client_limit(client_limit)
            if own is not None:
                rules.append((CLIENT_OWN, KeyKind.CLIENT, client, own))
        return await self._apply(
            group,
            rules,
            ip=ip,
            client=client,
            person=person,
            request_id=request_id,
            user_agent=user_agent,
            actor=actor,
        )

    def _ip_rules(
        self, group: RouteGroup, ip: str | None
    ) -> list[tuple[str, KeyKind, str, RateLimitItem]] | None:
        """The group's per-address rules for ``ip``; ``None`` when nothing is counted
        (limiting off, an exempt network, no address)."""
        policy = self._policy
        if not policy.enabled or ip is None or policy.exempted(ip):
            return None
        return [
            (f"{group.value}:{kind.value}", kind, source_network(ip), item)
            for kind, item in policy.rules_for(group)
            if kind is KeyKind.IP
        ]

    async def check_failures(
        self,
        group: RouteGroup,
        *,
        ip: str | None,
        request_id: str | None = None,
        user_agent: str | None = None,
    ) -> Decision:
        """Whether the source ``ip`` may still try to authenticate: its failures counted
        with :meth:`count_failure` are under the group's per-address limit. This request
        is not counted (a caller that then authenticates costs nothing); a source over
        the limit is refused, penalised and recorded like any other violation, before
        its credentials cost a check."""
        self.counts["checked"] += 1
        rules = self._ip_rules(group, ip)
        if not rules:
            self.counts["exempt"] += int(self._policy.enabled and self._policy.exempted(ip))
            return Decision(True)
        return await self._apply(
            group, rules, ip=ip, request_id=request_id, user_agent=user_agent, count=False
        )

    async def count_failure(self, group: RouteGroup, *, ip: str | None) -> None:
        """Count one failed authentication from ``ip`` (fails open like every check)."""
        for name, _kind, value, item in self._ip_rules(group, ip) or ():
            try:
                await self._strategy.hit(item, PREFIX, f"{name}:{_h(value)}")
            except StorageError as exc:
                await self._storage_failed(exc)
                return

    async def _apply(
        self,
        group: RouteGroup,
        rules: list[tuple[str, KeyKind, str, RateLimitItem]],
        *,
        ip: str | None,
        client: str | None = None,
        person: str | None = None,
        request_id: str | None = None,
        user_agent: str | None = None,
        actor: Actor | None = None,
        count: bool = True,
    ) -> Decision:
        """Each rule in turn: a blocked key or one over its window (counting this
        request when ``count``, else only testing) is a violation."""
        attempt = self._strategy.hit if count else self._strategy.test
        try:
            for name, kind, value, item in rules:
                key = f"{name}:{_h(value)}"
                blocked = await self._blocked(key)
                if blocked is not None:
                    retry, level = blocked
                elif not await attempt(item, PREFIX, key):
                    retry, level = await self._penalise(key, item)
                else:
                    continue
                return await self._deny(
                    name,
                    key,
                    kind,
                    group,
                    item,
                    retry,
                    level,
                    ip,
                    client,
                    request_id,
                    user_agent,
                    person=person if kind is KeyKind.PERSON else None,
                    actor=actor,
                )
        except StorageError as exc:
            await self._storage_failed(exc)
            return Decision(True, failed_open=True)
        return Decision(True)

    def _client_limit(self, text: str) -> RateLimitItem | None:
        """The parsed own limit; one the registry should never have stored (an older
        version, a hand edit) is skipped, counted and logged: fails open."""
        try:
            return client_limit(text)
        except RateLimitConfigError:
            self.counts["bad_client_limits"] += 1
            if text not in self._bad_limits and len(self._bad_limits) < 1000:
                self._bad_limits.add(text)  # logged once per value, not per request
                log.warning("a client's stored rate limit is not valid; it is not applied")
            return None

    async def hit(self, group: RouteGroup, **kw: Any) -> Decision:
        """Like :meth:`check` but raises :class:`RateLimited` when over the limit."""
        decision = await self.check(group, **kw)
        if not decision.allowed:
            raise RateLimited(decision.limit or group.value, decision.retry_after)
        return decision

    async def _blocked(self, key: str) -> tuple[int, int] | None:
        block = f"{PREFIX}:block:{key}"
        level = await self.storage.get(block)
        if level <= 0:
            return None
        expiry = await self.storage.get_expiry(block)
        return max(1, math.ceil(expiry - time.time())), level

    async def _penalise(self, key: str, item: Any) -> tuple[int, int]:
        """Count the violation; from the second one within ``penalty_memory_s`` the
        key is blocked for ``penalty_base_s``, doubling each time up to the maximum."""
        policy = self._policy
        violations = await self.storage.incr(f"{PREFIX}:violations:{key}", policy.penalty_memory_s)
        if violations <= 1:
            stats = await self._strategy.get_window_stats(item, PREFIX, key)
            return max(1, math.ceil(stats.reset_time - time.time())), 0
        level = violations - 1
        penalty = min(policy.penalty_base_s * 2 ** (level - 1), policy.penalty_max_s)
        await self.storage.incr(f"{PREFIX}:block:{key}", penalty, amount=level)
        return int(penalty), level

    async def _deny(
        self,
        name: str,
        key: str,
        kind: KeyKind,
        group: RouteGroup,
        item: Any,
        retry: int,
        level: int,
        ip: str | None,
        client: str | None,
        request_id: str | None,
        user_agent: str | None,
        *,
        person: str | None = None,
        actor: Actor | None = None,
    ) -> Decision:
        self.counts["limited"] += 1
        if actor is None and person is not None:  # a pseudonym, never a personal code
            actor = Actor(ActorType.USER, pseudonym=person, client_id=client)
        elif actor is None:
            actor = Actor(ActorType.CLIENT if client else ActorType.ANONYMOUS, client_id=client)
        event = events.security_rate_limit(
            outcome=Outcome.FAILURE,
            reason="rate_limited",
            actor=actor,
            source=Source(ip=ip, user_agent=user_agent) if ip else None,
            correlation=Correlation(request_id=request_id) if request_id else None,
            limit=name,
            key_kind=kind.value,
            route_group=group.value,
            window_s=int(item.get_expiry()),
            count=1,
            retry_after_s=retry,
            penalty_level=level,
        )
        await self._record(name, key, event)
        return Decision(False, name, retry, level)

    async def _record(self, name: str, key: str, event: AuditEvent) -> None:
        now = self._clock()
        flood = self._floods.get((name, key))
        if flood is not None and now - flood.start < SUMMARY_S:
            flood.suppressed += 1
            self.counts["suppressed"] += 1
            return
        try:
            if flood is not None:
                await self._summarise(flood, also=1)
            flood = self._floods[(name, key)] = _Flood(now, 0, event)
            await self._first(flood)
        except AuditUnavailable:
            self.counts["suppressed"] += 1  # this violation waits in a summary
            raise

    async def _first(self, flood: _Flood) -> None:
        """Send a flood's first event; refused, its violation goes into the summary."""
        try:
            await self._send(flood.event)
        except AuditUnavailable:
            flood.suppressed += 1
            raise

    async def _summarise(self, flood: _Flood, *, also: int = 0) -> None:
        """Send the flood's summary. Refused, its count is kept (with ``also``, the
        violation being handled, added to it) for the next flush."""
        n = flood.suppressed
        if n == 0:
            return
        e = flood.event
        summary = replace(
            e,
            details={**e.details, "count": n, "summary": True},
            threat=list(e.threat),
            id=None,
            time=None,
        )
        flood.suppressed = 0
        try:
            await self._send(summary)
        except AuditUnavailable:
            flood.suppressed += n + also  # plus any counted while it was being sent
            raise

    async def flush(self, *, force: bool = False) -> None:
        """Emit the summaries of floods whose minute is over (all when ``force``). A
        refused summary stays for the next flush; the refusal is raised (and counted)."""
        now = self._clock()
        for key, flood in list(self._floods.items()):
            if force or now - flood.start >= SUMMARY_S:
                del self._floods[key]
                try:
                    await self._summarise(flood)
                except AuditUnavailable:
                    newer = self._floods.setdefault(key, flood)
                    if newer is not flood:  # a new flood began meanwhile: it carries both
                        newer.suppressed += flood.suppressed
                    raise
        outage = self._outage
        if outage is not None and (force or now - outage.start >= SUMMARY_S):
            self._outage = None
            try:
                await self._summarise(outage)
            except AuditUnavailable:
                if self._outage is None:
                    self._outage = outage
                else:
                    self._outage.suppressed += outage.suppressed
                raise

    async def _storage_failed(self, exc: StorageError) -> None:
        self.counts["storage_errors"] += 1
        now = self._clock()
        outage = self._outage
        if outage is not None and now - outage.start < SUMMARY_S:
            outage.suppressed += 1
            return
        if outage is not None:
            await self._summarise(outage, also=1)
        event = events.security_rate_limit(
            outcome=Outcome.UNKNOWN,
            reason="limiter_unavailable",
            actor=Actor(ActorType.SYSTEM),
            limit="storage",
            key_kind="storage",
            count=1,
        )
        self._outage = _Flood(now, 0, event)
        await self._first(self._outage)

    async def _send(self, event: AuditEvent) -> None:
        if self._emit is not None:
            try:
                await self._emit(event)
            except AuditUnavailable:
                self.counts["audit_errors"] += 1
                raise
        self.counts["events"] += 1

    async def reset(self) -> None:
        """Forget every counter (tests and the admin "reset limits" action)."""
        with contextlib.suppress(StorageError):
            await self.storage.reset()
