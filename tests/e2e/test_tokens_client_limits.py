"""A client's own rate limit (``kroonika clients add --rate-limit``) over real HTTP, with
the counters in memory and in the real Redis: one limit over every token endpoint the
client calls, 429 with Retry-After and a ``security.rate_limit`` event over it."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from login_harness import Stack, running_stack

from kroonika.db import make_engine
from kroonika.tokens import ClientRegistry, NewClient, SystemClock

REDIS_URL = "redis://127.0.0.1:6379/0"


def _require_redis() -> None:
    """Skip without the real Redis; fail instead in CI (KROONIKA_REQUIRE_SERVICES=1)."""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return
    except OSError:
        pass
    message = "Redis is not reachable on 127.0.0.1:6379"
    if os.environ.get("KROONIKA_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} and KROONIKA_REQUIRE_SERVICES=1")
    pytest.skip(message)


@pytest.fixture(
    scope="module",
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
    ],
)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    overrides: dict[str, Any] = {"token_client_scrypt_n": 2**10, "ratelimit_enabled": True}
    if request.param == "redis":
        _require_redis()
        overrides["redis_url"] = REDIS_URL
    tmp: Path = tmp_path_factory.mktemp(f"client-limits-{request.param}")
    with running_stack(tmp, settings_overrides=overrides) as s:
        yield s


@pytest.fixture
def registered(stack: Stack) -> Iterator[list[NewClient]]:
    """Clients registered by one test; their counters are removed from Redis after it."""
    made: list[NewClient] = []
    yield made
    if stack.settings.redis_url:
        r = redis.Redis.from_url(REDIS_URL)
        try:
            for c in made:
                digest = hashlib.sha256(c.client.client_id.encode()).hexdigest()[:24]
                for key in r.scan_iter(f"*{digest}*"):
                    r.delete(key)
        finally:
            r.close()


def _register(stack: Stack, made: list[NewClient], name: str, **kw: Any) -> NewClient:
    engine = make_engine(stack.settings.resolved_database_url())
    try:
        new = ClientRegistry(engine, clock=SystemClock(), scrypt_n=2**10).register(
            name, allowed_audiences=["svc-a"], **kw
        )
    finally:
        engine.dispose()
    made.append(new)
    return new


def _basic(c: NewClient) -> dict[str, str]:
    raw = f"{c.client.client_id}:{c.secret}".encode()
    return {"authorization": "Basic " + base64.b64encode(raw).decode()}


def _mint(stack: Stack, c: NewClient) -> httpx.Response:
    return httpx.post(stack.service + "/tokens", json={"subject": "u-1"}, headers=_basic(c))


def test_own_limit_is_enforced_on_minting(stack: Stack, registered: list[NewClient]) -> None:
    """A client registered with 3/minute gets 429 with Retry-After on its fourth mint;
    a client without a limit of its own is not affected."""
    limited = _register(stack, registered, "three", rate_limit="3/minute")
    free = _register(stack, registered, "free")
    codes = [_mint(stack, limited).status_code for _ in range(3)]
    over = _mint(stack, limited)
    others = [_mint(stack, free).status_code for _ in range(5)]
    assert codes == [201, 201, 201]
    assert over.status_code == 429, over.text
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert over.json()["error"] == "rate_limited"
    assert "(limit client:own)" in over.json()["error_description"]
    assert set(over.json()) == {"error", "error_description"}  # RFC 6749 5.2
    assert others == [201] * 5
    events = [
        e
        for e in stack.events(types=("security.rate_limit",))
        if e["actor"].get("client_id") == limited.client.client_id
    ]
    assert len(events) == 1
    (event,) = events
    assert event["outcome"] == "failure"
    assert event["details"]["limit"] == "client:own"
    assert event["details"]["key_kind"] == "client"
    assert event["details"]["route_group"] == "token_mint"
    assert event["details"]["window_s"] == 60


def test_own_limit_spans_every_token_endpoint(stack: Stack, registered: list[NewClient]) -> None:
    """Minting, validation, introspection, revocation, extension and the bulk routes
    all count against the one limit of the client; each is refused once it is used up."""
    c = _register(stack, registered, "spread", rate_limit="6/minute")
    token = _mint(stack, c).json()["access_token"]
    h = _basic(c)
    base = stack.service
    calls = [
        lambda: httpx.post(base + "/tokens/validate", json={"token": token}, headers=h),
        lambda: httpx.post(base + "/introspect", data={"token": token}, headers=h),
        lambda: httpx.post(base + "/tokens/bulk/validate", json={"tokens": [token]}, headers=h),
        lambda: httpx.post(base + "/tokens/extend", json={"token": token}, headers=h),
        lambda: httpx.post(base + "/revoke", data={"token": "junk"}, headers=h),
    ]
    assert [call().status_code for call in calls] == [200, 200, 200, 200, 200]
    refused = [call() for call in calls]
    refused.append(httpx.post(base + "/tokens/bulk/revoke", json={"items": []}, headers=h))
    refused.append(httpx.post(base + "/tokens/bulk/issue", json={"items": []}, headers=h))
    assert [r.status_code for r in refused] == [429] * 7
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)


def test_changed_limit_applies_at_once(stack: Stack, registered: list[NewClient]) -> None:
    """A limit set on a registered client (as PATCH /admin/clients does) applies to its
    next request, without a restart."""
    from kroonika.db.tokens import clients

    c = _register(stack, registered, "later")
    assert [_mint(stack, c).status_code for _ in range(2)] == [201, 201]
    engine = make_engine(stack.settings.resolved_database_url())
    try:
        with engine.begin() as conn:
            conn.execute(
                clients.update()
                .where(clients.c.client_id == c.client.client_id)
                .values(rate_limit="1/hour")
            )
    finally:
        engine.dispose()
    assert _mint(stack, c).status_code == 201
    over = _mint(stack, c)
    assert over.status_code == 429
    assert int(over.headers["retry-after"]) > 60


def test_redis_holds_the_counter_without_the_client_id(
    stack: Stack, registered: list[NewClient]
) -> None:
    """With Redis the client's counter is kept there, under a hash of its id; with
    counters in memory nothing of it reaches Redis. Its id is in no key either way."""
    _require_redis()
    c = _register(stack, registered, "hashed", rate_limit="5/minute")
    assert _mint(stack, c).status_code == 201
    digest = hashlib.sha256(c.client.client_id.encode()).hexdigest()[:24]
    r = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(r.scan_iter(f"*{digest}*"))
        if stack.settings.redis_url:
            assert any(b"client:own" in k for k in keys)
        else:
            assert keys == []
        assert not list(r.scan_iter(f"*{c.client.client_id}*"))
    finally:
        r.close()


def test_admin_api_refuses_a_bad_rate_limit(tmp_path: Path) -> None:
    """POST and PATCH /admin/clients refuse a rate limit the limiter cannot apply with
    400 and a clear error, and store nothing; a good one is stored and audited."""
    from admin_harness import admin_stack

    with admin_stack(tmp_path) as stack:
        bad = stack.call("POST", "/admin/clients", json={"name": "svc", "rate_limit": "lots"})
        assert bad.status_code == 400, bad.text
        assert "100/minute" in bad.text
        assert stack.call("GET", "/admin/clients").json()["clients"] == []
        made = stack.call("POST", "/admin/clients", json={"name": "svc", "rate_limit": "20/minute"})
        assert made.status_code == 201, made.text
        cid = made.json()["client_id"]
        patch = stack.call("PATCH", f"/admin/clients/{cid}", json={"rate_limit": "0/minute"})
        assert patch.status_code == 400, patch.text
        assert "100/minute" in patch.text
        # stricter: applied at once (a looser one waits for a second administrator)
        good = stack.call("PATCH", f"/admin/clients/{cid}", json={"rate_limit": "9/hour"})
        assert good.status_code == 200, good.text
        (client,) = stack.call("GET", "/admin/clients").json()["clients"]
        assert client["rate_limit"] == "9/hour"
        changes = [
            e
            for e in stack.events(types=("config.change",))
            if e["details"].get("key") == "client.rate_limit"
        ]
        assert [(c["details"]["before"], c["details"]["after"]) for c in changes] == [
            ('"20/minute"', '"9/hour"')
        ]
