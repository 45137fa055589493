"""Real servers on loopback for the login end-to-end tests: the TARA mock and the service
under uvicorn in threads, a browser-like httpx client, and readers of the audit store."""

from __future__ import annotations

import base64
import functools
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from kroonika.audit import Query, SqlAuditStore, SqlSubjectKeys, run_query
from kroonika.audit.privacy import reveal
from kroonika.db import make_engine
from kroonika.sessions import ManualClock
from kroonika.settings import Settings
from kroonika.tara.mock import MockConfig, RegisteredClient
from kroonika.tara.mock import create_app as create_mock
from kroonika.tokens import ClientRegistry, NewClient, SystemClock
from kroonika.web import Services, create_app

CLIENT_ID = "kroonika-e2e"
SECRET = "e2e secret/with:reserved&chars-0123456789"
ALL_SCOPES = ["openid", "idcard", "mid", "smartid", "eidas"]


@functools.cache
def mock_keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    return (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


def e2e_mock(
    issuer: str,
    redirect_uris: tuple[str, ...],
    *,
    extra_scopes: tuple[str, ...] = (),
    clock: Callable[[], float] | None = None,
) -> Any:
    """The TARA mock at ``issuer`` with the e2e client (every login method, and
    ``extra_scopes``) registered for ``redirect_uris``, its control API on; ``clock`` is
    the time it tells (a test's moved clock), the real time if None."""
    timing: dict[str, Any] = {} if clock is None else {"clock": clock}
    return create_mock(
        MockConfig(
            issuer=issuer,
            clients=(
                RegisteredClient(
                    client_id=CLIENT_ID,
                    secret=SecretStr(SECRET),
                    redirect_uris=redirect_uris,
                    allowed_scopes=frozenset([*ALL_SCOPES, *extra_scopes]),
                ),
            ),
            keys=mock_keys(),
            control_api=True,
            **timing,
        )
    )


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve(app: Any, sock: socket.socket, *, lifespan: str = "on") -> Iterator[str]:
    """Serve ``app`` on ``sock`` in a thread (no access log: URLs can carry codes)."""
    server = uvicorn.Server(
        uvicorn.Config(
            app, lifespan=lifespan, log_level="warning", access_log=False, proxy_headers=False
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


@dataclass
class Stack:
    mock: str
    service: str
    settings: Settings
    services: Services
    clock: ManualClock
    app: Any = None  # the service's FastAPI app (its ``state``: the token components ...)

    def browser(self, *, autologin: str | None = "38001085718", **extra: str) -> httpx.Client:
        """An httpx client that follows redirects and keeps cookies like a browser; on the
        mock's authorize page it 'picks' the identity ``autologin`` (or cancels)."""
        mock_authorize = self.mock + "/oidc/authorize"

        def choose(request: httpx.Request) -> None:
            if autologin is not None and str(request.url).startswith(mock_authorize):
                request.url = request.url.copy_merge_params({"autologin": autologin, **extra})

        return httpx.Client(
            follow_redirects=True,
            timeout=20,
            event_hooks={"request": [choose]},
            headers={"user-agent": "Mozilla/5.0 (e2e) Kroonika-tests"},
        )

    def login(self) -> tuple[httpx.Response, dict[str, Any], list[tuple[str, str]]]:
        """One login in a fresh browser to its end: the last answer, the request's
        ``auth.login`` and its flow's transitions."""
        with self.browser() as b:
            r = b.get(self.service + "/auth/login")
        login, steps = self.login_events(r.headers["x-request-id"])
        return r, login, steps

    def callback_url(self, browser: httpx.Client, code: str = "38001085718") -> str:
        """Start a login in ``browser`` and let the mock log ``code`` in, but stop before
        following TARA's redirect: the callback URL (with code and state) it names."""
        start = browser.get(self.service + "/auth/login", follow_redirects=False)
        authorize = httpx.URL(start.headers["location"]).copy_merge_params({"autologin": code})
        back = httpx.get(str(authorize), timeout=10)
        assert back.status_code in (302, 303)
        return str(back.headers["location"])

    def personal(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The decrypted ``pii`` of ``event`` (what TARA said about the person)."""
        store = SqlAuditStore(self.settings.resolved_audit_store_url(), read_only=True)
        try:
            keys = SqlSubjectKeys(store, self.settings.secret_bytes("master_key"))
            return reveal(event["pii"], event["id"], keys)
        finally:
            store.close()

    def mock_switch(self, **switches: Any) -> None:
        httpx.post(self.mock + "/mock/config", json=switches, timeout=10).raise_for_status()

    def mock_rotate(self, *, new_key: bool) -> dict[str, Any]:
        r = httpx.post(self.mock + "/mock/rotate", json={"new_key": new_key}, timeout=10)
        result: dict[str, Any] = r.raise_for_status().json()
        return result

    def events(self, **query: Any) -> list[dict[str, Any]]:
        store = SqlAuditStore(self.settings.resolved_audit_store_url(), read_only=True)
        try:
            return [orjson.loads(b) for b in run_query(store, Query(**query))]
        finally:
            store.close()

    def raw_events(self) -> list[bytes]:
        store = SqlAuditStore(self.settings.resolved_audit_store_url(), read_only=True)
        try:
            return list(run_query(store, Query()))
        finally:
            store.close()

    def login_events(self, request_id: str) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """The one ``auth.login`` of the request and its flow's transitions (from, to)."""
        logins = self.events(types=("auth.login",), correlation=request_id)
        assert len(logins) == 1, logins
        flow_id = logins[0]["correlation"]["flow_id"]
        transitions = self.events(types=("auth.flow.transition",), correlation=flow_id)
        return logins[0], [
            (t["details"]["from_state"], t["details"]["to_state"]) for t in transitions
        ]


SUCCESS_STEPS = [
    ("none", "started"),
    ("started", "redirected"),
    ("redirected", "callback_received"),
    ("callback_received", "code_exchanged"),
    ("code_exchanged", "id_token_verified"),
    ("id_token_verified", "session_created"),
]


@contextmanager
def running_stack(
    tmp_path: Path,
    *,
    database_url: str | None = None,
    settings_overrides: dict[str, Any] | None = None,
    mock_strict: bool = False,
    mock_client: dict[str, Any] | None = None,
    configure: Callable[[Services], None] | None = None,
    mock_clock: Callable[[], float] | None = None,
    clock_start: float | None = None,
) -> Iterator[Stack]:
    """The mock and the service on free loopback ports, wired to each other
    (``mock_client``: more fields of the client registered with the mock). Both read
    ``Stack.clock`` (starting at ``clock_start``, default now) unless ``mock_clock``
    gives the mock a clock of its own."""
    service_sock = free_socket()
    mock_sock = free_socket()
    # One clock for both: with the mock on real time, a stack that lives longer than
    # the leeway (a module fixture) saw every later ID token as issued in the future.
    clock = ManualClock(clock_start)
    service_url = f"http://127.0.0.1:{service_sock.getsockname()[1]}"
    mock_url = f"http://127.0.0.1:{mock_sock.getsockname()[1]}"
    mock = create_mock(
        MockConfig(
            issuer=mock_url,
            clients=(
                RegisteredClient(
                    **{
                        "client_id": CLIENT_ID,
                        "secret": SecretStr(SECRET),
                        "redirect_uris": (service_url + "/auth/callback",),
                        "allowed_scopes": frozenset([*ALL_SCOPES, "email", "phone"]),
                        **(mock_client or {}),
                    }
                ),
            ),
            strict=mock_strict,
            keys=mock_keys(),
            control_api=True,
            clock=mock_clock or clock,
        )
    )
    values: dict[str, Any] = {
        "var_dir": tmp_path / "var",
        "audit_strict": True,
        "database_url": database_url,
        "tara_issuer": mock_url,
        "tara_client_id": CLIENT_ID,
        "tara_client_secret": SecretStr(SECRET),
        "tara_redirect_uri": service_url + "/auth/callback",
        "tara_scopes": ALL_SCOPES,
        "cookie_secure": False,
        "public_url": service_url,
        **(settings_overrides or {}),
    }
    settings = Settings(**values)
    app = create_app(settings, clock=clock)
    services: Services = app.state.services
    if configure is not None:
        configure(services)
    with serve(mock, mock_sock, lifespan="off") as m, serve(app, service_sock) as s:
        yield Stack(mock=m, service=s, settings=settings, services=services, clock=clock, app=app)


@contextmanager
def refusing_connections(url: str) -> Iterator[None]:
    """The PostgreSQL database at ``url`` refuses new connections and drops the ones it
    has, then comes back."""
    server, name = url.rsplit("/", 1)

    def allow(on: bool) -> None:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(on).lower()}')
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )

    allow(False)
    try:
        yield
    finally:
        allow(True)


def register_client(stack: Stack, name: str, seen: list[str], **kw: Any) -> NewClient:
    """Register a relying service straight in the stack's database (allowed audience
    ``svc-a`` unless given); its secret is added to ``seen`` for the secret sweeps."""
    kw.setdefault("allowed_audiences", ["svc-a"])
    engine = make_engine(stack.settings.resolved_database_url())
    try:
        new = ClientRegistry(engine, clock=SystemClock(), scrypt_n=2**10).register(name, **kw)
    finally:
        engine.dispose()
    seen.append(new.secret)
    return new


def basic_auth(c: NewClient) -> dict[str, str]:
    """The client's HTTP Basic credentials as a header."""
    raw = f"{c.client.client_id}:{c.secret}".encode()
    return {"authorization": "Basic " + base64.b64encode(raw).decode()}


class LogLines(logging.Handler):
    """Every log record as one line of text (name, level, message, traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.name} {record.levelname} {text}")


@contextmanager
def watching_logs(lines: LogLines) -> Iterator[None]:
    """``lines`` gets the INFO and higher records of the root logger and of uvicorn's own
    (which do not propagate) while the block runs."""
    watched = [logging.getLogger(name) for name in (None, "uvicorn", "uvicorn.error")]
    for logger in watched:
        logger.addHandler(lines)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.setLevel(level)
        for logger in watched:
            logger.removeHandler(lines)
