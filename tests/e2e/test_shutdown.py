"""A clean stop of ``kroonika serve`` releases everything it holds (decision 0010).

The service runs as a real process on PostgreSQL (business database and audit store),
the real Redis (plain, and over TLS through the proxy of ``tests/test_redis_tls.py``:
rate limiter, list notices, detector windows) and a NATS sink on a nats-server of the
test's own (its monitoring port counts the connections). After some logins it gets
SIGTERM. What is asserted:

1. it exits 0, and ``audit.log.stop`` with reason ``shutdown`` is in the store;
2. once the service has returned from ``serve``, and while its process is still alive
   (a process that exits closes its sockets anyway, which would hide a pool the stop
   left open), the servers count none of its connections: PostgreSQL's
   ``pg_stat_activity`` for the test's database, Redis's ``CLIENT LIST`` for the client
   name the URL gives, nats-server's ``/connz``;
3. Python reported no unclosed resource (``ResourceWarning`` is an error, stderr holds
   no "unclosed");
4. a request in flight when SIGTERM arrives completes, and its audit event is stored.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import psycopg
import pytest
import redis
from login_harness import ALL_SCOPES, CLIENT_ID, SECRET, e2e_mock, free_socket, serve
from starlette.types import ASGIApp, Receive, Scope, Send
from test_two_instances import Instance, browser, free_port

from kroonika.audit import Query, SqlAuditStore, run_query

sys.path.insert(0, str(Path(__file__).parents[1] / "audit" / "sinks"))

from sink_kit import OwnNats, make_ca

from test_redis_tls import TlsProxy

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.nats]

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
SUBJECTS = "kroonika.audit"
#: an unclosed socket, transport or file the service leaves is an error (and on stderr)
WARNINGS = "error::ResourceWarning"

#: ``kroonika serve`` as the console script runs it; once ``main`` has returned (the
#: service stopped), the exit code is written to HELD and the process waits for
#: HELD.release before it exits with that code.
HOLDER = """
import gc, os, sys, time
from pathlib import Path
from kroonika.cli import main
held = Path(os.environ["SHUTDOWN_HELD"])
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
gc.collect()
# written whole or not at all: the test waits for the file and reads it at once
held.with_name(held.name + ".tmp").write_text(str(code))
os.replace(held.with_name(held.name + ".tmp"), held)
release = held.with_name(held.name + ".release")
deadline = time.monotonic() + 120
while not release.exists() and time.monotonic() < deadline:
    time.sleep(0.05)
sys.exit(code)
"""


class Held(Instance):
    """``kroonika serve`` in a process of its own, held alive after the stop."""

    def __init__(self, port: int, env: dict[str, str], tmp: Path) -> None:
        # not Instance.__init__: this process runs the holder, not the console script
        self.name = "serve"
        self.url = f"http://127.0.0.1:{port}"
        self.held = tmp / "held"
        self.stderr_path = tmp / "serve.stderr"
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-W", WARNINGS, "-c", HOLDER, "serve", "--port", str(port)],
            env={**env, "SHUTDOWN_HELD": str(self.held), "PYTHONWARNINGS": WARNINGS},
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )

    def wait_stopped(self, timeout: float = 90) -> int:
        """The code ``main`` ended with, once the service has stopped (the process lives on)."""
        deadline = time.monotonic() + timeout
        while not self.held.exists():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"serve's process ended ({self.proc.returncode}) instead of returning: "
                    + self.stderr()
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"serve did not stop within {timeout} s: {self.stderr()}")
            time.sleep(0.05)
        return int(self.held.read_text())

    def release(self) -> int:
        self.held.with_name(self.held.name + ".release").touch()
        try:
            return self.proc.wait(60)
        finally:
            self._stderr.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._stderr.close()

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")[-3000:]


def settle(count: Callable[[], int], timeout: float = 30) -> int:
    """``count()`` once it is 0, or its last value after ``timeout`` (a server notices a
    closed connection a moment later)."""
    deadline = time.monotonic() + timeout
    while (n := count()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return n


def postgres_connections(database: str) -> int:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def redis_connections(name: str) -> int:
    with redis.Redis(host="127.0.0.1", port=6379) as r:
        return sum(1 for c in r.client_list() if c.get("name") == name)


def nats_connections(monitor: int) -> int:
    body = httpx.get(f"http://127.0.0.1:{monitor}/connz", timeout=5).json()
    return int(body["num_connections"])


@pytest.fixture(params=["redis", "rediss"])
def redis_url_named(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A Redis URL (plain, or TLS through a proxy to the real Redis) whose clients carry
    a name of their own, and that name."""
    name = f"kroonika-shutdown-{uuid.uuid4().hex[:8]}"
    if request.param == "redis":
        yield f"redis://127.0.0.1:6379/0?client_name={name}", name
        return
    ca, cert, key = make_ca(tmp_path / "pki")
    proxy = TlsProxy(cert, key, ("127.0.0.1", 6379))
    try:
        yield (
            f"rediss://localhost:{proxy.port}/0?ssl_ca_certs={quote(str(ca))}&client_name={name}",
            name,
        )
    finally:
        proxy.close()


class Gate:
    """The mock TARA; while the gate is shut, its token endpoint waits (so a login's
    callback, which asks it for the tokens, stays in flight)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.open = threading.Event()
        self.open.set()
        self.holding = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/oidc/token" and not self.open.is_set():
            self.holding.set()
            await asyncio.to_thread(self.open.wait, 120)
        await self.app(scope, receive, send)


@dataclass
class Stack:
    base: str
    port: int
    mock: str
    gate: Gate
    env: dict[str, str]
    database_url: str


@pytest.fixture
def stack(
    tmp_path: Path,
    fresh_postgres_url: str,
    nats_server: tuple[OwnNats, int],
    redis_url_named: tuple[str, str],
) -> Iterator[Stack]:
    """The environment of ``kroonika serve`` on PostgreSQL, Redis and a NATS sink, and
    the mock TARA (gated) it logs in through."""
    server, _ = nats_server
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    mock_sock = free_socket()
    mock_url = f"http://127.0.0.1:{mock_sock.getsockname()[1]}"
    gate = Gate(e2e_mock(mock_url, (base + "/auth/callback",)))
    sinks = [{"kind": "nats", "name": "nats", "url": server.url, "subject_prefix": SUBJECTS}]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KROONIKA_", "SSLKEYLOG"))},
        "KROONIKA_VAR_DIR": str(tmp_path / "var"),
        "KROONIKA_DATABASE_URL": fresh_postgres_url,
        "KROONIKA_AUDIT_STORE_URL": fresh_postgres_url,
        "KROONIKA_REDIS_URL": redis_url_named[0],
        "KROONIKA_TARA_ISSUER": mock_url,
        "KROONIKA_TARA_CLIENT_ID": CLIENT_ID,
        "KROONIKA_TARA_CLIENT_SECRET": SECRET,
        "KROONIKA_TARA_SCOPES": json.dumps(ALL_SCOPES),
        "KROONIKA_PUBLIC_URL": base,
        "KROONIKA_TARA_REDIRECT_URI": base + "/auth/callback",
        "KROONIKA_COOKIE_SECURE": "false",
        "KROONIKA_AUDIT_SINKS": json.dumps(sinks),
        "KROONIKA_AUDIT_SINK_POLL_S": "0.2",
    }
    with serve(gate, mock_sock, lifespan="off") as mock_base:
        yield Stack(base, port, mock_base, gate, env, fresh_postgres_url)
    gate.open.set()


def _login(base: str, mock_base: str) -> str:
    """One login through the mock; the callback's request id."""
    with browser(mock_base) as b:
        r = b.get(base + "/auth/login?method=idcard&return_to=/")
    assert r.status_code == 200, r.status_code
    assert r.history
    return r.history[-1].headers["x-request-id"]


def _stored(database_url: str) -> tuple[list[dict[str, Any]], set[str]]:
    """The trail's ``audit.log.stop`` events, and the request ids of its logins."""
    store = SqlAuditStore(database_url, read_only=True)
    try:
        stops = [orjson.loads(raw) for raw in run_query(store, Query(types=("audit.log.stop",)))]
        logins = {
            orjson.loads(raw)["correlation"]["request_id"]
            for raw in run_query(store, Query(types=("auth.login",)))
        }
    finally:
        store.close()
    return stops, logins


@contextmanager
def held(stack: Stack, tmp: Path, **env: str) -> Iterator[tuple[Held, list[httpx.Client]]]:
    """``kroonika serve`` (``env`` added to the stack's), ready, and a list for the
    clients the test opens. However the test ends, the gate is opened, the process
    killed if it still runs, and every listed client closed (else its socket is
    reported unclosed in the next test)."""
    service = Held(stack.port, {**stack.env, **env}, tmp)
    clients: list[httpx.Client] = []
    try:
        service.wait_ready()
        yield service, clients
    finally:
        stack.gate.open.set()
        service.kill()
        for opened in clients:
            opened.close()


def stopped_in_order(service: Held, code: int, exit_code: int, stack: Stack) -> set[str]:
    """``main`` returned 0, the process exited 0 and the trail holds one
    ``audit.log.stop`` with reason ``shutdown``; the request ids of its logins."""
    stderr = service.stderr_path.read_text(errors="replace")
    assert code == 0, stderr[-3000:]
    assert exit_code == 0, stderr[-3000:]
    stops, logins = _stored(stack.database_url)
    assert [s["reason"] for s in stops] == ["shutdown"], stops
    return logins


def test_sigterm_stops_cleanly_and_releases_every_connection(
    tmp_path: Path,
    stack: Stack,
    nats_server: tuple[OwnNats, int],
    redis_url_named: tuple[str, str],
) -> None:
    """See the module docstring for exactly what is asserted (1 to 3)."""
    _, monitor = nats_server
    client_name = redis_url_named[1]
    database = stack.database_url.rsplit("/", 1)[1]
    with held(stack, tmp_path) as (service, _):
        acked = [_login(stack.base, stack.mock) for _ in range(3)]
        # the filters see the service's connections (else "none left" proves nothing)
        assert postgres_connections(database) > 0
        assert redis_connections(client_name) > 0, "no Redis client carries the name"
        assert nats_connections(monitor) > 0
        service.proc.send_signal(signal.SIGTERM)
        code = service.wait_stopped()
        left = {
            "postgres": settle(lambda: postgres_connections(database)),
            "redis": settle(lambda: redis_connections(client_name)),
            "nats": settle(lambda: nats_connections(monitor)),
        }
        exit_code = service.release()
    logins = stopped_in_order(service, code, exit_code, stack)
    stderr = service.stderr_path.read_text(errors="replace")
    assert left == {"postgres": 0, "redis": 0, "nats": 0}, stderr[-3000:]
    assert "unclosed" not in stderr.lower(), stderr[-3000:]
    assert set(acked) <= logins


def _to_callback(base: str, mock_base: str) -> tuple[httpx.Client, str]:
    """A login up to the redirect back to the service: the client (its flow cookie) and
    the callback URL (not yet asked for)."""
    client = httpx.Client(timeout=120, headers={"user-agent": "Mozilla/5.0 (e2e) shutdown"})
    r = client.get(base + "/auth/login?method=idcard&return_to=/")
    while r.is_redirect:
        location = r.headers["location"]
        if location.startswith(base + "/auth/callback"):
            return client, location
        url = httpx.URL(location)
        if url.path == "/oidc/authorize":
            url = url.copy_merge_params({"autologin": "38001085718"})
        r = client.get(url)
    raise AssertionError(f"the login did not come back to the service: {r.status_code}")


@pytest.mark.parametrize("redis_url_named", ["redis"], indirect=True)
def test_a_request_in_flight_at_sigterm_completes_and_its_event_is_stored(
    tmp_path: Path, stack: Stack
) -> None:
    """SIGTERM arrives while a login's callback waits for TARA's tokens: the service stops
    accepting connections, the callback completes (the session is made) once TARA
    answers, its ``auth.login`` is stored, and then the service stops (exit 0)."""
    answers: list[httpx.Response] = []
    with held(stack, tmp_path) as (service, clients):
        client, callback = _to_callback(stack.base, stack.mock)
        clients.append(client)
        stack.gate.open.clear()
        caller = threading.Thread(target=lambda: answers.append(client.get(callback)))
        caller.start()
        assert stack.gate.holding.wait(60), "the callback never asked TARA for the tokens"
        service.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the service stops accepting
            try:
                httpx.get(stack.base + "/health", timeout=2)
            except httpx.ConnectError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the service kept accepting connections after SIGTERM")
        stack.gate.open.set()
        caller.join(120)
        client.close()
        code = service.wait_stopped()
        exit_code = service.release()
    stderr = service.stderr_path.read_text(errors="replace")
    assert [r.status_code for r in answers] == [302], stderr[-3000:]
    logins = stopped_in_order(service, code, exit_code, stack)
    assert answers[0].headers["x-request-id"] in logins


@pytest.mark.parametrize("redis_url_named", ["redis"], indirect=True)
def test_a_request_still_in_flight_after_the_grace_does_not_hold_the_stop(
    tmp_path: Path, stack: Stack
) -> None:
    """TARA never answers the callback: once ``KROONIKA_SHUTDOWN_GRACE_S`` has passed
    the request is cancelled and answers 503 ``shutting_down`` (no session cookie, no
    traceback in the log), and the service still stops in order: exit 0,
    ``audit.log.stop`` stored, every connection released."""
    database = stack.database_url.rsplit("/", 1)[1]
    outcome: list[object] = []

    def call(client: httpx.Client, url: str) -> None:
        try:
            r = client.get(url)
            outcome.append((r.status_code, r.json().get("error"), list(r.cookies.keys())))
        except (httpx.HTTPError, ValueError) as exc:
            outcome.append(type(exc).__name__)

    with held(stack, tmp_path, KROONIKA_SHUTDOWN_GRACE_S="2") as (service, clients):
        client, callback = _to_callback(stack.base, stack.mock)
        clients.append(client)
        stack.gate.open.clear()
        caller = threading.Thread(target=call, args=(client, callback))
        caller.start()
        assert stack.gate.holding.wait(60), "the callback never asked TARA for the tokens"
        service.proc.send_signal(signal.SIGTERM)
        code = service.wait_stopped()
        left = settle(lambda: postgres_connections(database))
        caller.join(60)
        client.close()
        exit_code = service.release()
    stderr = service.stderr_path.read_text(errors="replace")
    assert outcome == [(503, "shutting_down", [])], stderr[-3000:]
    assert "Traceback" not in stderr
    stopped_in_order(service, code, exit_code, stack)
    assert left == 0
    assert "unclosed" not in stderr.lower(), stderr[-3000:]


@pytest.mark.parametrize("redis_url_named", ["redis"], indirect=True)
def test_a_nats_server_that_stopped_answering_does_not_hang_the_stop(
    tmp_path: Path, stack: Stack, nats_server: tuple[OwnNats, int]
) -> None:
    """The NATS sink's server is frozen (SIGSTOP: its connection stays open, nothing
    answers) when the service gets SIGTERM: the stop still ends (each part of it is
    bounded), with exit 0 and ``audit.log.stop`` stored, and the database connections
    released."""
    server, _ = nats_server
    database = stack.database_url.rsplit("/", 1)[1]
    with held(stack, tmp_path) as (service, _):
        _login(stack.base, stack.mock)
        server.proc.send_signal(signal.SIGSTOP)
        try:
            _login(stack.base, stack.mock)  # events the sink cannot deliver
            service.proc.send_signal(signal.SIGTERM)
            code = service.wait_stopped(timeout=180)
            left = settle(lambda: postgres_connections(database))
            exit_code = service.release()
        finally:
            server.proc.send_signal(signal.SIGCONT)
    stopped_in_order(service, code, exit_code, stack)
    assert left == 0
