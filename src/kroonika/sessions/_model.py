"""Values of the session layer: records, identities, request context, the clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

Clock = Callable[[], float]


class EndReason(StrEnum):
    LOGOUT = "logout"
    EXPIRED = "expired"
    IDLE = "idle"
    USER = "user"
    ADMIN = "admin"
    LIMIT = "limit"
    SUPERSEDED = "superseded"
    SUBJECT_REVOKED = "subject_revoked"
    INCIDENT_RESPONSE = "incident_response"
    ERASURE = "erasure"


class ManualClock:
    """A clock for tests: starts at ``start`` and moves only when told."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True, slots=True)
class SessionIdentity:
    """Who a session is for: from a verified ID token (the web layer converts)."""

    subject: str
    method: str
    acr: str
    given_name: str | None = None
    family_name: str | None = None


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Where a request came from, for audit events (never contains secrets)."""

    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    trace_id: str | None = None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    ref: str
    subject: str
    given_name: str | None
    family_name: str | None
    method: str
    acr: str
    flow_id: str | None
    ip: str | None
    user_agent: str | None
    created_at: int
    last_seen_at: int
    idle_expires_at: int
    absolute_expires_at: int
    ended_at: int | None = None
    end_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.ended_at is None

    def public(self, *, current: bool = False) -> dict[str, object]:
        """What the citizen sees: the public reference, never the secret id."""
        return {
            "id": self.ref,
            "current": current,
            "method": self.method,
            "acr": self.acr,
            "created_at": self.created_at,
            "last_seen_at": self.last_seen_at,
            "expires_at": self.idle_expires_at,
            "absolute_expires_at": self.absolute_expires_at,
            "user_agent": self.user_agent,
        }


@dataclass(frozen=True, slots=True)
class NewSession:
    """A created session; ``secret`` goes into the cookie and nowhere else. ``ended`` are the
    person's older sessions the cap ended to make room (their tokens are the caller's to
    revoke)."""

    secret: str
    record: SessionRecord
    ended: tuple[SessionRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    idle_s: int = 900
    absolute_s: int = 28800
    max_per_person: int = 0
    """0 means no cap."""

    def __post_init__(self) -> None:
        if self.idle_s <= 0 or self.absolute_s <= 0 or self.max_per_person < 0:
            raise ValueError("session timeouts must be positive and the cap not negative")
        if self.idle_s > self.absolute_s:
            raise ValueError("the idle timeout cannot exceed the absolute lifetime")


class FlowStatus(StrEnum):
    NONE = "none"
    STARTED = "started"
    REDIRECTED = "redirected"
    CALLBACK_RECEIVED = "callback_received"
    CODE_EXCHANGED = "code_exchanged"
    ID_TOKEN_VERIFIED = "id_token_verified"  # noqa: S105 (a state name)
    SESSION_CREATED = "session_created"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class LoginFlow:
    flow_id: str
    state_digest: str
    nonce_digest: str
    acr_requested: str
    methods: tuple[str, ...]
    ui_locales: str
    return_to: str
    status: str
    created_at: int
    expires_at: int
    consumed_at: int | None = None


class Lookup(StrEnum):
    OK = "ok"
    UNKNOWN = "state_unknown"
    EXPIRED = "state_expired"
    REPLAYED = "state_replayed"


class SessionHook(Protocol):
    """Called after a session was created (e.g. to mint a session access token)."""

    async def __call__(self, record: SessionRecord, context: RequestContext) -> None: ...
