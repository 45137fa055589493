"""ID-token checks of the relying party, on tokens signed here (pure, injected time)."""

from __future__ import annotations

import functools
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from kroonika.tara import (
    AcrTooLow,
    AmrNotAllowed,
    Expectations,
    IdTokenInvalid,
    PersonalCodeInvalid,
    VerifiedIdToken,
    digest,
    verify_id_token,
)

NOW = 1_800_000_000
ISS = "https://tara-test.ria.ee"


@functools.cache
def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _token(**overrides: Any) -> str:
    claims: dict[str, Any] = {
        "iss": ISS,
        "aud": "client",
        "sub": "EE38001085718",
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 40,
        "nonce": "n0nce",
        "acr": "high",
        "amr": ["mID"],
        "profile_attributes": {"given_name": "JAAK-KRISTJAN", "family_name": "JÕEORG"},
    }
    claims.update(overrides)
    return jwt.encode(claims, _key(), algorithm="RS256", headers={"kid": "k1"})


def _expect(**kw: Any) -> Expectations:
    values: dict[str, Any] = {
        "issuer": ISS,
        "client_id": "client",
        "nonce_digest": digest("n0nce"),
        "acr_minimum": "substantial",
        "methods": ("idcard", "mid"),
    }
    values.update(kw)
    return Expectations(**values)


def _verify(token: str, **kw: Any) -> VerifiedIdToken:
    return verify_id_token(token, {"k1": _key().public_key()}, _expect(**kw), now=NOW)


def test_valid_token_gives_verified_identity() -> None:
    """A good token yields the subject, personal code and method (amr case-folded)."""
    v = _verify(_token())
    assert (v.subject, v.personal_code, v.method, v.acr) == (
        "EE38001085718",
        "38001085718",
        "mid",
        "high",
    )


def test_verified_id_token_cannot_be_made_outside_the_verifier() -> None:
    """Constructing VerifiedIdToken directly raises TypeError."""
    with pytest.raises(TypeError):
        VerifiedIdToken(  # type: ignore[call-arg]
            subject="EE1",
            country="EE",
            personal_code=None,
            given_name=None,
            family_name=None,
            date_of_birth=None,
            method="mid",
            amr=("mid",),
            acr="high",
            jti=None,
            issued_at=0,
            expires_at=0,
        )


@pytest.mark.parametrize(
    ("token_kw", "expect_kw", "reason"),
    [
        ({"iss": ISS + "/"}, {}, "id_token.issuer_mismatch"),
        ({"aud": "other"}, {}, "id_token.audience_mismatch"),
        ({"aud": ["other", "client"], "azp": "other"}, {}, "id_token.audience_mismatch"),
        ({"aud": ["other", "client"]}, {}, "id_token.audience_mismatch"),
        ({"aud": "client", "azp": "other"}, {}, "id_token.audience_mismatch"),
        ({"aud": ["client"], "azp": "other"}, {}, "id_token.audience_mismatch"),
        ({"aud": "client", "azp": 7}, {}, "id_token.audience_mismatch"),
        ({"nbf": NOW + 120}, {}, "id_token.not_yet_valid"),
        ({"nbf": str(NOW + 120)}, {}, "id_token.missing_claim"),
        ({"nbf": True}, {}, "id_token.missing_claim"),
        ({"exp": NOW - 60}, {}, "id_token.expired"),
        ({"iat": NOW + 120}, {}, "id_token.issued_in_future"),
        ({"nonce": "other"}, {}, "id_token.nonce_mismatch"),
        ({"nonce": "\ud800"}, {}, "id_token.nonce_mismatch"),
        ({"state": "s1"}, {"state": "s2"}, "id_token.state_mismatch"),
        ({"state": "säte"}, {"state": "s2"}, "id_token.state_mismatch"),
        ({"state": "\ud800"}, {"state": "s2"}, "id_token.state_mismatch"),
        ({"state": 7}, {"state": "s2"}, "id_token.state_mismatch"),
        ({"amr": "mID"}, {}, "id_token.missing_claim"),
        ({"acr": ["high"]}, {}, "id_token.acr_invalid"),
        ({"acr": "low"}, {}, "acr_too_low"),
        ({"amr": ["smartid"]}, {}, "amr_not_allowed"),
        ({"sub": "EE38001085719"}, {}, "personal_code_invalid"),
        ({"sub": "garbage"}, {}, "personal_code_invalid"),
    ],
)
def test_each_check_has_its_reason(
    token_kw: dict[str, Any], expect_kw: dict[str, Any], reason: str
) -> None:
    """Each failed check raises with its own auth.login reason code."""
    with pytest.raises((IdTokenInvalid, AcrTooLow, AmrNotAllowed, PersonalCodeInvalid)) as exc:
        _verify(_token(**token_kw), **expect_kw)
    assert exc.value.reason == reason


def test_leeway_accepts_small_skew() -> None:
    """A token expired 5 s ago passes with a 10 s leeway."""
    assert _verify(_token(exp=NOW - 5), leeway=10).subject == "EE38001085718"


def test_unknown_kid_and_bad_signature_are_told_apart() -> None:
    """A kid not in the set is unknown_kid; a wrong key under a known kid is bad_signature."""
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(IdTokenInvalid) as unknown:
        verify_id_token(_token(), {"k2": _key().public_key()}, _expect(), now=NOW)
    assert unknown.value.reason == "id_token.unknown_kid"
    with pytest.raises(IdTokenInvalid) as bad:
        verify_id_token(_token(), {"k1": other.public_key()}, _expect(), now=NOW)
    assert bad.value.reason == "id_token.bad_signature"


def test_none_algorithm_is_refused() -> None:
    """An unsigned token (alg none) is refused before any key is looked at."""
    unsigned = jwt.encode({"sub": "x"}, None, algorithm="none", headers={"kid": "k1"})
    with pytest.raises(IdTokenInvalid) as exc:
        _verify(unsigned)
    assert exc.value.reason == "id_token.alg"


def test_missing_acr_is_refused_not_assumed() -> None:
    """A token without acr fails closed (TARA always sends it); it is not taken as substantial."""
    claims = jwt.decode(_token(), options={"verify_signature": False})
    del claims["acr"]
    token = jwt.encode(claims, _key(), algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(IdTokenInvalid) as exc:
        _verify(token, acr_minimum="low")
    assert exc.value.reason == "id_token.missing_claim"


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": ["client"]},
        {"aud": "client", "azp": "client"},
        {"aud": ["other", "client"], "azp": "client"},
        {"nbf": NOW + 5},
    ],
    ids=["aud-array", "azp-is-us", "two-audiences-azp-us", "nbf-within-leeway"],
)
def test_audience_forms_and_skew_tara_may_send_are_accepted(claims: dict[str, Any]) -> None:
    """aud as an array, an azp naming this client and an nbf within the leeway pass."""
    assert _verify(_token(**claims)).subject == "EE38001085718"


def test_eidas_amr_is_compared_case_insensitively() -> None:
    """The spec's eIDAS and the running TARA's eidas both match the eidas method."""
    for amr in ("eIDAS", "eidas"):
        verified = _verify(_token(amr=[amr], acr="substantial"), methods=("eidas",))
        assert (verified.method, verified.amr) == ("eidas", ("eidas",))
