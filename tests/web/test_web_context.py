"""Request ids, trace ids, trusted proxies, body limit, security headers, error bodies."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from kroonika.settings import Settings
from kroonika.web import TrustedProxies, create_app
from kroonika.web._context import request_id_from, trace_id_from
from kroonika.web._metrics import _loopback
from tara_kit import tara_client


@pytest_asyncio.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app in process (ASGI transport) with its lifespan running."""
    settings = Settings(
        var_dir=tmp_path / "var", audit_strict=True, cookie_secure=False, max_body_bytes=2048
    )
    app = create_app(settings, http_client=tara_client())
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
    ):
        yield c


@pytest.mark.asyncio
async def test_valid_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    """A safe incoming X-Request-ID comes back unchanged."""
    r = await client.get("/health", headers={"x-request-id": "abc-12345678"})
    assert r.headers["x-request-id"] == "abc-12345678"


@pytest.mark.asyncio
async def test_unsafe_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    """An X-Request-ID with odd characters is replaced by a generated one."""
    r = await client.get("/health", headers={"x-request-id": "<script>alert(1)</script>"})
    assert r.headers["x-request-id"] != "<script>alert(1)</script>"
    assert len(r.headers["x-request-id"]) == 32


def test_traceparent_parsing() -> None:
    """A valid traceparent yields its trace id; all-zero or malformed ones do not."""
    tid = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id_from(f"00-{tid}-00f067aa0ba902b7-01") == tid
    assert trace_id_from(f"00-{'0' * 32}-00f067aa0ba902b7-01") is None
    assert trace_id_from("garbage") is None
    assert request_id_from("short") is None


def test_forwarded_for_only_through_trusted_proxies() -> None:
    """X-Forwarded-For is honoured only when the peer is a trusted proxy."""
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client_ip("203.0.113.9", "198.51.100.1") == "203.0.113.9"
    assert proxies.client_ip("10.0.0.1", "198.51.100.1, 10.0.0.2") == "198.51.100.1"
    assert proxies.client_ip("10.0.0.1", "6.6.6.6, 198.51.100.1") == "198.51.100.1"
    assert TrustedProxies([]).client_ip("10.0.0.1", "1.2.3.4") == "10.0.0.1"


def test_ipv4_mapped_addresses_are_ipv4() -> None:
    """Behind a listener bound to ``::`` an IPv4 proxy shows as ``::ffff:10.0.0.1``: it is
    still trusted (else every client shares the proxy's address and its rate limits), and
    a mapped client address is given as IPv4."""
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client_ip("::ffff:10.0.0.1", "198.51.100.1") == "198.51.100.1"
    assert proxies.client_ip("10.0.0.1", "::ffff:198.51.100.1") == "198.51.100.1"
    assert proxies.client_ip("10.0.0.1", "198.51.100.1, ::ffff:10.0.0.2") == "198.51.100.1"
    assert TrustedProxies([]).client_ip("::ffff:203.0.113.9", None) == "203.0.113.9"
    assert TrustedProxies([]).client_ip("2001:db8::1", None) == "2001:db8::1"
    assert _loopback("::ffff:127.0.0.1")  # a local scraper may read /metrics


@pytest.mark.asyncio
async def test_security_headers_present(client: httpx.AsyncClient) -> None:
    """Responses carry nosniff, frame denial, no-referrer and a CSP."""
    h = (await client.get("/health")).headers
    assert h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in h["content-security-policy"]


@pytest.mark.asyncio
async def test_body_over_limit_is_413(client: httpx.AsyncClient) -> None:
    """A body over max_body_bytes is refused with 413."""
    r = await client.post("/auth/logout", content=b"x" * 4096)
    assert r.status_code == 413


@pytest.mark.asyncio
async def test_not_found_has_no_stack_trace(client: httpx.AsyncClient) -> None:
    """Errors are a small JSON body with the request id."""
    r = await client.get("/nope")
    assert r.status_code == 404
    assert set(r.json()) == {"error", "request_id"}


@pytest.mark.asyncio
async def test_ready_reports_database_and_audit(client: httpx.AsyncClient) -> None:
    """/ready is 200 with the database, audit store, writer and TARA's discovery all ok."""
    r = await client.get("/ready")
    assert r.status_code == 200
    assert r.json()["checks"] == {
        "database": "ok",
        "audit_store": "ok",
        "audit_writer": "ok",
        "tara": "ok",
    }


@pytest.mark.asyncio
@pytest.mark.parametrize("ending", ["cancelled", "finished"])
async def test_ready_reports_a_writer_task_that_ended(tmp_path: Path, ending: str) -> None:
    """/ready is 503 with audit_writer down once the writer task has ended (cancelled, or
    returned on a stop sentinel nobody sent through stop()), although the trail still
    holds the task."""
    settings = Settings(var_dir=tmp_path / "var", audit_strict=True, cookie_secure=False)
    app = create_app(settings, http_client=tara_client())
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
    ):
        assert (await c.get("/ready")).status_code == 200
        trail = app.state.services.audit.trail
        task = trail._task
        if ending == "cancelled":
            task.cancel()
        else:
            await trail._queue.put(None)  # the writer's stop sentinel: it returns
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert trail._task is task
        assert task.done()
        r = await c.get("/ready")
        assert r.status_code == 503
        assert r.json()["checks"]["audit_writer"] == "down"


@pytest.mark.asyncio
async def test_return_to_outside_allow_list_is_refused(client: httpx.AsyncClient) -> None:
    """An open redirect through return_to is refused before any flow starts."""
    for bad in ("https://evil.example/", "//evil.example/", "/\\evil"):
        r = await client.get("/auth/login", params={"return_to": bad}, follow_redirects=False)
        assert r.status_code == 400


@pytest.mark.asyncio
async def test_a_crash_is_500_with_the_request_id_and_no_detail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An unhandled exception answers 500 ``internal_error`` with the request id in the
    body and the header and the security headers, never the exception's text; the log
    has one line with the request id and the traceback."""
    settings = Settings(var_dir=tmp_path / "var", audit_strict=True, cookie_secure=False)
    app = create_app(settings, http_client=tara_client())

    async def boom() -> None:
        raise RuntimeError("detail with a secret s3cr3t-value")

    app.add_api_route("/boom", boom)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as c,
    ):
        r = await c.get("/boom", headers={"x-request-id": "crash-12345678"})
    assert r.status_code == 500
    assert r.json() == {"error": "internal_error", "request_id": "crash-12345678"}
    assert r.headers["x-request-id"] == "crash-12345678"
    assert r.headers["cache-control"] == "no-store"
    assert "s3cr3t" not in r.text
    (line,) = [rec for rec in caplog.records if rec.getMessage().startswith("unhandled")]
    assert line.getMessage() == "unhandled RuntimeError request_id=crash-12345678"
    assert line.exc_info is not None


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "gone"),
    [
        ("/users/38001085718/x", "38001085718"),
        (
            "/users/EE\uff13\uff18\uff10\uff10\uff11\uff10\uff18\uff15\uff17\uff11\uff18",
            "\uff18\uff15",
        ),
        ("/t/eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLWJ5dGVz", "eyJzdWIiOiJ4In0"),
        ("/k/Zx8Kq2LmN4pR7tVw9yB3cD5fG6hJ1kM0nQ", "Zx8Kq2LmN4pR7tVw9yB3cD5fG6hJ1kM0nQ"),
    ],
)
async def test_the_access_log_keeps_no_secret_or_personal_code_from_a_path(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, path: str, gone: str
) -> None:
    """A client may put a token or a personal code in a URL's path (a mistaken link, a
    probe): the access log line names the request with them cut out, as the trail
    would, and says what was cut."""
    with caplog.at_level("INFO", logger="kroonika.web.access"):
        r = await client.get(path)
    assert r.status_code == 404
    (line,) = [m.getMessage() for m in caplog.records if m.name == "kroonika.web.access"]
    assert gone not in line
    assert "[REDACTED:" in line
    assert f"request_id={r.headers['x-request-id']}" in line


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "kept", "gone"),
    [
        # a generated client id (kc_ + secrets.token_urlsafe(12)) is no secret
        ("/admin/clients/kc_cCnMTdumdwG65ULp", "kc_cCnMTdumdwG65ULp", None),
        ("/admin/clients/kc_cCnMTdumdwG65ULp/disable", "kc_cCnMTdumdwG65ULp/disable", None),
        # a client secret (secrets.token_urlsafe(32)) where the id goes is
        (
            "/admin/clients/Zx8Kq2LmN4pR7tVw9yB3cD5fG6hJ1kM0nQ0a1b2c3d4",
            "/admin/clients/[REDACTED:secret]",
            "Zx8Kq2LmN4pR7tVw9yB3cD5fG6hJ1kM0nQ",
        ),
        (
            "/admin/clients/eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLWJ5dGVz",
            "/admin/clients/[REDACTED:jwt]",
            "eyJzdWIiOiJ4In0",
        ),
    ],
)
async def test_the_access_log_names_a_client_id_but_not_a_secret_in_its_place(
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    path: str,
    kept: str,
    gone: str | None,
) -> None:
    """An operator reads which client a logged call changed; a secret pasted where the
    client id goes is still cut out."""
    with caplog.at_level("INFO", logger="kroonika.web.access"):
        r = await client.post(path)
    (line,) = [m.getMessage() for m in caplog.records if m.name == "kroonika.web.access"]
    assert f"POST {path if gone is None else kept} {r.status_code} " in line
    assert kept in line
    assert gone is None or gone not in line


JTI = "r4CqL0xPz8Tn2WbKd5YhMg"  # secrets.token_urlsafe(16), as the token service mints


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "logged"),
    [
        (f"/admin/tokens/{JTI}/revoke", f"/admin/tokens/{JTI}/revoke"),
        (
            "/admin/tokens/eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLWJ5dGVz/revoke",
            "/admin/tokens/[REDACTED:jwt]/revoke",
        ),
        (
            "/admin/tokens/Zx8Kq2LmN4pR7tVw9yB3cD5fG6hJ1kM0nQ0a1b2c3d4/revoke",
            "/admin/tokens/[REDACTED:secret]/revoke",
        ),
    ],
    ids=["jti", "jwt", "secret"],
)
async def test_the_access_log_names_the_token_a_revoke_call_names(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, path: str, logged: str
) -> None:
    """The jti of ``POST /admin/tokens/{jti}/revoke`` is logged as it is, as the trail's
    token events record it; a token or a secret pasted in its place is still cut out."""
    with caplog.at_level("INFO", logger="kroonika.web.access"):
        r = await client.post(path)
    (line,) = [m.getMessage() for m in caplog.records if m.name == "kroonika.web.access"]
    assert f"POST {logged} {r.status_code} " in line


@pytest.mark.asyncio
async def test_the_access_log_cuts_a_very_long_path(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A 12 kB path is logged as its first 512 characters and how many more there were:
    one request cannot write kilobytes into the operational log."""
    path = "/" + "a/" * 6000
    with caplog.at_level("INFO", logger="kroonika.web.access"):
        r = await client.get(path)
    assert r.status_code == 404
    (line,) = [m.getMessage() for m in caplog.records if m.name == "kroonika.web.access"]
    assert len(line) < 700
    assert f"/{'a/' * 255}a…(+{len(path) - 512} characters)" in line
