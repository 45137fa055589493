"""Threat-intelligence actions (deny login, deny token minting) and the per-client and
per-person rate limits of the login and token routes, over real HTTP with the mock."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from security_harness import TARTU, SecStack, security_stack

from kroonika.tokens import NewClient

DENY_LOGIN_IP = "185.220.101.7"  # listed by the deny_login feed
DENY_TOKEN_IP = "45.155.205.33"  # listed by the deny_token (STIX) feed


def _feeds(tmp: Path) -> list[dict[str, Any]]:
    plain = tmp / "firehol.netset"
    plain.write_text("# fixture feed\n185.220.101.0/24\n")
    stix = tmp / "bundle.json"
    stix.write_bytes(
        orjson.dumps(
            {
                "type": "bundle",
                "id": "bundle--6c1ee4bb-4b0f-4ee0-9a4c-2ab0e1a9d0a1",
                "objects": [
                    {
                        "type": "indicator",
                        "spec_version": "2.1",
                        "id": "indicator--0b8f2a0c-6ad5-4a4f-8f51-2c7b8b6c7d10",
                        "created": "2025-01-01T00:00:00.000Z",
                        "modified": "2025-01-01T00:00:00.000Z",
                        "pattern": "[ipv4-addr:value = '45.155.205.0/24']",
                        "pattern_type": "stix",
                        "valid_from": "2025-01-01T00:00:00Z",
                        "indicator_types": ["malicious-activity"],
                        "confidence": 90,
                    }
                ],
            }
        )
    )
    return [
        {"name": "firehol-fixture", "path": str(plain), "action": "deny_login"},
        {"name": "stix-fixture", "path": str(stix), "action": "deny_token", "format": "stix"},
    ]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecStack]:
    tmp: Path = tmp_path_factory.mktemp("threat-limits")
    overrides = {
        "threat_feeds": _feeds(tmp),
        "ratelimit_limits": {"token_mint:client": "2/minute", "login_start:person": "2/minute"},
    }
    with security_stack(tmp, settings_overrides=overrides) as s:
        yield s


def _client(stack: SecStack, name: str) -> NewClient:
    return stack.tokens.clients.register(name, allowed_audiences=["svc-a"])


def _basic(c: NewClient) -> dict[str, str]:
    raw = f"{c.client.client_id}:{c.secret}".encode()
    return {"authorization": "Basic " + base64.b64encode(raw).decode()}


def _rid(r: httpx.Response) -> str:
    return r.headers["x-request-id"]


def test_deny_login_feed_refuses_the_login(stack: SecStack) -> None:
    """A login from an address on a deny_login feed: 403, one failed auth.login, the
    violation with the feed's threat context, and a security.threat_match."""
    r = httpx.get(stack.service + "/auth/login", headers={"x-forwarded-for": DENY_LOGIN_IP})
    assert r.status_code == 403
    assert r.json() == {
        "error": "access_denied",
        "reason": "threat_intel_deny",
        "request_id": _rid(r),
    }
    (login,) = stack.events(types=("auth.login",), correlation=_rid(r))
    assert (login["outcome"], login["reason"]) == ("failure", "threat_intel_deny")
    (v,) = stack.violations(_rid(r))
    assert v["details"]["policy"] == "threat_intel_deny"
    assert v["threat"][0]["feed"] == "firehol-fixture"
    assert v["threat"][0]["indicator"] == "185.220.101.0/24"
    stack.drain()
    matches = stack.events(types=("security.threat_match",), correlation=_rid(r))
    assert matches
    assert {m["details"]["action"] for m in matches} == {"deny_login"}


def test_deny_token_feed_refuses_minting(stack: SecStack) -> None:
    """Minting from an address on a deny_token feed: 400 ``unauthorized_client`` (RFC
    6749 5.2), token.issue refused, violation."""
    c = _client(stack, "threat-mint")
    r = httpx.post(
        stack.service + "/tokens",
        json={"subject": "user-1"},
        headers={**_basic(c), "x-forwarded-for": DENY_TOKEN_IP},
    )
    assert (r.status_code, r.json()["error"]) == (400, "unauthorized_client")
    (issue,) = stack.events(types=("token.issue",), correlation=_rid(r))
    assert (issue["outcome"], issue["reason"]) == ("failure", "threat_intel_deny")
    (v,) = stack.violations(_rid(r))
    assert v["details"]["policy"] == "threat_intel_deny"
    assert v["threat"][0]["feed"] == "stix-fixture"


def test_deny_token_feed_lets_the_login_stand_without_an_access_token(stack: SecStack) -> None:
    """A deny_token feed does not deny the login; the session gets no access token."""
    r = stack.login(DENY_TOKEN_IP, code="60001017716")
    assert r.status_code == 302
    (login,) = stack.events(types=("auth.login",), correlation=_rid(r))
    assert login["outcome"] == "success"
    assert stack.settings.token_session_cookie not in r.cookies
    (issue,) = stack.events(types=("token.issue",), correlation=_rid(r))
    assert issue["reason"] == "threat_intel_deny"


def test_clean_address_is_not_affected(stack: SecStack) -> None:
    """A login from an address no feed lists succeeds with its access token."""
    r = stack.login(TARTU, code="38001085718")
    assert r.status_code == 302
    assert stack.settings.token_session_cookie in r.cookies
    assert stack.violations(_rid(r)) == []


def test_per_client_mint_limit(stack: SecStack) -> None:
    """The third mint of one client in a minute is 429 with Retry-After; another client
    is unaffected; the security.rate_limit event names the client."""
    a, b = _client(stack, "limited-a"), _client(stack, "limited-b")
    codes = [
        httpx.post(stack.service + "/tokens", json={}, headers=_basic(a)).status_code
        for _ in range(2)
    ]
    over = httpx.post(stack.service + "/tokens", json={}, headers=_basic(a))
    other = httpx.post(stack.service + "/tokens", json={}, headers=_basic(b))
    assert codes == [201, 201]
    assert over.status_code == 429
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert "(limit token_mint:client)" in over.json()["error_description"]
    assert other.status_code == 201
    (event,) = stack.events(types=("security.rate_limit",), correlation=_rid(over))
    assert event["details"]["key_kind"] == "client"
    assert event["actor"]["client_id"] == a.client.client_id


def test_per_person_login_limit(stack: SecStack) -> None:
    """A person's third login in a minute (from three addresses, so no IP limit applies)
    is 429 with Retry-After, one failed auth.login (rate_limited) and a person-keyed
    security.rate_limit; another person is unaffected."""
    code = "49002124277"
    first = [stack.login(ip, code=code).status_code for ip in ("81.2.69.142", "1.1.1.1")]
    over = stack.login("8.8.8.8", code=code)
    other = stack.login("8.8.8.8", code="37101010021")
    assert first == [302, 302]
    assert over.status_code == 429
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert over.json()["reason"] == "rate_limited"
    (login,) = stack.events(types=("auth.login",), correlation=_rid(over))
    assert (login["outcome"], login["reason"]) == ("failure", "rate_limited")
    (event,) = stack.events(types=("security.rate_limit",), correlation=_rid(over))
    assert event["details"]["key_kind"] == "person"
    assert event["actor"]["pseudonym"] == login["actor"]["pseudonym"]
    assert code not in str(event)
    assert other.status_code == 302
