"""The TARA mock's token endpoint, ID token, JWKS, userinfo, discovery and control API."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from kroonika.tara.mock import Misbehaviour, MockConfig, RegisteredClient, create_app

pytestmark = pytest.mark.asyncio

ISSUER = "https://tara.mock.test"
CLIENT_ID = "rp"
SECRET = "rp-secret-0123456789"
POST_CLIENT_ID = "rp-post"
POST_SECRET = "rp-post-secret-0123"
ODD_CLIENT_ID = "rp:odd/x+y%"
ODD_SECRET = "p@ss:w%rd/+= ä"
REDIRECT_URI = "https://rp.example/auth/callback"
STATE = "state-0123456789"
NONCE = "nonce-0123"
CONTROL_TOKEN = "control-token-0123456789"


@functools.cache
def _keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    return (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


class FakeClock:
    """A settable clock."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _config(**overrides: Any) -> MockConfig:
    values: dict[str, Any] = {
        "issuer": ISSUER,
        "clients": (
            RegisteredClient(
                client_id=CLIENT_ID,
                secret=SecretStr(SECRET),
                redirect_uris=(REDIRECT_URI, "https://rp.example/other"),
                allowed_scopes=frozenset(
                    {"openid", "idcard", "mid", "smartid", "eidas", "email", "phone"}
                ),
            ),
            RegisteredClient(
                client_id=POST_CLIENT_ID,
                secret=SecretStr(POST_SECRET),
                redirect_uris=(REDIRECT_URI,),
                auth_method="client_secret_post",
            ),
            RegisteredClient(
                client_id=ODD_CLIENT_ID,
                secret=SecretStr(ODD_SECRET),
                redirect_uris=(REDIRECT_URI,),
            ),
        ),
        "keys": _keys(),
        "control_api": True,
    }
    values.update(overrides)
    return MockConfig(**values)


@asynccontextmanager
async def _client(config: MockConfig) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(config))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture
async def client(clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(_config(clock=clock)) as test_client:
        yield test_client


def _basic(client_id: str = CLIENT_ID, secret: str = SECRET) -> dict[str, str]:
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}


async def _code(
    client: httpx.AsyncClient,
    *,
    client_id: str = CLIENT_ID,
    person: str = "38001085718",
    scope: str = "openid",
    **extra: str,
) -> str:
    params = {
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": scope,
        "state": STATE,
        "nonce": NONCE,
        "autologin": person,
        **extra,
    }
    response = await client.get("/oidc/authorize", params=params)
    assert response.status_code == 302, response.text
    return parse_qs(urlsplit(response.headers["location"]).query)["code"][0]


async def _token(
    client: httpx.AsyncClient,
    code: str,
    *,
    headers: dict[str, str] | None = None,
    redirect_uri: str = REDIRECT_URI,
    **form: str,
) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    data.update(form)
    return await client.post(
        "/oidc/token", data=data, headers=_basic() if headers is None else headers
    )


def _verify(id_token: str, jwks: dict[str, Any], **options: Any) -> dict[str, Any]:
    header = jwt.get_unverified_header(id_token)
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    claims: dict[str, Any] = jwt.decode(
        id_token,
        key=key.key,
        algorithms=["RS256"],
        audience=CLIENT_ID,
        issuer=ISSUER,
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, **options},
    )
    return claims


def _half_hash(access_token: str) -> bytes:
    return hashlib.sha256(access_token.encode("ascii")).digest()[:16]


# --- success and the ID token -----------------------------------------------------------------


async def test_token_response_has_the_tara_fields(client: httpx.AsyncClient) -> None:
    """A good code gives access_token, token_type bearer, expires_in, id_token and scope."""
    response = await _token(client, await _code(client, scope="openid idcard"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "id_token", "scope"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 600
    assert body["scope"] == "openid idcard"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"


async def test_id_token_has_tara_claims_and_quirks(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Quirks mode: plain-string aud, nbf = iat, state claim, padded base64 at_hash, 40 s."""
    body = (await _token(client, await _code(client))).json()
    jwks = (await client.get("/oidc/jwks")).json()
    header = jwt.get_unverified_header(body["id_token"])
    assert header["alg"] == "RS256"
    assert header["kid"] in {k["kid"] for k in jwks["keys"]}
    claims = _verify(body["id_token"], jwks)
    now = int(clock.now)
    assert claims["iss"] == ISSUER
    assert claims["aud"] == CLIENT_ID
    assert claims["iat"] == now
    assert claims["nbf"] == now
    assert claims["exp"] == now + 40
    assert claims["sub"] == "EE38001085718"
    assert claims["profile_attributes"] == {
        "given_name": "JAAK-KRISTJAN",
        "family_name": "JÕEORG",
        "date_of_birth": "1980-01-08",
    }
    assert claims["amr"] == ["idcard"]
    assert claims["acr"] == "high"
    assert claims["state"] == STATE
    assert claims["nonce"] == NONCE
    assert uuid.UUID(claims["jti"]).version == 4
    assert claims["at_hash"] == base64.b64encode(_half_hash(body["access_token"])).decode()
    assert claims["at_hash"].endswith("==")
    assert "email" not in claims
    assert "phone_number" not in claims


async def test_strict_mode_is_plain_oidc(clock: FakeClock) -> None:
    """Strict mode: array aud, base64url at_hash without padding, no state or nbf claim."""
    async with _client(_config(clock=clock, strict=True)) as client:
        body = (await _token(client, await _code(client))).json()
        claims = _verify(body["id_token"], (await client.get("/oidc/jwks")).json())
    assert claims["aud"] == [CLIENT_ID]
    expected = base64.urlsafe_b64encode(_half_hash(body["access_token"])).rstrip(b"=").decode()
    assert claims["at_hash"] == expected
    assert "state" not in claims
    assert "nbf" not in claims
    assert claims["nonce"] == NONCE


async def test_names_are_upper_case_with_estonian_letters(client: httpx.AsyncClient) -> None:
    """MARY ÄNN O’CONNEŽ-ŠUSLIK TESTNUMBER arrives intact, with Mobile-ID and high."""
    body = (await _token(client, await _code(client, person="60001019906"))).json()
    claims = _verify(body["id_token"], (await client.get("/oidc/jwks")).json())
    assert claims["profile_attributes"]["given_name"] == "MARY ÄNN"
    assert claims["profile_attributes"]["family_name"] == "O’CONNEŽ-ŠUSLIK TESTNUMBER"
    assert claims["amr"] == ["mID"]


async def test_typed_names_become_upper_case(client: httpx.AsyncClient) -> None:
    """Names typed in mixed case are upper case in the token."""
    code = await _code(
        client,
        person="50001029996",
        autologin_given_name="Žanna-Liis",
        autologin_family_name="O’Šuslik",
        autologin_method="smartid",
    )
    claims = _verify(
        (await _token(client, code)).json()["id_token"], (await client.get("/oidc/jwks")).json()
    )
    assert claims["sub"] == "EE50001029996"
    assert claims["profile_attributes"] == {
        "given_name": "ŽANNA-LIIS",
        "family_name": "O’ŠUSLIK",
        "date_of_birth": "2000-01-02",
    }
    assert claims["amr"] == ["smartid"]


async def test_email_claims_come_with_the_email_scope_and_id_card(
    client: httpx.AsyncClient,
) -> None:
    """email scope with ID-card gives email and email_verified false."""
    code = await _code(client, scope="openid idcard email")
    claims = _verify(
        (await _token(client, code)).json()["id_token"], (await client.get("/oidc/jwks")).json()
    )
    assert claims["email"] == "38001085718@eesti.ee"
    assert claims["email_verified"] is False


async def test_phone_claims_come_with_the_phone_scope_and_mobile_id(
    client: httpx.AsyncClient,
) -> None:
    """phone scope with Mobile-ID gives phone_number and phone_number_verified true."""
    code = await _code(client, scope="openid mid phone", person="60001019906")
    claims = _verify(
        (await _token(client, code)).json()["id_token"], (await client.get("/oidc/jwks")).json()
    )
    assert claims["phone_number"] == "+37200000766"
    assert claims["phone_number_verified"] is True
    assert "email" not in claims


async def test_acr_of_the_identity_is_reported(client: httpx.AsyncClient) -> None:
    """IGOR ŽAIKOVSKI logs in with Smart-ID at substantial."""
    code = await _code(client, person="37101010021")
    claims = _verify(
        (await _token(client, code)).json()["id_token"], (await client.get("/oidc/jwks")).json()
    )
    assert claims["acr"] == "substantial"
    assert claims["amr"] == ["smartid"]
    assert claims["profile_attributes"]["family_name"] == "ŽAIKOVSKI"


async def test_no_nonce_asked_no_nonce_claim(client: httpx.AsyncClient) -> None:
    """Without a nonce in the request, the token has none."""
    response = await client.get(
        "/oidc/authorize",
        params={
            "client_id": CLIENT_ID,
            "redirect_uri": REDIRECT_URI,
            "response_type": "code",
            "scope": "openid",
            "state": STATE,
            "autologin": "38001085718",
        },
    )
    code = parse_qs(urlsplit(response.headers["location"]).query)["code"][0]
    claims = _verify(
        (await _token(client, code)).json()["id_token"], (await client.get("/oidc/jwks")).json()
    )
    assert "nonce" not in claims


# --- client authentication --------------------------------------------------------------------


async def test_basic_credentials_are_form_urlencoded_first(client: httpx.AsyncClient) -> None:
    """client_secret_basic decodes urlencoded id and secret (':', '%', '+', non-ASCII)."""
    code = await _code(client, client_id=ODD_CLIENT_ID)
    response = await _token(client, code, headers=_basic(ODD_CLIENT_ID, ODD_SECRET))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "headers",
    [
        _basic(CLIENT_ID, "wrong-secret-0123456789"),
        _basic("nobody", SECRET),
        _basic(CLIENT_ID, SECRET[:-1]),
        {"Authorization": "Basic not-base64!"},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        {"Authorization": "Bearer " + SECRET},
        {},
    ],
)
async def test_bad_client_credentials_are_invalid_client(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    """Wrong secret, unknown client, malformed or missing credentials give 401 invalid_client."""
    response = await _token(client, await _code(client), headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")


async def test_non_ascii_basic_credentials_are_invalid_client(client: httpx.AsyncClient) -> None:
    """Basic credentials that are not even ASCII give 401 invalid_client, not a 500."""
    data = {"grant_type": "authorization_code", "code": await _code(client)}
    response = await client.post(
        "/oidc/token",
        data={**data, "redirect_uri": REDIRECT_URI},
        headers=[(b"authorization", b"Basic \xc4\xc4")],
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_basic_client_may_not_use_client_secret_post(client: httpx.AsyncClient) -> None:
    """A client registered for client_secret_basic is refused with client_secret_post."""
    response = await _token(
        client, await _code(client), headers={}, client_id=CLIENT_ID, client_secret=SECRET
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_post_client_uses_client_secret_post(client: httpx.AsyncClient) -> None:
    """A client registered for client_secret_post gets tokens with credentials in the form."""
    code = await _code(client, client_id=POST_CLIENT_ID)
    response = await _token(
        client, code, headers={}, client_id=POST_CLIENT_ID, client_secret=POST_SECRET
    )
    assert response.status_code == 200, response.text


async def test_post_client_may_not_use_client_secret_basic(client: httpx.AsyncClient) -> None:
    """A client registered for client_secret_post is refused with client_secret_basic."""
    code = await _code(client, client_id=POST_CLIENT_ID)
    response = await _token(client, code, headers=_basic(POST_CLIENT_ID, POST_SECRET))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_two_authentication_methods_at_once_are_refused(client: httpx.AsyncClient) -> None:
    """Basic credentials plus client_secret in the body are refused."""
    response = await _token(client, await _code(client), client_secret=SECRET)
    assert response.status_code == 401


async def test_failed_client_authentication_keeps_the_code(client: httpx.AsyncClient) -> None:
    """A code is not consumed by a request whose client fails to authenticate."""
    code = await _code(client)
    assert (await _token(client, code, headers=_basic(CLIENT_ID, "x" * 20))).status_code == 401
    assert (await _token(client, code)).status_code == 200


# --- the code ----------------------------------------------------------------------------------


async def test_code_is_single_use(client: httpx.AsyncClient) -> None:
    """A code used once gives invalid_grant the second time."""
    code = await _code(client)
    assert (await _token(client, code)).status_code == 200
    second = await _token(client, code)
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"


async def test_code_lives_thirty_seconds(client: httpx.AsyncClient, clock: FakeClock) -> None:
    """A code is good 30 s after issue."""
    code = await _code(client)
    clock.now += 30
    assert (await _token(client, code)).status_code == 200


async def test_expired_code_is_invalid_grant(client: httpx.AsyncClient, clock: FakeClock) -> None:
    """A code older than 30 s gives invalid_grant."""
    code = await _code(client)
    clock.now += 31
    response = await _token(client, code)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_unknown_code_is_invalid_grant(client: httpx.AsyncClient) -> None:
    """A made-up code gives invalid_grant."""
    response = await _token(client, "made-up-code")
    assert response.json()["error"] == "invalid_grant"


async def test_redirect_uri_mismatch_is_invalid_grant_and_burns_the_code(
    client: httpx.AsyncClient,
) -> None:
    """A redirect_uri other than the authorization request's gives invalid_grant, once for all."""
    code = await _code(client)
    response = await _token(client, code, redirect_uri="https://rp.example/other")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert (await _token(client, code)).json()["error"] == "invalid_grant"


async def test_code_of_another_client_is_invalid_grant(client: httpx.AsyncClient) -> None:
    """A client cannot redeem another client's code."""
    code = await _code(client, client_id=ODD_CLIENT_ID)
    response = await _token(client, code)
    assert response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "refresh_token"}, "unsupported_grant_type"),
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
        ({"grant_type": ""}, "unsupported_grant_type"),
        ({"code": ""}, "invalid_request"),
        ({"redirect_uri": ""}, "invalid_request"),
    ],
)
async def test_bad_token_request_is_refused(
    client: httpx.AsyncClient, form: dict[str, str], error: str
) -> None:
    """Wrong grant_type or missing code or redirect_uri give the RFC 6749 error."""
    code = await _code(client)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    data.update(form)
    response = await client.post("/oidc/token", data=data, headers=_basic())
    assert response.status_code == 400
    assert response.json()["error"] == error


async def test_oversized_token_request_is_an_oauth_error(client: httpx.AsyncClient) -> None:
    """A form field over the parser's limit is a JSON invalid_request, as any bad request."""
    code = await _code(client)
    response = await client.post(
        "/oidc/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": "x" * 1_100_000},
        headers=_basic(),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_token_request_must_be_form_encoded(client: httpx.AsyncClient) -> None:
    """A JSON body is invalid_request."""
    code = await _code(client)
    response = await client.post(
        "/oidc/token",
        json={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI},
        headers=_basic(),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_token_endpoint_accepts_only_post(client: httpx.AsyncClient, method: str) -> None:
    """Other methods than POST give 405."""
    response = await client.request(method, "/oidc/token")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


# --- userinfo ----------------------------------------------------------------------------------


async def test_profile_answers_for_the_access_token(client: httpx.AsyncClient) -> None:
    """/oidc/profile returns the flattened profile for a bearer access token."""
    access_token = (await _token(client, await _code(client))).json()["access_token"]
    response = await client.get(
        "/oidc/profile", headers={"Authorization": f"Bearer {access_token}"}
    )
    assert response.status_code == 200
    info = response.json()
    assert info["sub"] == "EE38001085718"
    assert info["given_name"] == "JAAK-KRISTJAN"
    assert info["family_name"] == "JÕEORG"
    assert info["date_of_birth"] == "1980-01-08"
    assert info["amr"] == ["idcard"]


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, "invalid_request"),
        ({"Authorization": "Bearer AT-unknown"}, "invalid_token"),
        ({"Authorization": "Basic abc"}, "invalid_request"),
    ],
)
async def test_profile_without_a_valid_token_is_401(
    client: httpx.AsyncClient, headers: dict[str, str], error: str
) -> None:
    """A missing or unknown bearer token gives 401 with WWW-Authenticate."""
    response = await client.get("/oidc/profile", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == error
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_profile_refuses_an_expired_access_token(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """After expires_in seconds the access token no longer works."""
    access_token = (await _token(client, await _code(client))).json()["access_token"]
    clock.now += 601
    response = await client.get(
        "/oidc/profile", headers={"Authorization": f"Bearer {access_token}"}
    )
    assert response.status_code == 401


# --- discovery and keys ------------------------------------------------------------------------


async def test_both_discovery_paths_serve_the_same_document(client: httpx.AsyncClient) -> None:
    """/.well-known and /oidc/.well-known give the same TARA metadata."""
    first = (await client.get("/.well-known/openid-configuration")).json()
    legacy = (await client.get("/oidc/.well-known/openid-configuration")).json()
    assert first == legacy
    assert first["issuer"] == ISSUER
    assert first["authorization_endpoint"] == ISSUER + "/oidc/authorize"
    assert first["token_endpoint"] == ISSUER + "/oidc/token"
    assert first["userinfo_endpoint"] == ISSUER + "/oidc/profile"
    assert first["jwks_uri"] == ISSUER + "/oidc/jwks"
    assert first["response_types_supported"] == ["code"]
    assert first["grant_types_supported"] == ["authorization_code"]
    assert first["token_endpoint_auth_methods_supported"] == ["client_secret_basic"]
    assert first["id_token_signing_alg_values_supported"] == ["RS256"]
    assert first["ui_locales_supported"] == ["et", "en", "ru"]
    assert "phonenumber" in first["claims_supported"]
    assert "phonenumber_verified" in first["claims_supported"]


async def test_strict_discovery_spells_phone_number_right() -> None:
    """Strict discovery uses phone_number and lists both auth methods."""
    async with _client(_config(strict=True)) as client:
        document = (await client.get("/.well-known/openid-configuration")).json()
    assert "phone_number" in document["claims_supported"]
    assert "phonenumber" not in document["claims_supported"]
    assert "client_secret_post" in document["token_endpoint_auth_methods_supported"]


async def test_jwks_publishes_two_rsa_signing_keys(client: httpx.AsyncClient) -> None:
    """The JWKS has two RSA keys with use sig, alg RS256 and distinct kids, no private parts."""
    keys = (await client.get("/oidc/jwks")).json()["keys"]
    assert len(keys) == 2
    assert len({k["kid"] for k in keys}) == 2
    for key in keys:
        assert set(key) == {"kty", "use", "alg", "kid", "n", "e"}
        assert (key["kty"], key["use"], key["alg"]) == ("RSA", "sig", "RS256")


# --- misbehaviour ------------------------------------------------------------------------------


async def _claims_with(
    misbehaviour: Misbehaviour, **params: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    async with _client(_config(misbehaviour=misbehaviour)) as client:
        id_token = (await _token(client, await _code(client, **params))).json()["id_token"]
        jwks = (await client.get("/oidc/jwks")).json()
    return jwt.get_unverified_header(id_token), jwt.decode(
        id_token, options={"verify_signature": False}
    ) | {"_token": id_token, "_jwks": jwks}


async def test_wrong_nonce_switch() -> None:
    """wrong_nonce puts another nonce in the token."""
    _, claims = await _claims_with(Misbehaviour(wrong_nonce=True))
    assert claims["nonce"] != NONCE


async def test_wrong_audience_switch() -> None:
    """wrong_audience makes aud other than the client id."""
    _, claims = await _claims_with(Misbehaviour(wrong_audience=True))
    assert claims["aud"] != CLIENT_ID
    with pytest.raises(jwt.InvalidAudienceError):
        _verify(claims["_token"], claims["_jwks"])


async def test_wrong_issuer_switch() -> None:
    """wrong_issuer makes iss differ from the discovery issuer (a trailing slash)."""
    _, claims = await _claims_with(Misbehaviour(wrong_issuer=True))
    assert claims["iss"] == ISSUER + "/"
    with pytest.raises(jwt.InvalidIssuerError):
        _verify(claims["_token"], claims["_jwks"])


async def test_expired_token_switch() -> None:
    """expired_token issues a token that expired long ago."""
    _, claims = await _claims_with(Misbehaviour(expired_token=True))
    assert claims["exp"] < time.time() - 3000
    with pytest.raises(jwt.ExpiredSignatureError):
        _verify(claims["_token"], claims["_jwks"], verify_exp=True)


async def test_bad_signature_switch() -> None:
    """bad_signature keeps a published kid but the signature does not verify."""
    header, claims = await _claims_with(Misbehaviour(bad_signature=True))
    assert header["kid"] in {k["kid"] for k in claims["_jwks"]["keys"]}
    with pytest.raises(jwt.InvalidSignatureError):
        _verify(claims["_token"], claims["_jwks"])


async def test_unknown_kid_switch() -> None:
    """unknown_kid signs under a kid that the JWKS does not have."""
    header, claims = await _claims_with(Misbehaviour(unknown_kid=True))
    assert header["kid"] not in {k["kid"] for k in claims["_jwks"]["keys"]}


@pytest.mark.parametrize(("asked", "given"), [("high", "substantial"), ("substantial", "low")])
async def test_low_acr_switch(asked: str, given: str) -> None:
    """low_acr reports one level below the one asked for."""
    _, claims = await _claims_with(Misbehaviour(low_acr=True), acr_values=asked)
    assert claims["acr"] == given


async def test_fail_token_endpoint_switch_keeps_the_code() -> None:
    """fail_token_endpoint answers 500; the code still works once the switch is off."""
    async with _client(_config()) as client:
        code = await _code(client)
        await client.post("/mock/config", json={"fail_token_endpoint": True})
        failed = await _token(client, code)
        await client.post("/mock/config", json={"fail_token_endpoint": False})
        succeeded = await _token(client, code)
    assert failed.status_code == 500
    assert failed.json()["error"] == "server_error"
    assert succeeded.status_code == 200


@pytest.mark.parametrize("status", [302, 404, 429, 503])
async def test_token_endpoint_status_switch(status: int) -> None:
    """token_endpoint_status answers that status with a body that is not JSON."""
    async with _client(_config()) as client:
        code = await _code(client)
        await client.post("/mock/config", json={"token_endpoint_status": status})
        response = await _token(client, code)
    assert response.status_code == status
    with pytest.raises(json.JSONDecodeError):
        response.json()


async def test_token_endpoint_status_switch_refuses_a_success_status() -> None:
    """A success status is not a misbehaviour: the control API refuses it."""
    async with _client(_config()) as client:
        response = await client.post("/mock/config", json={"token_endpoint_status": 200})
    assert response.status_code == 400


async def test_garbled_token_response_switch() -> None:
    """garbled_token_response answers 200 with a body that is not JSON."""
    async with _client(_config()) as client:
        code = await _code(client)
        await client.post("/mock/config", json={"garbled_token_response": True})
        response = await _token(client, code)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


async def test_slow_token_endpoint_switch() -> None:
    """slow_token_endpoint_seconds delays the token answer."""
    misbehaviour = Misbehaviour(slow_token_endpoint_seconds=0.3)
    async with _client(_config(misbehaviour=misbehaviour)) as client:
        code = await _code(client)
        started = time.monotonic()
        response = await _token(client, code)
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 200


# --- control API -------------------------------------------------------------------------------


async def test_control_api_is_off_by_default() -> None:
    """Without control_api the /mock/* paths do not exist."""
    async with _client(_config(control_api=False)) as client:
        assert (await client.get("/mock/config")).status_code == 404
        assert (await client.post("/mock/config", json={"low_acr": True})).status_code == 404
        assert (await client.post("/mock/rotate", json={})).status_code == 404


async def test_control_api_flips_switches_at_run_time(client: httpx.AsyncClient) -> None:
    """POST /mock/config changes a switch; later tokens misbehave; reset restores."""
    response = await client.post("/mock/config", json={"wrong_nonce": True})
    assert response.status_code == 200
    assert response.json()["misbehaviour"]["wrong_nonce"] is True
    id_token = (await _token(client, await _code(client))).json()["id_token"]
    assert jwt.decode(id_token, options={"verify_signature": False})["nonce"] != NONCE
    reset = await client.post("/mock/reset", json={})
    assert reset.json()["misbehaviour"]["wrong_nonce"] is False
    assert (await client.get("/mock/config")).json()["misbehaviour"]["wrong_nonce"] is False


@pytest.mark.parametrize(
    "body",
    [
        {"no_such_switch": True},
        {"low_acr": "yes"},
        {"slow_token_endpoint_seconds": -1},
        {"slow_token_endpoint_seconds": "1"},
    ],
)
async def test_control_api_refuses_bad_switches(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    """Unknown switches and wrong types are refused with 400 and nothing changes."""
    before = (await client.get("/mock/config")).json()
    response = await client.post("/mock/config", json=body)
    assert response.status_code == 400
    assert response.json()["problems"]
    assert (await client.get("/mock/config")).json() == before


async def test_control_api_wants_json(client: httpx.AsyncClient) -> None:
    """A form post to /mock/config (as a cross-site page could send) is refused."""
    response = await client.post("/mock/config", data={"low_acr": "true"})
    assert response.status_code == 415
    bad = await client.post(
        "/mock/config", content=b"[1]", headers={"content-type": "application/json"}
    )
    assert bad.status_code == 400


@pytest.mark.parametrize("path", ["/mock/config", "/mock/rotate"])
async def test_control_api_refuses_json_nested_too_deep(
    client: httpx.AsyncClient, path: str
) -> None:
    """A body nested deeper than the JSON parser can go is a 400, not a 500."""
    before = (await client.get("/mock/config")).json()
    response = await client.post(
        path, content=b"[" * 16_000, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert (await client.get("/mock/config")).json() == before


@pytest.mark.parametrize("path", ["/mock/config", "/mock/rotate"])  # /mock/reset reads none
async def test_a_control_body_over_16_kib_is_413_json_and_changes_nothing(
    client: httpx.AsyncClient, path: str
) -> None:
    """A /mock/* body over 16 KiB is refused (413, a JSON error) before it is read,
    whether its length is declared or it arrives in chunks; the switches stay."""
    before = (await client.get("/mock/config")).json()
    padded = b'{"low_acr": true, "x": "' + b"A" * (16 * 1024) + b'"}'

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        yield b'{"low_acr": true, "x": "'
        for _ in range(64):
            yield b"A" * 1024

    json_type = {"content-type": "application/json"}
    for body in (padded, chunks()):
        response = await client.post(path, content=body, headers=json_type)
        assert response.status_code == 413, response.text
        assert response.json() == {"error": "the body has at most 16384 bytes"}
    assert (await client.get("/mock/config")).json() == before


async def test_control_token_guards_the_control_api() -> None:
    """With control_token set, /mock/* needs the bearer token."""
    config = _config(control_token=SecretStr(CONTROL_TOKEN))
    async with _client(config) as client:
        assert (await client.get("/mock/config")).status_code == 401
        wrong = {"Authorization": "Bearer " + "x" * 24}
        assert (await client.get("/mock/config", headers=wrong)).status_code == 401
        right = {"Authorization": "Bearer " + CONTROL_TOKEN}
        assert (await client.get("/mock/config", headers=right)).status_code == 200


@asynccontextmanager
async def _client_from(config: MockConfig, peer: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(config), client=(peer, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.mark.parametrize("peer", ["203.0.113.7", "10.0.0.2", "::ffff:192.0.2.1", "2001:db8::1"])
async def test_without_a_token_the_control_api_answers_only_loopback(peer: str) -> None:
    """No control_token: a client that is not on loopback gets 403 and changes nothing."""
    async with _client_from(_config(), peer) as client:
        for response in (
            await client.get("/mock/config"),
            await client.post("/mock/config", json={"low_acr": True}),
            await client.post("/mock/reset", json={}),
            await client.post("/mock/rotate", json={}),
        ):
            assert response.status_code == 403, response.text
            assert "KROONIKA_MOCK_TARA_CONTROL_TOKEN" in response.json()["error_description"]


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
async def test_without_a_token_loopback_clients_use_the_control_api(peer: str) -> None:
    """No control_token: loopback clients (IPv4, IPv6, IPv4-mapped) may flip switches."""
    async with _client_from(_config(), peer) as client:
        response = await client.post("/mock/config", json={"low_acr": True})
        assert response.status_code == 200, response.text
        assert response.json()["misbehaviour"]["low_acr"] is True


async def test_a_refused_remote_switch_changes_nothing() -> None:
    """A remote POST /mock/config without a token leaves the switches as they were."""
    app = create_app(_config())
    remote = httpx.ASGITransport(app=app, client=("198.51.100.4", 40000))
    local = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=remote, base_url="http://testserver") as outside,
        httpx.AsyncClient(transport=local, base_url="http://testserver") as inside,
    ):
        assert (
            await outside.post("/mock/config", json={"fail_token_endpoint": True})
        ).status_code == 403
        assert (await inside.get("/mock/config")).json()["misbehaviour"][
            "fail_token_endpoint"
        ] is False


async def test_with_a_token_remote_clients_use_the_control_api() -> None:
    """With control_token set, the bearer token, not the address, decides."""
    config = _config(control_token=SecretStr(CONTROL_TOKEN))
    async with _client_from(config, "203.0.113.7") as client:
        right = {"Authorization": "Bearer " + CONTROL_TOKEN}
        assert (await client.get("/mock/config", headers=right)).status_code == 200
        assert (await client.get("/mock/config")).status_code == 401


@pytest.mark.parametrize("token", [None, CONTROL_TOKEN])
async def test_the_control_api_refuses_what_a_web_page_sends(token: str | None) -> None:
    """A request with an Origin header (a browser page, e.g. after DNS rebinding to
    127.0.0.1) is refused, 403, token or not; the switches do not change."""
    config = _config(control_token=None if token is None else SecretStr(token))
    headers = {} if token is None else {"Authorization": "Bearer " + token}
    async with _client(config) as client:
        for origin in ("http://attacker.example", "http://127.0.0.1:8001", "null"):
            response = await client.post(
                "/mock/config", json={"low_acr": True}, headers={**headers, "Origin": origin}
            )
            assert response.status_code == 403, response.text
        shown = await client.get("/mock/config", headers=headers)
        assert shown.json()["misbehaviour"]["low_acr"] is False


async def test_control_api_refusals_never_show_the_token() -> None:
    """A wrong token, a remote peer or an Origin: no answer carries the configured token."""
    config = _config(control_token=SecretStr(CONTROL_TOKEN))
    async with _client_from(config, "203.0.113.7") as client:
        answers = [
            await client.get(
                "/mock/config", headers={"Authorization": "Bearer wrong-token-000000"}
            ),
            await client.get("/mock/config", headers={"Origin": "http://x.example"}),
        ]
    for answer in answers:
        assert CONTROL_TOKEN not in answer.text
        assert CONTROL_TOKEN not in str(answer.headers)


async def test_rotation_switches_the_signing_key(client: httpx.AsyncClient) -> None:
    """POST /mock/rotate signs with the other published key."""
    before = (await client.get("/mock/config")).json()
    first = (await _token(client, await _code(client))).json()["id_token"]
    rotated = (await client.post("/mock/rotate", json={})).json()
    second = (await _token(client, await _code(client))).json()["id_token"]
    assert rotated["signing_kid"] != before["signing_kid"]
    assert rotated["kids"] == before["kids"]
    assert jwt.get_unverified_header(first)["kid"] == before["signing_kid"]
    assert jwt.get_unverified_header(second)["kid"] == rotated["signing_kid"]
    jwks = (await client.get("/oidc/jwks")).json()
    _verify(first, jwks)
    _verify(second, jwks)


async def test_rotation_to_a_new_key_publishes_it(client: httpx.AsyncClient) -> None:
    """rotate with new_key replaces the idle key by a fresh one, published and signing."""
    before = (await client.get("/mock/config")).json()
    rotated = (await client.post("/mock/rotate", json={"new_key": True})).json()
    assert rotated["signing_kid"] not in before["kids"]
    assert before["signing_kid"] in rotated["kids"]
    published = {k["kid"] for k in (await client.get("/oidc/jwks")).json()["keys"]}
    assert published == set(rotated["kids"])
    token = (await _token(client, await _code(client))).json()["id_token"]
    _verify(token, (await client.get("/oidc/jwks")).json())


async def test_configured_signing_key_is_used() -> None:
    """signing_key=1 makes the second key sign from the start."""
    async with _client(_config(signing_key=1)) as client:
        state = (await client.get("/mock/config")).json()
    assert state["signing_kid"] == state["kids"][1]


# --- no secrets in logs ------------------------------------------------------------------------


async def test_secrets_codes_and_tokens_never_reach_the_log(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A full flow with failures logs neither the client secret, the code nor any token."""
    caplog.set_level(logging.DEBUG)
    code = await _code(client)
    await _token(client, code, headers=_basic(CLIENT_ID, "wrong-secret-0123456789"))
    body = (await _token(client, code)).json()
    await _token(client, code)
    await client.get("/oidc/profile", headers={"Authorization": f"Bearer {body['access_token']}"})
    text = caplog.text + json.dumps([r.args for r in caplog.records], default=str)
    assert caplog.records
    for secret in (SECRET, "wrong-secret-0123456789", code, body["access_token"], body["id_token"]):
        assert secret not in text


async def test_token_request_from_an_unregistered_address_is_unauthorized_client() -> None:
    """A client limited to some networks gets 400 unauthorized_client from elsewhere."""
    limited = RegisteredClient(
        client_id="limited",
        secret=SecretStr(SECRET),
        redirect_uris=(REDIRECT_URI,),
        token_request_networks=("192.0.2.0/24",),
    )
    config = _config(clients=(limited,))
    transport = httpx.ASGITransport(app=create_app(config), client=("198.51.100.7", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await _token(
            client, await _code(client, client_id="limited"), headers=_basic("limited", SECRET)
        )
    assert response.status_code == 400
    assert response.json()["error"] == "unauthorized_client"


async def test_token_request_from_a_registered_network_is_accepted() -> None:
    """A client limited to some networks gets tokens from inside them."""
    limited = RegisteredClient(
        client_id="limited",
        secret=SecretStr(SECRET),
        redirect_uris=(REDIRECT_URI,),
        token_request_networks=("192.0.2.0/24", "2001:db8::1"),
    )
    config = _config(clients=(limited,))
    transport = httpx.ASGITransport(app=create_app(config), client=("192.0.2.10", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await _token(
            client, await _code(client, client_id="limited"), headers=_basic("limited", SECRET)
        )
    assert response.status_code == 200
