"""Pure, synchronous token verification: signature first, then claims.

Only :func:`verify` makes a :class:`VerifiedToken`, and only after the signature
checked out against a published key of the expected algorithm, so code that takes
a ``VerifiedToken`` never sees unverified claims.

The algorithm comes from *our* key, never from the token: ``alg: none``, HS256
(with the public key as the HMAC secret) and an algorithm that differs from the
key's are rejected before PyJWT is asked to verify anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import jwt

from kroonika.tokens._keys import SUPPORTED_ALGS, PublishedKey

MAX_TOKEN_BYTES = 16_384


class Reason(StrEnum):
    """Why a token is not valid (the detailed verdict of ``/tokens/validate``)."""

    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    WRONG_ISSUER = "wrong_issuer"
    WRONG_AUDIENCE = "wrong_audience"
    REVOKED = "revoked"
    UNKNOWN_TOKEN = "unknown_token"  # noqa: S105  (signed by us, but not in the token store)
    DENYLISTED_TOKEN = "denylisted_jti"  # noqa: S105  (a reason code)
    DENYLISTED_SUBJECT = "denylisted_subject"
    DENYLISTED_CLIENT = "denylisted_client"
    DENYLISTED_IP = "denylisted_ip"
    NOT_ALLOWLISTED = "not_allowlisted"
    # The token is neither from nor for the asking client: its state is not theirs to
    # learn (no revocation or deny-list oracle); the trail keeps the real verdict.
    NOT_FOR_CALLER = "not_for_caller"


class KeyLookup(Protocol):
    def public_key(self, kid: str) -> PublishedKey | None: ...


_SEALED = object()


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A token whose signature was verified by one of our published keys."""

    kid: str
    alg: str
    typ: str | None
    claims: Mapping[str, Any]
    jti: str
    iat: int
    exp: int
    nbf: int | None
    iss: str | None
    sub: str | None
    aud: tuple[str, ...]
    _seal: object = field(repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self._seal is not _SEALED:
            raise TypeError("only kroonika.tokens verify() makes a VerifiedToken")

    @property
    def claim_names(self) -> list[str]:
        return sorted(self.claims)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome: valid, or the reason. ``token`` is set whenever the signature
    was good (even for an expired or revoked token); ``kid``/``alg`` come from the
    header and are only informative when the signature was bad."""

    reason: Reason | None
    token: VerifiedToken | None = None
    kid: str | None = None
    alg: str | None = None

    @property
    def valid(self) -> bool:
        return self.reason is None

    def with_reason(self, reason: Reason) -> Verdict:
        return Verdict(reason, self.token, self.kid, self.alg)


def _short(value: Any) -> str | None:
    return value[:64] if isinstance(value, str) else None


def verify_signature(token: str, keys: KeyLookup) -> Verdict:
    """Check shape, header and signature; no claim is trusted before this passes."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_BYTES:
        return Verdict(Reason.MALFORMED)
    if token.count(".") != 2:
        return Verdict(Reason.MALFORMED)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        # DecodeError, and InvalidTokenError for a header PyJWT itself refuses (a kid
        # that is not a string, a bad or unsupported ``crit``): malformed either way.
        return Verdict(Reason.MALFORMED)
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in SUPPORTED_ALGS:
        return Verdict(Reason.BAD_SIGNATURE, kid=_short(kid), alg=_short(alg))
    if not isinstance(kid, str) or not kid:
        return Verdict(Reason.UNKNOWN_KEY, alg=alg)
    key = keys.public_key(kid)
    if key is None:
        return Verdict(Reason.UNKNOWN_KEY, kid=kid[:64], alg=alg)
    if key.alg != alg:
        return Verdict(Reason.BAD_SIGNATURE, kid=kid, alg=alg)
    try:
        claims = jwt.decode(
            token,
            key.public,
            algorithms=[key.alg],
            options={
                "verify_signature": True,
                # Claims are checked below by check_claims with an injected clock.
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
                "verify_jti": False,
                "verify_sub": False,
                "require": [],
            },
        )
    except jwt.InvalidSignatureError:
        return Verdict(Reason.BAD_SIGNATURE, kid=kid, alg=alg)
    except jwt.PyJWTError:
        return Verdict(Reason.MALFORMED, kid=kid, alg=alg)
    parsed = _typed(claims)
    if parsed is None:
        return Verdict(Reason.MALFORMED, kid=kid, alg=alg)
    jti, iat, exp, nbf, iss, sub, aud = parsed
    typ = header.get("typ")
    verified = VerifiedToken(
        kid,
        alg,
        typ if isinstance(typ, str) else None,
        claims,
        jti,
        iat,
        exp,
        nbf,
        iss,
        sub,
        aud,
        _SEALED,
    )
    return Verdict(None, verified, kid, alg)


def _typed(
    claims: Mapping[str, Any],
) -> tuple[str, int, int, int | None, str | None, str | None, tuple[str, ...]] | None:
    jti, iat, exp, nbf = claims.get("jti"), claims.get("iat"), claims.get("exp"), claims.get("nbf")
    iss, sub, aud = claims.get("iss"), claims.get("sub"), claims.get("aud")
    if not isinstance(jti, str) or not jti or len(jti) > 64:
        return None
    if not isinstance(iat, int) or isinstance(iat, bool):
        return None
    if not isinstance(exp, int) or isinstance(exp, bool):
        return None
    if nbf is not None and (not isinstance(nbf, int) or isinstance(nbf, bool)):
        return None
    if iss is not None and not isinstance(iss, str):
        return None
    if sub is not None and not isinstance(sub, str):
        return None
    if isinstance(aud, str):
        auds: tuple[str, ...] = (aud,)
    elif isinstance(aud, list) and all(isinstance(a, str) for a in aud):
        auds = tuple(aud)
    elif aud is None:
        auds = ()
    else:
        return None
    return jti, iat, exp, nbf, iss, sub, auds


def check_claims(
    token: VerifiedToken,
    *,
    now: int,
    leeway: int,
    issuer: str,
    audience: str | None,
) -> Reason | None:
    """Issuer, expiry, not-before and (when the caller names one) audience."""
    if token.iss != issuer:
        return Reason.WRONG_ISSUER
    if token.exp <= now - leeway:
        return Reason.EXPIRED
    if token.nbf is not None and token.nbf > now + leeway:
        return Reason.NOT_YET_VALID
    if token.iat > now + leeway:
        return Reason.NOT_YET_VALID
    if audience is not None and audience not in token.aud:
        return Reason.WRONG_AUDIENCE
    return None


def verify(
    token: str,
    keys: KeyLookup,
    *,
    now: int,
    leeway: int,
    issuer: str,
    audience: str | None = None,
) -> Verdict:
    """Signature, then claims. State (revocation, lists) is the service's business."""
    verdict = verify_signature(token, keys)
    if verdict.token is None:
        return verdict
    reason = check_claims(verdict.token, now=now, leeway=leeway, issuer=issuer, audience=audience)
    return verdict if reason is None else verdict.with_reason(reason)
