"""The limit tiers of every client-authenticated token route over real HTTP, with the
counters in memory and in the real Redis (decision 0029): introspection, revocation,
extension and the bulk routes count the route group's per-client limit as minting and
validation do, and a source address that keeps failing client authentication is
refused with 429 before its secret costs a check, on every one of those routes."""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from login_harness import Stack, running_stack
from test_tokens_client_limits import REDIS_URL, _require_redis

from kroonika.audit.processors.anonymise_ip import source_network
from kroonika.db import make_engine
from kroonika.tokens import ClientRegistry, NewClient, SystemClock

LIMITS = {
    "validate:client": "3/minute",
    "token_mint:client": "3/minute",
    "client_auth:ip": "3/minute",
}


@pytest.fixture(scope="module", params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The service behind a trusted proxy on loopback, so that each test speaks from
    source addresses of its own (``X-Forwarded-For``)."""
    overrides: dict[str, Any] = {
        "token_client_scrypt_n": 2**10,
        "ratelimit_enabled": True,
        "ratelimit_limits": LIMITS,
        "trusted_proxies": ["127.0.0.1/32"],
        "jobs_enabled": False,
    }
    if request.param == "redis":
        _require_redis()
        overrides["redis_url"] = REDIS_URL
    tmp: Path = tmp_path_factory.mktemp(f"route-limits-{request.param}")
    with running_stack(tmp, settings_overrides=overrides) as s:
        yield s


class Sources:
    """Fresh source addresses and clients for one test; their counters are removed from
    Redis after it (keys hold only hashes, of the /64 for an IPv6 source)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.used: list[str] = []
        self.clients: list[NewClient] = []
        self._rng = random.Random()  # test addresses, not secrets

    def v4(self) -> str:
        ip = f"198.18.{self._rng.randrange(256)}.{self._rng.randrange(1, 255)}"
        self.used.append(ip)
        return ip

    def v6_net(self) -> str:
        a, b = self._rng.randrange(1, 0xFFFF), self._rng.randrange(1, 0xFFFF)
        return f"2001:db8:{a:x}:{b:x}"

    def client(self, name: str) -> NewClient:
        engine = make_engine(self.stack.settings.resolved_database_url())
        try:
            new = ClientRegistry(engine, clock=SystemClock(), scrypt_n=2**10).register(
                name, allowed_audiences=["svc-a"]
            )
        finally:
            engine.dispose()
        self.clients.append(new)
        return new

    def cleanup(self) -> None:
        if not self.stack.settings.redis_url:
            return
        values = [source_network(ip) for ip in self.used]
        values += [c.client.client_id for c in self.clients]
        r = redis.Redis.from_url(REDIS_URL)
        try:
            for value in values:
                for key in r.scan_iter(f"*{hashlib.sha256(value.encode()).hexdigest()[:24]}*"):
                    r.delete(key)
        finally:
            r.close()


@pytest.fixture
def sources(stack: Stack) -> Iterator[Sources]:
    s = Sources(stack)
    yield s
    s.cleanup()


def _basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"authorization": "Basic " + base64.b64encode(raw).decode()}


Call = Callable[[str, dict[str, str], str], httpx.Response]


def _post(path: str, *, form: bool = False, body: dict[str, Any] | None = None) -> Call:
    def call(base: str, headers: dict[str, str], token: str) -> httpx.Response:
        payload = {k: (token if v == "$token" else v) for k, v in (body or {}).items()}
        if form:
            return httpx.post(base + path, data=payload, headers=headers)
        return httpx.post(base + path, json=payload, headers=headers)

    return call


#: (route, the call, the route group's per-client limit it counts)
ROUTES: dict[str, tuple[Call, str]] = {
    "introspect": (_post("/introspect", form=True, body={"token": "$token"}), "validate"),
    "revoke": (_post("/revoke", form=True, body={"token": "junk"}), "validate"),
    "bulk_validate": (_post("/tokens/bulk/validate", body={"tokens": ["junk"]}), "validate"),
    "extend": (_post("/tokens/extend", body={"token": "$token"}), "token_mint"),
    "bulk_revoke": (_post("/tokens/bulk/revoke", body={"items": []}), "token_mint"),
    "validate": (_post("/tokens/validate", body={"token": "$token"}), "validate"),
    "mint": (_post("/tokens", body={"subject": "u-1"}), "token_mint"),
    "bulk_issue": (_post("/tokens/bulk/issue", body={"items": []}), "token_mint"),
}


def _rate_limits(stack: Stack, limit: str) -> list[dict[str, Any]]:
    return [
        e
        for e in stack.events(types=("security.rate_limit",))
        if e["details"].get("limit") == limit
    ]


#: the routes that counted only the client's own limit before decision 0029
ONCE_UNLIMITED = ["introspect", "revoke", "bulk_validate", "extend", "bulk_revoke"]


@pytest.mark.parametrize("route", ONCE_UNLIMITED)
def test_the_group_limit_per_client_applies(stack: Stack, sources: Sources, route: str) -> None:
    """Three calls a minute per client (as configured for the route's group) pass, the
    fourth is 429 with Retry-After naming the group's per-client limit; another client
    from the same address still passes."""
    call, group = ROUTES[route]
    ip = sources.v4()
    c = sources.client(f"{route}-a")
    h = _basic(c.client.client_id, c.secret) | {"x-forwarded-for": ip}
    token = ""
    if route == "extend":  # the mint counts in the same group: two extensions remain
        minted = httpx.post(stack.service + "/tokens", json={"subject": "u-1"}, headers=h)
        assert minted.status_code == 201, minted.text
        token = minted.json()["access_token"]
    under = [call(stack.service, h, token) for _ in range(2 if route == "extend" else 3)]
    over = call(stack.service, h, token)
    other = sources.client(f"{route}-b")
    other_h = _basic(other.client.client_id, other.secret) | {"x-forwarded-for": ip}
    passes = call(stack.service, other_h, "")
    assert [r.text for r in under if r.status_code == 429] == []
    assert over.status_code == 429, over.text
    assert f"(limit {group}:client)" in over.json()["error_description"]
    assert int(over.headers["retry-after"]) >= 1
    assert passes.status_code != 429, passes.text
    (event,) = [
        e
        for e in _rate_limits(stack, f"{group}:client")
        if e["actor"].get("client_id") == c.client.client_id
    ]
    assert event["details"]["key_kind"] == "client"


@pytest.mark.parametrize("route", list(ROUTES))
def test_a_source_failing_client_authentication_is_refused_before_the_check(
    stack: Stack, sources: Sources, route: str
) -> None:
    """Three wrong secrets a minute from one address are answered 401; then the address
    gets 429 ``client_auth:ip`` before any secret is checked, the right one included (no
    further ``invalid_client`` is recorded), while another address still authenticates."""
    call, _ = ROUTES[route]
    c = sources.client(f"guess-{route}")
    ip, elsewhere = sources.v4(), sources.v4()
    wrong = _basic(c.client.client_id, "not-the-secret") | {"x-forwarded-for": ip}
    right = _basic(c.client.client_id, c.secret)
    failed = [call(stack.service, wrong, "") for _ in range(3)]
    refused = [call(stack.service, h, "") for h in (wrong, right | {"x-forwarded-for": ip})]
    fine = call(stack.service, right | {"x-forwarded-for": elsewhere}, "")
    assert [r.status_code for r in failed] == [401] * 3, [r.text for r in failed]
    assert [r.status_code for r in refused] == [429, 429], [r.text for r in refused]
    assert all("(limit client_auth:ip)" in r.json()["error_description"] for r in refused)
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    assert fine.status_code not in (401, 429), fine.text
    refused_ids = {r.headers["x-request-id"] for r in refused}
    invalid = [
        e
        for e in stack.events()
        if e.get("reason") == "invalid_client"
        and (e.get("correlation") or {}).get("request_id") in refused_ids
    ]
    assert invalid == []
    (event,) = [
        e
        for e in _rate_limits(stack, "client_auth:ip")
        if (e.get("correlation") or {}).get("request_id") in refused_ids
    ]
    assert event["actor"]["type"] == "anonymous"
    assert event["details"]["key_kind"] == "ip"
    assert event["details"]["route_group"] == "client_auth"


def test_failures_from_one_ipv6_64_count_together(stack: Stack, sources: Sources) -> None:
    """An attacker who takes a new address of their /64 for every guess is one source:
    the fourth address is refused like the fourth guess from one address; the next /64
    is not."""
    call, _ = ROUTES["introspect"]
    c = sources.client("v6")
    net = sources.v6_net()
    sources.used.append(f"{net}::1")

    def guess(ip: str) -> int:
        h = _basic(c.client.client_id, "not-the-secret") | {"x-forwarded-for": ip}
        return call(stack.service, h, "").status_code

    codes = [guess(f"{net}:{i:x}::7") for i in range(1, 5)]
    other = sources.v6_net()
    sources.used.append(f"{other}::1")
    assert codes == [401, 401, 401, 429]
    assert guess(f"{other}::7") == 401
