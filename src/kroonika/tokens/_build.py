"""Builds the token subsystem from settings (checked here, not on the first request)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from sqlalchemy import Engine

from kroonika.audit import Actor, ActorType, Fingerprinter, Target, events
from kroonika.db import metadata
from kroonika.db import tokens as token_tables
from kroonika.settings import Settings, SettingsError
from kroonika.tokens._clients import ClientRegistry
from kroonika.tokens._clock import Clock, SystemClock
from kroonika.tokens._keys import SigningKeyRing
from kroonika.tokens._lists import AccessLists, RedisInvalidation
from kroonika.tokens._rotation import rotate_recorded
from kroonika.tokens._service import Emitter, Policy, TokenService
from kroonika.tokens._store import TokenStore

TABLES = (
    token_tables.signing_keys,
    token_tables.clients,
    token_tables.tokens,
    token_tables.access_list,
)


def create_tables(engine: Engine) -> None:
    """Create the token tables where they are missing (tests and first start; the
    Alembic migration creates the same tables)."""
    metadata.create_all(engine, tables=list(TABLES), checkfirst=True)


@dataclass
class TokenComponents:
    service: TokenService
    keys: SigningKeyRing
    clients: ClientRegistry
    lists: AccessLists
    settings: Settings

    async def start(self) -> None:
        """At start-up, once the audit trail runs: a first signing key if there is none,
        or the rotation that fell due while the service was down, each recorded as
        ``key.rotate`` before it can sign (it signs nothing if that fails)."""
        first = not await asyncio.to_thread(self.keys.published)

        async def record(old: str | None, new: str) -> None:
            await self.service.trail.emit(
                events.key_rotate(
                    actor=Actor(ActorType.SYSTEM),
                    target=Target("signing_key", new),
                    purpose="token_signing",
                    old_kid=old,
                    new_kid=new,
                    justification="first signing key"
                    if first
                    else "scheduled rotation at start-up (token_key_rotation_interval_s)",
                )
            )

        await rotate_recorded(self.keys, record, due_only=not first)

    async def aclose(self) -> None:
        try:
            await self.service.flush_summary()
        finally:
            self.lists.close()


def policy_from(settings: Settings) -> Policy:
    if not settings.token_ttl_min_s <= settings.token_ttl_default_s <= settings.token_ttl_max_s:
        raise SettingsError("token TTLs need KROONIKA_TOKEN_TTL_MIN_S <= DEFAULT <= MAX")
    if not settings.token_session_audience:
        raise SettingsError("KROONIKA_TOKEN_SESSION_AUDIENCE cannot be empty")
    return Policy(
        issuer=settings.resolved_token_issuer(),
        ttl_min_s=settings.token_ttl_min_s,
        ttl_max_s=settings.token_ttl_max_s,
        ttl_default_s=settings.token_ttl_default_s,
        session_ttl_s=settings.token_session_ttl_s,
        session_audience=tuple(settings.token_session_audience),
        leeway_s=settings.token_leeway_s,
        bulk_max=settings.token_bulk_max,
        max_custom_claims=settings.token_max_custom_claims,
        max_claim_bytes=settings.token_max_claim_bytes,
        max_claims_bytes=settings.token_max_claims_bytes,
        summary_window_s=settings.token_audit_summary_window_s,
    )


def key_ring(settings: Settings, engine: Engine, clock: Clock | None = None) -> SigningKeyRing:
    return SigningKeyRing(
        engine,
        settings.secret_bytes("master_key"),
        clock=clock or SystemClock(),
        alg=settings.token_alg,
        rsa_bits=settings.token_rsa_bits,
        publish_lead_s=settings.token_key_publish_lead_s,
        rotation_interval_s=settings.token_key_rotation_interval_s,
        max_token_lifetime_s=max(settings.token_ttl_max_s, settings.token_session_ttl_s),
    )


def build_tokens(
    settings: Settings,
    *,
    engine: Engine,
    trail: Emitter,
    fingerprinter: Fingerprinter,
    clock: Clock | None = None,
    create: bool = True,
) -> TokenComponents:
    """Everything the token routes and the admin API need; subscribes to list changes
    when Redis is configured. :meth:`TokenComponents.start` makes the signing key."""
    clock = clock or SystemClock()
    policy = policy_from(settings)
    if create:
        create_tables(engine)
    keys = key_ring(settings, engine, clock)  # a first key, or a due one: start()
    registry = ClientRegistry(engine, clock=clock, scrypt_n=settings.token_client_scrypt_n)
    lists = AccessLists(
        engine,
        clock=clock,
        allowlist_mode=settings.token_allowlist_mode,
        max_age_s=settings.token_list_cache_max_age_s,
    )
    if settings.redis_url:
        lists.invalidation = RedisInvalidation(settings.redis_url, lists.invalidate)
    try:
        service = TokenService(
            keys=keys,
            store=TokenStore(engine),
            lists=lists,
            trail=trail,
            fingerprinter=fingerprinter,
            clock=clock,
            policy=policy,
            clients=registry,
        )
    except ValueError as exc:
        with contextlib.suppress(Exception):
            lists.close()
        raise SettingsError(str(exc)) from exc
    return TokenComponents(service, keys, registry, lists, settings)
