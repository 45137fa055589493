"""The login stack for security tests: the TARA mock and the service on loopback sharing
one clock that the test can move (mock, sessions, and the audit trail's time stamps), a
fixture City database (mmdb-writer), the loopback as a trusted proxy so that
``X-Forwarded-For`` sets the client address, and helpers for logins from a place."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from login_harness import ALL_SCOPES, CLIENT_ID, SECRET, Stack, e2e_mock, free_socket, serve
from pydantic import SecretStr

from kroonika.settings import Settings
from kroonika.tokens import TokenComponents
from kroonika.web import Services, create_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "audit" / "enrich"))
from geo_fixture import PLACES, build_city_db

# Addresses that the fixture database places (the same as the DB-IP City Lite does).
TARTU = "193.40.0.1"
TALLINN = "194.126.100.1"
LONDON = "81.2.69.142"
SYDNEY = "1.1.1.1"
MOUNTAIN_VIEW = "8.8.8.8"
GEO_PLACES = {
    **PLACES,
    "8.8.8.0/24": ("US", "United States", "Mountain View", 37.386, -122.0838, 20),
}


@dataclass
class OffsetClock:
    """Real time plus an offset the test moves: the mock and the service agree, tokens
    stay valid between them, and events carry the moved time."""

    offset_s: float = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset_s

    def ns(self) -> int:
        return time.time_ns() + int(self.offset_s * 1_000_000_000)

    def advance(self, seconds: float) -> None:
        self.offset_s += seconds

    @property
    def now(self) -> float:
        return self()


@dataclass
class SecStack(Stack):
    app: Any = None
    offset: OffsetClock = field(default_factory=OffsetClock)

    @property
    def tokens(self) -> TokenComponents:
        comps: TokenComponents = self.app.state.tokens
        return comps

    def browser_from(self, ip: str, code: str | None = "38001085718", **extra: str) -> httpx.Client:
        """A browser whose requests reach the service through the trusted proxy from ``ip``."""
        client = self.browser(autologin=code, **extra)
        client.headers["x-forwarded-for"] = ip
        return client

    def login(self, ip: str, code: str = "38001085718", **extra: str) -> httpx.Response:
        """A whole login through the mock from ``ip``; the callback's response (any valid
        personal code: the mock is given names for people it does not know)."""
        extra.setdefault("autologin_given_name", "MARI")
        extra.setdefault("autologin_family_name", "MAASIKAS")
        with self.browser_from(ip, code, **extra) as b:
            landed = b.get(self.service + "/auth/login")
        callback = [h for h in landed.history if h.url.path == "/auth/callback"]
        return callback[-1] if callback else landed

    def violations(self, request_id: str) -> list[dict[str, Any]]:
        return self.events(types=("security.policy_violation",), correlation=request_id)

    def drain(self) -> None:
        """Wait until the security monitor has examined everything committed so far."""
        import asyncio

        monitor = self.app.state.security_monitor
        loop = monitor._loop
        if loop is not None:
            asyncio.run_coroutine_threadsafe(monitor.drain(), loop).result(timeout=30)


class AsRole:
    """Calls to a running :class:`SecStack` with the API key of a role (``keys``: role to
    key), and coroutines run on the service's own event loop."""

    stack: SecStack
    keys: dict[str, str]

    def call(self, method: str, path: str, role: str = "security", **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.keys[role]}", **kw.pop("headers", {})}
        return httpx.request(method, self.stack.service + path, headers=headers, timeout=30, **kw)

    def run(self, coro: Any) -> Any:
        import asyncio

        loop = self.stack.app.state.security_monitor._loop
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)


@contextmanager
def security_stack(
    tmp_path: Path,
    *,
    settings_overrides: dict[str, Any] | None = None,
    geo: bool = True,
) -> Iterator[SecStack]:
    service_sock = free_socket()
    mock_sock = free_socket()
    service_url = f"http://127.0.0.1:{service_sock.getsockname()[1]}"
    mock_url = f"http://127.0.0.1:{mock_sock.getsockname()[1]}"
    clock = OffsetClock()
    mock = e2e_mock(
        mock_url, (service_url + "/auth/callback",), extra_scopes=("email", "phone"), clock=clock
    )
    values: dict[str, Any] = {
        "var_dir": tmp_path / "var",
        "audit_strict": True,
        "tara_issuer": mock_url,
        "tara_client_id": CLIENT_ID,
        "tara_client_secret": SecretStr(SECRET),
        "tara_redirect_uri": service_url + "/auth/callback",
        "tara_scopes": ALL_SCOPES,
        "cookie_secure": False,
        "public_url": service_url,
        "trusted_proxies": ["127.0.0.0/8"],
        "token_client_scrypt_n": 2**10,
        "geo_enabled": geo,
        **(settings_overrides or {}),
    }
    if geo:
        values.setdefault("geo_db_path", build_city_db(tmp_path / "city.mmdb", GEO_PLACES))
    settings = Settings(**values)
    app = create_app(settings, clock=clock, audit_clock=clock.ns)
    services: Services = app.state.services
    with serve(mock, mock_sock, lifespan="off") as m, serve(app, service_sock) as s:
        yield SecStack(
            mock=m,
            service=s,
            settings=settings,
            services=services,
            clock=clock,  # type: ignore[arg-type]
            app=app,
            offset=clock,
        )
