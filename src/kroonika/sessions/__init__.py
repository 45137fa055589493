"""Sessions and login flows: stored in the business database, every change audited.

:class:`SessionManager` is the lifecycle (create with a per-person cap, find and end lapsed
sessions, extend, end); :class:`FlowStore` keeps OIDC login flows server side with a TTL.
Errors: :class:`SessionError` and subclasses.
"""

from kroonika.sessions._errors import SessionError, SessionNotFound
from kroonika.sessions._manager import SessionManager, secret_digest
from kroonika.sessions._model import (
    Clock,
    EndReason,
    FlowStatus,
    LoginFlow,
    Lookup,
    ManualClock,
    NewSession,
    RequestContext,
    SessionHook,
    SessionIdentity,
    SessionPolicy,
    SessionRecord,
)
from kroonika.sessions._store import FlowStore, SessionStore

__all__ = [
    "Clock",
    "EndReason",
    "FlowStatus",
    "FlowStore",
    "LoginFlow",
    "Lookup",
    "ManualClock",
    "NewSession",
    "RequestContext",
    "SessionError",
    "SessionHook",
    "SessionIdentity",
    "SessionManager",
    "SessionNotFound",
    "SessionPolicy",
    "SessionRecord",
    "SessionStore",
    "secret_digest",
]
