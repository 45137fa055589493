"""End to end over real HTTP: the TARA mock under uvicorn on loopback, driven by Authlib.

A standard OpenID Connect client (Authlib's OAuth2Client for the code flow, Authlib's
CodeIDToken on joserfc for the ID token) logs in, fetching discovery and the JWKS over HTTP.
In strict mode every standard check passes, at_hash included; with TARA's quirks on, only the
padded at_hash differs from the standard and is checked the TARA way instead.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import secrets
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from authlib.oidc.core import CodeIDToken
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt as jose_jwt
from joserfc.errors import BadSignatureError, InvalidClaimError
from joserfc.jwk import KeySet
from pydantic import SecretStr

from kroonika.tara.mock import MockConfig, RegisteredClient, create_app

with warnings.catch_warnings():
    # Authlib 1.9 warns once, at import, that plain httpx (rather than httpx2) is deprecated.
    warnings.filterwarnings(
        "ignore", message="The httpx module is deprecated", category=DeprecationWarning
    )
    from authlib.integrations.httpx_client import OAuth2Client

CLIENT_ID = "kroonika-e2e"
# Authlib 1.9 puts id:secret into Basic without form-urlencoding them first (RFC 6749 section
# 2.3.1 and TARA.md say to), so this secret keeps to unreserved characters, where both agree.
# The urlencoded form is tested in test_mock_token.py.
SECRET = "e2e-secret_0123456789.~"
REDIRECT_URI = "http://127.0.0.1:9/auth/tara/callback"  # never contacted: we read Location
LEEWAY = 5


@functools.cache
def _keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    return (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


@contextmanager
def _running_mock(*, strict: bool) -> Iterator[str]:
    """Serve a fresh mock on a free loopback port in a thread; yield its issuer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    issuer = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = MockConfig(
        issuer=issuer,
        clients=(
            RegisteredClient(
                client_id=CLIENT_ID,
                secret=SecretStr(SECRET),
                redirect_uris=(REDIRECT_URI,),
                allowed_scopes=frozenset({"openid", "idcard", "mid", "smartid", "phone"}),
            ),
        ),
        strict=strict,
        keys=_keys(),
        control_api=True,
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), lifespan="off", log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30  # a bound for a loaded machine, 10 s was tight
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the mock did not start")
            time.sleep(0.01)
        yield issuer
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def strict_issuer() -> Iterator[str]:
    with _running_mock(strict=True) as issuer:
        yield issuer


@pytest.fixture
def quirks_issuer() -> Iterator[str]:
    with _running_mock(strict=False) as issuer:
        yield issuer


@dataclass
class Login:
    """What a relying party holds after the code exchange."""

    metadata: dict[str, Any]
    token: dict[str, Any]
    nonce: str
    state: str


def _login(
    issuer: str,
    oauth: OAuth2Client,
    browser: httpx.Client,
    scope: str = "openid idcard",
    **extra: str,
) -> Login:
    """Discovery, authorize in the 'browser' (autologin), then the back-channel code exchange."""
    metadata = browser.get(issuer + "/.well-known/openid-configuration").raise_for_status().json()
    assert metadata["issuer"] == issuer
    nonce = secrets.token_urlsafe(16)
    url, state = oauth.create_authorization_url(
        metadata["authorization_endpoint"], scope=scope, nonce=nonce, **extra
    )
    redirect = browser.get(url)
    assert redirect.status_code == 302, redirect.text
    callback = redirect.headers["location"]
    assert callback.startswith(REDIRECT_URI + "?")
    token = oauth.fetch_token(metadata["token_endpoint"], authorization_response=callback)
    return Login(metadata=metadata, token=dict(token), nonce=nonce, state=state)


def _id_token(login: Login, jwks: dict[str, Any], *, check_at_hash: bool) -> CodeIDToken:
    """Verify signature by kid, then iss, aud, exp, iat, nonce and (optionally) at_hash."""
    decoded = jose_jwt.decode(
        login.token["id_token"], KeySet.import_key_set(jwks), algorithms=["RS256"]
    )
    params: dict[str, Any] = {"nonce": login.nonce, "client_id": CLIENT_ID}
    if check_at_hash:
        params["access_token"] = login.token["access_token"]
    claims = CodeIDToken(
        decoded.claims,
        decoded.header,
        options={
            "iss": {"essential": True, "value": login.metadata["issuer"]},
            "aud": {"essential": True, "value": CLIENT_ID},
            "exp": {"essential": True},
            "iat": {"essential": True},
        },
        params=params,
    )
    claims.validate(now=int(time.time()), leeway=LEEWAY)
    return claims


@contextmanager
def _clients() -> Iterator[tuple[OAuth2Client, httpx.Client]]:
    with (
        OAuth2Client(
            client_id=CLIENT_ID,
            client_secret=SECRET,
            redirect_uri=REDIRECT_URI,
            token_endpoint_auth_method="client_secret_basic",
        ) as oauth,
        httpx.Client(follow_redirects=False, timeout=10) as browser,
    ):
        yield oauth, browser


def test_strict_mock_passes_standard_oidc_validation(strict_issuer: str) -> None:
    """In strict mode a standard OIDC client validates everything, at_hash included."""
    with _clients() as (oauth, browser):
        login = _login(strict_issuer, oauth, browser, autologin="38001085718")
        jwks = browser.get(login.metadata["jwks_uri"]).raise_for_status().json()
        claims = _id_token(login, jwks, check_at_hash=True)
        userinfo = oauth.get(login.metadata["userinfo_endpoint"]).raise_for_status().json()
    assert claims["sub"] == "EE38001085718"
    assert claims["aud"] == [CLIENT_ID]
    assert claims["amr"] == ["idcard"]
    assert claims["profile_attributes"]["family_name"] == "JÕEORG"
    assert login.token["token_type"] == "bearer"
    assert userinfo["sub"] == claims["sub"]


def test_quirks_mode_passes_with_at_hash_checked_the_tara_way(quirks_issuer: str) -> None:
    """With quirks on, everything but at_hash validates; at_hash is TARA's padded base64."""
    with _clients() as (oauth, browser):
        login = _login(
            quirks_issuer, oauth, browser, scope="openid mid phone", autologin="60001019906"
        )
        jwks = browser.get(login.metadata["jwks_uri"]).raise_for_status().json()
        claims = _id_token(login, jwks, check_at_hash=False)
        with pytest.raises(InvalidClaimError, match="at_hash"):
            _id_token(login, jwks, check_at_hash=True)
    half = hashlib.sha256(login.token["access_token"].encode("ascii")).digest()[:16]
    assert claims["at_hash"] == base64.b64encode(half).decode("ascii")
    assert claims["aud"] == CLIENT_ID
    assert claims["nbf"] == claims["iat"]
    assert claims["exp"] == claims["iat"] + 40
    assert claims["state"] == login.state
    assert claims["phone_number"] == "+37200000766"
    assert claims["phone_number_verified"] is True
    assert "phonenumber" in login.metadata["claims_supported"]


def test_login_page_over_http(strict_issuer: str) -> None:
    """A browser fills in the login page and the client validates the result."""
    with _clients() as (oauth, browser):
        metadata = browser.get(strict_issuer + "/oidc/.well-known/openid-configuration").json()
        nonce = secrets.token_urlsafe(16)
        url, state = oauth.create_authorization_url(
            metadata["authorization_endpoint"], scope="openid smartid", nonce=nonce
        )
        page = browser.get(url)
        assert page.status_code == 200
        marker = 'name="tx" value="'
        start = page.text.index(marker) + len(marker)
        tx = page.text[start : page.text.index('"', start)]
        redirect = browser.post(
            strict_issuer + "/oidc/login", data={"tx": tx, "identity": "40404040009"}
        )
        token = oauth.fetch_token(
            metadata["token_endpoint"], authorization_response=redirect.headers["location"]
        )
        login = Login(metadata=metadata, token=dict(token), nonce=nonce, state=state)
        claims = _id_token(login, browser.get(metadata["jwks_uri"]).json(), check_at_hash=True)
    assert claims["sub"] == "EE40404040009"
    assert claims["amr"] == ["smartid"]


def test_key_rotation_is_seen_through_a_jwks_refetch(strict_issuer: str) -> None:
    """After rotating to a new key, a cached JWKS lacks the kid; one re-fetch finds it."""
    with _clients() as (oauth, browser):
        first = _login(strict_issuer, oauth, browser, autologin="38001085718")
        cached = browser.get(first.metadata["jwks_uri"]).json()
        _id_token(first, cached, check_at_hash=True)
        browser.post(strict_issuer + "/mock/rotate", json={"new_key": True}).raise_for_status()
        second = _login(strict_issuer, oauth, browser, autologin="38001085718")
        kid = jwt.get_unverified_header(second.token["id_token"])["kid"]
        assert kid not in {k["kid"] for k in cached["keys"]}
        refreshed = browser.get(first.metadata["jwks_uri"]).json()
        assert _id_token(second, refreshed, check_at_hash=True)["sub"] == "EE38001085718"


def test_switches_flipped_over_http_break_validation(strict_issuer: str) -> None:
    """/mock/config on the running server makes the standard checks fail as intended."""
    with _clients() as (oauth, browser):
        browser.post(strict_issuer + "/mock/config", json={"wrong_nonce": True})
        login = _login(strict_issuer, oauth, browser, autologin="38001085718")
        jwks = browser.get(login.metadata["jwks_uri"]).json()
        with pytest.raises(InvalidClaimError, match="nonce"):
            _id_token(login, jwks, check_at_hash=True)
        browser.post(
            strict_issuer + "/mock/config", json={"wrong_nonce": False, "bad_signature": True}
        )
        login = _login(strict_issuer, oauth, browser, autologin="38001085718")
        with pytest.raises(BadSignatureError):
            _id_token(login, jwks, check_at_hash=True)
