"""The token endpoints read against the RFCs a relying service reads, over real HTTP:
RFC 7009 section 2.2 (what revocation answers and records for each kind of token),
RFC 8414 (a token endpoint that an OAuth client library can use as advertised),
RFC 7662 (inactive is exactly ``{"active": false}``, hints never fail), RFC 6749
sections 3.1 and 5.2 (parameters and JSON members named once; errors with the 5.2
members only, ``no-store`` and ``no-cache``)."""

from __future__ import annotations

import secrets
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from authlib.deprecate import AuthlibDeprecationWarning
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from login_harness import Stack, basic_auth, register_client, running_stack

from kroonika.tokens import NewClient, TokenComponents, TokenRecord

with warnings.catch_warnings():
    # authlib 1.6 warns on importing its httpx integration (it points to a package this
    # project does not install); the client itself is what relying services use today
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client

SEEN_SECRETS: list[str] = []


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("tokens-rfc")
    with running_stack(tmp, settings_overrides={"token_client_scrypt_n": 2**10}) as s:
        yield s


def _register(stack: Stack, name: str, **kw: Any) -> NewClient:
    return register_client(stack, name, SEEN_SECRETS, **kw)


def _comps(stack: Stack) -> TokenComponents:
    comps: TokenComponents = stack.app.state.tokens
    return comps


def _mint(stack: Stack, c: NewClient) -> str:
    r = httpx.post(stack.service + "/tokens", json={"subject": "u-1"}, headers=basic_auth(c))
    assert r.status_code == 201, r.text
    token: str = r.json()["access_token"]
    return token


def _event(stack: Stack, r: httpx.Response, etype: str) -> dict[str, Any]:
    (ev,) = stack.events(types=(etype,), correlation=r.headers["x-request-id"])
    return ev


def _signed_by_us(stack: Stack, c: NewClient | None, *, exp_in: int = 300) -> str:
    """A token signed with the service's key; with ``c``, also on record as minted by
    ``c`` (so a token can be made that expired a while ago)."""
    comps = _comps(stack)
    key = comps.keys.current()
    now = int(time.time())
    jti = secrets.token_urlsafe(16)
    claims = {
        "iss": stack.service,
        "aud": "svc-a",
        "sub": "u-1",
        "iat": now - 3600,
        "nbf": now - 3600,
        "exp": now + exp_in,
        "jti": jti,
    }
    if c is not None:
        claims["client_id"] = c.client.client_id
        comps.service.store.insert(
            [
                TokenRecord(
                    jti=jti,
                    kid=key.kid,
                    alg=key.alg,
                    token_type="custom",
                    subject="u-1",
                    client_id=c.client.client_id,
                    audience=("svc-a",),
                    session_ref=None,
                    claim_names=tuple(sorted(claims)),
                    iat=now - 3600,
                    exp=now + exp_in,
                    state="active",
                    version=1,
                )
            ]
        )
    return jwt.encode(claims, key.private, algorithm=key.alg, headers={"kid": key.kid})


def _revoke(stack: Stack, c: NewClient, token: str, **form: str) -> httpx.Response:
    return httpx.post(
        stack.service + "/revoke", data={"token": token, **form}, headers=basic_auth(c)
    )


def _assert_no_store(r: httpx.Response) -> None:
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["pragma"] == "no-cache"


# --- RFC 7009 -------------------------------------------------------------------------------


def test_revocation_answers_200_and_records_what_each_token_was(stack: Stack) -> None:
    """RFC 7009 section 2.2: 200 for a token that is revoked now, already revoked,
    expired, unknown, forged or malformed; the trail tells them apart: a revocation that
    changed something is a success, one of a token no longer active a success that
    changed nothing (``not_active``), and a token that is not one of ours a failure
    with its reason (someone holds a token Kroonika never issued)."""
    c = _register(stack, "rfc7009-cases")
    good = _mint(stack, c)
    again = _mint(stack, c)
    assert _revoke(stack, c, again).status_code == 200
    forged = good.rsplit(".", 1)[0] + ".AAAA"
    cases = {
        "active": (good, "success", None, 1),
        "already_revoked": (again, "success", "not_active", 0),
        "expired": (_signed_by_us(stack, c, exp_in=-3600), "success", "not_active", 0),
        "unknown": (_signed_by_us(stack, None), "failure", "unknown_token", 0),
        "forged": (forged, "failure", "bad_signature", 0),
        "malformed": ("not-a-token", "failure", "malformed", 0),
    }
    for name, (token, outcome, reason, count) in cases.items():
        r = _revoke(stack, c, token)
        assert r.status_code == 200, name
        _assert_no_store(r)
        ev = _event(stack, r, "token.revoke")
        assert (ev["outcome"], ev.get("reason"), ev["details"]["count"]) == (
            outcome,
            reason,
            count,
        ), name
    expired_jti = jwt.decode(cases["expired"][0], options={"verify_signature": False})["jti"]
    record = _comps(stack).service.store.get(expired_jti)
    assert record is not None
    assert record.state != "revoked"  # an expired token is not revoked after the fact


def test_revocation_within_the_leeway_still_revokes(stack: Stack) -> None:
    """A token past its ``exp`` but within the validation leeway is still accepted by
    validation, so revoking it must revoke it."""
    c = _register(stack, "rfc7009-leeway")
    token = _signed_by_us(stack, c, exp_in=-5)
    before = httpx.post(
        stack.service + "/tokens/validate", json={"token": token}, headers=basic_auth(c)
    )
    assert before.json()["valid"] is True
    r = _revoke(stack, c, token)
    assert _event(stack, r, "token.revoke")["details"]["count"] == 1
    after = httpx.post(
        stack.service + "/tokens/validate", json={"token": token}, headers=basic_auth(c)
    )
    assert after.json()["reason"] == "revoked"


@pytest.mark.parametrize("hint", ["access_token", "refresh_token", "id_token", "x" * 300])
def test_any_revocation_hint_revokes(stack: Stack, hint: str) -> None:
    """RFC 7009 section 2.2: a hint is never an error: no ``unsupported_token_type``
    (every token here is an access token, which can be revoked)."""
    c = _register(stack, "rfc7009-hint")
    token = _mint(stack, c)
    r = _revoke(stack, c, token, token_type_hint=hint)
    assert r.status_code == 200
    assert _event(stack, r, "token.revoke")["details"]["count"] == 1


def test_revoking_another_clients_token_is_unauthorized_client(stack: Stack) -> None:
    """RFC 7009 section 2.1: the server checks the token was issued to the caller and
    refuses otherwise (RFC 6749 ``unauthorized_client``, 400); nothing is revoked."""
    owner = _register(stack, "rfc7009-owner", allowed_audiences=["svc-a"])
    other = _register(stack, "rfc7009-other", allowed_audiences=["svc-b"])
    token = _mint(stack, owner)
    r = _revoke(stack, other, token)
    assert r.status_code == 400
    _assert_no_store(r)
    assert r.json()["error"] == "unauthorized_client"
    assert set(r.json()) == {"error", "error_description"}
    ev = _event(stack, r, "token.revoke")
    assert (ev["outcome"], ev["reason"]) == ("failure", "not_owner")
    assert _revoke(stack, owner, token).status_code == 200


# --- RFC 8414: a token endpoint a client library can use ----------------------------------


def _metadata(stack: Stack) -> dict[str, Any]:
    meta: dict[str, Any] = httpx.get(
        stack.service + "/.well-known/oauth-authorization-server"
    ).json()
    return meta


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_authlib_gets_a_token_from_the_advertised_token_endpoint(stack: Stack, method: str) -> None:
    """RFC 8414 ``token_endpoint`` is the RFC 6749 token endpoint: authlib's OAuth 2.0
    client, told only the metadata, gets an access token with the client credentials
    grant (section 4.4) with each advertised authentication method, and the token is
    active at the advertised introspection endpoint."""
    meta = _metadata(stack)
    assert "client_credentials" in meta["grant_types_supported"]
    assert method in meta["token_endpoint_auth_methods_supported"]
    c = _register(stack, "rfc6749-cc-" + method)
    with OAuth2Client(c.client.client_id, c.secret, token_endpoint_auth_method=method) as oauth:
        token = oauth.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] > 0
    assert "refresh_token" not in token  # section 4.4.3
    i = httpx.post(
        meta["introspection_endpoint"],
        data={"token": token["access_token"]},
        headers=basic_auth(c),
    ).json()
    assert i["active"] is True
    assert i["client_id"] == c.client.client_id
    assert "sub" not in i


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({}, 400, "invalid_request"),
        (
            {"grant_type": "password", "username": "u", "password": "p"},
            400,
            "unsupported_grant_type",
        ),
        ({"grant_type": "authorization_code", "code": "c"}, 400, "unsupported_grant_type"),
        ({"grant_type": "client_credentials", "scope": "admin"}, 400, "invalid_scope"),
    ],
)
def test_token_endpoint_refuses_what_it_does_not_grant(
    stack: Stack, form: dict[str, str], status: int, error: str
) -> None:
    """RFC 6749 section 5.2: a form token request that is not the client credentials
    grant gets its error code, JSON with the 5.2 members only, no-store, audited."""
    c = _register(stack, "rfc6749-refused")
    r = httpx.post(stack.service + "/tokens", data=form, headers=basic_auth(c))
    assert r.status_code == status, r.text
    _assert_no_store(r)
    assert r.json()["error"] == error
    assert set(r.json()) == {"error", "error_description"}
    ev = _event(stack, r, "token.issue")
    assert ev["outcome"] == "failure"
    assert ev["actor"]["client_id"] == c.client.client_id


def test_metadata_members_are_registered_or_say_why_not(stack: Stack) -> None:
    """RFC 8414 section 2: every member is an IANA-registered authorization server
    metadata name, except ``token_signing_alg_values_supported``, for which no
    registered name exists (``token_endpoint_auth_signing_alg_values_supported`` is
    about client assertions, which Kroonika does not take); authlib's checks pass."""
    meta = _metadata(stack)
    registered = {
        "issuer",
        "jwks_uri",
        "token_endpoint",
        "token_endpoint_auth_methods_supported",
        "introspection_endpoint",
        "introspection_endpoint_auth_methods_supported",
        "revocation_endpoint",
        "revocation_endpoint_auth_methods_supported",
        "response_types_supported",
        "grant_types_supported",
    }
    assert set(meta) - registered == {"token_signing_alg_values_supported"}
    assert "token_endpoint_auth_signing_alg_values_supported" not in meta
    assert meta["token_endpoint"] == stack.service + "/tokens"
    checked = AuthorizationServerMetadata(meta)
    for name in dir(checked):
        if name.startswith("validate_") and name not in {
            "validate_issuer",  # http on loopback
            "validate_response_types_supported",  # authlib takes [] for missing
        }:
            getattr(checked, name)()


# --- RFC 7662 -------------------------------------------------------------------------------


@pytest.mark.parametrize("hint", ["access_token", "refresh_token", "no_such_hint", "é" * 10])
def test_introspection_hint_never_fails(stack: Stack, hint: str) -> None:
    """RFC 7662 section 2.1: the hint only helps the search; an unknown one must not
    fail the request. A foreign token is exactly ``{"active": false}`` whatever hint."""
    c = _register(stack, "rfc7662-hint", allowed_audiences=["svc-a"])
    stranger = _register(stack, "rfc7662-stranger", allowed_audiences=["svc-z"])
    token = _mint(stack, c)
    mine = httpx.post(
        stack.service + "/introspect",
        data={"token": token, "token_type_hint": hint},
        headers=basic_auth(c),
    )
    assert mine.status_code == 200
    _assert_no_store(mine)
    assert mine.json()["active"] is True
    theirs = httpx.post(
        stack.service + "/introspect",
        data={"token": token, "token_type_hint": hint},
        headers=basic_auth(stranger),
    )
    assert theirs.json() == {"active": False}
    assert _event(stack, theirs, "token.introspect")["reason"] == "not_for_caller"


# --- RFC 6749 3.1: parameters once; JSON member names once ---------------------------------


@pytest.mark.parametrize("path", ["/introspect", "/revoke", "/tokens"])
def test_a_repeated_form_parameter_is_invalid_request(stack: Stack, path: str) -> None:
    """RFC 6749 section 3.1: "parameters MUST NOT be included more than once": two
    ``token`` (or ``grant_type``) values are refused, not resolved by taking one."""
    c = _register(stack, "rfc6749-repeat")
    token = _mint(stack, c)
    name, value = ("grant_type", "client_credentials") if path == "/tokens" else ("token", token)
    r = httpx.post(
        stack.service + path,
        content=f"{name}={value}&{name}={value}".encode(),
        headers={**basic_auth(c), "content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 400, r.text
    _assert_no_store(r)
    assert r.json() == {
        "error": "invalid_request",
        "error_description": f"a request parameter is repeated ({name})",
    }
    etype = {"/introspect": "token.introspect", "/revoke": "token.revoke"}.get(path, "token.issue")
    ev = _event(stack, r, etype)
    assert (ev["outcome"], ev["reason"]) == ("failure", "invalid_request")
    assert (
        httpx.post(
            stack.service + "/introspect", data={"token": token}, headers=basic_auth(c)
        ).json()["active"]
        is True
    )


def test_a_repeated_client_secret_is_no_credential(stack: Stack) -> None:
    """Two ``client_secret`` values, the right one among them, authenticate nobody."""
    c = _register(stack, "rfc6749-repeat-secret")
    token = _mint(stack, c)
    cid = c.client.client_id
    r = httpx.post(
        stack.service + "/introspect",
        content=(
            f"token={token}&client_id={cid}&client_secret=wrong&client_secret={c.secret}"
        ).encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    "body",
    [
        b'{"subject": "a", "subject": "b"}',
        b'{"subject": "a", "claims": {"role": "r", "role": "admin"}}',
        b'{"items": [{"subject": "a", "ttl_s": 60, "ttl_s": 3600}]}',
    ],
)
@pytest.mark.parametrize("path", ["/tokens", "/tokens/bulk/issue"])
def test_a_repeated_json_member_name_is_invalid_request(
    stack: Stack, path: str, body: bytes
) -> None:
    """RFC 8259 section 4 leaves a repeated name to each parser (first or last value):
    a JSON body naming a member twice, at any depth, is refused and audited."""
    c = _register(stack, "json-repeat", allowed_claims=["role"])
    r = httpx.post(
        stack.service + path,
        content=body,
        headers={**basic_auth(c), "content-type": "application/json"},
    )
    assert r.status_code == 400, r.status_code  # no r.text: it could hold tokens
    _assert_no_store(r)
    assert r.json() == {
        "error": "invalid_request",
        "error_description": "the body must not repeat a member name in an object",
    }
    ev = _event(stack, r, "token.issue")
    assert (ev["outcome"], ev["reason"]) == ("failure", "invalid_request")


def test_basic_with_a_repeated_client_id_in_json_is_refused(stack: Stack) -> None:
    """A JSON body that repeats ``client_id`` next to HTTP Basic is refused: the
    credential check and the route read the same, single parse of the body."""
    c = _register(stack, "json-repeat-auth")
    cid = c.client.client_id
    r = httpx.post(
        stack.service + "/tokens",
        content=f'{{"subject": "a", "client_id": "{cid}", "client_id": "x"}}'.encode(),
        headers={**basic_auth(c), "content-type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


# --- RFC 6749 5.2: error shape and headers -------------------------------------------------


def test_token_route_errors_have_the_section_5_2_shape_and_no_cache(stack: Stack) -> None:
    """Every refusal of a token route is JSON with ``error`` and ``error_description``
    only, ``Cache-Control: no-store`` and ``Pragma: no-cache``."""
    c = _register(stack, "rfc6749-errors")
    bad = {"authorization": "Basic " + "eDp5"}  # x:y
    attempts = [
        httpx.post(stack.service + "/tokens", json={"subject": "a"}, headers=bad),
        httpx.post(stack.service + "/tokens", json={"subject": 1}, headers=basic_auth(c)),
        httpx.post(stack.service + "/tokens/validate", json={}, headers=basic_auth(c)),
        httpx.post(stack.service + "/tokens/extend", json={}, headers=basic_auth(c)),
        httpx.post(stack.service + "/introspect", data={}, headers=basic_auth(c)),
        httpx.post(stack.service + "/revoke", data={}, headers=basic_auth(c)),
        httpx.post(stack.service + "/revoke", data={"token": "x"}, headers=bad),
        httpx.post(stack.service + "/tokens/bulk/validate", json={}, headers=basic_auth(c)),
    ]
    for r in attempts:
        assert r.status_code in (400, 401), r.request.url
        _assert_no_store(r)
        assert set(r.json()) == {"error", "error_description"}, r.request.url
