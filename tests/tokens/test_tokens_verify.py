"""Verification: every reason code, and forged tokens of every kind are rejected."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import create_engine

from kroonika.tokens import FixedClock, Reason, SigningKeyRing, create_tables, verify

ISS = "https://kroonika.test"
NOW = 1_750_000_000


@pytest.fixture
def ring() -> SigningKeyRing:
    engine = create_engine("sqlite://")
    create_tables(engine)
    r = SigningKeyRing(engine, b"k" * 32, clock=FixedClock(NOW), publish_lead_s=0)
    r.ensure()
    return r


def _mint(ring: SigningKeyRing, **claims: object) -> str:
    key = ring.current()
    payload = {"iss": ISS, "aud": "svc", "iat": NOW, "nbf": NOW, "exp": NOW + 300, "jti": "j1"}
    payload.update(claims)
    return jwt.encode(payload, key.private, algorithm=key.alg, headers={"kid": key.kid})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _check(ring: SigningKeyRing, token: str, audience: str | None = None) -> Reason | None:
    return verify(token, ring, now=NOW, leeway=0, issuer=ISS, audience=audience).reason


def test_good_token_is_valid(ring: SigningKeyRing) -> None:
    """A token signed by the active key with right claims verifies."""
    v = verify(_mint(ring), ring, now=NOW, leeway=0, issuer=ISS, audience="svc")
    assert v.valid
    assert v.token is not None
    assert v.token.jti == "j1"


@pytest.mark.parametrize("junk", ["", "abc", "a.b", "a.b.c", "x" * 20000, "eyJ.eyJ.sig"])
def test_malformed(ring: SigningKeyRing, junk: str) -> None:
    """Garbage is malformed, not a crash."""
    assert _check(ring, junk) is Reason.MALFORMED


def test_alg_none_rejected(ring: SigningKeyRing) -> None:
    """An unsigned token (alg none) is a bad signature."""
    kid = ring.current().kid
    header = _b64(json.dumps({"alg": "none", "kid": kid}).encode())
    body = _b64(json.dumps({"iss": ISS, "jti": "j1", "iat": NOW, "exp": NOW + 60}).encode())
    assert _check(ring, f"{header}.{body}.") is Reason.BAD_SIGNATURE


def test_hs256_with_public_key_as_secret_rejected(ring: SigningKeyRing) -> None:
    """The classic key-confusion forgery (HMAC keyed with our public key) fails."""
    key = ring.current()
    pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64(json.dumps({"alg": "HS256", "kid": key.kid, "typ": "JWT"}).encode())
    body = _b64(
        json.dumps({"iss": ISS, "jti": "j1", "iat": NOW, "exp": NOW + 60, "aud": "svc"}).encode()
    )
    import hashlib
    import hmac

    sig = _b64(hmac.new(pem, f"{header}.{body}".encode(), hashlib.sha256).digest())
    assert _check(ring, f"{header}.{body}.{sig}") is Reason.BAD_SIGNATURE


def test_wrong_kid_is_unknown_key(ring: SigningKeyRing) -> None:
    """A token naming a kid we never published is unknown_key."""
    other = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(
        {"iss": ISS, "jti": "j", "iat": NOW, "exp": NOW + 60},
        other,
        algorithm="ES256",
        headers={"kid": "nope"},
    )
    assert _check(ring, token) is Reason.UNKNOWN_KEY


def test_right_kid_foreign_key_is_bad_signature(ring: SigningKeyRing) -> None:
    """A token signed by another key but naming our kid fails its signature."""
    other = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(
        {"iss": ISS, "jti": "j", "iat": NOW, "exp": NOW + 60},
        other,
        algorithm="ES256",
        headers={"kid": ring.current().kid},
    )
    assert _check(ring, token) is Reason.BAD_SIGNATURE


def test_tampered_payload_rejected(ring: SigningKeyRing) -> None:
    """Changing one claim after signing breaks the signature."""
    header, body, sig = _mint(ring).split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["sub"] = "EE38001085718"
    forged = f"{header}.{_b64(json.dumps(claims).encode())}.{sig}"
    assert _check(ring, forged) is Reason.BAD_SIGNATURE


def test_expired(ring: SigningKeyRing) -> None:
    """exp in the past is expired."""
    assert _check(ring, _mint(ring, exp=NOW - 1)) is Reason.EXPIRED


def test_leeway_accepts_just_expired(ring: SigningKeyRing) -> None:
    """Within the leeway a just-expired token still verifies."""
    v = verify(_mint(ring, exp=NOW - 5), ring, now=NOW, leeway=10, issuer=ISS)
    assert v.valid


def test_future_nbf_not_yet_valid(ring: SigningKeyRing) -> None:
    """nbf in the future is not_yet_valid."""
    assert _check(ring, _mint(ring, nbf=NOW + 120)) is Reason.NOT_YET_VALID


def test_future_iat_not_yet_valid(ring: SigningKeyRing) -> None:
    """A token issued in the future is not_yet_valid."""
    assert _check(ring, _mint(ring, iat=NOW + 120, nbf=None)) is Reason.NOT_YET_VALID


def test_wrong_issuer(ring: SigningKeyRing) -> None:
    """A token of another issuer is wrong_issuer even with our signature."""
    assert _check(ring, _mint(ring, iss="https://evil.test")) is Reason.WRONG_ISSUER


def test_wrong_audience(ring: SigningKeyRing) -> None:
    """A caller expecting another audience gets wrong_audience."""
    assert _check(ring, _mint(ring), audience="other") is Reason.WRONG_AUDIENCE


def test_missing_jti_malformed(ring: SigningKeyRing) -> None:
    """A signed token without a jti is malformed."""
    assert _check(ring, _mint(ring, jti=None)) is Reason.MALFORMED


def test_rs256_token_against_es256_kid_rejected(ring: SigningKeyRing) -> None:
    """An algorithm different from the key's own is rejected before verification."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(
        {"iss": ISS, "jti": "j", "iat": NOW, "exp": NOW + 60},
        k,
        algorithm="RS256",
        headers={"kid": ring.current().kid},
    )
    assert _check(ring, token) is Reason.BAD_SIGNATURE


def test_verified_token_cannot_be_built_outside(ring: SigningKeyRing) -> None:
    """Only verify() makes a VerifiedToken."""
    from kroonika.tokens import VerifiedToken

    with pytest.raises(TypeError):
        VerifiedToken("k", "ES256", None, {}, "j", 0, 1, None, None, None, ())


def test_time_is_injected(ring: SigningKeyRing) -> None:
    """Verification uses the given time, not the wall clock."""
    token = _mint(ring)
    assert verify(token, ring, now=int(time.time()) + 10**8, leeway=0, issuer=ISS).reason is (
        Reason.EXPIRED
    )


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "ES256", "kid": 123},  # PyJWT refuses a kid that is not a string
        {"alg": "ES256", "kid": "k", "crit": "b64"},  # crit must be a list
        {"alg": "ES256", "kid": "k", "crit": ["x-unknown"]},  # an extension nobody knows
        {"alg": "ES256", "kid": "k", "crit": []},
    ],
)
def test_headers_pyjwt_refuses_are_malformed(ring: SigningKeyRing, header: object) -> None:
    """A header PyJWT itself refuses is ``malformed``, never an exception (it was a 500)."""
    body = _b64(json.dumps({"iss": ISS, "jti": "j1", "iat": NOW, "exp": NOW + 60}).encode())
    token = f"{_b64(json.dumps(header).encode())}.{body}.AAAA"
    assert _check(ring, token) is Reason.MALFORMED


def test_crit_header_on_a_signed_token_is_refused(ring: SigningKeyRing) -> None:
    """A token we could have signed but that names a critical extension is refused."""
    key = ring.current()
    payload = {"iss": ISS, "aud": "svc", "iat": NOW, "exp": NOW + 300, "jti": "j1"}
    token = jwt.encode(
        payload, key.private, algorithm=key.alg, headers={"kid": key.kid, "crit": ["exp"]}
    )
    assert _check(ring, token) is not None


def test_kid_with_crlf_or_path_is_unknown_key(ring: SigningKeyRing) -> None:
    """A kid with a path, CR/LF or a URL is only ever a dictionary miss; jku/x5u are
    never fetched (the verdict is the same with or without them)."""
    body = _b64(json.dumps({"iss": ISS, "jti": "j1", "iat": NOW, "exp": NOW + 60}).encode())
    for header in (
        {"alg": "ES256", "kid": "../../etc/passwd"},
        {"alg": "ES256", "kid": "a\r\nSet-Cookie: x=1"},
        {"alg": "ES256", "kid": "x", "jku": "http://127.0.0.1:1/jwks"},
        {"alg": "ES256", "kid": "x", "x5u": "http://127.0.0.1:1/cert"},
    ):
        token = f"{_b64(json.dumps(header).encode())}.{body}.AAAA"
        assert _check(ring, token) is Reason.UNKNOWN_KEY
