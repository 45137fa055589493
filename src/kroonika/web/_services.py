"""What the app keeps on ``app.state.services``; routes get it through ``ServicesDep``."""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Annotated, Protocol

import httpx
from fastapi import Depends, Request, Response
from sqlalchemy import Engine

from kroonika.auditing import AuditComponents
from kroonika.sessions import (
    Clock,
    FlowStore,
    RequestContext,
    SessionManager,
    SessionRecord,
)
from kroonika.settings import Settings
from kroonika.tara import TaraClient, VerifiedIdToken
from kroonika.web._context import RequestInfo, TrustedProxies


class PostLoginHook(Protocol):
    """Runs after a session was created in ``/auth/callback``, before the redirect goes out.

    It may set cookies or headers on ``response`` (e.g. a session access token). Raising
    fails the login request (the session stays, ended by its own timeouts or the user)."""

    async def __call__(
        self,
        request: Request,
        response: Response,
        session: SessionRecord,
        identity: VerifiedIdToken,
    ) -> None: ...


class LogoutHook(Protocol):
    """Runs after sessions were ended (logout, end-one, end-all), e.g. to revoke tokens."""

    async def __call__(
        self, request: Request, sessions: list[SessionRecord], reason: str
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class CookieConfig:
    session_name: str
    flow_name: str
    secure: bool
    domain: str | None


class UsedCodes:
    """Keyed fingerprints of the authorization codes this instance has exchanged, kept
    for ``ttl_s`` (bounded), so a code presented again is refused before it reaches
    TARA. Per instance; TARA itself refuses a second exchange of a code everywhere."""

    def __init__(self, ttl_s: float = 3600.0, max_entries: int = 100_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()

    def add(self, ref: str, now: float) -> None:
        self._seen[ref] = now + self.ttl_s
        self._seen.move_to_end(ref)
        while len(self._seen) > self.max_entries or (
            self._seen and next(iter(self._seen.values())) <= now
        ):
            self._seen.popitem(last=False)

    def seen(self, ref: str, now: float) -> bool:
        expiry = self._seen.get(ref)
        return expiry is not None and expiry > now


@dataclass
class Services:
    settings: Settings
    audit: AuditComponents
    engine: Engine
    flows: FlowStore
    sessions: SessionManager
    tara: TaraClient
    http: httpx.AsyncClient
    clock: Clock
    cookies: CookieConfig
    proxies: TrustedProxies
    csrf_key: bytes
    owns_http: bool = True
    post_login: list[PostLoginHook] = field(default_factory=list)
    on_sessions_ended: list[LogoutHook] = field(default_factory=list)
    used_codes: UsedCodes = field(default_factory=UsedCodes)

    def csrf_token(self, session_secret: str) -> str:
        """A CSRF token bound to the session (derived; the cookie itself stays HttpOnly)."""
        mac = hmac.new(self.csrf_key, b"csrf\x00" + session_secret.encode(), hashlib.sha256)
        return mac.hexdigest()

    def csrf_ok(self, session_secret: str, given: str | None) -> bool:
        # Bytes, not str: compare_digest raises TypeError on a non-ASCII str, and the header
        # or form value is whatever the client sent.
        return given is not None and hmac.compare_digest(
            self.csrf_token(session_secret).encode(), given.encode("utf-8", "surrogatepass")
        )


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def request_info(request: Request) -> RequestInfo:
    info: RequestInfo | None = request.scope.get("state", {}).get("request_info")
    if info is None:  # outside the middleware (should not happen)
        raise RuntimeError("request context middleware is not installed")
    return info


def request_context(request: Request) -> RequestContext:
    info = request_info(request)
    return RequestContext(
        ip=info.client_ip,
        user_agent=info.user_agent,
        request_id=info.request_id,
        trace_id=info.trace_id,
    )
