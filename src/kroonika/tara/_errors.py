"""Errors of the TARA relying party::

    TaraError
    ├── DiscoveryError            discovery document unusable (configuration or TARA fault)
    ├── IdpUnavailable            TARA unreachable, timing out or answering 5xx or 429
    ├── IdpBadResponse            TARA answered something that is not a token response
    ├── CodeExchangeFailed        the token endpoint refused the code (``error`` holds its code)
    │   ├── ClientRejected        ... because of us: ``invalid_client``, ``unauthorized_client``
    │   └── RequestRejected       ... because of our request: ``invalid_request`` and the like
    └── LoginRejected             the ID token or its content is not acceptable
        ├── IdTokenInvalid        one ID-token check failed (``check``, ``expected``, ``actual``;
        │                         upstream except for a nonce or state of another flow)
        ├── AcrTooLow
        ├── AmrNotAllowed
        └── PersonalCodeInvalid

Each carries ``reason``: the machine-readable code that goes into the ``auth.login`` event,
and ``upstream``: True when TARA or our own configuration is at fault rather than what the
browser brought (a gateway answers such a failure 502, not 400). Messages never contain
token values, codes, nonces, secrets or personal codes.
"""

from __future__ import annotations


class TaraError(Exception):
    """Base of the relying party's errors."""

    reason: str = "idp_error"
    upstream: bool = False

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class DiscoveryError(TaraError):
    """TARA answered, but its discovery document or key set does not fit this service's
    configuration (another issuer, endpoints or signing keys missing): the operator
    fixes a setting, waiting does not help."""

    reason = "idp_misconfigured"
    upstream = True

    def __init__(self, message: str, *, cause: str = "issuer") -> None:
        super().__init__(message)
        self.cause = cause
        """What does not fit: ``issuer`` (another issuer: a setting),
        ``endpoints`` (endpoints missing), ``foreign_endpoint`` (an endpoint on
        another origin than the issuer's: not a setting, something answers in TARA's
        place or TARA's document is mistaken) or ``keys`` (no RS256 signing key)."""


class IdpUnavailable(TaraError):
    reason = "idp_unavailable"
    upstream = True


class IdpBadResponse(TaraError):
    reason = "idp_bad_response"
    upstream = True


class CodeExchangeFailed(TaraError):
    """TARA refused the code (``invalid_grant``: unknown, expired or used): ``error`` is
    TARA's error code (RFC 6749 section 5.2), ``status`` its HTTP status."""

    reason = "code_exchange_failed"

    def __init__(self, message: str, *, error: str | None = None, status: int | None = None):
        super().__init__(message)
        self.error = error
        self.status = status


class ClientRejected(CodeExchangeFailed):
    """TARA refused our client: its id or secret (``invalid_client``, the secret wrong or
    rotated, the wrong authentication method) or where the request came from
    (``unauthorized_client``: production accepts only registered addresses)."""

    reason = "idp_client_rejected"
    upstream = True


class RequestRejected(CodeExchangeFailed):
    """TARA refused our token request as malformed (``invalid_request``,
    ``unsupported_grant_type``, ...): a fault of this relying party, not of the browser."""

    reason = "idp_request_rejected"
    upstream = True


class LoginRejected(TaraError):
    reason = "id_token.invalid"
    subject: str | None = None
    """Set by the policy checks (``acr``, ``amr``) that run after the token was found
    authentic and meant for this flow: whose login was refused (audited by pseudonym)."""


#: The checks whose failure the browser can cause: a code from another login injected
#: into this browser's callback carries another flow's nonce and state.
BROWSER_CHECKS = frozenset({"nonce_mismatch", "state_mismatch"})
#: Every check :class:`IdTokenInvalid` names. Except :data:`BROWSER_CHECKS`, each is about
#: a token TARA handed this service over its own TLS back channel after a good code
#: exchange: TARA misbehaving, this service's clock or configuration, or someone on that
#: channel, never the citizen (decision 0019).
ID_TOKEN_CHECKS = BROWSER_CHECKS | frozenset(
    {
        "malformed",
        "alg",
        "unknown_kid",
        "bad_signature",
        "missing_claim",
        "issuer_mismatch",
        "audience_mismatch",
        "expired",
        "issued_in_future",
        "not_yet_valid",
        "acr_invalid",
    }
)


class IdTokenInvalid(LoginRejected):
    """One ID-token check failed: ``check`` names it (``reason`` is ``id_token.<check>``).
    ``upstream`` unless the check is one of :data:`BROWSER_CHECKS`."""

    def __init__(self, check: str, message: str, *, expected: object = None, actual: object = None):
        super().__init__(message, reason=f"id_token.{check}")
        self.check = check
        self.upstream = check not in BROWSER_CHECKS
        self.expected = expected
        self.actual = actual


class AcrTooLow(LoginRejected):
    reason = "acr_too_low"


class AmrNotAllowed(LoginRejected):
    reason = "amr_not_allowed"


class PersonalCodeInvalid(LoginRejected):
    reason = "personal_code_invalid"
