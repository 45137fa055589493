"""The token endpoints' wire answers against RFC 6749 (sections 2.3.1, 3.3, 5.2), RFC
7662 and RFC 9068, in process over the ASGI app: what a 429 carries, where client
credentials may be, what ``scope`` may be, how a refused source is answered."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from kroonika.audit import Actor, ActorType, SqlAuditStore
from kroonika.settings import Settings
from kroonika.tokens import NewClient, TokenComponents
from kroonika.web import create_app
from tara_kit import tara_client

pytestmark = pytest.mark.asyncio

LISTED = "45.155.205.33"  # on the deny_token feed of every app made here
#: RFC 6749 section 5.2: error_description is %x20-21 / %x23-5B / %x5D-7E
_DESCRIPTION_CHARS = {chr(c) for c in (0x20, 0x21, *range(0x23, 0x5C), *range(0x5D, 0x7F))}
JSON_ROUTES = (
    "/tokens",
    "/tokens/validate",
    "/tokens/extend",
    "/tokens/bulk/validate",
    "/tokens/bulk/revoke",
    "/tokens/bulk/issue",
)
_EVENT_OF = {
    "/tokens": "token.issue",
    "/tokens/validate": "token.validate",
    "/tokens/extend": "token.extend",
    "/tokens/bulk/validate": "token.validate",
    "/tokens/bulk/revoke": "token.revoke",
    "/tokens/bulk/issue": "token.issue",
}


class Wire:
    """The app in process, its token components and its audit trail."""

    def __init__(self, http: httpx.AsyncClient, settings: Settings, tokens: TokenComponents):
        self.http = http
        self.settings = settings
        self.tokens = tokens

    def client(self, name: str, **kw: Any) -> NewClient:
        kw.setdefault("allowed_audiences", ["svc-a"])
        kw.setdefault("allowed_claims", ["scope", "role"])
        new: NewClient = self.tokens.clients.register(name, **kw)
        return new

    def events(self, r: httpx.Response, etype: str | None = None) -> list[dict[str, Any]]:
        """The events of the request that answered ``r`` (of type ``etype``)."""
        rid = r.headers["x-request-id"]
        store = SqlAuditStore(self.settings.resolved_audit_store_url(), read_only=True)
        try:
            bodies = [orjson.loads(b) for block in store.blocks() for b in block.records()]
        finally:
            store.close()
        return [
            e
            for e in bodies
            if (e.get("correlation") or {}).get("request_id") == rid
            and (etype is None or e["type"] == etype)
        ]


def basic(c: NewClient) -> dict[str, str]:
    raw = f"{c.client.client_id}:{c.secret}".encode()
    return {"authorization": "Basic " + base64.b64encode(raw).decode()}


@asynccontextmanager
async def wire(tmp_path: Path, **overrides: Any) -> AsyncIterator[Wire]:
    feed = tmp_path / "feed.netset"
    feed.write_text("45.155.205.0/24\n")
    values: dict[str, Any] = {
        "var_dir": tmp_path / "var",
        "audit_strict": True,
        "cookie_secure": False,
        "trusted_proxies": ["127.0.0.0/8"],
        "token_client_scrypt_n": 2**10,
        "threat_feeds": [{"name": "fixture", "path": str(feed), "action": "deny_token"}],
        **overrides,
    }
    settings = Settings(**values)
    app = create_app(settings, http_client=tara_client())
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        yield Wire(http, settings, app.state.tokens)


def _assert_oauth_error(r: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """An RFC 6749 section 5.2 answer: those two members only, never cached."""
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert set(body) == {"error", "error_description"}, body
    assert body["error"] == error
    assert set(body["error_description"]) <= _DESCRIPTION_CHARS, body
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["pragma"] == "no-cache"
    return body


async def _mint(w: Wire, c: NewClient, **claims: Any) -> str:
    body = {"subject": "u-1", "claims": claims} if claims else {"subject": "u-1"}
    r = await w.http.post("/tokens", json=body, headers=basic(c))
    assert r.status_code == 201, r.text
    token: str = r.json()["access_token"]
    return token


# --- 429 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/tokens", "/introspect"])
async def test_a_client_over_its_limit_gets_an_rfc6749_error_and_retry_after(
    tmp_path: Path, path: str
) -> None:
    """429 from a limit checked once the client is known: ``error`` and
    ``error_description`` only, the wait in ``Retry-After`` (the limit's name, for a
    person, in the description)."""
    async with wire(tmp_path) as w:
        c = w.client("limited", rate_limit="1/minute")
        send: Callable[[], Any]
        if path == "/tokens":

            def send() -> Any:
                return w.http.post("/tokens", json={}, headers=basic(c))
        else:

            def send() -> Any:
                return w.http.post("/introspect", data={"token": "x"}, headers=basic(c))

        assert (await send()).status_code in (200, 201)
        over = await send()
        body = _assert_oauth_error(over, 429, "rate_limited")
        assert "client:own" in body["error_description"]
        assert 1 <= int(over.headers["retry-after"]) <= 60


async def test_an_address_over_a_token_route_limit_gets_an_rfc6749_error(tmp_path: Path) -> None:
    """429 from the per-address limit, before the route runs: the same shape."""
    async with wire(tmp_path, ratelimit_limits={"validate:ip": "1/minute"}) as w:
        c = w.client("by-address")
        first = await w.http.post("/tokens/validate", json={"token": "x"}, headers=basic(c))
        assert first.status_code == 200, first.text
        over = await w.http.post("/tokens/validate", json={"token": "x"}, headers=basic(c))
        body = _assert_oauth_error(over, 429, "rate_limited")
        assert "validate:ip" in body["error_description"]
        assert 1 <= int(over.headers["retry-after"]) <= 60


# --- client credentials in a JSON body -----------------------------------------------------


def _json_body(path: str) -> dict[str, Any]:
    return {
        "/tokens": {},
        "/tokens/validate": {"token": "x"},
        "/tokens/extend": {"token": "x"},
        "/tokens/bulk/validate": {"tokens": ["x"]},
        "/tokens/bulk/revoke": {"items": [{"jti": "x"}]},
        "/tokens/bulk/issue": {"items": [{}]},
    }[path]


@pytest.mark.parametrize("path", JSON_ROUTES)
@pytest.mark.parametrize("secret", ["right", "wrong", "none"])
async def test_client_credentials_in_a_json_body_are_refused(
    tmp_path: Path, path: str, secret: str
) -> None:
    """RFC 6749 2.3.1: body credentials only in a form, and not recommended; the JSON
    routes take HTTP Basic only. ``client_id``/``client_secret`` in the JSON object is
    400 ``invalid_request`` without a challenge, whatever the secret: none is checked,
    nothing is done, and the refusal is audited under the claimed id."""
    async with wire(tmp_path) as w:
        c = w.client("json-creds")
        creds: dict[str, str] = {"client_id": c.client.client_id}
        if secret != "none":
            creds["client_secret"] = c.secret if secret == "right" else "w" * 43
        r = await w.http.post(path, json={**_json_body(path), **creds})
        body = _assert_oauth_error(r, 400, "invalid_request")
        assert "Basic" in body["error_description"]
        assert "www-authenticate" not in r.headers
        (ev,) = w.events(r, _EVENT_OF[path])
        assert (ev["outcome"], ev["reason"]) == ("failure", "credentials_in_body")
        assert ev["actor"]["client_id"] == c.client.client_id
        assert w.events(r, "security.policy_violation") == []
        assert c.secret not in r.text


async def test_a_form_with_credentials_on_a_json_route_is_refused(tmp_path: Path) -> None:
    """A JSON route takes no form credentials either (it used to authenticate them and
    then refuse the form)."""
    async with wire(tmp_path) as w:
        c = w.client("form-creds")
        form = {"token": "x", "client_id": c.client.client_id, "client_secret": c.secret}
        r = await w.http.post("/tokens/validate", data=form)
        _assert_oauth_error(r, 400, "invalid_request")
        (ev,) = w.events(r, "token.validate")
        assert ev["reason"] == "credentials_in_body"


async def test_the_client_credentials_grant_still_takes_form_credentials(tmp_path: Path) -> None:
    """``client_secret_post`` in the form of the client credentials grant (documented)."""
    async with wire(tmp_path) as w:
        c = w.client("grant")
        form = {
            "grant_type": "client_credentials",
            "client_id": c.client.client_id,
            "client_secret": c.secret,
        }
        r = await w.http.post("/tokens", data=form)
        assert r.status_code == 200, r.text
        assert set(r.json()) == {"access_token", "token_type", "expires_in"}


# --- scope ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scope",
    [["read"], 5, {"read": True}, True, None, "", " read", "read ", "read  write", 'a"b', "a\\b"],
    ids=repr,
)
async def test_a_scope_claim_that_is_no_rfc6749_scope_is_refused_at_mint(
    tmp_path: Path, scope: Any
) -> None:
    """RFC 6749 3.3 (RFC 8693 4.2, RFC 9068 2.2.3): ``scope`` is scope tokens of
    %x21 / %x23-5B / %x5D-7E joined by single spaces; anything else is 400
    ``invalid_scope``, audited, and nothing is minted."""
    async with wire(tmp_path) as w:
        c = w.client("bad-scope")
        r = await w.http.post(
            "/tokens", json={"subject": "u-1", "claims": {"scope": scope}}, headers=basic(c)
        )
        _assert_oauth_error(r, 400, "invalid_scope")
        (ev,) = w.events(r, "token.issue")
        assert (ev["outcome"], ev["reason"]) == ("failure", "invalid_scope")
        bulk = await w.http.post(
            "/tokens/bulk/issue", json={"items": [{"claims": {"scope": scope}}]}, headers=basic(c)
        )
        assert bulk.json()["results"][0]["reason"] == "invalid_scope"


async def test_a_good_scope_is_minted_and_introspected(tmp_path: Path) -> None:
    """A space-separated string of scope tokens is minted and introspected as it is."""
    async with wire(tmp_path) as w:
        c = w.client("good-scope")
        token = await _mint(w, c, scope="read write:all !#[]~")
        r = await w.http.post("/introspect", data={"token": token}, headers=basic(c))
        assert r.json()["scope"] == "read write:all !#[]~"


async def _old_token(w: Wire, c: NewClient, scope: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A token minted before scopes were checked (any JSON value)."""
    import kroonika.tokens._service as service_module

    with monkeypatch.context() as m:
        m.setattr(service_module, "is_scope", lambda value: True)
        return await _mint(w, c, scope=scope)


@pytest.mark.parametrize("scope", [["read", "write"], {"a": 1}, 7, "a  b"], ids=repr)
async def test_introspecting_an_old_token_with_a_bad_scope_leaves_the_scope_out(
    tmp_path: Path, scope: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 7662 2.2: ``scope`` is a string of scope tokens. An old token whose scope is
    not one is still active, and its answer has no ``scope`` (never a crash, never a
    value a resource server could misread as a grant)."""
    async with wire(tmp_path) as w:
        c = w.client("old-scope")
        token = await _old_token(w, c, scope, monkeypatch)
        r = await w.http.post("/introspect", data={"token": token}, headers=basic(c))
        assert r.status_code == 200, r.text
        assert r.json()["active"] is True
        assert "scope" not in r.json()


async def test_extending_an_old_token_with_a_bad_scope_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An extension re-signs the token's claims: a bad scope would be minted anew, so
    the extension (and the bearer's refresh) is 400 ``invalid_scope``, audited, and
    the old token stays as it was."""
    async with wire(tmp_path) as w:
        c = w.client("old-extend")
        token = await _old_token(w, c, ["read"], monkeypatch)
        r = await w.http.post("/tokens/extend", json={"token": token}, headers=basic(c))
        _assert_oauth_error(r, 400, "invalid_scope")
        (ev,) = w.events(r, "token.extend")
        assert (ev["outcome"], ev["reason"]) == ("failure", "invalid_scope")
        bearer = {"authorization": f"Bearer {token}"}
        refresh = await w.http.post("/tokens/extend", json={}, headers=bearer)
        _assert_oauth_error(refresh, 400, "invalid_scope")
        r = await w.http.post("/introspect", data={"token": token}, headers=basic(c))
        assert r.json()["active"] is True


# --- refused sources -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/tokens", "/tokens/bulk/issue"])
async def test_a_source_on_a_deny_token_feed_is_unauthorized_client(
    tmp_path: Path, path: str
) -> None:
    """RFC 6749 5.2: ``access_denied`` is an authorization endpoint's error; a token
    endpoint refusing an authenticated client answers 400 ``unauthorized_client`` (no
    challenge: its credentials were right). The refusal keeps its event, threat
    context and policy violation."""
    async with wire(tmp_path) as w:
        c = w.client("listed")
        body = {} if path == "/tokens" else {"items": [{}]}
        r = await w.http.post(path, json=body, headers={**basic(c), "x-forwarded-for": LISTED})
        _assert_oauth_error(r, 400, "unauthorized_client")
        assert "www-authenticate" not in r.headers
        (ev,) = w.events(r, "token.issue")
        assert (ev["outcome"], ev["reason"]) == ("failure", "threat_intel_deny")
        assert ev["threat"][0]["feed"] == "fixture"
        (violation,) = w.events(r, "security.policy_violation")
        assert violation["details"]["policy"] == "threat_intel_deny"


async def test_a_denylisted_client_is_unauthorized_client(tmp_path: Path) -> None:
    """The same for a client on the deny-list (it was 403 ``access_denied``)."""
    async with wire(tmp_path) as w:
        c = w.client("denied")
        await w.tokens.service.list_add(
            "deny",
            "client",
            c.client.client_id,
            reason="test",
            created_by="test",
            actor=Actor(ActorType.SYSTEM),
        )
        r = await w.http.post("/tokens", json={}, headers=basic(c))
        _assert_oauth_error(r, 400, "unauthorized_client")
        (ev,) = w.events(r, "token.issue")
        assert ev["reason"].startswith("denylisted")


# --- error_description ---------------------------------------------------------------------


@pytest.mark.parametrize("audience", ['a"b', "a\\b", "é", "a\nb"], ids=repr)
async def test_an_error_description_holds_only_the_characters_rfc6749_allows(
    tmp_path: Path, audience: str
) -> None:
    """RFC 6749 5.2: ``error_description`` MUST NOT include characters outside
    %x20-21 / %x23-5B / %x5D-7E, also when it names a value the caller sent."""
    async with wire(tmp_path) as w:
        c = w.client("described")
        r = await w.http.post("/tokens", json={"audience": audience}, headers=basic(c))
        _assert_oauth_error(r, 400, "invalid_request")
