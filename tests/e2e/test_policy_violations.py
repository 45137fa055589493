"""Every policy refusal over real HTTP gives one ``security.policy_violation`` naming the
policy, who (actor), from where (source), what was attempted and the decision; a refused
login keeps exactly one ``auth.login``."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from security_harness import SecStack, security_stack

from kroonika.tokens import NewClient

ORIGIN_OK = "https://portal.example"
ORIGIN_BAD = "https://evil.example"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecStack]:
    tmp: Path = tmp_path_factory.mktemp("policy-e2e")
    overrides = {
        "tara_scopes": ["openid", "idcard", "mid", "smartid"],  # eIDAS not offered
        "cors_allowed_origins": [ORIGIN_OK],
        "ratelimit_enabled": False,
    }
    with security_stack(tmp, settings_overrides=overrides, geo=False) as s:
        yield s


def _client(stack: SecStack, name: str) -> NewClient:
    return stack.tokens.clients.register(name, allowed_audiences=["svc-a"], allowed_claims=["role"])


def _basic(c: NewClient, secret: str | None = None) -> dict[str, str]:
    raw = f"{c.client.client_id}:{secret or c.secret}".encode()
    return {"authorization": "Basic " + base64.b64encode(raw).decode()}


def _mint(stack: SecStack, c: NewClient, **body: Any) -> str:
    body.setdefault("subject", "user-1")
    r = httpx.post(stack.service + "/tokens", json=body, headers=_basic(c))
    assert r.status_code == 201, r.text
    token: str = r.json()["access_token"]
    return token


def _one(stack: SecStack, response: httpx.Response, policy: str) -> dict[str, Any]:
    """The request's single violation, checked for its policy, decision and parts."""
    (v,) = stack.violations(response.headers["x-request-id"])
    assert v["details"]["policy"] == policy
    assert v["details"]["decision"] == "denied"
    assert v["outcome"] == "failure"
    assert v["details"]["attempted"]
    assert v["source"]["ip"]
    return v


def _one_login(stack: SecStack, response: httpx.Response, reason: str) -> dict[str, Any]:
    logins = stack.events(types=("auth.login",), correlation=response.headers["x-request-id"])
    assert [(e["outcome"], e["reason"]) for e in logins] == [("failure", reason)]
    return logins[0]


# --- login ---------------------------------------------------------------------------------


def test_acr_below_minimum(stack: SecStack) -> None:
    """TARA answering below the level asked for: acr_below_minimum, naming the person."""
    stack.mock_switch(low_acr=True)
    try:
        r = stack.login("198.51.100.10", code="60001019906")
    finally:
        stack.mock_switch(low_acr=False)
    assert r.status_code == 400
    login = _one_login(stack, r, "acr_too_low")
    v = _one(stack, r, "acr_below_minimum")
    assert v["actor"]["type"] == "user"
    assert v["actor"]["pseudonym"] == login["actor"]["pseudonym"]
    assert v["correlation"]["flow_id"] == login["correlation"]["flow_id"]
    assert "60001019906" not in str(v)


def test_auth_method_not_allowed(stack: SecStack) -> None:
    """A login asking for a method the service does not offer is refused."""
    r = httpx.get(
        stack.service + "/auth/login?method=eidas", headers={"x-forwarded-for": "198.51.100.11"}
    )
    assert r.status_code == 400
    _one_login(stack, r, "method_not_allowed")
    v = _one(stack, r, "auth_method_not_allowed")
    assert "eidas" in v["details"]["attempted"]
    assert v["source"]["ip"] == "198.51.100.0"


def test_redirect_not_allowed(stack: SecStack) -> None:
    """A return_to outside the allowed targets is refused (open redirect)."""
    r = httpx.get(
        stack.service + "/auth/login",
        params={"return_to": "https://evil.example/phish"},
        headers={"x-forwarded-for": "198.51.100.12"},
    )
    assert (r.status_code, r.json()["error"]) == (400, "invalid_return_to")
    _one_login(stack, r, "invalid_return_to")
    v = _one(stack, r, "redirect_not_allowed")
    assert "evil.example" in v["details"]["attempted"]


def test_denylisted_ip_at_login_start(stack: SecStack) -> None:
    """A login from a denylisted network is refused before TARA is asked."""
    entry = stack.tokens.lists.add("deny", "ip", "203.0.113.0/24", reason="abuse", created_by="t")
    try:
        r = httpx.get(stack.service + "/auth/login", headers={"x-forwarded-for": "203.0.113.9"})
    finally:
        stack.tokens.lists.remove(entry.id)
    assert (r.status_code, r.json()["reason"]) == (403, "denylisted_ip")
    _one_login(stack, r, "denylisted_ip")
    _one(stack, r, "denylisted_ip")


def test_denylisted_subject_at_login(stack: SecStack) -> None:
    """A denylisted person completing TARA gets no session."""
    entry = stack.tokens.lists.add(
        "deny", "subject", "EE40404040009", reason="banned", created_by="t"
    )
    try:
        r = stack.login("198.51.100.13", code="40404040009")
    finally:
        stack.tokens.lists.remove(entry.id)
    assert (r.status_code, r.json()["reason"]) == (403, "denylisted_subject")
    assert "kroonika_session" not in r.cookies
    login = _one_login(stack, r, "denylisted_subject")
    v = _one(stack, r, "denylisted_subject")
    assert v["actor"]["pseudonym"] == login["actor"]["pseudonym"]
    assert (
        stack.events(types=("session.create",), correlation=login["correlation"]["flow_id"]) == []
    )


def test_state_replayed(stack: SecStack) -> None:
    """A used callback presented again: login_state_reused."""
    with stack.browser_from("198.51.100.14") as b:
        landed = b.get(stack.service + "/auth/login")
        callback = next(h for h in landed.history if h.url.path == "/auth/callback")
        replay = b.get(str(callback.url))
    _one_login(stack, replay, "state_replayed")
    _one(stack, replay, "login_state_reused")


def test_authorization_code_reused(stack: SecStack) -> None:
    """A code already exchanged, injected into a fresh flow: authorization_code_reused."""
    with stack.browser_from("198.51.100.15") as b:
        landed = b.get(stack.service + "/auth/login")
        first = next(h for h in landed.history if h.url.path == "/auth/callback")
        code = parse_qs(urlsplit(str(first.url)).query)["code"][0]
        start = b.get(stack.service + "/auth/login", follow_redirects=False)
        state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
        r = b.get(stack.service + "/auth/callback", params={"state": state, "code": code})
    assert r.json()["reason"] == "code_reused"
    _one_login(stack, r, "code_reused")
    v = _one(stack, r, "authorization_code_reused")
    assert code not in str(v)


def test_csrf_failed(stack: SecStack) -> None:
    """A state-changing session call without the CSRF token is refused and audited."""
    with stack.browser_from("198.51.100.16") as b:
        b.get(stack.service + "/auth/login")
        r = b.post(stack.service + "/auth/logout", json={})
        assert b.get(stack.service + "/auth/session").status_code == 200
    assert (r.status_code, r.json()["error"]) == (403, "csrf_failed")
    v = _one(stack, r, "csrf_failed")
    assert v["actor"]["type"] == "user"
    assert v["actor"]["pseudonym"]
    assert v["correlation"]["session_ref"]


# --- CORS ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "headers", "path"),
    [
        ("OPTIONS", {"access-control-request-method": "POST"}, "/tokens"),
        ("GET", {"cookie": "kroonika_session=whatever"}, "/auth/session"),
        ("POST", {"authorization": "Basic eDp5"}, "/tokens/validate"),
    ],
    ids=["preflight", "cookie", "authorization"],
)
def test_cors_origin_not_allowed(
    stack: SecStack, method: str, headers: dict[str, str], path: str
) -> None:
    """A preflight or a credentialed request from a disallowed origin: 403 and audited."""
    r = httpx.request(
        method,
        stack.service + path,
        headers={"origin": ORIGIN_BAD, "x-forwarded-for": "198.51.100.17", **headers},
    )
    assert (r.status_code, r.json()["error"]) == (403, "cors_origin_not_allowed")
    assert "access-control-allow-origin" not in r.headers
    v = _one(stack, r, "cors_origin_not_allowed")
    assert ORIGIN_BAD in v["details"]["attempted"]


def test_cors_allowed_origin_and_plain_requests_pass(stack: SecStack) -> None:
    """An allowed origin gets its preflight answered; an uncredentialed read from another
    origin passes without CORS headers; neither is a violation."""
    pre = httpx.options(
        stack.service + "/tokens",
        headers={
            "origin": ORIGIN_OK,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type, x-evil",
        },
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == ORIGIN_OK
    assert pre.headers["access-control-allow-credentials"] == "true"
    assert pre.headers["access-control-allow-headers"] == "authorization, content-type"
    plain = httpx.get(stack.service + "/.well-known/jwks.json", headers={"origin": ORIGIN_BAD})
    assert plain.status_code == 200
    assert "access-control-allow-origin" not in plain.headers
    for r in (pre, plain):
        assert stack.violations(r.headers["x-request-id"]) == []


# --- tokens --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "form"),
    [("/tokens", False), ("/tokens/validate", False), ("/introspect", True), ("/revoke", True)],
)
def test_client_auth_failed(stack: SecStack, path: str, form: bool) -> None:
    """A wrong client secret at a token endpoint: 401 and client_auth_failed."""
    c = _client(stack, f"bad-secret-{path.strip('/').replace('/', '-')}")
    headers = {**_basic(c, secret="wrong-secret"), "x-forwarded-for": "198.51.100.18"}
    if form:
        r = httpx.post(stack.service + path, data={"token": "x"}, headers=headers)
    else:
        r = httpx.post(stack.service + path, json={"token": "x"}, headers=headers)
    assert r.status_code == 401
    v = _one(stack, r, "client_auth_failed")
    assert v["actor"]["client_id"] == c.client.client_id
    assert c.secret not in str(v)
    assert "wrong-secret" not in str(v)


def test_reserved_claims(stack: SecStack) -> None:
    """A client trying to set iss is refused: reserved_claims."""
    c = _client(stack, "reserved")
    r = httpx.post(
        stack.service + "/tokens",
        json={"subject": "user-1", "claims": {"iss": "https://evil.example"}},
        headers=_basic(c),
    )
    assert r.status_code == 400
    v = _one(stack, r, "reserved_claims")
    assert v["actor"]["client_id"] == c.client.client_id
    (issue,) = stack.events(types=("token.issue",), correlation=r.headers["x-request-id"])
    assert issue["reason"] == "reserved_claim"


@pytest.mark.parametrize("kind", ["subject", "ip"])
def test_denylisted_at_token_minting(stack: SecStack, kind: str) -> None:
    """Minting for a denylisted subject, or from a denylisted address, is refused with
    RFC 6749 5.2's ``unauthorized_client`` (400; ``access_denied`` is no token endpoint
    error) and its violation."""
    c = _client(stack, f"deny-{kind}")
    value = "victim-7" if kind == "subject" else "192.0.2.0/24"
    entry = stack.tokens.lists.add("deny", kind, value, reason="test", created_by="t")  # type: ignore[arg-type]
    try:
        r = httpx.post(
            stack.service + "/tokens",
            json={"subject": "victim-7" if kind == "subject" else "user-1"},
            headers={**_basic(c), "x-forwarded-for": "192.0.2.44"},
        )
    finally:
        stack.tokens.lists.remove(entry.id)
    assert (r.status_code, r.json()["error"]) == (400, "unauthorized_client")
    _one(stack, r, f"denylisted_{kind}")


def _revoked(stack: SecStack, c: NewClient) -> str:
    token = _mint(stack, c, audience="svc-a")
    r = httpx.post(stack.service + "/revoke", data={"token": token}, headers=_basic(c))
    assert r.status_code == 200
    return token


def _expired(stack: SecStack, c: NewClient) -> str:
    return _mint(stack, c, audience="svc-a", ttl_s=60)


def _use(stack: SecStack, c: NewClient, endpoint: str, token: str) -> httpx.Response:
    if endpoint == "validate":
        return httpx.post(
            stack.service + "/tokens/validate", json={"token": token}, headers=_basic(c)
        )
    if endpoint == "introspect":
        return httpx.post(stack.service + "/introspect", data={"token": token}, headers=_basic(c))
    return httpx.post(
        stack.service + "/tokens/extend", json={}, headers={"authorization": f"Bearer {token}"}
    )


@pytest.mark.parametrize("endpoint", ["validate", "introspect", "refresh"])
@pytest.mark.parametrize("state", ["revoked", "expired"])
def test_revoked_or_expired_token_use(stack: SecStack, endpoint: str, state: str) -> None:
    """Presenting a revoked or expired token (possible replay) is a violation at every
    endpoint that accepts one; the refusal and the violation name the same token."""
    c = _client(stack, f"replay-{endpoint}-{state}")
    token = _revoked(stack, c) if state == "revoked" else _expired(stack, c)
    service = stack.tokens.service
    real = service.clock
    if state == "expired":

        class Later:
            def now(self) -> int:
                return real.now() + 3600

        service.clock = Later()
    try:
        r = _use(stack, c, endpoint, token)
    finally:
        service.clock = real
    if endpoint == "introspect":
        assert r.json() == {"active": False}
    else:
        assert r.status_code in (200, 400)
        assert r.json().get("valid") is not True
    v = _one(stack, r, f"token_{state}")
    etype = {"validate": "token.validate", "introspect": "token.introspect"}.get(
        endpoint, "token.refresh"
    )
    (refused,) = stack.events(types=(etype,), correlation=r.headers["x-request-id"])
    assert refused["reason"] == state
    assert v["target"] == refused["target"]
    assert token not in str(v)


# --- administration ------------------------------------------------------------------------


def _api_key(stack: SecStack, role: str) -> str:
    from admin_harness import HOLDERS, holder_key

    return holder_key(stack.services, role, HOLDERS[role], name=f"policy-{role}")


def test_admin_call_without_justification(stack: SecStack) -> None:
    """A mutating admin call without X-Justification: 400 and the violation."""
    r = httpx.post(
        stack.service + "/admin/lists",
        json={"list": "deny", "kind": "ip", "value": "198.51.100.99", "reason": "abuse"},
        headers={"authorization": f"Bearer {_api_key(stack, 'admin')}"},
    )
    assert r.status_code == 400
    v = _one(stack, r, "admin_justification_missing")
    assert v["actor"]["roles"] == ["admin"]


def test_role_exceeded(stack: SecStack) -> None:
    """An auditor trying an admin mutation: 403 and role_exceeded."""
    r = httpx.post(
        stack.service + "/admin/lists",
        json={"list": "deny", "kind": "ip", "value": "198.51.100.98", "reason": "abuse"},
        headers={
            "authorization": f"Bearer {_api_key(stack, 'auditor')}",
            "x-justification": "INC-1 an auditor tries to change a list",
        },
    )
    assert r.status_code == 403
    v = _one(stack, r, "role_exceeded")
    assert v["actor"]["roles"] == ["auditor"]
    assert "/admin/lists" in v["details"]["attempted"]
