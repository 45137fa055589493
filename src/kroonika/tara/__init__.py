"""The TARA relying party (discovery, JWKS cache, code exchange, ID-token checks) and the
personal-code check; :mod:`kroonika.tara.mock` is a TARA-compatible identity provider.

Errors: see :mod:`kroonika.tara._errors` (``TaraError`` and its subclasses, each with the
``reason`` code of the ``auth.login`` event).
"""

from kroonika.tara._client import (
    Discovery,
    JwksCache,
    KeySetChange,
    KeySetListener,
    KeySetState,
    TaraClient,
    TaraClientConfig,
    TokenResponse,
    parse_jwks,
)
from kroonika.tara._errors import (
    BROWSER_CHECKS,
    ID_TOKEN_CHECKS,
    AcrTooLow,
    AmrNotAllowed,
    ClientRejected,
    CodeExchangeFailed,
    DiscoveryError,
    IdpBadResponse,
    IdpUnavailable,
    IdTokenInvalid,
    LoginRejected,
    PersonalCodeInvalid,
    RequestRejected,
    TaraError,
)
from kroonika.tara._verify import (
    ACR_ORDER,
    METHODS,
    Acr,
    Expectations,
    VerifiedIdToken,
    acr_rank,
    digest,
    verify_id_token,
)

__all__ = [
    "ACR_ORDER",
    "BROWSER_CHECKS",
    "ID_TOKEN_CHECKS",
    "METHODS",
    "Acr",
    "AcrTooLow",
    "AmrNotAllowed",
    "ClientRejected",
    "CodeExchangeFailed",
    "Discovery",
    "DiscoveryError",
    "Expectations",
    "IdTokenInvalid",
    "IdpBadResponse",
    "IdpUnavailable",
    "JwksCache",
    "KeySetChange",
    "KeySetListener",
    "KeySetState",
    "LoginRejected",
    "PersonalCodeInvalid",
    "RequestRejected",
    "TaraClient",
    "TaraClientConfig",
    "TaraError",
    "TokenResponse",
    "VerifiedIdToken",
    "acr_rank",
    "digest",
    "parse_jwks",
    "verify_id_token",
]
