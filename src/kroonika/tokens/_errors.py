"""Errors of the token service.

    TokenError
    ├── KeyRingError            no usable signing key, a key that cannot be decrypted
    ├── ClientError             client registry (unknown client, bad registration)
    │   ├── InvalidClient       client authentication failed (RFC 6749 ``invalid_client``, 401)
    │   └── MisplacedCredentials  credentials where the route reads none (400, ``reason``)
    │       ├── MultipleAuthMethods two client authentication methods in one request
    │       └── CredentialsInBody   ``client_id``/``client_secret`` in a body that takes none
    ├── MintRefused             a mint request broke the policy (``reason`` is the code)
    ├── TooManyRequests         over a rate limit (429, the wait in ``Retry-After``)
    ├── NotPermitted            the caller may not act on this token (``unauthorized_client``)
    ├── UnsupportedGrantType    a token request for a grant other than client credentials
    ├── InvalidScope            a scope the request may not name, or no RFC 6749 scope
    ├── ExtendConflict          another extension (or a revocation) won the race
    ├── TokenRejected           the presented token is not valid for the operation
    ├── BatchTooLarge           more items than ``token_bulk_max``
    └── AccessListError         a bad list entry (kind, value, list)
        ├── NoListEntry         no entry has the id asked for
        └── ExpiryInThePast     an expiry at or before now: the entry would never hold

Wire errors carry their RFC error code and HTTP status. The message of an error with a
5xx status is never sent to the client (it is the operator's, for the log).
"""

from __future__ import annotations


class TokenError(Exception):
    """Base of every error raised by :mod:`kroonika.tokens`.

    ``audited`` is True once the refusal has its audit event (the service sets it when
    it wrote one), so that a caller that audits refusals itself does not do so twice."""

    error: str = "invalid_request"
    status: int = 400
    audited: bool = False


class KeyRingError(TokenError):
    """The message is for the operator (it may name a command or a kid): clients get
    RFC 6749 ``temporarily_unavailable`` (503) and a generic description."""

    error = "temporarily_unavailable"
    status = 503


class ClientError(TokenError):
    error = "invalid_request"
    status = 400


class InvalidClient(ClientError):
    """RFC 6749 section 5.2 ``invalid_client``: answered with 401."""

    error = "invalid_client"
    status = 401


class MisplacedCredentials(ClientError):
    """Client credentials where the route does not read them: a malformed request
    (``invalid_request``, 400), refused before any secret is checked, so it is neither
    a failed authentication nor a policy violation. ``claimed`` is the client id the
    request named (never authenticated), for the refusal's event."""

    reason = "misplaced_credentials"

    def __init__(self, message: str, claimed: str | None) -> None:
        super().__init__(message)
        self.claimed = claimed


class MultipleAuthMethods(MisplacedCredentials):
    """RFC 6749 section 2.3: "The client MUST NOT use more than one authentication method
    in each request". HTTP Basic plus ``client_id`` or ``client_secret`` in the body is
    a malformed request (``invalid_request``, 400), refused before any secret is
    checked: which of the two identities was meant is not guessed, even when they agree."""

    reason = "multiple_auth_methods"

    def __init__(self, claimed: str) -> None:
        super().__init__("more than one client authentication method", claimed)


class CredentialsInBody(MisplacedCredentials):
    """RFC 6749 section 2.3.1: credentials in the request body are for a form only, and
    NOT RECOMMENDED; HTTP Basic is the method every server supports. Kroonika reads them
    only from the form of the client credentials grant (``/tokens``), ``/introspect``
    and ``/revoke``; a JSON body (or a form on a JSON route) that carries them is
    refused, whatever the secret (decision 0006, 2026-11-28 review tokens)."""

    reason = "credentials_in_body"

    def __init__(self, claimed: str | None) -> None:
        super().__init__(
            "send the client credentials in the Authorization header (HTTP Basic): "
            "this endpoint does not read client_id or client_secret from its body",
            claimed,
        )


class MintRefused(TokenError):
    """A mint request was refused; ``reason`` is a machine-readable code.

    A refusal of who is asking (a deny-list entry, no allow entry) is RFC 6749
    ``unauthorized_client`` (400): ``access_denied`` is an authorization endpoint's
    error (section 4.1.2.1), not one a token endpoint answers (section 5.2). A scope
    that is no RFC 6749 section 3.3 scope is ``invalid_scope``."""

    error = "invalid_request"
    status = 400

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        if reason in {"denylisted", "not_allowlisted"} or reason.startswith("denylisted"):
            self.error = "unauthorized_client"
        elif reason == "invalid_scope":
            self.error = "invalid_scope"


class NotPermitted(TokenError):
    """RFC 6749 ``unauthorized_client``: the token was not issued to or for the caller."""

    error = "unauthorized_client"
    status = 400


class UnsupportedGrantType(TokenError):
    """RFC 6749 section 5.2 ``unsupported_grant_type``: the token endpoint serves only
    the client credentials grant (section 4.4)."""

    error = "unsupported_grant_type"
    status = 400

    def __init__(self) -> None:
        super().__init__("the only grant_type is client_credentials")


class InvalidScope(TokenError):
    """RFC 6749 section 5.2 ``invalid_scope``: Kroonika defines no scopes, so a token
    request naming one would get a token without what it asked for; also a token whose
    ``scope`` claim is no section 3.3 scope, which an extension would sign anew."""

    error = "invalid_scope"
    status = 400
    reason = "invalid_scope"

    def __init__(self, message: str = "no scopes are defined: send the request without scope"):
        super().__init__(message)


class TooManyRequests(TokenError):
    """HTTP 429 (RFC 6585 section 4) on a token endpoint: over the limit ``limit``; the
    wait, ``retry_after`` seconds, goes in ``Retry-After``, the body is the RFC 6749
    section 5.2 object and nothing more: ``rate_limited`` (the code every 429 of the
    service has; section 8.5 lets a server use codes of its own) and a description
    naming the limit."""

    error = "rate_limited"
    status = 429

    def __init__(self, limit: str, retry_after: int) -> None:
        super().__init__(f"too many requests (limit {limit}); retry after Retry-After seconds")
        self.limit = limit
        self.retry_after = retry_after


class ExtendConflict(TokenError):
    """The token is no longer active: another extension or a revocation won."""

    error = "invalid_grant"
    status = 409

    def __init__(self, reason: str = "not_active") -> None:
        super().__init__(reason)
        self.reason = reason


class BatchTooLarge(TokenError):
    error = "invalid_request"
    status = 413

    def __init__(self, size: int, maximum: int) -> None:
        super().__init__(f"batch of {size} items exceeds the maximum of {maximum}")
        self.size = size
        self.maximum = maximum


class AccessListError(TokenError):
    error = "invalid_request"
    status = 400


class NoListEntry(AccessListError):
    """No access-list entry has the id asked for (the message does not repeat it)."""

    def __init__(self) -> None:
        super().__init__("no list entry has this id")


class ExpiryInThePast(AccessListError):
    """An entry's expiry at or before now: a deny entry made so would block nothing
    while whoever made it believes it does."""

    def __init__(self) -> None:
        super().__init__(
            "expires_at is in the past: an entry must expire after it is made "
            "(remove an entry to end it now)"
        )


class TokenRejected(TokenError):
    """The presented token is not valid for this operation (``reason`` says why)."""

    error = "invalid_grant"
    status = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
