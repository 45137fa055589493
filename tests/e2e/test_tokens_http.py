"""Tokens end to end over real HTTP: the service under uvicorn on loopback (with the
TARA mock for the login), every token endpoint, and the trail searched for secrets."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from login_harness import Stack, basic_auth, register_client, running_stack

from kroonika.tokens import NewClient


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("tokens-e2e")
    with running_stack(tmp, settings_overrides={"token_client_scrypt_n": 2**10}) as s:
        yield s


SEEN_TOKENS: list[str] = []
SEEN_SECRETS: list[str] = []


def _register(stack: Stack, name: str, **kw: Any) -> NewClient:
    kw.setdefault("allowed_claims", ["role"])
    return register_client(stack, name, SEEN_SECRETS, **kw)


_basic = basic_auth


def _mint(stack: Stack, c: NewClient, **body: Any) -> dict[str, Any]:
    body.setdefault("subject", "user-1")
    r = httpx.post(stack.service + "/tokens", json=body, headers=_basic(c))
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    SEEN_TOKENS.append(out["access_token"])
    return out


def test_jwks_and_metadata(stack: Stack) -> None:
    """The metadata names the endpoints and a minted token verifies against the JWKS."""
    meta = httpx.get(stack.service + "/.well-known/openid-configuration").json()
    assert meta["issuer"] == stack.service
    assert meta["introspection_endpoint"] == stack.service + "/introspect"
    assert meta["revocation_endpoint"] == stack.service + "/revoke"
    jwks = httpx.get(meta["jwks_uri"]).json()
    c = _register(stack, "jwks")
    token = _mint(stack, c)["access_token"]
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(jwt.PyJWK(k) for k in jwks["keys"] if k["kid"] == kid)
    claims = jwt.decode(
        token,
        key.key,
        algorithms=["ES256"],
        audience="svc-a",
        issuer=stack.service,
        options={"require": ["exp", "iat", "jti"]},
    )
    assert claims["sub"] == "user-1"


def test_mint_requires_client_and_refuses_reserved(stack: Stack) -> None:
    """Minting needs client authentication and never accepts reserved claims."""
    assert httpx.post(stack.service + "/tokens", json={}).status_code == 401
    c = _register(stack, "reserved", allowed_claims=["role", "exp"])
    r = httpx.post(
        stack.service + "/tokens", json={"subject": "s", "claims": {"exp": 1}}, headers=_basic(c)
    )
    assert r.status_code == 400
    assert "reserved_claim" in r.json()["error_description"]


def test_validate_introspect_extend_revoke_round_trip(stack: Stack) -> None:
    """validate → introspect → extend → revoke → introspect, each over HTTP."""
    c = _register(stack, "rt")
    token = _mint(stack, c, ttl_s=300)["access_token"]
    v = httpx.post(stack.service + "/tokens/validate", json={"token": token}, headers=_basic(c))
    assert v.json()["valid"] is True
    bad = httpx.post(stack.service + "/tokens/validate", json={"token": "x.y.z"}, headers=_basic(c))
    assert bad.json() == {"valid": False, "reason": "malformed"}
    i = httpx.post(stack.service + "/introspect", data={"token": token}, headers=_basic(c))
    assert i.json()["active"] is True
    assert i.headers["cache-control"] == "no-store"
    assert httpx.post(stack.service + "/introspect", data={"token": token}).status_code == 401
    e = httpx.post(stack.service + "/tokens/extend", json={"token": token}, headers=_basic(c))
    assert e.status_code == 200, e.text
    new = e.json()["access_token"]
    SEEN_TOKENS.append(new)
    old = httpx.post(stack.service + "/introspect", data={"token": token}, headers=_basic(c))
    assert old.json() == {"active": False}
    r = httpx.post(stack.service + "/revoke", data={"token": new}, headers=_basic(c))
    assert r.status_code == 200
    after = httpx.post(stack.service + "/introspect", data={"token": new}, headers=_basic(c))
    assert after.json() == {"active": False}
    unknown = httpx.post(stack.service + "/revoke", data={"token": "junk"}, headers=_basic(c))
    assert unknown.status_code == 200


def test_validate_answers_a_stranger_only_not_for_caller(stack: Stack) -> None:
    """Over HTTP a client the token is neither from nor for gets exactly
    ``not_for_caller``, before and after the owner revokes it (no oracle)."""
    owner = _register(stack, "owner-v")
    stranger = _register(stack, "stranger-v", allowed_audiences=["svc-z"])
    token = _mint(stack, owner)["access_token"]
    for _ in ("active", "revoked"):
        r = httpx.post(
            stack.service + "/tokens/validate", json={"token": token}, headers=_basic(stranger)
        )
        assert r.status_code == 200
        assert r.json() == {"valid": False, "reason": "not_for_caller"}
        httpx.post(stack.service + "/revoke", data={"token": token}, headers=_basic(owner))
    mine = httpx.post(
        stack.service + "/tokens/validate", json={"token": token}, headers=_basic(owner)
    )
    assert mine.json()["reason"] == "revoked"


def test_forged_token_cannot_revoke_over_http(stack: Stack) -> None:
    """A forged token carrying the victim's jti answers 200 and revokes nothing."""
    from cryptography.hazmat.primitives.asymmetric import ec

    victim = _register(stack, "victim")
    attacker = _register(stack, "attacker")
    token = _mint(stack, victim)["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    kid = jwt.get_unverified_header(token)["kid"]
    forged = jwt.encode(
        claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": kid}
    )
    r = httpx.post(stack.service + "/revoke", data={"token": forged}, headers=_basic(attacker))
    assert r.status_code == 200
    i = httpx.post(stack.service + "/introspect", data={"token": token}, headers=_basic(victim))
    assert i.json()["active"] is True


def test_concurrent_http_extensions_one_wins(stack: Stack) -> None:
    """Six simultaneous HTTP extensions of one token: exactly one 200."""
    c = _register(stack, "race")
    token = _mint(stack, c)["access_token"]

    def extend(_: int) -> int:
        r = httpx.post(
            stack.service + "/tokens/extend", json={"token": token}, headers=_basic(c), timeout=30
        )
        if r.status_code == 200:
            SEEN_TOKENS.append(r.json()["access_token"])
        return r.status_code

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(extend, range(6)))
    assert codes.count(200) == 1
    assert all(code in (400, 409) for code in codes if code != 200)


def test_bulk_endpoints_mixed(stack: Stack) -> None:
    """Bulk issue, validate and revoke report per item by jti, with a summary."""
    c = _register(stack, "bulk")
    r = httpx.post(
        stack.service + "/tokens/bulk/issue",
        json={"items": [{"subject": "a"}, {"subject": "b", "claims": {"jti": "x"}}]},
        headers=_basic(c),
    ).json()
    assert r["summary"] == {"requested": 2, "succeeded": 1, "failed": 1}
    good = r["results"][0]
    SEEN_TOKENS.append(good["token"])
    v = httpx.post(
        stack.service + "/tokens/bulk/validate",
        json={"tokens": [good["token"], "junk"]},
        headers=_basic(c),
    ).json()
    assert [x["status"] for x in v["results"]] == ["valid", "invalid"]
    assert v["results"][0]["jti"] == good["jti"]
    assert "token" not in v["results"][0]
    rv = httpx.post(
        stack.service + "/tokens/bulk/revoke",
        json={"items": [{"jti": good["jti"]}, {"jti": "nope"}]},
        headers=_basic(c),
    ).json()
    assert [x["status"] for x in rv["results"]] == ["revoked", "refused"]
    too_many = httpx.post(
        stack.service + "/tokens/bulk/validate", json={"tokens": ["x"] * 101}, headers=_basic(c)
    )
    assert too_many.status_code == 413


def test_login_mints_session_token_and_logout_revokes_it(stack: Stack) -> None:
    """After a TARA login the session's token arrives as a cookie, lists itself under
    /tokens/mine, comes in the body from /tokens/session, and dies with the session."""
    client = _register(stack, "rp", allowed_audiences=["kroonika"])
    with stack.browser() as browser:
        landed = browser.get(stack.service + "/auth/login?method=idcard&return_to=/")
        assert landed.status_code == 200, (str(landed.url), landed.text[:500])
        token = browser.cookies.get("kroonika_at")
        assert token
        SEEN_TOKENS.append(token)
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["sub"] == "EE38001085718"
        assert claims["sid"]
        mine = browser.get(stack.service + "/tokens/mine").json()
        assert claims["jti"] in [t["jti"] for t in mine["items"]]
        csrf = browser.get(stack.service + "/auth/session").json()["csrf_token"]
        body = browser.post(stack.service + "/tokens/session", headers={"x-csrf-token": csrf})
        assert body.status_code == 200, body.text
        second = body.json()["access_token"]
        SEEN_TOKENS.append(second)
        active = httpx.post(
            stack.service + "/introspect", data={"token": token}, headers=_basic(client)
        )
        assert active.json()["active"] is True
        out = browser.post(stack.service + "/auth/logout", headers={"x-csrf-token": csrf})
        assert out.status_code < 400
    for t in (token, second):
        gone = httpx.post(stack.service + "/introspect", data={"token": t}, headers=_basic(client))
        assert gone.json() == {"active": False}


def test_session_route_refuses_a_denylisted_person_with_403(stack: Stack) -> None:
    """``/tokens/session`` is the browser's route, not an RFC 6749 token endpoint: a
    person put on the deny-list after logging in gets 403 ``access_denied`` there (the
    token endpoint answers such a refusal ``unauthorized_client``, 400)."""
    with stack.browser(autologin="60001017716") as browser:
        landed = browser.get(stack.service + "/auth/login?method=mid&return_to=/")
        assert landed.status_code == 200, (str(landed.url), landed.text[:500])
        SEEN_TOKENS.append(browser.cookies.get("kroonika_at") or "")
        csrf = browser.get(stack.service + "/auth/session").json()["csrf_token"]
        stack.app.state.tokens.lists.add(
            "deny", "subject", "EE60001017716", reason="test", created_by="test"
        )
        r = browser.post(stack.service + "/tokens/session", headers={"x-csrf-token": csrf})
    assert r.status_code == 403, r.text
    assert r.json() == {"error": "access_denied", "error_description": "denylisted_subject"}
    assert r.headers["cache-control"] == "no-store"


def test_zz_trail_holds_no_token_or_secret(stack: Stack) -> None:
    """No stored event contains any token value (or its signature) or client secret
    seen in this module (its own traffic, plus whatever ran before it)."""
    c = _register(stack, "sweep")
    token = _mint(stack, c, claims={"role": "sweep-role-value"})["access_token"]
    httpx.post(stack.service + "/tokens/validate", json={"token": token}, headers=_basic(c))
    httpx.post(stack.service + "/introspect", data={"token": token}, headers=_basic(c))
    e = httpx.post(stack.service + "/tokens/extend", json={"token": token}, headers=_basic(c))
    SEEN_TOKENS.append(e.json()["access_token"])
    httpx.post(stack.service + "/revoke", data={"token": SEEN_TOKENS[-1]}, headers=_basic(c))
    blob = b"\n".join(stack.raw_events())
    assert b"token.issue" in blob
    for token in SEEN_TOKENS:
        assert token.encode() not in blob
        assert token.rsplit(".", 1)[1].encode() not in blob
    for secret in SEEN_SECRETS:
        assert secret.encode() not in blob
    assert b"sweep-role-value" not in blob
