"""The limiter on memory storage: summaries, penalties, configuration checks."""

from __future__ import annotations

import pytest
from limits.errors import StorageError

from kroonika.audit import AuditEvent, AuditUnavailable
from kroonika.ratelimit import (
    DEFAULT_ROUTES,
    KeyKind,
    RateLimitConfigError,
    RateLimited,
    RateLimiter,
    RateLimitPolicy,
    RouteGroup,
    build_limiter,
    classify,
)
from kroonika.settings import Settings


class Sink:
    """Records events; refuses them (as the trail does with its store down) while ``down``."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.down = False

    async def __call__(self, event: AuditEvent) -> None:
        if self.down:
            raise AuditUnavailable("audit store down")
        self.events.append(event)


def _flooding(sink: Sink, now: list[float]) -> RateLimiter:
    return RateLimiter(
        RateLimitPolicy.build({"validate:ip": "1/minute"}, penalty_base_s=1, penalty_max_s=1),
        emit=sink,
        clock=lambda: now[0],
    )


@pytest.mark.asyncio
async def test_a_flood_is_one_event_then_one_summary_per_minute() -> None:
    """A hundred violations in a minute give the first event and one summary of 99."""
    now = [1000.0]
    sink = Sink()
    rl = RateLimiter(
        RateLimitPolicy.build({"validate:ip": "1/minute"}, penalty_base_s=1, penalty_max_s=1),
        emit=sink,
        clock=lambda: now[0],
    )
    await rl.check(RouteGroup.VALIDATE, ip="45.133.1.77")
    for _ in range(100):
        assert not (await rl.check(RouteGroup.VALIDATE, ip="45.133.1.77")).allowed
    assert len(sink.events) == 1
    now[0] += 61
    await rl.flush()
    first, summary = sink.events
    assert first.details["count"] == 1
    assert (summary.details["count"], summary.details["summary"]) == (99, True)


@pytest.mark.asyncio
async def test_a_summary_the_trail_refuses_is_sent_by_the_next_flush() -> None:
    """With the audit store down the summary's count is kept (not zeroed and dropped) and
    the refusal counted; the next flush sends the whole count once."""
    now = [1000.0]
    sink = Sink()
    rl = _flooding(sink, now)
    for _ in range(51):
        await rl.check(RouteGroup.VALIDATE, ip="45.133.1.77")
    now[0] += 61
    sink.down = True
    with pytest.raises(AuditUnavailable):
        await rl.flush()
    assert (rl.counts["audit_errors"], rl.counts["events"]) == (1, 1)
    sink.down = False
    await rl.flush()
    await rl.flush()
    _, summary = sink.events
    assert (summary.details["count"], summary.details["summary"]) == (49, True)
    assert (rl.counts["audit_errors"], rl.counts["events"]) == (1, 2)


@pytest.mark.asyncio
async def test_violations_the_trail_refuses_go_into_the_summary() -> None:
    """A first event the trail refuses fails its request, and its violation is carried
    by the minute's summary; so is one that arrives while the previous summary is
    refused."""
    now = [1000.0]
    sink = Sink()
    rl = _flooding(sink, now)
    await rl.check(RouteGroup.VALIDATE, ip="45.133.1.77")
    sink.down = True
    with pytest.raises(AuditUnavailable):
        await rl.check(RouteGroup.VALIDATE, ip="45.133.1.77")  # the first violation
    for _ in range(3):
        assert not (await rl.check(RouteGroup.VALIDATE, ip="45.133.1.77")).allowed
    now[0] += 61
    with pytest.raises(AuditUnavailable):  # the summary is due and refused
        await rl.check(RouteGroup.VALIDATE, ip="45.133.1.77")
    sink.down = False
    await rl.flush()
    (summary,) = sink.events
    assert (summary.details["count"], summary.details["summary"]) == (5, True)
    assert rl.counts["audit_errors"] == 2


@pytest.mark.asyncio
async def test_an_outage_summary_the_trail_refuses_is_kept() -> None:
    """The limiter_unavailable summary (Redis away) survives a refused flush too."""
    now = [1000.0]
    sink = Sink()
    rl = _flooding(sink, now)
    for _ in range(4):
        await rl._storage_failed(StorageError(ConnectionError("redis away")))
    now[0] += 61
    sink.down = True
    with pytest.raises(AuditUnavailable):
        await rl.flush()
    sink.down = False
    await rl.flush()
    first, summary = sink.events
    assert first.details["limit"] == summary.details["limit"] == "storage"
    assert summary.details["count"] == 3


def test_refused_events_are_a_metric() -> None:
    """/metrics shows the refusals as kroonika_ratelimit_total{counter="audit_errors"}."""
    from kroonika.web._metrics import _limiter_metrics

    rl = RateLimiter(RateLimitPolicy.build({}))
    rl.counts["audit_errors"] += 2
    assert 'kroonika_ratelimit_total{counter="audit_errors"} 2\n' in _limiter_metrics(rl)


@pytest.mark.asyncio
async def test_keys_are_summarised_separately() -> None:
    """Two offending addresses each get their own first event."""
    sink = Sink()
    rl = RateLimiter(RateLimitPolicy.build({"validate:ip": "1/minute"}), emit=sink)
    for ip in ("45.133.1.77", "45.133.1.78"):
        await rl.check(RouteGroup.VALIDATE, ip=ip)
        await rl.check(RouteGroup.VALIDATE, ip=ip)
    assert len(sink.events) == 2


@pytest.mark.asyncio
async def test_penalty_doubles_up_to_the_maximum() -> None:
    """Each violation after the first blocks for twice as long, capped."""
    rl = RateLimiter(
        RateLimitPolicy.build({"admin:ip": "1/minute"}, penalty_base_s=60, penalty_max_s=200)
    )
    item = rl.policy.limits[(RouteGroup.ADMIN, KeyKind.IP)]
    penalties = [await rl._penalise("k", item) for _ in range(5)]
    assert [p for p, _ in penalties[1:]] == [60, 120, 200, 200]
    assert [lvl for _, lvl in penalties] == [0, 1, 2, 3, 4]


@pytest.mark.asyncio
async def test_hit_raises_rate_limited_with_retry_after() -> None:
    """hit() raises RateLimited carrying the limit name and Retry-After seconds."""
    rl = RateLimiter(RateLimitPolicy.build({"token_mint:person": "1/minute"}))
    await rl.hit(RouteGroup.TOKEN_MINT, ip=None, person="p1:abc")
    with pytest.raises(RateLimited) as err:
        await rl.hit(RouteGroup.TOKEN_MINT, ip=None, person="p1:abc")
    assert err.value.limit == "token_mint:person"
    assert 1 <= err.value.retry_after <= 60


@pytest.mark.parametrize(
    ("overrides", "exempt"),
    [
        ({"login_start:ip": "lots"}, []),
        ({"nope:ip": "1/minute"}, []),
        ({}, ["not-a-net"]),
        # a group and kind that exist but that no route counts: it would limit nothing
        ({"admin:client": "1/minute"}, []),
        ({"callback:person": "1/minute"}, []),
    ],
)
def test_bad_configuration_is_refused_when_building(
    overrides: dict[str, str], exempt: list[str]
) -> None:
    """A bad limit, limit name (also one no route counts) or exempt network fails at
    build time."""
    with pytest.raises(RateLimitConfigError):
        RateLimitPolicy.build(overrides, exempt)


def test_off_removes_a_limit_and_settings_build_a_limiter() -> None:
    """'off' disables one limit; the settings fields build the limiter."""
    rl = build_limiter(Settings(ratelimit_limits={"validate:ip": "off"}))
    assert rl.policy.rules_for(RouteGroup.VALIDATE)[0][0].value == "client"


def test_routes_are_classified_by_prefix() -> None:
    """Paths map to route groups by prefix; unrelated paths are not limited."""
    assert classify("/auth/login", DEFAULT_ROUTES) is RouteGroup.LOGIN_START
    assert classify("/admin/tokens/x", DEFAULT_ROUTES) is RouteGroup.ADMIN
    assert classify("/oauth/token", DEFAULT_ROUTES) is None  # no such route
    assert classify("/auth/loginx", DEFAULT_ROUTES) is None
    assert classify("/static/app.css", DEFAULT_ROUTES) is None


def test_the_audit_read_api_counts_as_admin() -> None:
    """The auditor's API (API keys guessed there, the verifier run over the whole store)
    is limited per address like the rest of the administration API."""
    assert classify("/audit/verify", DEFAULT_ROUTES) is RouteGroup.ADMIN
    assert classify("/audit/events", DEFAULT_ROUTES) is RouteGroup.ADMIN
    assert classify("/auditx", DEFAULT_ROUTES) is None


def test_service_token_routes_are_classified() -> None:
    """The token service's routes fall into token minting and validation groups."""
    assert classify("/tokens", DEFAULT_ROUTES) is RouteGroup.TOKEN_MINT
    assert classify("/tokens/bulk/issue", DEFAULT_ROUTES) is RouteGroup.TOKEN_MINT
    assert classify("/tokens/validate", DEFAULT_ROUTES) is RouteGroup.VALIDATE
    assert classify("/introspect", DEFAULT_ROUTES) is RouteGroup.VALIDATE
    assert classify("/revoke", DEFAULT_ROUTES) is RouteGroup.VALIDATE


@pytest.mark.asyncio
async def test_a_clients_own_limit_spans_route_groups() -> None:
    """A client's own limit is one window over every group it calls, counted even when
    the route counts no group limit (``kinds=()``), and only for that client."""
    sink = Sink()
    rl = RateLimiter(RateLimitPolicy.build(), emit=sink)
    own = {"client": "svc-a", "client_limit": "2/minute", "kinds": ()}
    assert (await rl.check(RouteGroup.TOKEN_MINT, ip="10.0.0.1", **own)).allowed
    assert (await rl.check(RouteGroup.VALIDATE, ip="10.0.0.1", **own)).allowed
    over = await rl.check(RouteGroup.VALIDATE, ip="10.0.0.1", **own)
    other = await rl.check(RouteGroup.VALIDATE, ip="10.0.0.1", client="svc-b", kinds=())
    assert (over.allowed, over.limit) == (False, "client:own")
    assert other.allowed
    (event,) = sink.events
    assert event.details["limit"] == "client:own"
    assert event.actor.client_id == "svc-a"


@pytest.mark.asyncio
async def test_a_bad_stored_client_limit_fails_open_and_is_counted() -> None:
    """A stored limit the limiter cannot parse (a hand edit, an older version) is not
    applied: the request passes, and the counter says so."""
    rl = RateLimiter(RateLimitPolicy.build())
    for _ in range(3):
        decision = await rl.check(
            RouteGroup.TOKEN_MINT, ip="10.0.0.1", client="svc-a", client_limit="lots", kinds=()
        )
        assert decision.allowed
    assert rl.counts["bad_client_limits"] == 3


@pytest.mark.asyncio
async def test_ipv6_addresses_of_one_64_share_one_limit() -> None:
    """Per-address limits count an IPv6 source per /64: a new address of the same /64
    for every request (privacy addresses cost nothing) is still the one source, while
    the next /64 and IPv4 addresses are counted on their own."""
    rl = RateLimiter(RateLimitPolicy.build({"login_start:ip": "3/minute"}))

    async def allowed(ip: str) -> bool:
        return (await rl.check(RouteGroup.LOGIN_START, ip=ip)).allowed

    rotating = [await allowed(f"2001:db8:7:1:{i:x}::9") for i in range(1, 5)]
    assert rotating == [True, True, True, False]
    assert await allowed("2001:db8:7:2::9")
    assert [await allowed(f"192.0.2.{i}") for i in range(1, 5)] == [True] * 4
    assert not await allowed("2001:db8:7:1::ffff")
    # an IPv4-mapped IPv6 address is its IPv4 address, not a /64 of its own
    assert [await allowed(a) for a in ("192.0.2.9", "::ffff:192.0.2.9")] == [True, True]
    assert [await allowed(a) for a in ("::ffff:192.0.2.9", "192.0.2.9")] == [True, False]


@pytest.mark.asyncio
async def test_only_failed_authentications_use_up_a_sources_budget() -> None:
    """Checking a source before its credentials are looked at counts nothing: a source
    whose clients authenticate is never refused; three failures fill ``client_auth:ip``
    and the next check is refused with an event, without counting the request."""
    sink = Sink()
    rl = RateLimiter(RateLimitPolicy.build({"client_auth:ip": "3/minute"}), emit=sink)
    group = RouteGroup.CLIENT_AUTH
    checks = [(await rl.check_failures(group, ip="192.0.2.1")).allowed for _ in range(10)]
    assert checks == [True] * 10
    for _ in range(3):
        await rl.count_failure(group, ip="192.0.2.2")
    refused = await rl.check_failures(group, ip="192.0.2.2", request_id="r-9")
    assert (refused.allowed, refused.limit) == (False, "client_auth:ip")
    assert refused.retry_after >= 1
    assert (await rl.check_failures(group, ip="192.0.2.1")).allowed
    (event,) = sink.events
    assert (event.details["route_group"], event.details["key_kind"]) == ("client_auth", "ip")
    assert event.actor.type.value == "anonymous"
