"""Errors of the session layer::

SessionError
├── SessionNotFound       no live session for this cookie or reference
└── SessionAuditFailed    the change was undone or refused because the audit trail is down
"""

from __future__ import annotations


class SessionError(Exception):
    """Base of the session layer's errors."""


class SessionNotFound(SessionError):
    pass
