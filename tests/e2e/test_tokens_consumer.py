"""What a resource server meets when it consumes Kroonika's tokens, over real HTTP with
third-party libraries: discovery and a cacheable JWKS (PyJWT's ``PyJWKClient``, joserfc,
authlib's RFC 9068 validator fetching the real endpoints), key rotation with overlap and
retirement, RFC 7662 introspection and RFC 7009 revocation as a client sees them, and
forged headers (``alg: none``, HS256 with the public key, a kid pointing nowhere,
``jku``/``x5u``/``jwk``). Every refusal leaves its event, and no token value reaches
the trail or a log line."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from authlib.oauth2.rfc6750 import InvalidTokenError
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oauth2.rfc9068 import JWTBearerTokenValidator
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt as jose_jwt
from joserfc.errors import InvalidClaimError
from joserfc.jwk import KeySet
from login_harness import (
    LogLines,
    Stack,
    basic_auth,
    register_client,
    running_stack,
    watching_logs,
)

from kroonika.db import make_engine
from kroonika.tokens import (
    Clock,
    FixedClock,
    NewClient,
    SigningKeyRing,
    SystemClock,
    TokenComponents,
)

SEEN_TOKENS: list[str] = []
SEEN_SECRETS: list[str] = []
OVERRIDES = {"token_client_scrypt_n": 2**10}


LOGS = LogLines()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("tokens-consumer")
    with watching_logs(LOGS), running_stack(tmp, settings_overrides=OVERRIDES) as s:
        yield s


def _register(stack: Stack, name: str, **kw: Any) -> NewClient:
    return register_client(stack, name, SEEN_SECRETS, **kw)


def _mint(stack: Stack, c: NewClient, **body: Any) -> str:
    body.setdefault("subject", "user-1")
    r = httpx.post(stack.service + "/tokens", json=body, headers=basic_auth(c))
    assert r.status_code == 201, r.text
    token: str = r.json()["access_token"]
    SEEN_TOKENS.append(token)
    return token


def _comps(stack: Stack) -> TokenComponents:
    comps: TokenComponents = stack.app.state.tokens
    return comps


def _metadata(stack: Stack) -> dict[str, Any]:
    meta: dict[str, Any] = httpx.get(stack.service + "/.well-known/openid-configuration").json()
    return meta


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _validate(stack: Stack, c: NewClient, token: str, **body: Any) -> httpx.Response:
    return httpx.post(
        stack.service + "/tokens/validate", json={"token": token, **body}, headers=basic_auth(c)
    )


def _introspect(stack: Stack, c: NewClient, token: str, **form: str) -> httpx.Response:
    return httpx.post(
        stack.service + "/introspect", data={"token": token, **form}, headers=basic_auth(c)
    )


def _event(stack: Stack, r: httpx.Response, etype: str) -> dict[str, Any]:
    """The one event of ``etype`` the request left."""
    (ev,) = stack.events(types=(etype,), correlation=r.headers["x-request-id"])
    return ev


def _signed_by_us(stack: Stack, **claims: Any) -> str:
    """A token signed with the service's current key that the service never minted (or
    minted with other claims): what a key's holder could make, not a client."""
    key = _comps(stack).keys.current()
    now = int(time.time())
    payload = {
        "iss": stack.service,
        "aud": "svc-a",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": secrets.token_urlsafe(16),
        **claims,
    }
    token = jwt.encode(payload, key.private, algorithm=key.alg, headers={"kid": key.kid})
    SEEN_TOKENS.append(token)
    return token


# --- discovery and keys ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/.well-known/jwks.json", "/.well-known/openid-configuration"])
def test_well_known_documents_are_cacheable_with_an_etag(stack: Stack, path: str) -> None:
    """The JWKS and the metadata carry Cache-Control and an ETag; a conditional request
    with that ETag is a 304 without a body, with another one a full answer."""
    first = httpx.get(stack.service + path)
    etag = first.headers.get("etag")
    assert etag is not None
    assert etag.startswith('"')
    assert etag.endswith('"')
    assert first.headers["cache-control"].startswith("public, max-age=")
    again = httpx.get(stack.service + path, headers={"if-none-match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == first.headers["cache-control"]
    listed = httpx.get(stack.service + path, headers={"if-none-match": f'"x", {etag}'})
    assert listed.status_code == 304
    other = httpx.get(stack.service + path, headers={"if-none-match": '"not-it"'})
    assert other.status_code == 200
    assert other.json() == first.json()


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ],
)
def test_well_known_documents_answer_head_like_get(stack: Stack, path: str) -> None:
    """RFC 9110 section 9.3.2: HEAD is GET without the body (it was 405): the same
    status, ETag, Cache-Control, type and length, and a matching If-None-Match is 304."""
    got = httpx.get(stack.service + path)
    head = httpx.head(stack.service + path)
    assert head.status_code == 200
    assert head.content == b""
    for name in ("etag", "cache-control", "content-type", "content-length"):
        assert head.headers[name] == got.headers[name], name
    again = httpx.head(stack.service + path, headers={"if-none-match": got.headers["etag"]})
    assert again.status_code == 304
    assert again.headers["etag"] == got.headers["etag"]


# OpenID Connect Discovery 1.0 members about ID tokens, the UserInfo endpoint and the
# OpenID Provider's login: Kroonika issues no ID tokens and is no OpenID Provider.
OIDC_PROVIDER_MEMBERS = {
    "id_token_signing_alg_values_supported",
    "id_token_encryption_alg_values_supported",
    "subject_types_supported",
    "userinfo_endpoint",
    "authorization_endpoint",
    "claims_supported",
    "acr_values_supported",
}


@pytest.mark.parametrize(
    "path", ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"]
)
def test_metadata_claims_only_what_kroonika_does(stack: Stack, path: str) -> None:
    """The metadata is RFC 8414 authorization server metadata at both paths (section 5:
    the openid-configuration name refers to general OAuth features there): its required
    members are present and pass authlib's RFC 8414 checks, and nothing claims ID
    tokens or an OpenID Provider (``id_token_signing_alg_values_supported`` did)."""
    meta: dict[str, Any] = httpx.get(stack.service + path).json()
    assert meta["issuer"] == stack.service
    assert meta["response_types_supported"] == []  # REQUIRED; no authorization endpoint
    # the RFC 6749 token endpoint's one grant (omitted would mean code and implicit)
    assert meta["grant_types_supported"] == ["client_credentials"]
    assert not OIDC_PROVIDER_MEMBERS & set(meta)
    checked = AuthorizationServerMetadata(meta)
    for name in dir(checked):
        # the issuer is http on loopback (RFC 8414 wants https); authlib takes the
        # required, empty response_types_supported for a missing one
        if name.startswith("validate_") and name not in {
            "validate_issuer",
            "validate_response_types_supported",
        }:
            getattr(checked, name)()
    assert meta == _metadata(stack)  # one document, whichever path


def test_pyjwt_jwks_client_validates_our_tokens(stack: Stack) -> None:
    """From the metadata alone, PyJWT's JWKS client finds the key by the token's kid and
    the token verifies with the algorithm pinned, for its audience only."""
    c = _register(stack, "pyjwt")
    token = _mint(stack, c, audience="svc-a")
    header = jwt.get_unverified_header(token)
    assert header["kid"]
    assert header["alg"] == "ES256"
    assert header["typ"] == "JWT"
    meta = _metadata(stack)
    key = jwt.PyJWKClient(meta["jwks_uri"], cache_keys=False).get_signing_key_from_jwt(token)
    options = {"require": ["iss", "aud", "exp", "nbf", "iat", "jti"]}
    claims = jwt.decode(
        token,
        key.key,
        algorithms=meta["token_signing_alg_values_supported"],
        audience="svc-a",
        issuer=meta["issuer"],
        options=options,  # type: ignore[arg-type]
        leeway=0,
    )
    assert claims["sub"] == "user-1"
    assert claims["client_id"] == c.client.client_id
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(
            token,
            key.key,
            algorithms=["ES256"],
            audience="svc-b",
            issuer=meta["issuer"],
            options=options,  # type: ignore[arg-type]
        )


def test_joserfc_validates_our_tokens_from_the_jwks(stack: Stack) -> None:
    """joserfc with the fetched key set and its claims registry: the token verifies for
    its issuer and audience; another audience is refused."""
    c = _register(stack, "joserfc")
    token = _mint(stack, c, audience="svc-a")
    meta = _metadata(stack)
    keys = KeySet.import_key_set(httpx.get(meta["jwks_uri"]).json())
    decoded = jose_jwt.decode(token, keys, algorithms=["ES256"])
    essential = {"essential": True}
    jose_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": meta["issuer"]},
        aud={"essential": True, "value": "svc-a"},
        exp=essential,
        iat=essential,
        jti=essential,
    ).validate(decoded.claims)
    with pytest.raises(InvalidClaimError):
        jose_jwt.JWTClaimsRegistry(aud={"essential": True, "value": "svc-b"}).validate(
            decoded.claims
        )


class _Rfc9068(JWTBearerTokenValidator):  # type: ignore[misc]
    """authlib's RFC 9068 resource-server validator, its key set fetched from the real
    ``jwks_uri`` found through the metadata."""

    def __init__(self, metadata: dict[str, Any], resource_server: str) -> None:
        super().__init__(issuer=metadata["issuer"], resource_server=resource_server)
        self.jwks_uri = metadata["jwks_uri"]

    def get_jwks(self) -> KeySet:
        return KeySet.import_key_set(httpx.get(self.jwks_uri).json())

    def check(self, token: str) -> dict[str, Any]:
        claims = self.authenticate_token(token)
        self.validate_token(claims, scopes=None, request=None)
        return dict(claims)


def test_the_session_token_passes_authlibs_rfc9068_validator(stack: Stack) -> None:
    """The session access token says ``typ: at+jwt``, so it must be an RFC 9068 token:
    authlib's validator accepts it for the session audience (it lacked ``client_id``)
    and refuses it for another resource server."""
    with stack.browser() as b:
        b.get(stack.service + "/auth/login?method=idcard&return_to=/")
        token = b.cookies.get("kroonika_at")
    assert token
    SEEN_TOKENS.append(token)
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
    meta = _metadata(stack)
    claims = _Rfc9068(meta, "kroonika").check(token)
    assert claims["client_id"] == meta["issuer"]
    assert claims["sub"] == "EE38001085718"
    with pytest.raises(InvalidTokenError):
        _Rfc9068(meta, "svc-b").check(token)


def _rotate_at_once(stack: Stack, ring: SigningKeyRing) -> None:
    """An emergency rotation (the new key signs at once) with ``ring``, possibly in the
    second the newest key was activated: the key activated later signs all the same."""
    ring.rotate(immediate=True)
    _comps(stack).keys.refresh()  # what every instance does within reload_s


@contextmanager
def _ring(stack: Stack, clock: Clock, **kw: Any) -> Iterator[SigningKeyRing]:
    """A key ring of another process (the CLI, a job, another instance) on the stack's
    database."""
    settings = stack.settings
    engine = make_engine(settings.resolved_database_url())
    try:
        yield SigningKeyRing(engine, settings.secret_bytes("master_key"), clock=clock, **kw)
    finally:
        engine.dispose()


def test_rotation_overlap_then_retirement(tmp_path: Path) -> None:
    """After a rotation both keys are published: a token of the previous key still
    verifies (JWKS, validate, introspect) during the overlap. Once the previous key is
    retired it leaves the JWKS and its tokens are refused everywhere, audited. The JWKS
    is cached for no longer than the publish lead."""
    overrides = {**OVERRIDES, "token_key_publish_lead_s": 120}
    with running_stack(tmp_path, settings_overrides=overrides) as stack:
        c = _register(stack, "rotation")
        old = _mint(stack, c)
        old_kid = jwt.get_unverified_header(old)["kid"]
        before = httpx.get(stack.service + "/.well-known/jwks.json")
        assert before.headers["cache-control"] == "public, max-age=120"
        _rotate_at_once(stack, _comps(stack).keys)
        new = _mint(stack, c)
        new_kid = jwt.get_unverified_header(new)["kid"]
        assert new_kid != old_kid
        during = httpx.get(stack.service + "/.well-known/jwks.json")
        assert during.headers["etag"] != before.headers["etag"]
        assert {k["kid"] for k in during.json()["keys"]} == {old_kid, new_kid}
        client = jwt.PyJWKClient(stack.service + "/.well-known/jwks.json", cache_keys=False)
        for token in (old, new):
            key = client.get_signing_key_from_jwt(token)
            jwt.decode(token, key.key, algorithms=["ES256"], audience="svc-a")
            assert _validate(stack, c, token).json()["valid"] is True
            assert _introspect(stack, c, token).json()["active"] is True

        # the retirement job, run once the old key's last token has expired
        with _ring(stack, FixedClock(int(time.time()) + 10 * 86_400)) as ring:
            assert ring.retire_expired() == [old_kid]
        _comps(stack).keys.refresh()  # what every instance does within reload_s

        after = httpx.get(stack.service + "/.well-known/jwks.json").json()
        assert [k["kid"] for k in after["keys"]] == [new_kid]
        fresh = jwt.PyJWKClient(stack.service + "/.well-known/jwks.json", cache_keys=False)
        with pytest.raises(jwt.PyJWKClientError):
            fresh.get_signing_key_from_jwt(old)
        v = _validate(stack, c, old)
        assert v.json() == {"valid": False, "reason": "unknown_key"}
        assert _event(stack, v, "token.validate")["reason"] == "unknown_key"
        i = _introspect(stack, c, old)
        assert i.json() == {"active": False}
        assert _event(stack, i, "token.introspect")["reason"] == "unknown_key"
        assert _validate(stack, c, new).json()["valid"] is True
        trail = b"\n".join(stack.raw_events())
        for token in (old, new):
            assert token.rsplit(".", 1)[1].encode() not in trail


def test_metadata_names_the_algorithm_of_every_published_key(tmp_path: Path) -> None:
    """An instance configured for ES256 while an RS256 key signs (a rolling change of
    ``KROONIKA_TOKEN_ALG``, or the overlap after it): the metadata lists both
    algorithms, so a consumer that pins the advertised ones accepts both tokens."""
    with running_stack(tmp_path, settings_overrides=OVERRIDES) as stack:
        c = _register(stack, "algorithms")
        es = _mint(stack, c)
        with _ring(stack, SystemClock(), alg="RS256", rsa_bits=2048) as ring:
            _rotate_at_once(stack, ring)
        rs = _mint(stack, c)
        assert [jwt.get_unverified_header(t)["alg"] for t in (es, rs)] == ["ES256", "RS256"]
        meta = _metadata(stack)
        assert meta["token_signing_alg_values_supported"] == ["ES256", "RS256"]
        client = jwt.PyJWKClient(meta["jwks_uri"], cache_keys=False)
        for token in (es, rs):
            key = client.get_signing_key_from_jwt(token).key
            algorithms = meta["token_signing_alg_values_supported"]
            jwt.decode(token, key, algorithms=algorithms, audience="svc-a", issuer=stack.service)


# --- introspection and revocation ------------------------------------------------------


def _forged(stack: Stack, good: str) -> dict[str, tuple[str, str]]:
    """Refused tokens and the reason validation gives each: header tricks on a real
    token's claims, and tokens signed by our own key that must still fail."""
    claims = jwt.decode(good, options={"verify_signature": False})
    kid = jwt.get_unverified_header(good)["kid"]
    body = good.split(".")[1]
    jwk = httpx.get(stack.service + "/.well-known/jwks.json").json()["keys"][0]
    pem = jwt.PyJWK(jwk).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_input = _b64(json.dumps({"alg": "HS256", "kid": kid, "typ": "JWT"}).encode()) + "." + body
    hs = hs_input + "." + _b64(hmac.new(pem, hs_input.encode(), hashlib.sha256).digest())
    theirs = ec.generate_private_key(ec.SECP256R1())
    their_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(theirs.public_key()))

    def signed(headers: dict[str, Any]) -> str:
        return jwt.encode(claims, theirs, algorithm="ES256", headers=headers)

    now = int(time.time())
    out = {
        "alg_none": (
            _b64(json.dumps({"alg": "none", "kid": kid, "typ": "JWT"}).encode()) + "." + body + ".",
            "bad_signature",
        ),
        "hs256_with_public_key": (hs, "bad_signature"),
        "kid_pointing_nowhere": (signed({"kid": "nowhere"}), "unknown_key"),
        "jku_own_kid": (signed({"kid": "theirs", "jku": "http://127.0.0.1:9/jwks"}), "unknown_key"),
        "jku_our_kid": (signed({"kid": kid, "jku": "http://127.0.0.1:9/jwks"}), "bad_signature"),
        "x5u": (signed({"kid": "theirs", "x5u": "http://127.0.0.1:9/cert.pem"}), "unknown_key"),
        "embedded_jwk": (signed({"kid": kid, "jwk": their_jwk}), "bad_signature"),
        "no_kid": (signed({}), "unknown_key"),
        "malformed": ("not.a-token", "malformed"),
        "expired": (_signed_by_us(stack, iat=now - 900, nbf=now - 900, exp=now - 600), "expired"),
        "not_yet_valid": (_signed_by_us(stack, nbf=now + 600), "not_yet_valid"),
        "wrong_issuer": (_signed_by_us(stack, iss="https://elsewhere.example"), "wrong_issuer"),
        "unknown_to_the_store": (_signed_by_us(stack), "unknown_token"),
    }
    for token, _ in out.values():
        SEEN_TOKENS.append(token)
    return out


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token", "id_token"])
def test_introspection_answers_only_active_false_for_anything_invalid(
    stack: Stack, hint: str | None
) -> None:
    """RFC 7662 section 2.2: every invalid, expired, revoked, unknown, malformed or
    forged token is exactly ``{"active": false}`` (JSON, no-store), whatever the hint;
    validation names the reason, and each refusal is on the trail with it."""
    c = _register(stack, "introspect-inactive")
    good = _mint(stack, c)
    revoked = _mint(stack, c)
    assert httpx.post(
        stack.service + "/revoke", data={"token": revoked}, headers=basic_auth(c)
    ).is_success
    cases = {**_forged(stack, good), "revoked": (revoked, "revoked")}
    form = {"token_type_hint": hint} if hint else {}
    for name, (token, reason) in cases.items():
        i = _introspect(stack, c, token, **form)
        assert i.status_code == 200, name
        assert i.headers["content-type"] == "application/json", name
        assert i.headers["cache-control"] == "no-store", name
        assert i.json() == {"active": False}, name
        ev = _event(stack, i, "token.introspect")
        assert (ev["outcome"], ev["reason"]) == ("failure", reason), name
        v = _validate(stack, c, token)
        assert v.json()["valid"] is False, name
        assert v.json()["reason"] == reason, name
        assert _event(stack, v, "token.validate")["reason"] == reason, name
    active = _introspect(stack, c, good, **form).json()
    assert active["active"] is True
    assert active["token_type"] == "Bearer"
    assert {"iss", "aud", "exp", "iat", "nbf", "jti", "client_id", "sub"} <= set(active)


def test_a_token_for_service_a_fails_at_service_b(stack: Stack) -> None:
    """Audience: validation for audience svc-b refuses a svc-a token, and service B's
    introspection (allowed audience svc-b only) sees it inactive."""
    a = _register(stack, "service-a", allowed_audiences=["svc-a"])
    b = _register(stack, "service-b", allowed_audiences=["svc-b"])
    token = _mint(stack, a, audience="svc-a")
    assert _validate(stack, a, token, audience="svc-b").json()["reason"] == "wrong_audience"
    assert _validate(stack, a, token, audience="svc-a").json()["valid"] is True
    i = _introspect(stack, b, token)
    assert i.json() == {"active": False}
    assert _event(stack, i, "token.introspect")["reason"] == "not_for_caller"


@pytest.mark.parametrize("path", ["/introspect", "/revoke"])
def test_failed_client_authentication_is_an_rfc6749_401(stack: Stack, path: str) -> None:
    """RFC 6749 section 5.2 and RFC 9110 section 15.5.2: no credentials, a wrong Basic
    secret and a wrong ``client_secret_post`` secret are each 401 ``invalid_client``
    with a ``WWW-Authenticate`` challenge, JSON with exactly ``error`` and
    ``error_description``, and an audited refusal."""
    c = _register(stack, "bad-auth")
    token = _mint(stack, c)
    cid = c.client.client_id
    wrong = base64.b64encode(f"{cid}:wrong".encode()).decode()
    attempts = {
        "none": ({"token": token}, {}),
        "basic": ({"token": token}, {"authorization": "Basic " + wrong}),
        "post": ({"token": token, "client_id": cid, "client_secret": "wrong"}, {}),
    }
    etype = "token.introspect" if path == "/introspect" else "token.revoke"
    for name, (form, headers) in attempts.items():
        r = httpx.post(stack.service + path, data=form, headers=headers)
        assert r.status_code == 401, name
        assert r.headers["www-authenticate"].startswith("Basic "), name
        assert r.headers["content-type"] == "application/json", name
        assert r.headers["cache-control"] == "no-store", name
        body = r.json()
        assert set(body) == {"error", "error_description"}, name
        assert body["error"] == "invalid_client", name
        ev = _event(stack, r, etype)
        assert (ev["outcome"], ev["reason"]) == ("failure", "invalid_client"), name
    good = httpx.post(
        stack.service + path,
        data={"token": token, "client_id": cid, "client_secret": c.secret},
    )
    assert good.status_code == 200


# Every route that authenticates a client, its body kind and the event it leaves.
CLIENT_AUTH_ROUTES = {
    "/introspect": ("form", "token.introspect"),
    "/revoke": ("form", "token.revoke"),
    "/tokens": ("json", "token.issue"),
    "/tokens/validate": ("json", "token.validate"),
    "/tokens/extend": ("json", "token.extend"),
    "/tokens/bulk/validate": ("json", "token.validate"),
    "/tokens/bulk/revoke": ("json", "token.revoke"),
    "/tokens/bulk/issue": ("json", "token.issue"),
}


def _body_for(path: str, token: str, subject: str) -> dict[str, Any]:
    """A body the route would accept from its client."""
    if path == "/tokens":
        return {"subject": subject}
    if path == "/tokens/bulk/issue":
        return {"items": [{"subject": subject}]}
    if path == "/tokens/bulk/validate":
        return {"tokens": [token]}
    if path == "/tokens/bulk/revoke":
        jti = jwt.decode(token, options={"verify_signature": False})["jti"]
        return {"items": [{"jti": jti}]}
    return {"token": token}


@pytest.mark.parametrize("path", sorted(CLIENT_AUTH_ROUTES))
@pytest.mark.parametrize("extra", ["same_id", "other_id", "secret", "id_and_secret"])
def test_basic_and_credentials_in_the_body_are_refused(stack: Stack, path: str, extra: str) -> None:
    """RFC 6749 section 2.3: a client MUST NOT use more than one authentication method
    per request. HTTP Basic plus ``client_id`` and/or ``client_secret`` in the body
    (the form, or the JSON object of the JSON routes) is 400 ``invalid_request`` in the
    section 5.2 shape, whether the ids agree or not; the request does nothing and its
    refusal is audited under the claimed client."""
    c = _register(stack, "two-methods")
    other = _register(stack, "two-methods-other")
    subject = "two-methods-" + secrets.token_hex(4)  # under the per-person mint limit
    token = _mint(stack, c, subject=subject)
    cid = c.client.client_id
    fields = {
        "same_id": {"client_id": cid},
        "other_id": {"client_id": other.client.client_id},
        "secret": {"client_secret": c.secret},
        "id_and_secret": {"client_id": cid, "client_secret": c.secret},
    }[extra]
    kind, etype = CLIENT_AUTH_ROUTES[path]
    body = {**_body_for(path, token, subject), **fields}
    if kind == "form":
        r = httpx.post(stack.service + path, data=body, headers=basic_auth(c))
    else:
        r = httpx.post(stack.service + path, json=body, headers=basic_auth(c))
    assert r.status_code == 400, r.text
    assert r.json() == {
        "error": "invalid_request",
        "error_description": "more than one client authentication method",
    }
    assert "www-authenticate" not in r.headers
    assert r.headers["cache-control"] == "no-store"
    ev = _event(stack, r, etype)
    assert (ev["outcome"], ev["reason"]) == ("failure", "multiple_auth_methods")
    assert ev["actor"]["client_id"] == cid
    assert _introspect(stack, c, token).json()["active"] is True  # nothing was done
    assert [e["type"] for e in stack.events(correlation=r.headers["x-request-id"])] == [etype]


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token"])
def test_revoking_an_unknown_or_invalid_token_answers_200(stack: Stack, hint: str | None) -> None:
    """RFC 7009 section 2.2: an unknown, forged or malformed token is a 200 (audited),
    and so is a second revocation of the same token."""
    c = _register(stack, "revoke-unknown")
    good = _mint(stack, c)
    form = {"token_type_hint": hint} if hint else {}
    tokens = [t for t, _ in _forged(stack, good).values()] + [good, good]
    for token in tokens:
        r = httpx.post(
            stack.service + "/revoke", data={"token": token, **form}, headers=basic_auth(c)
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"
        assert _event(stack, r, "token.revoke")["outcome"] in ("success", "failure")
    assert _introspect(stack, c, good).json() == {"active": False}


def test_jti_is_unique_and_every_header_names_its_key(stack: Stack) -> None:
    """A bulk of tokens: every jti differs and every header has the published kid."""
    c = _register(stack, "jti")
    r = httpx.post(
        stack.service + "/tokens/bulk/issue",
        json={"items": [{"subject": "u"}] * 50},
        headers=basic_auth(c),
    )
    tokens = [item["token"] for item in r.json()["results"]]
    SEEN_TOKENS.extend(tokens)
    published = {
        k["kid"] for k in httpx.get(stack.service + "/.well-known/jwks.json").json()["keys"]
    }
    assert len(tokens) == 50
    assert len({jwt.decode(t, options={"verify_signature": False})["jti"] for t in tokens}) == 50
    assert {jwt.get_unverified_header(t)["kid"] for t in tokens} <= published


def test_zz_no_token_value_in_the_trail_or_the_logs(stack: Stack) -> None:
    """No token value (nor its signature) seen in this module, refused ones included, and
    no client secret is in any stored event or log line (its own traffic, plus whatever
    ran before it: the order is random)."""
    c = _register(stack, "sweep")
    good = _mint(stack, c)
    for token, _ in _forged(stack, good).values():
        _introspect(stack, c, token)
        _validate(stack, c, token)
    httpx.post(stack.service + "/revoke", data={"token": good}, headers=basic_auth(c))
    _introspect(stack, c, good)
    trail = b"\n".join(stack.raw_events())
    assert b"token.introspect" in trail
    logs = "\n".join(LOGS.lines)
    assert "/introspect" in logs  # the access log was watched
    for token in SEEN_TOKENS:
        assert token.encode() not in trail
        assert token not in logs
        signature = token.rsplit(".", 1)[1]
        if signature:
            assert signature.encode() not in trail
            assert signature not in logs
    for secret in SEEN_SECRETS:
        assert secret.encode() not in trail
        assert secret not in logs
