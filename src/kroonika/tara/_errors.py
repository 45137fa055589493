"""Errors of the TARA relying party::

    TaraError
    ├── DiscoveryError            discovery document unusable (configuration or TARA fault)
    ├── IdpUnavailable            TARA unreachable, timing out or answering 5xx
    ├── CodeExchangeFailed        the token endpoint refused the code (``error`` holds its code)
    └── LoginRejected             the ID token or its content is not acceptable
        ├── IdTokenInvalid        one ID-token check failed (``check``, ``expected``, ``actual``)
        ├── AcrTooLow
        ├── AmrNotAllowed
        └── PersonalCodeInvalid

Each carries ``reason``: the machine-readable code that goes into the ``auth.login`` event.
Messages never contain token values, codes, nonces or personal codes.
"""

from __future__ import annotations


class TaraError(Exception):
    """Base of the relying party's errors."""

    reason: str = "idp_error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class DiscoveryError(TaraError):
    reason = "idp_unavailable"


class IdpUnavailable(TaraError):
    reason = "idp_unavailable"


class CodeExchangeFailed(TaraError):
    reason = "code_exchange_failed"

    def __init__(self, message: str, *, error: str | None = None, status: int | None = None):
        super().__init__(message)
        self.error = error
        self.status = status


class LoginRejected(TaraError):
    reason = "id_token.invalid"
    subject: str | None = None
    """Set by the policy checks (``acr``, ``amr``) that run after the token was found
    authentic and meant for this flow: whose login was refused (audited by pseudonym)."""


class IdTokenInvalid(LoginRejected):
    """One ID-token check failed: ``check`` names it (``reason`` is ``id_token.<check>``)."""

    def __init__(self, check: str, message: str, *, expected: object = None, actual: object = None):
        super().__init__(message, reason=f"id_token.{check}")
        self.check = check
        self.expected = expected
        self.actual = actual


class AcrTooLow(LoginRejected):
    reason = "acr_too_low"


class AmrNotAllowed(LoginRejected):
    reason = "amr_not_allowed"


class PersonalCodeInvalid(LoginRejected):
    reason = "personal_code_invalid"
