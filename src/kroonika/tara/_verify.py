"""ID-token checks of TARA.md (pure and synchronous: time and keys are given).

Only :func:`verify_id_token` makes a :class:`VerifiedIdToken`; code that trusts identity claims
takes that type, so unverified claims cannot reach it.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any, Final, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from kroonika.tara import isikukood
from kroonika.tara._errors import (
    AcrTooLow,
    AmrNotAllowed,
    IdTokenInvalid,
    PersonalCodeInvalid,
)

Acr = Literal["low", "substantial", "high"]
ACR_ORDER: Final[tuple[Acr, ...]] = ("low", "substantial", "high")
METHODS: Final = ("idcard", "mid", "smartid", "eidas")
"""Authentication methods by their scope name; ``amr`` is compared case-insensitively."""

_SEAL: Final = object()


def acr_rank(acr: str) -> int:
    return ACR_ORDER.index(acr) if acr in ACR_ORDER else -1


def digest(value: str) -> str:
    """Hex SHA-256 of a secret value (state, nonce), for storage and comparison. Any string
    has a digest: a lone surrogate (JSON allows ``"\\ud800"``) must not crash the check."""
    return sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class VerifiedIdToken:
    """Claims of an ID token that passed every check. Made only by :func:`verify_id_token`."""

    subject: str
    country: str
    personal_code: str | None
    given_name: str | None
    family_name: str | None
    date_of_birth: str | None
    method: str
    amr: tuple[str, ...]
    acr: Acr
    jti: str | None
    issued_at: int
    expires_at: int
    email: str | None = None
    phone_number: str | None = None
    _seal: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._seal is not _SEAL:
            raise TypeError("only kroonika.tara.verify_id_token makes a VerifiedIdToken")


@dataclass(frozen=True, slots=True)
class Expectations:
    """What one login asked for; the token must match it."""

    issuer: str
    client_id: str
    nonce_digest: str
    acr_minimum: Acr
    methods: Collection[str]
    state: str | None = None
    leeway: int = 10


def _str_claim(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise IdTokenInvalid("missing_claim", f"claim {name} is missing or not a string")
    return value


def _int_claim(claims: Mapping[str, Any], name: str) -> int:
    value = claims.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise IdTokenInvalid("missing_claim", f"claim {name} is missing or not a number")
    return value


def verify_id_token(
    raw: str,
    keys: Mapping[str, RSAPublicKey],
    expect: Expectations,
    *,
    now: int,
) -> VerifiedIdToken:
    """Check signature (by ``kid``), ``iss``, ``aud`` (and ``azp`` when present),
    ``iat``/``exp``/``nbf`` with leeway,
    ``nonce``, ``state`` (when present), ``acr`` minimum, ``amr`` among the methods asked for
    and the personal code's format. Raises a :class:`LoginRejected` subclass naming the check.

    An unknown ``kid`` raises ``IdTokenInvalid("unknown_kid")``; the caller refetches the key
    set once and calls again.
    """
    try:
        header = jwt.get_unverified_header(raw)
    except jwt.InvalidTokenError:
        raise IdTokenInvalid("malformed", "the ID token is not a JWS") from None
    if header.get("alg") != "RS256":
        raise IdTokenInvalid("alg", "the ID token is not RS256", expected="RS256")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise IdTokenInvalid("unknown_kid", "the ID token has no kid")
    key = keys.get(kid)
    if key is None:
        raise IdTokenInvalid("unknown_kid", "the ID token's kid is not in the key set", actual=kid)
    try:
        claims: dict[str, Any] = jwt.decode(
            raw,
            key,
            algorithms=["RS256"],
            options={
                "verify_signature": True,
                "verify_exp": False,  # checked below against the injected clock
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
                "require": [],
            },
        )
    except jwt.InvalidSignatureError:
        raise IdTokenInvalid("bad_signature", "the ID token signature does not verify") from None
    except jwt.InvalidTokenError:
        raise IdTokenInvalid("malformed", "the ID token cannot be decoded") from None

    iss = _str_claim(claims, "iss")
    if iss != expect.issuer:
        raise IdTokenInvalid("issuer_mismatch", "iss differs", expected=expect.issuer, actual=iss)
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if expect.client_id not in audiences or not all(isinstance(a, str) for a in audiences):
        raise IdTokenInvalid(
            "audience_mismatch", "aud is not this client", expected=expect.client_id, actual=aud
        )
    # OIDC Core 3.1.3.7 (3, 4): an azp, if present, names this client; several
    # audiences need one (TARA sends a single aud and no azp).
    azp = claims.get("azp")
    if (azp is not None or len(audiences) > 1) and azp != expect.client_id:
        raise IdTokenInvalid(
            "audience_mismatch", "azp is not this client", expected=expect.client_id, actual=azp
        )
    exp = _int_claim(claims, "exp")
    iat = _int_claim(claims, "iat")
    if now > exp + expect.leeway:
        raise IdTokenInvalid("expired", "the ID token has expired", expected=now, actual=exp)
    if iat > now + expect.leeway:
        raise IdTokenInvalid("issued_in_future", "iat is in the future", expected=now, actual=iat)
    nbf = claims.get("nbf")
    if nbf is not None and (not isinstance(nbf, int) or isinstance(nbf, bool)):
        raise IdTokenInvalid("missing_claim", "claim nbf is not a number")
    if nbf is not None and nbf > now + expect.leeway:
        raise IdTokenInvalid("not_yet_valid", "nbf is in the future", expected=now, actual=nbf)
    nonce = claims.get("nonce")
    if not isinstance(nonce, str) or not hmac.compare_digest(digest(nonce), expect.nonce_digest):
        raise IdTokenInvalid("nonce_mismatch", "nonce differs from the one of this flow")
    state = claims.get("state")
    if (
        state is not None
        and expect.state is not None
        and (
            not isinstance(state, str)
            or not hmac.compare_digest(
                state.encode("utf-8", "surrogatepass"), expect.state.encode()
            )
        )
    ):
        raise IdTokenInvalid("state_mismatch", "the state claim differs from this flow")

    # From here the token is authentic and for this flow: a refusal names the person.
    sub = claims.get("sub") if isinstance(claims.get("sub"), str) else None
    acr = claims.get("acr")
    if acr is None:  # TARA always sends it: never assume a level of assurance
        raise IdTokenInvalid("missing_claim", "acr is missing")
    if acr not in ACR_ORDER:
        raise IdTokenInvalid("acr_invalid", "acr is not low, substantial or high", actual=acr)
    if acr_rank(acr) < acr_rank(expect.acr_minimum):
        too_low = AcrTooLow(f"acr {acr} is below {expect.acr_minimum}")
        too_low.subject = sub
        raise too_low
    amr = claims.get("amr")
    if not isinstance(amr, list) or not amr or not all(isinstance(a, str) for a in amr):
        raise IdTokenInvalid("missing_claim", "amr is missing")
    folded = tuple(a.casefold() for a in amr)
    allowed = {m.casefold() for m in expect.methods}
    if not all(a in allowed for a in folded):
        refused = AmrNotAllowed(f"amr {folded} not among the methods asked for")
        refused.subject = sub
        raise refused

    subject = _str_claim(claims, "sub")
    try:
        country, ident = isikukood.split_subject(subject)
    except ValueError:
        raise PersonalCodeInvalid("sub is not a country code and an identifier") from None
    personal_code: str | None = None
    if country == "EE":
        try:
            personal_code = isikukood.validate(ident).code
        except isikukood.InvalidPersonalCode:
            raise PersonalCodeInvalid("sub is not a valid Estonian personal code") from None
    profile = claims.get("profile_attributes")
    profile = profile if isinstance(profile, dict) else {}

    def opt(d: Mapping[str, Any], name: str) -> str | None:
        v = d.get(name)
        return v if isinstance(v, str) else None

    jti = claims.get("jti")
    return VerifiedIdToken(
        subject=subject,
        country=country,
        personal_code=personal_code,
        given_name=opt(profile, "given_name"),
        family_name=opt(profile, "family_name"),
        date_of_birth=opt(profile, "date_of_birth"),
        method=folded[0],
        amr=folded,
        acr=acr,
        jti=jti if isinstance(jti, str) else None,
        issued_at=iat,
        expires_at=exp,
        email=opt(claims, "email"),
        phone_number=opt(claims, "phone_number"),
        _seal=_SEAL,
    )
