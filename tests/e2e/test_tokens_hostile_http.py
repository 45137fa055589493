"""Hostile input to the token endpoints over real HTTP: wrong content types, malformed
and non-object JSON, nasty tokens and query parameters, control characters. Nothing
answers 500, every refusal of an authenticated client is audited, and no response and
no log line carries a token value or a client secret."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from login_harness import (
    LogLines,
    Stack,
    basic_auth,
    register_client,
    running_stack,
    watching_logs,
)

from kroonika.tokens import NewClient

SEEN_TOKENS: list[str] = []
SEEN_SECRETS: list[str] = []
RESPONSES: list[httpx.Response] = []


LOGS = LogLines()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("tokens-hostile")
    with (
        watching_logs(LOGS),
        running_stack(tmp, settings_overrides={"token_client_scrypt_n": 2**10}) as s,
    ):
        yield s


def _register(stack: Stack, name: str, **kw: Any) -> NewClient:
    return register_client(stack, name, SEEN_SECRETS, **kw)


_basic = basic_auth


def _post(stack: Stack, path: str, **kw: Any) -> httpx.Response:
    r = httpx.post(stack.service + path, timeout=30, **kw)
    RESPONSES.append(r)
    return r


def _get(stack: Stack, path: str, **kw: Any) -> httpx.Response:
    r = httpx.get(stack.service + path, timeout=30, **kw)
    RESPONSES.append(r)
    return r


def _mint(stack: Stack, c: NewClient) -> str:
    r = _post(stack, "/tokens", json={"subject": "u"}, headers=_basic(c))
    assert r.status_code == 201, r.text
    token: str = r.json()["access_token"]
    SEEN_TOKENS.append(token)
    return token


def _refusal(stack: Stack, r: httpx.Response, etype: str) -> dict[str, Any]:
    """The one event of ``etype`` the request left: a failure."""
    (ev,) = stack.events(types=(etype,), correlation=r.headers["x-request-id"])
    assert ev["outcome"] == "failure", ev
    return ev


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


JSON_ROUTES = [
    ("/tokens", "token.issue"),
    ("/tokens/validate", "token.validate"),
    ("/tokens/extend", "token.extend"),
    ("/tokens/bulk/issue", "token.issue"),
    ("/tokens/bulk/validate", "token.validate"),
    ("/tokens/bulk/revoke", "token.revoke"),
]


@pytest.mark.parametrize(("path", "etype"), JSON_ROUTES)
def test_json_routes_refuse_other_content_types_audited(
    stack: Stack, path: str, etype: str
) -> None:
    """A JSON body sent as text/plain or as a form (what a cross-site page can send
    without a preflight) is refused, and the refusal is on the trail. (A form on
    ``/tokens`` is an RFC 6749 token request, refused here for its missing grant_type.)"""
    c = _register(stack, f"ctype{path}")
    for ctype in ("text/plain", "application/x-www-form-urlencoded", ""):
        r = _post(
            stack, path, content=b'{"token": "x"}', headers={**_basic(c), "content-type": ctype}
        )
        assert r.status_code == 400, r.text
        grant = path == "/tokens" and ctype == "application/x-www-form-urlencoded"
        expected = "grant_type is required" if grant else "the body must be application/json"
        assert r.json()["error_description"] == expected
        ev = _refusal(stack, r, etype)
        assert ev["reason"] == "invalid_request"
        assert ev["actor"]["client_id"] == c.client.client_id


@pytest.mark.parametrize(("path", "etype"), JSON_ROUTES)
@pytest.mark.parametrize("body", [b"{bad", b"[1, 2]", b'"s"', b"null", b"1e999999"])
def test_json_routes_refuse_non_objects_audited(
    stack: Stack, path: str, etype: str, body: bytes
) -> None:
    """Broken or non-object JSON from an authenticated client: 400, audited."""
    c = _register(stack, "nonobj")
    r = _post(stack, path, content=body, headers={**_basic(c), "content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert _refusal(stack, r, etype)["reason"] == "invalid_request"


@pytest.mark.parametrize(
    ("path", "etype"), [("/introspect", "token.introspect"), ("/revoke", "token.revoke")]
)
def test_form_routes_refuse_json_and_missing_token_audited(
    stack: Stack, path: str, etype: str
) -> None:
    """RFC 7662/7009 need a form with ``token``; otherwise 400 after the client is known,
    and the refusal is recorded with that client."""
    c = _register(stack, "form")
    as_json = _post(stack, path, json={"token": "x"}, headers=_basic(c))
    assert as_json.status_code == 400
    assert _refusal(stack, as_json, etype)["actor"]["client_id"] == c.client.client_id
    missing = _post(stack, path, data={"nottoken": "x"}, headers=_basic(c))
    assert missing.status_code == 400
    assert _refusal(stack, missing, etype)["reason"] == "invalid_request"
    anonymous = _post(stack, path, json={"token": "x"})
    assert anonymous.status_code == 401
    assert _refusal(stack, anonymous, etype)["reason"] == "invalid_client"


@pytest.mark.parametrize("hint", ["\x1b[2J\r\nx", "id_token", "refresh_token"])
def test_a_hint_does_not_change_the_revocation(stack: Stack, hint: str) -> None:
    """RFC 7009 section 2.2: "An invalid token type hint value is ignored by the
    authorization server and does not influence the revocation response": the token is
    revoked whatever the hint says, and the hint is echoed nowhere."""
    c = _register(stack, "hint")
    token = _mint(stack, c)
    r = _post(stack, "/revoke", data={"token": token, "token_type_hint": hint}, headers=_basic(c))
    assert r.status_code == 200, r.text
    assert hint not in r.text
    after = _post(stack, "/introspect", data={"token": token}, headers=_basic(c))
    assert after.json() == {"active": False}
    (ev,) = stack.events(types=("token.revoke",), correlation=r.headers["x-request-id"])
    assert ev["outcome"] == "success"


def _nasty_tokens(good: str) -> list[str]:
    body = good.split(".")[1]

    def with_header(header: object) -> str:
        return f"{_b64(json.dumps(header).encode())}.{body}.AAAA"

    deep = _b64(('{"a":' + "[" * 5000 + "]" * 5000 + "}").encode())

    return [
        with_header({"alg": "ES256", "kid": 123}),
        with_header({"alg": "ES256", "kid": "k", "crit": "b64"}),
        with_header({"alg": "ES256", "kid": "k", "crit": ["zzz"]}),
        with_header({"alg": "none", "kid": "k"}),
        with_header({"alg": "HS256", "kid": "k"}),
        with_header({"alg": ["ES256"], "kid": {"a": 1}}),
        with_header({"alg": "ES256", "kid": "../../etc/passwd\r\nX: y", "jku": "http://x"}),
        f"{deep}.{body}.AAAA",
        "\x00.\x00.\x00",
        "é.ü.õ",
        "a.b.c.d",
        "x" * 20_000,
    ]


def test_nasty_tokens_never_crash_any_route(stack: Stack) -> None:
    """Header tricks (a non-string kid was a 500), deep nesting, NUL and non-ASCII, on
    every route that takes a token: refused or inactive, never 500, always audited."""
    c = _register(stack, "nasty")
    good = _mint(stack, c)
    for token in _nasty_tokens(good):
        v = _post(stack, "/tokens/validate", json={"token": token}, headers=_basic(c))
        assert v.status_code == 200, v.text
        assert v.json()["valid"] is False
        i = _post(stack, "/introspect", data={"token": token}, headers=_basic(c))
        assert i.json() == {"active": False}
        assert _post(stack, "/revoke", data={"token": token}, headers=_basic(c)).status_code == 200
        e = _post(stack, "/tokens/extend", json={"token": token}, headers=_basic(c))
        assert e.status_code == 400
        assert _refusal(stack, e, "token.extend")["reason"] in (
            "malformed",
            "bad_signature",
            "unknown_key",
        )
    bulk = _post(
        stack, "/tokens/bulk/validate", json={"tokens": _nasty_tokens(good)}, headers=_basic(c)
    )
    assert bulk.json()["summary"]["succeeded"] == 0


def test_mint_with_wrong_types_is_a_named_refusal(stack: Stack) -> None:
    """An audience that is a number was a 500; now a named, audited refusal, and a long
    audience is not echoed back whole."""
    c = _register(stack, "types")
    for body, reason in (
        ({"audience": 5}, "invalid_audience"),
        ({"audience": [1]}, "invalid_audience"),
        ({"subject": ["x"]}, "invalid_subject"),
        ({"ttl_s": "60"}, "invalid_ttl"),
        ({"claims": "x"}, "invalid_claims"),
        ({"audience": "\x1b[31m" + "a" * 10_000}, "audience_not_allowed"),
    ):
        r = _post(stack, "/tokens", json=body, headers=_basic(c))
        assert r.status_code == 400, r.text
        assert r.json()["error_description"].startswith(reason)
        assert len(r.text) < 400
        assert _refusal(stack, r, "token.issue")["reason"] == reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"subject": "alice\n"}, "invalid_subject"),
        ({"subject": "alice\r\n"}, "invalid_subject"),
        ({"claims": {"role\n": "x"}}, "invalid_claim_name"),
    ],
)
def test_a_final_line_break_is_refused_like_any_control_character(
    stack: Stack, body: dict[str, Any], reason: str
) -> None:
    """A subject or claim name ending in a line break passed the ``^...$`` check (``$``
    also matches before a final line break): ``alice\\n`` was minted as a subject
    distinct from ``alice`` (past a deny entry for ``alice``, the same person to a
    relying service that trims). Now a named, audited refusal."""
    c = _register(stack, "linebreak", allowed_claims=["role"])
    r = _post(stack, "/tokens", json=body, headers=_basic(c))
    assert r.status_code == 400, r.text
    assert r.json()["error_description"].startswith(reason)
    assert _refusal(stack, r, "token.issue")["reason"] == reason


def test_bulk_validate_audience_must_be_a_string(stack: Stack) -> None:
    """An audience given as a list used to be dropped silently (every token 'valid' for
    any audience): it is refused."""
    c = _register(stack, "aud")
    token = _mint(stack, c)
    r = _post(
        stack,
        "/tokens/bulk/validate",
        json={"tokens": [token], "audience": ["elsewhere"]},
        headers=_basic(c),
    )
    assert r.status_code == 400
    assert _refusal(stack, r, "token.validate")["reason"] == "invalid_request"


def test_bulk_issue_malformed_item_is_refused_alone(stack: Stack) -> None:
    """One bad item no longer fails (or crashes) the whole batch."""
    c = _register(stack, "bulkitems")
    r = _post(
        stack,
        "/tokens/bulk/issue",
        json={"items": [{"subject": "a"}, 1, {"audience": 2}]},
        headers=_basic(c),
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert [x["status"] for x in out["results"]] == ["issued", "refused", "refused"]
    SEEN_TOKENS.append(out["results"][0]["token"])


def test_bulk_revoke_control_characters_in_reason(stack: Stack) -> None:
    """A reason with CR/LF/ESC is stored and audited as one plain line; a reason that is
    not a string is refused."""
    c = _register(stack, "why")
    token = _mint(stack, c)
    r = _post(
        stack,
        "/tokens/bulk/revoke",
        json={"items": [{"token": token}], "reason": "stolen\r\nFAKE: x\x1b[31m\u202e"},
        headers=_basic(c),
    )
    assert r.json()["summary"]["succeeded"] == 1
    (ev,) = stack.events(types=("token.revoke",), correlation=r.headers["x-request-id"])
    assert ev["details"]["why"].isprintable()
    bad = _post(stack, "/tokens/bulk/revoke", json={"items": [], "reason": 5}, headers=_basic(c))
    assert bad.status_code == 400


@pytest.mark.parametrize(
    "query",
    [
        "limit=%C2%B2",
        "limit=" + "9" * 5000,
        "issued_after=" + "9" * 30,
        "issued_before=-1",
        "cursor=" + _b64(b"99999999999999999999999:x"),
        "cursor=" + _b64(b"1:\x00"),
        "cursor=%00",
        "state=%00",
        "state=bogus",
        "type=x",
        "client_id=%00",
        "client_id=" + "x" * 100,
    ],
)
def test_mine_refuses_bad_query_parameters(stack: Stack, query: str) -> None:
    """Unicode digits, numbers no column holds and NULs were 500s (and tracebacks with
    the subject in the operational log): now 400."""
    c = _register(stack, "mine", allowed_audiences=["svc-a"])
    token = _mint(stack, c)
    r = _get(stack, "/tokens/mine?" + query, headers={"authorization": "Bearer " + token})
    assert r.status_code == 400, r.text


def test_client_id_with_nul_is_an_audited_invalid_client(stack: Stack) -> None:
    """Basic and form credentials whose id holds a NUL: 401 invalid_client, recorded."""
    basic = {"authorization": "Basic " + base64.b64encode(b"%00:secret").decode()}
    r = _post(stack, "/tokens/validate", json={"token": "x"}, headers=basic)
    assert r.status_code == 401
    assert _refusal(stack, r, "token.validate")["reason"] == "invalid_client"
    f = _post(stack, "/introspect", data={"token": "x", "client_id": "\x00", "client_secret": "s"})
    assert f.status_code == 401
    assert _refusal(stack, f, "token.introspect")["reason"] == "invalid_client"


def test_bearer_refresh_with_bad_body_is_audited(stack: Stack) -> None:
    """A bearer refresh with a body that is not JSON is refused as token.refresh."""
    c = _register(stack, "refresh")
    token = _mint(stack, c)
    r = _post(
        stack,
        "/tokens/extend",
        content=b"ttl=5",
        headers={"authorization": "Bearer " + token, "content-type": "text/plain"},
    )
    assert r.status_code == 400
    ev = _refusal(stack, r, "token.refresh")
    assert ev["details"]["fingerprint"]


def test_zz_no_500_and_no_secret_in_responses_or_logs(stack: Stack) -> None:
    """Across this module: no answer was a 500, no traceback was logged, and no token
    value, token signature or client secret appears in any response to a request that
    did not mint it, in any log line or in the audit trail (its own traffic, plus
    whatever ran before it: the order is random)."""
    c = _register(stack, "sweep")
    token = _mint(stack, c)
    _post(stack, "/tokens/validate", content=token.encode(), headers=_basic(c))
    _post(stack, "/tokens/bulk/revoke", json={"items": [{"token": token}, 1]}, headers=_basic(c))
    _post(stack, "/introspect", data={"token": token, "token_type_hint": "x"}, headers=_basic(c))
    assert [r.status_code for r in RESPONSES if r.status_code >= 500] == []
    logs = "\n".join(LOGS.lines)
    assert "Traceback" not in logs
    assert "Exception in ASGI application" not in logs
    for token in SEEN_TOKENS:
        signature = token.rsplit(".", 1)[1]
        assert signature not in logs
        minted_in = [r for r in RESPONSES if signature in r.text]
        assert all(r.request.url.path in ("/tokens", "/tokens/bulk/issue") for r in minted_in)
    for secret in SEEN_SECRETS:
        assert secret not in logs
        assert not any(secret in r.text or secret in str(r.headers) for r in RESPONSES)
    trail = b"\n".join(stack.raw_events())
    assert b"token.revoke" in trail
    for value in [*SEEN_SECRETS, *(t.rsplit(".", 1)[1] for t in SEEN_TOKENS)]:
        assert value.encode() not in trail


def test_login_in_allowlist_mode_without_entry_still_logs_in(tmp_path: Path) -> None:
    """In allow-list mode a person without an allow entry gets no access token; the
    login itself stands (it was a 500 after the session had been created), and the
    refused token.issue is on the trail."""
    overrides = {"token_client_scrypt_n": 2**10, "token_allowlist_mode": True}
    with running_stack(tmp_path, settings_overrides=overrides) as s, s.browser() as browser:
        landed = browser.get(s.service + "/auth/login?method=idcard&return_to=/")
        assert landed.status_code == 200, landed.text[:300]
        assert browser.cookies.get("kroonika_at") is None
        assert browser.get(s.service + "/auth/session").status_code == 200
        refused = [e for e in s.events(types=("token.issue",)) if e["outcome"] == "failure"]
        assert [(e["reason"], e["details"]["token_type"]) for e in refused] == [
            ("not_allowlisted", "session")
        ]
