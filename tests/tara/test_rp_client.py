"""The relying party's network side against a TARA that answers garbage (injected transport)."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from kroonika.tara import (
    ClientRejected,
    CodeExchangeFailed,
    Discovery,
    DiscoveryError,
    IdpBadResponse,
    IdpUnavailable,
    JwksCache,
    RequestRejected,
    TaraClient,
    TaraClientConfig,
    TaraError,
    parse_jwks,
)

pytestmark = pytest.mark.asyncio

ISSUER = "https://tara.mock.test"
DEEP_JSON = b"[" * 100_000


@functools.cache
def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _good_jwk(kid: str = "good") -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(_key().public_key()))
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


def _discovery() -> dict[str, str]:
    return {
        "issuer": ISSUER,
        "authorization_endpoint": ISSUER + "/oidc/authorize",
        "token_endpoint": ISSUER + "/oidc/token",
        "jwks_uri": ISSUER + "/oidc/jwks",
    }


def _client(
    *,
    jwks: Callable[[], httpx.Response],
    token: Callable[[], httpx.Response],
    discovery: dict[str, str] | None = None,
) -> TaraClient:
    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/.well-known/openid-configuration":
            return httpx.Response(200, json=discovery or _discovery())
        if path == "/oidc/jwks":
            return jwks()
        if path == "/oidc/token":
            return token()
        return httpx.Response(404)

    config = TaraClientConfig(
        issuer=ISSUER,
        client_id="rp",
        client_secret=SecretStr("rp-secret-0123456789"),
        redirect_uri="https://rp.example/auth/callback",
    )
    return TaraClient(config, httpx.AsyncClient(transport=httpx.MockTransport(handle)))


def _unused() -> httpx.Response:
    raise AssertionError("not called")


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("token_endpoint", "https://tara.mock.test.evil.example/oidc/token"),
        ("jwks_uri", "https://evil.example/oidc/jwks"),
        ("jwks_uri", "http://tara.mock.test/oidc/jwks"),
        ("token_endpoint", "https://tara.mock.test:8443/oidc/token"),
        ("authorization_endpoint", "https://evil.example/oidc/authorize"),
        ("jwks_uri", "/oidc/jwks"),
    ],
    ids=["suffix-host", "other-host", "http", "other-port", "authorize", "relative"],
)
async def test_discovery_naming_an_endpoint_on_another_origin_is_refused(
    name: str, url: str
) -> None:
    """Each endpoint must be on the issuer's origin (scheme, host, port), as TARA
    publishes them: otherwise DiscoveryError naming the endpoint, before any is used."""
    client = _client(jwks=_unused, token=_unused, discovery={**_discovery(), name: url})
    with pytest.raises(DiscoveryError, match=f"{name} .* another origin"):
        await client.check()


async def test_discovery_on_the_issuer_origin_in_another_spelling_is_accepted() -> None:
    """The default port written out and the host in capitals are the same origin."""
    disc = {
        **_discovery(),
        "token_endpoint": "https://TARA.mock.test:443/oidc/token",
        "jwks_uri": "https://tara.mock.test:443/oidc/jwks",
    }
    client = _client(
        jwks=lambda: httpx.Response(200, json={"keys": [_good_jwk()]}),
        token=_unused,
        discovery=disc,
    )
    assert (await client.check()).token_endpoint == disc["token_endpoint"]


@pytest.mark.parametrize(
    "broken",
    [
        {"kty": "RSA", "kid": "no-modulus", "e": "AQAB"},
        {"kty": "RSA", "kid": "bad-modulus", "n": "!!!", "e": "AQAB"},
        {"kty": "RSA", "kid": "number-modulus", "n": 12, "e": "AQAB"},
    ],
)
async def test_a_broken_key_in_the_set_is_skipped_not_fatal(broken: dict[str, Any]) -> None:
    """One unusable RSA key in TARA's JWKS is skipped; the good ones are still used."""
    client = _client(
        jwks=lambda: httpx.Response(200, json={"keys": [broken, _good_jwk()]}),
        token=_unused,
    )
    assert set(await client.jwks.keys()) == {"good"}
    assert set(parse_jwks({"keys": [broken]})) == set()


async def test_deeply_nested_jwks_is_idp_unavailable() -> None:
    """A JWKS answer nested too deep to parse is TARA being unavailable, not a crash."""
    client = _client(jwks=lambda: httpx.Response(200, content=DEEP_JSON), token=_unused)
    with pytest.raises(IdpUnavailable):
        await client.jwks.keys()


async def test_an_oversized_jwks_is_idp_unavailable() -> None:
    """A JWKS answer larger than any TARA sends (valid JSON, a good key in it) is not read
    into memory whole: TARA is unavailable."""
    huge = {"keys": [_good_jwk()], "padding": "x" * (2 << 20)}
    client = _client(jwks=lambda: httpx.Response(200, json=huge), token=_unused)
    with pytest.raises(IdpUnavailable, match="more than"):
        await client.jwks.keys()


async def test_a_gzipped_answer_is_read_decoded() -> None:
    """A compressed answer still parses (the size cap counts decoded bytes)."""
    import gzip

    body = gzip.compress(json.dumps({"keys": [_good_jwk()]}).encode())
    client = _client(
        jwks=lambda: httpx.Response(200, content=body, headers={"content-encoding": "gzip"}),
        token=_unused,
    )
    assert set(await client.jwks.keys()) == {"good"}


@pytest.mark.parametrize("status", [200, 400])
async def test_deeply_nested_token_response_is_refused(status: int) -> None:
    """A token response nested too deep to parse is TARA answering garbage, not a crash."""
    client = _client(jwks=_unused, token=lambda: httpx.Response(status, content=DEEP_JSON))
    with pytest.raises(IdpBadResponse, match=str(status)):
        await client.exchange_code("code-0123")


TOKEN_ANSWERS = [
    (401, {"error": "invalid_client"}, ClientRejected, "invalid_client"),
    (400, {"error": "invalid_client"}, ClientRejected, "invalid_client"),
    (400, {"error": "unauthorized_client"}, ClientRejected, "unauthorized_client"),
    (400, {"error": "invalid_grant"}, CodeExchangeFailed, "invalid_grant"),
    (400, {"error": "invalid_request"}, RequestRejected, "invalid_request"),
    (400, {"error": "unsupported_grant_type"}, RequestRejected, "unsupported_grant_type"),
    (400, {"error": "no_such_error"}, IdpBadResponse, None),
    (400, {"error": "invalid_grant\r\n\x1b[31m"}, IdpBadResponse, None),
    (400, {"error": ["invalid_grant"]}, IdpBadResponse, None),
    (401, {"error": "invalid_grant"}, IdpBadResponse, None),
    (404, None, IdpBadResponse, None),
    (302, None, IdpBadResponse, None),
    (405, None, IdpBadResponse, None),
    (429, None, IdpUnavailable, None),
    (500, {"error": "server_error"}, IdpUnavailable, None),
    (503, None, IdpUnavailable, None),
]


@pytest.mark.parametrize(("status", "body", "kind", "error"), TOKEN_ANSWERS)
async def test_each_token_endpoint_answer_is_classified(
    status: int, body: dict[str, Any] | None, kind: type[TaraError], error: str | None
) -> None:
    """Every token endpoint answer other than a token response maps to one error class:
    the browser's code refused (400 to it), or TARA or our configuration at fault."""
    answer = httpx.Response(status, json=body) if body else httpx.Response(status, text="<html>")
    client = _client(jwks=_unused, token=lambda: answer)
    with pytest.raises(TaraError) as caught:
        await client.exchange_code("code-0123")
    assert type(caught.value) is kind
    assert caught.value.upstream is (kind is not CodeExchangeFailed)
    assert getattr(caught.value, "error", None) == error
    assert "\x1b" not in str(caught.value)
    assert "\r" not in str(caught.value)


async def test_a_token_response_without_an_id_token_is_a_bad_response() -> None:
    """A 200 whose JSON has no id_token is TARA at fault, not the code."""
    client = _client(jwks=_unused, token=lambda: httpx.Response(200, json={"scope": "openid"}))
    with pytest.raises(IdpBadResponse, match="no id_token"):
        await client.exchange_code("code-0123")


async def test_concurrent_logins_share_one_jwks_refresh() -> None:
    """Many callbacks finding the key set stale at once cause one fetch, not one each."""
    fetches = 0

    async def fetch() -> dict[str, Any]:
        nonlocal fetches
        fetches += 1
        await asyncio.sleep(0.05)
        return {"keys": [_good_jwk()]}

    now = [0.0]
    cache = JwksCache(fetch, ttl=60, cooldown=10, clock=lambda: now[0])
    await asyncio.gather(*(cache.keys() for _ in range(20)))
    assert fetches == 1
    now[0] = 61.0
    await asyncio.gather(*(cache.keys() for _ in range(20)))
    assert fetches == 2
    await asyncio.gather(*(cache.refetch_for(f"kid-{i}") for i in range(5)))
    assert fetches == 3


async def test_a_jwks_outage_costs_one_attempt_per_stampede_and_pause() -> None:
    """Past the TTL with TARA's JWKS failing: concurrent callers share one attempt and
    all get the cached keys; within ``retry_after`` no caller tries again, after it one
    does; past the stale-if-error window the keys are refused."""
    attempts = 0
    down = False

    async def fetch() -> dict[str, Any]:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0)
        if down:
            raise IdpUnavailable("GET /oidc/jwks answered 503")
        return {"keys": [_good_jwk()]}

    now = [0.0]
    cache = JwksCache(
        fetch, ttl=60, cooldown=10, clock=lambda: now[0], stale_if_error=600, retry_after=30
    )
    await cache.keys()
    down, now[0] = True, 61.0
    got = await asyncio.gather(*(cache.keys() for _ in range(20)))
    assert attempts == 2
    assert all(set(keys) == {"good"} for keys in got)
    assert cache.stale_since == 61.0
    now[0] = 90.0
    await cache.keys()
    assert attempts == 2
    now[0] = 92.0
    await cache.keys()
    assert attempts == 3
    now[0] = 661.0
    with pytest.raises(IdpUnavailable, match="stale-if-error window"):
        await cache.keys()


async def test_a_token_endpoint_that_trickles_is_cut_off_at_the_timeout() -> None:
    """A TARA that sends its answer a byte at a time (each within httpx's per-read timeout)
    is cut off at the configured timeout overall, not after however long it drips."""

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
        writer.write(b"content-length: 100\r\n\r\n")
        try:
            for _ in range(100):  # 20 s in all
                await writer.drain()
                await asyncio.sleep(0.2)
                writer.write(b" ")
        except (ConnectionError, asyncio.CancelledError):
            pass
        writer.close()

    server = await asyncio.start_server(trickle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = TaraClientConfig(
        issuer=ISSUER,
        client_id="rp",
        client_secret=SecretStr("rp-secret-0123456789"),
        redirect_uri="https://rp.example/auth/callback",
        timeout_s=1.0,
    )
    async with server, httpx.AsyncClient() as http:
        client = TaraClient(config, http)
        client._discovery = Discovery(
            issuer=ISSUER,
            authorization_endpoint=ISSUER + "/oidc/authorize",
            token_endpoint=f"http://127.0.0.1:{port}/oidc/token",
            jwks_uri=ISSUER + "/oidc/jwks",
        )
        started = time.monotonic()
        with pytest.raises(IdpUnavailable):
            await client.exchange_code("code-0123")
        # cut off at the 1 s timeout, not after the 20 s drip: the bound leaves a loaded
        # machine room (2.5 s left it only 1.5 s), it is not a measurement
        assert time.monotonic() - started < 10


async def test_unknown_kids_refetch_the_key_set_a_bounded_number_of_times() -> None:
    """Each new unknown kid may refetch the set, but at most three times a minute in all:
    tokens under ever new kids cannot make us fetch TARA's JWKS once each."""
    fetches = 0

    async def fetch() -> dict[str, Any]:
        nonlocal fetches
        fetches += 1
        return {"keys": [_good_jwk()]}

    now = [0.0]
    cache = JwksCache(fetch, ttl=3600, cooldown=10, clock=lambda: now[0])
    await cache.keys()
    refetched = [await cache.refetch_for(f"forged-{i}") for i in range(50)]
    assert refetched == [True] * 3 + [False] * 47
    assert fetches == 1 + 3
    now[0] = 61.0
    assert await cache.refetch_for("rotated")
    assert fetches == 5


async def test_a_refetch_over_the_bound_waits_for_the_one_running() -> None:
    """A login whose own refetch is over the bound does not fail on the old set while a
    refetch started just before is still running: it waits for that one's keys."""
    published: list[dict[str, Any]] = [_good_jwk("old")]
    gate: asyncio.Event | None = None
    started = asyncio.Event()

    async def fetch() -> dict[str, Any]:
        if gate is not None:
            started.set()
            await gate.wait()
        return {"keys": list(published)}

    cache = JwksCache(fetch, ttl=3600, cooldown=10, clock=lambda: 0.0)
    async with asyncio.timeout(10):
        await cache.keys()
        assert await cache.refetch_for("forged-0")
        assert await cache.refetch_for("forged-1")
        published.append(_good_jwk("new"))
        gate = asyncio.Event()
        first = asyncio.create_task(cache.refetch_for("new"))
        await started.wait()
        second = asyncio.create_task(cache.refetch_for("new-too"))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not second.done()
        gate.set()
        assert await first
        assert not await second
    assert set(await cache.keys()) == {"old", "new"}


def _config(scopes: tuple[str, ...]) -> TaraClientConfig:
    return TaraClientConfig(
        issuer=ISSUER,
        client_id="rp",
        client_secret=SecretStr("rp-secret-0123456789"),
        redirect_uri="https://rp.example/auth/callback",
        scopes=scopes,
    )


@pytest.mark.parametrize(
    "scopes",
    [
        ("openid",),
        ("openid", "idcard", "mid", "smartid", "eidas", "email", "phone"),
        ("openid", "eidasonly", "eidas:country:de"),
    ],
)
async def test_scopes_tara_knows_are_accepted(scopes: tuple[str, ...]) -> None:
    """openid with any of TARA's scopes (eidas:country:xx with eidasonly) builds."""
    assert _config(scopes).scopes == scopes


@pytest.mark.parametrize(
    ("scopes", "said"),
    [
        (("idcard",), "openid"),
        (("openid", "profile"), "profile"),
        (("openid", "openid mid"), "openid mid"),
        (("openid", "eidas:country:de"), "eidasonly"),
        (("openid", "eidasonly", "eidas:country:DE"), "eidas:country:DE"),
        (("openid", "MID"), "MID"),
    ],
)
async def test_a_scope_tara_refuses_is_refused_when_built(
    scopes: tuple[str, ...], said: str
) -> None:
    """A scope TARA answers with invalid_scope (unknown, upper case, a country without
    eidasonly) stops the configuration, naming it, instead of failing every login."""
    with pytest.raises(ValueError, match=said):
        _config(scopes)


@pytest.mark.parametrize("issuer", [ISSUER + "/", "https://tara.ria.ee/"])
async def test_an_issuer_with_a_trailing_slash_is_refused_when_built(issuer: str) -> None:
    """TARA's issuer has no trailing slash; one there would fail every iss check."""
    with pytest.raises(ValueError, match="trailing slash"):
        TaraClientConfig(
            issuer=issuer,
            client_id="rp",
            client_secret=SecretStr("rp-secret-0123456789"),
            redirect_uri="https://rp.example/auth/callback",
        )
