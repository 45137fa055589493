"""What the mock issues: the ID token (OpenID Connect Core 1.0 section 2, as TARA shapes it),
the token response (RFC 6749 section 5.1) and the userinfo answer (OIDC Core section 5.3).

Pure functions of a completed login, the time, the mode and the misbehaviour switches.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from kroonika.tara.mock._identities import ACR_ORDER, Acr, Method, acr_rank
from kroonika.tara.mock._keys import KeyRing
from kroonika.tara.mock.config import Misbehaviour


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """A validated ``/oidc/authorize`` request, waiting for the user to log in."""

    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str
    nonce: str | None
    acr: Acr
    locale: str
    methods: tuple[Method, ...]
    """The authentication methods this request allows, in display order."""

    @property
    def scope(self) -> str:
        """The scopes as one space-separated string."""
        return " ".join(self.scopes)


@dataclass(frozen=True, slots=True)
class Person:
    """Who logged in and how."""

    code: str
    given_name: str
    family_name: str
    date_of_birth: datetime.date
    method: Method
    acr: Acr
    phone_number: str | None = None

    @property
    def subject(self) -> str:
        """TARA's ``sub``: country code and personal code."""
        return "EE" + self.code


@dataclass(frozen=True, slots=True)
class Grant:
    """A completed login: what an authorization code and then an access token stand for."""

    request: AuthorizationRequest
    person: Person
    auth_time: int


def at_hash(access_token: str, *, strict: bool) -> str:
    """Left half of SHA-256 of the access token: base64url unpadded (OIDC), or TARA's padded
    standard base64 when not strict."""
    half = hashlib.sha256(access_token.encode("ascii")).digest()[:16]
    if strict:
        return base64.urlsafe_b64encode(half).rstrip(b"=").decode("ascii")
    return base64.b64encode(half).decode("ascii")


def _identity_claims(grant: Grant) -> dict[str, Any]:
    # TARA releases e-mail only from an ID-card certificate and the phone number only from
    # Mobile-ID, and only when the scope was asked for.
    claims: dict[str, Any] = {}
    person, scopes = grant.person, grant.request.scopes
    if "email" in scopes and person.method == "idcard":
        claims["email"] = f"{person.code}@eesti.ee"
        claims["email_verified"] = False
    if "phone" in scopes and person.method == "mID" and person.phone_number:
        claims["phone_number"] = person.phone_number
        claims["phone_number_verified"] = True
    return claims


def id_token_claims(
    grant: Grant,
    *,
    issuer: str,
    access_token: str,
    now: int,
    ttl_seconds: int,
    strict: bool,
    misbehaviour: Misbehaviour,
) -> dict[str, Any]:
    """The claims of the ID token for ``grant``, with the switched-on misbehaviour applied."""
    request, person = grant.request, grant.person
    iat = now - 3600 if misbehaviour.expired_token else now
    audience = request.client_id
    if misbehaviour.wrong_audience:
        audience = "not-" + request.client_id
    acr: Acr = person.acr
    if misbehaviour.low_acr:
        acr = ACR_ORDER[max(acr_rank(request.acr) - 1, 0)]
    claims: dict[str, Any] = {
        "jti": str(uuid.uuid4()),
        "iss": issuer + "/" if misbehaviour.wrong_issuer else issuer,
        "aud": [audience] if strict else audience,
        "exp": iat + ttl_seconds,
        "iat": iat,
        "sub": person.subject,
        "profile_attributes": {
            "date_of_birth": person.date_of_birth.isoformat(),
            "family_name": person.family_name,
            "given_name": person.given_name,
        },
        "amr": [person.method],
        "acr": acr,
        "at_hash": at_hash(access_token, strict=strict),
    }
    if not strict:
        claims["nbf"] = iat
        claims["state"] = request.state
    if misbehaviour.wrong_nonce:
        claims["nonce"] = secrets.token_urlsafe(16)
    elif request.nonce is not None:
        claims["nonce"] = request.nonce
    claims.update(_identity_claims(grant))
    return claims


def sign(claims: dict[str, Any], keys: KeyRing, misbehaviour: Misbehaviour) -> str:
    """Sign ``claims`` with RS256 under the current key's ``kid`` (or break it on purpose)."""
    kid, key = keys.signer()
    if misbehaviour.unknown_kid:
        kid = "unknown-" + secrets.token_hex(8)
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})
    if misbehaviour.bad_signature:
        head, payload, signature = token.split(".")
        raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
        raw[len(raw) // 2] ^= 0x01
        signature = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode("ascii")
        token = f"{head}.{payload}.{signature}"
    return token


def userinfo_claims(grant: Grant) -> dict[str, Any]:
    """What ``/oidc/profile`` answers: the profile attributes flattened, as TARA does."""
    person = grant.person
    claims: dict[str, Any] = {
        "sub": person.subject,
        "given_name": person.given_name,
        "family_name": person.family_name,
        "date_of_birth": person.date_of_birth.isoformat(),
        "amr": [person.method],
        "acr": person.acr,
        "auth_time": grant.auth_time,
    }
    claims.update(_identity_claims(grant))
    return claims
