"""Rate limits over real HTTP: 429 with Retry-After, JSON error, events in the trail."""

from __future__ import annotations

from pathlib import Path

import httpx
from rl_kit import Recorded, make_app, make_trail, serve

from kroonika.ratelimit import KeyKind, RateLimiter, RateLimitPolicy, RouteGroup


def limiter(**overrides: str) -> RateLimiter:
    return RateLimiter(RateLimitPolicy.build(overrides), emit=None)


def test_login_start_limit_gives_429_with_retry_after(tmp_path: Path) -> None:
    """The fourth login start in a minute from one address gets 429, Retry-After and JSON."""
    recorded = Recorded()
    trail = make_trail(tmp_path, recorded)
    rl = RateLimiter(RateLimitPolicy.build({"login_start:ip": "3/minute"}), emit=trail.emit)
    with serve(make_app(rl, trail)) as base, httpx.Client(base_url=base) as http:
        codes = [http.get("/auth/login").status_code for _ in range(3)]
        over = http.get("/auth/login", headers={"x-request-id": "req-4"})
        other = http.get("/health")
    assert codes == [200, 200, 200]
    assert over.status_code == 429
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert over.headers["content-type"] == "application/json"
    assert over.json()["error"] == "rate_limited"
    assert over.json()["limit"] == "login_start:ip"
    assert other.status_code == 200
    (event,) = recorded.of_type("security.rate_limit")
    assert event["details"]["limit"] == "login_start:ip"
    assert event["details"]["route_group"] == "login_start"
    assert event["source"]["ip"] == "127.0.0.0"
    assert event["correlation"]["request_id"] == "req-4"


def test_repeat_offender_gets_a_growing_penalty_over_http(tmp_path: Path) -> None:
    """Ignoring Retry-After turns the window wait into a penalty block that grows."""
    recorded = Recorded()
    trail = make_trail(tmp_path, recorded)
    rl = RateLimiter(
        RateLimitPolicy.build({"login_start:ip": "2/minute"}, penalty_base_s=300),
        emit=trail.emit,
    )
    with serve(make_app(rl, trail)) as base, httpx.Client(base_url=base) as http:
        for _ in range(2):
            http.get("/auth/login")
        first = http.get("/auth/login")
        second = http.get("/auth/login")
        blocked = http.get("/auth/login")
    assert int(first.headers["retry-after"]) <= 60
    assert 240 < int(second.headers["retry-after"]) <= 300
    assert 240 < int(blocked.headers["retry-after"]) <= 300


def test_client_limit_raised_by_a_route(tmp_path: Path) -> None:
    """A per-client limit raised inside a route is turned into the same 429."""
    recorded = Recorded()
    trail = make_trail(tmp_path, recorded)
    rl = RateLimiter(RateLimitPolicy.build({"token_mint:client": "2/minute"}), emit=trail.emit)
    with serve(make_app(rl, trail)) as base, httpx.Client(base_url=base) as http:
        a = [http.post("/tokens", headers={"x-client": "svc-a"}).status_code for _ in range(3)]
        b = http.post("/tokens", headers={"x-client": "svc-b"}).status_code
    assert a == [200, 200, 429]
    assert b == 200
    (event,) = recorded.of_type("security.rate_limit")
    assert event["details"]["key_kind"] == "client"
    assert event["actor"]["client_id"] == "svc-a"


def test_exempt_network_is_never_limited(tmp_path: Path) -> None:
    """Requests from an exempt network pass any number of times."""
    recorded = Recorded()
    trail = make_trail(tmp_path, recorded)
    rl = RateLimiter(
        RateLimitPolicy.build({"login_start:ip": "1/minute"}, exempt=["127.0.0.0/8"]),
        emit=trail.emit,
    )
    with serve(make_app(rl, trail)) as base, httpx.Client(base_url=base) as http:
        codes = {http.get("/auth/login").status_code for _ in range(5)}
    assert codes == {200}
    assert rl.counts["exempt"] == 5


def test_a_limit_changed_at_runtime_applies_at_once(tmp_path: Path) -> None:
    """Lowering a limit on the running limiter applies to the following requests
    (a changed limit counts afresh: ``limits`` keys a window by its rate)."""
    recorded = Recorded()
    trail = make_trail(tmp_path, recorded)
    rl = limiter()
    rl._emit = trail.emit
    with serve(make_app(rl, trail)) as base, httpx.Client(base_url=base) as http:
        assert http.get("/auth/login").status_code == 200
        rl.configure(rl.policy.with_limit(RouteGroup.LOGIN_START, KeyKind.IP, "1/hour"))
        assert http.get("/auth/login").status_code == 200
        over = http.get("/auth/login")
    assert over.status_code == 429
    assert int(over.headers["retry-after"]) > 60
