"""TARA misconfiguration is found at start-up: production refuses to start (unreachable
issuer, discovery for another issuer), development starts and ``/ready`` says why not."""

from __future__ import annotations

import base64
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from kroonika.audit import KeyRing
from kroonika.settings import Settings, SettingsError
from kroonika.tara.mock import Misbehaviour, MockConfig, RegisteredClient
from kroonika.tara.mock import create_app as create_mock
from kroonika.web import create_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from login_harness import free_socket, mock_keys, serve

from poll_kit import wait_until

SECRET = "startup-test-secret-0123456789"


@contextmanager
def tara_mock(
    issuer: str | None = None, sock: socket.socket | None = None, **switches: bool
) -> Iterator[str]:
    """The TARA mock on ``sock`` (default: a free loopback port) with its control API
    (``/mock/config``, loopback only); ``issuer`` is what its discovery claims,
    ``switches`` its misbehaviour at start."""
    sock = sock or free_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    mock = create_mock(
        MockConfig(
            issuer=issuer or url,
            clients=(
                RegisteredClient(
                    client_id="kroonika-startup",
                    secret=SecretStr(SECRET),
                    redirect_uris=("https://kroonika.example/auth/callback",),
                    allowed_scopes=frozenset(["openid"]),
                ),
            ),
            keys=mock_keys(),
            misbehaviour=Misbehaviour(**switches),
            control_api=True,
        )
    )
    with serve(mock, sock, lifespan="off") as served:
        yield served


class ToLoopback(httpx.AsyncBaseTransport):
    """Sends requests for ``https://<host>`` over real HTTP to the mock on loopback (the
    production check insists on https; the mock speaks plain HTTP)."""

    def __init__(self, target: str) -> None:
        self.target = httpx.URL(target)
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(
            scheme=self.target.scheme, host=self.target.host, port=self.target.port
        )
        request.headers["host"] = f"{self.target.host}:{self.target.port}"
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _key() -> SecretStr:
    return SecretStr(base64.b64encode(os.urandom(32)).decode())


def production(tmp_path: Path, issuer: str) -> Settings:
    keys = tmp_path / "audit-keys"
    KeyRing.open(keys, create=True)
    return Settings(
        env="production",
        var_dir=tmp_path / "var",
        audit_keys_dir=keys,
        master_key=_key(),
        pseudonym_key=_key(),
        session_key=_key(),
        tara_issuer=issuer,
        tara_client_id="kroonika-startup",
        tara_client_secret=SecretStr(SECRET),
        public_url="https://kroonika.example",
        jobs_enabled=False,
    )


async def _start(app: Any) -> None:
    async with app.router.lifespan_context(app):
        pass


@pytest.mark.asyncio
async def test_production_refuses_an_unreachable_issuer(tmp_path: Path) -> None:
    """Nothing listens on the issuer's port: start-up fails naming the issuer and why."""
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    issuer = f"https://127.0.0.1:{port}"
    app = create_app(production(tmp_path, issuer))
    with pytest.raises(SettingsError, match=r"TARA at https://127\.0\.0\.1:\d+ is unreachable"):
        await _start(app)


@pytest.mark.asyncio
async def test_production_refuses_discovery_for_another_issuer(tmp_path: Path) -> None:
    """The discovery document names another issuer: start-up fails as misconfigured."""
    with tara_mock(issuer="https://tara.other.example") as mock:
        http = httpx.AsyncClient(transport=ToLoopback(mock), trust_env=False)
        app = create_app(production(tmp_path, "https://tara.example"), http_client=http)
        with pytest.raises(SettingsError, match=r"misconfigured.*differs from the configured"):
            await _start(app)
        await http.aclose()


@pytest.mark.asyncio
async def test_production_refuses_discovery_naming_endpoints_on_another_origin(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The discovery document sends the token request (client secret) and the key fetch
    to another origin than the issuer's, where real TARA publishes them: start-up fails
    as misconfigured, naming the endpoint and both origins, before the secret is sent."""
    with tara_mock(issuer="https://tara.example", foreign_endpoints=True) as mock:
        http = httpx.AsyncClient(transport=ToLoopback(mock), trust_env=False)
        app = create_app(production(tmp_path, "https://tara.example"), http_client=http)
        with pytest.raises(SettingsError) as refused:
            await _start(app)
        await http.aclose()
    said = str(refused.value)
    assert "misconfigured" in said
    assert "token_endpoint" in said or "jwks_uri" in said
    assert "https://tara.attacker.invalid" in said
    assert "'https://tara.example'" in said
    assert SECRET not in said + caplog.text


@pytest.mark.asyncio
async def test_production_starts_when_discovery_fits(tmp_path: Path) -> None:
    """The same set-up with the matching issuer starts and is ready (the control case)."""
    with tara_mock(issuer="https://tara.example") as mock:
        http = httpx.AsyncClient(transport=ToLoopback(mock), trust_env=False)
        app = create_app(production(tmp_path, "https://tara.example"), http_client=http)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="https://kroonika.example"
            ) as client,
        ):
            r = await client.get("/ready")
        await http.aclose()
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["tara"] == "ok"


def _development(tmp_path: Path, issuer: str) -> Settings:
    return Settings(
        var_dir=tmp_path / "var",
        tara_issuer=issuer,
        tara_client_id="kroonika-startup",
        tara_client_secret=SecretStr(SECRET),
        cookie_secure=False,
        jobs_enabled=False,
    )


def test_development_starts_and_reports_another_issuer_not_ready(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Over real HTTP: the service starts, /ready is 503 with tara misconfigured and the
    reason, /health is fine, and a login does not start: 502 ``idp_misconfigured`` (not
    ``idp_unavailable``: TARA answered, this service's setting is wrong), with an ERROR
    line naming the setting to fix."""
    caplog.set_level(logging.INFO, logger="kroonika")
    with tara_mock() as mock:
        wrong = mock.replace("127.0.0.1", "localhost")  # same server, another issuer name
        app = create_app(_development(tmp_path, wrong))
        with serve(app, free_socket()) as service:
            ready = httpx.get(service + "/ready", timeout=20)
            health = httpx.get(service + "/health", timeout=20)
            login = httpx.get(service + "/auth/login", timeout=20)
    assert ready.status_code == 503
    body = ready.json()
    assert body["checks"]["tara"] == "misconfigured"
    assert body["checks"]["database"] == "ok"
    assert "differs from the configured issuer" in body["tara_detail"]
    assert health.status_code == 200
    assert login.status_code == 502
    assert (login.json()["error"], login.json()["reason"]) == ("login_failed", "idp_misconfigured")
    errors = [
        r.getMessage()
        for r in caplog.records
        if r.name == "kroonika.web.auth" and r.levelno >= logging.ERROR
    ]
    assert any("KROONIKA_TARA_ISSUER" in e and "differs" in e for e in errors), errors


def test_development_reports_endpoints_on_another_origin_not_ready(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Over real HTTP in development: the service starts, /ready is 503 misconfigured
    naming the foreign endpoint, and a login does not start (502 idp_misconfigured) with
    an ERROR line that names that cause and does not send the operator to
    KROONIKA_TARA_ISSUER, which is right (the document names the issuer it should)."""
    caplog.set_level(logging.INFO, logger="kroonika")
    with tara_mock(foreign_endpoints=True) as mock:
        app = create_app(_development(tmp_path, mock))
        with serve(app, free_socket()) as service:
            ready = httpx.get(service + "/ready", timeout=20)
            login = httpx.get(service + "/auth/login", timeout=20)
    assert ready.status_code == 503, ready.text
    assert ready.json()["checks"]["tara"] == "misconfigured"
    assert "another origin" in ready.json()["tara_detail"]
    assert login.status_code == 502, login.text
    assert login.json()["reason"] == "idp_misconfigured"
    (error,) = [
        r.getMessage()
        for r in caplog.records
        if r.name == "kroonika.web.auth" and r.levelno >= logging.ERROR
    ]
    assert "another origin" in error
    assert "check KROONIKA_TARA_ISSUER" not in error
    assert "answers in its place" in error
    assert "report it to RIA" in error


def _switch(mock: str, **switches: bool) -> None:
    r = httpx.post(mock + "/mock/config", json=switches, timeout=20)
    assert r.status_code == 200, r.text


def test_ready_shows_a_tara_outage_that_starts_after_tara_was_found_fine(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Over real HTTP, the mock fine: /ready says ok; once its discovery names
    endpoints on another origin, the next /ready after the cache period says
    misconfigured with the reason, and once the mock is gone, unreachable. The service
    stays ready (200, status degraded: tokens are still validated; logins fail and say
    so), one WARNING per change, and ok again when TARA is back."""
    caplog.set_level(logging.INFO, logger="kroonika")
    mock_sock = free_socket()
    port = mock_sock.getsockname()[1]
    mock_url = f"http://127.0.0.1:{port}"
    settings = _development(tmp_path, mock_url).model_copy(update={"tara_ready_cache_s": 0})
    app = create_app(settings)
    with serve(app, free_socket()) as service:
        with tara_mock(sock=mock_sock) as mock:
            fine = httpx.get(service + "/ready", timeout=20)
            _switch(mock, foreign_endpoints=True)
            foreign = httpx.get(service + "/ready", timeout=20)
            _switch(mock, foreign_endpoints=False)
            back = httpx.get(service + "/ready", timeout=20)
        gone = httpx.get(service + "/ready", timeout=20)  # nothing listens there any more
    assert fine.status_code == 200, fine.text
    assert fine.json()["checks"]["tara"] == "ok"
    assert foreign.status_code == 200, foreign.text
    assert foreign.json()["status"] == "degraded"
    assert foreign.json()["checks"]["tara"] == "misconfigured"
    assert "another origin" in foreign.json()["tara_detail"]
    assert foreign.json()["tara_issuer"] == mock_url
    assert back.json()["checks"]["tara"] == "ok"
    assert back.json()["status"] == "ok"
    assert gone.status_code == 200, gone.text
    assert gone.json()["checks"]["tara"] == "unreachable"
    assert gone.json()["status"] == "degraded"
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "kroonika.web"
        and r.levelno == logging.WARNING
        and r.getMessage().startswith("readiness: TARA")
    ]
    assert len([w for w in warnings if "misconfigured" in w]) == 1, warnings
    assert len([w for w in warnings if "unreachable" in w]) == 1, warnings


def test_ready_asks_tara_again_only_after_its_cache_period(tmp_path: Path) -> None:
    """Found fine, /ready keeps its verdict KROONIKA_TARA_READY_CACHE_S: a change of
    TARA's within that time is not seen yet (probes do not hammer TARA)."""
    with tara_mock() as mock:
        settings = _development(tmp_path, mock).model_copy(update={"tara_ready_cache_s": 300})
        app = create_app(settings)
        with serve(app, free_socket()) as service:
            first = httpx.get(service + "/ready", timeout=20)
            _switch(mock, foreign_endpoints=True)
            cached = httpx.get(service + "/ready", timeout=20)
    assert first.json()["checks"]["tara"] == "ok"
    assert cached.json()["checks"]["tara"] == "ok"


def test_an_unreachable_tara_fails_the_login_start_as_the_callback(tmp_path: Path) -> None:
    """Over real HTTP, nothing listening at the issuer: the login start answers what a
    callback answers when TARA is down (502 login_failed, reason idp_unavailable), not a
    503, which means this service's own database or trail is down (decision 0019)."""
    nobody = free_socket()  # bound, never listening: connections are refused
    dead = f"http://127.0.0.1:{nobody.getsockname()[1]}"
    app = create_app(_development(tmp_path, dead))
    with serve(app, free_socket()) as service:
        login = httpx.get(service + "/auth/login", timeout=20)
    nobody.close()
    assert login.status_code == 502, login.text
    assert (login.json()["error"], login.json()["reason"]) == ("login_failed", "idp_unavailable")


@contextmanager
def silent_tara(sock: socket.socket) -> Iterator[list[socket.socket]]:
    """``sock`` starts listening: it accepts every connection and never answers (a
    TARA, or something in its place, that hangs); yields the connections accepted."""
    accepted: list[socket.socket] = []
    sock.listen(16)
    sock.settimeout(0.1)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield accepted
    finally:
        stop.set()
        thread.join(timeout=20)
        for conn in accepted:
            conn.close()
        sock.close()


def test_ready_answers_503_when_tara_accepts_and_never_answers(tmp_path: Path) -> None:
    """A TARA that takes the connection and never answers does not hold /ready for the
    login timeout (here 60 s): the check is cut at KROONIKA_TARA_READY_TIMEOUT_S and
    /ready answers 503 saying so; asked again within KROONIKA_TARA_READY_CACHE_S it
    answers the same without asking TARA again (no hammering through /ready)."""
    hanging = free_socket()  # bound, not listening: the start-up check is refused at once
    settings = _development(tmp_path, f"http://127.0.0.1:{hanging.getsockname()[1]}")
    settings = settings.model_copy(
        update={"tara_timeout_s": 60.0, "tara_ready_timeout_s": 0.5, "tara_ready_cache_s": 300}
    )
    app = create_app(settings)
    with serve(app, free_socket()) as service, silent_tara(hanging) as accepted:
        first = httpx.get(service + "/ready", timeout=20)
        assert wait_until(lambda: len(accepted) >= 1)
        again = [httpx.get(service + "/ready", timeout=20) for _ in range(3)]
        connections = len(accepted)
    for r in (first, *again):
        assert r.status_code == 503, r.text
        assert r.json()["checks"]["tara"] == "unreachable"
        assert "did not answer within 0.5 s" in r.json()["tara_detail"]
    assert connections == 1


def test_development_becomes_ready_when_tara_comes_up(tmp_path: Path) -> None:
    """Started before the mock: /ready says unreachable, then ok once the mock answers
    (without the cache of /ready's TARA check, which would only delay the ok)."""
    mock_sock = free_socket()
    mock_url = f"http://127.0.0.1:{mock_sock.getsockname()[1]}"
    settings = _development(tmp_path, mock_url).model_copy(update={"tara_ready_cache_s": 0})
    app = create_app(settings)
    with serve(app, free_socket()) as service:
        before = httpx.get(service + "/ready", timeout=20)
        mock = create_mock(
            MockConfig(
                issuer=mock_url,
                clients=(
                    RegisteredClient(
                        client_id="kroonika-startup",
                        secret=SecretStr(SECRET),
                        redirect_uris=(service + "/auth/callback",),
                        allowed_scopes=frozenset(["openid"]),
                    ),
                ),
                keys=mock_keys(),
            )
        )
        with serve(mock, mock_sock, lifespan="off"):
            after = httpx.get(service + "/ready", timeout=20)
    assert before.status_code == 503
    assert before.json()["checks"]["tara"] == "unreachable"
    assert after.status_code == 200
    assert after.json()["checks"]["tara"] == "ok"


def _serve_in_production(
    tmp_path: Path, **extra: str
) -> tuple[int, subprocess.CompletedProcess[str]]:
    """``kroonika serve`` in production with TARA unreachable, run to its end: the port
    TARA was looked for at and the finished process (stderr as text)."""
    sockets = [free_socket(), free_socket()]
    port, own = (sock.getsockname()[1] for sock in sockets)
    for sock in sockets:
        sock.close()
    keys = tmp_path / "audit-keys"
    KeyRing.open(keys, create=True)
    env: dict[str, str] = {
        **os.environ,
        "KROONIKA_ENV": "production",
        "KROONIKA_VAR_DIR": str(tmp_path / "var"),
        "KROONIKA_AUDIT_KEYS_DIR": str(keys),
        "KROONIKA_MASTER_KEY": _key().get_secret_value(),
        "KROONIKA_PSEUDONYM_KEY": _key().get_secret_value(),
        "KROONIKA_SESSION_KEY": _key().get_secret_value(),
        "KROONIKA_TARA_ISSUER": f"https://127.0.0.1:{port}",
        "KROONIKA_TARA_CLIENT_ID": "kroonika-startup",
        "KROONIKA_TARA_CLIENT_SECRET": SECRET,
        "KROONIKA_PUBLIC_URL": "https://kroonika.example",
        "KROONIKA_JOBS_ENABLED": "false",
        **extra,
    }
    kroonika = Path(sys.executable).with_name("kroonika")
    done = subprocess.run(
        [str(kroonika), "serve", "--port", str(own)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return port, done


def test_a_refused_production_start_says_why_in_one_line_without_a_traceback(
    tmp_path: Path,
) -> None:
    """``kroonika serve`` in production with TARA unreachable: the operator reads one line
    naming the issuer and why, and the process ends non-zero; uvicorn's traceback of the
    failed lifespan (a stack of framework frames) is not printed."""
    port, done = _serve_in_production(tmp_path)
    assert done.returncode != 0
    assert f"TARA at https://127.0.0.1:{port} is unreachable" in done.stderr
    assert "Traceback" not in done.stderr
    assert 'File "' not in done.stderr
    assert SECRET not in done.stderr + done.stdout


@pytest.mark.parametrize(
    ("scopes", "said"),
    [(["openid", "profile"], "profile"), (["openid", "eidas:country:de"], "eidasonly")],
)
def test_a_scope_tara_does_not_know_stops_the_app_when_built(
    tmp_path: Path, scopes: list[str], said: str
) -> None:
    """KROONIKA_TARA_SCOPES with a scope TARA would answer invalid_scope for on every
    login refuses to build the app, naming the scope (even in development)."""
    settings = _development(tmp_path, "http://127.0.0.1:9").model_copy(
        update={"tara_scopes": scopes}
    )
    with pytest.raises(SettingsError, match=f"TARA settings: .*{said}"):
        create_app(settings)


def test_production_refuses_tara_over_plain_http(tmp_path: Path) -> None:
    """The back channel to TARA carries the client secret and the ID token: production
    refuses an http:// issuer before anything is built."""
    with pytest.raises(SettingsError, match="KROONIKA_TARA_ISSUER must be https"):
        create_app(production(tmp_path, "http://tara.example"))


def test_serve_warns_once_about_a_misspelt_variable_and_does_not_refuse(tmp_path: Path) -> None:
    """A KROONIKA_* variable that is no setting is named in one warning at start with the
    setting it is close to, never its value (decision 0034, 2026-11-28 (review
    settings2)); production does not refuse for it: the start goes on to the TARA check.
    The test suite's own variable is not named; one in lower case is named as written."""
    value = "misspelt-variable-value-0123456789"
    port, done = _serve_in_production(
        tmp_path,
        KROONIKA_SESION_IDLE_S=value,
        kroonika_sesion_absolute_s=value,
        KROONIKA_REQUIRE_SERVICES="1",
    )
    warnings = [line for line in done.stderr.splitlines() if "KROONIKA_SESION_IDLE_S" in line]
    assert len(warnings) == 1, done.stderr
    assert "WARNING" in warnings[0]
    assert "did you mean KROONIKA_SESSION_IDLE_S?" in warnings[0]
    assert "kroonika_sesion_absolute_s (did you mean KROONIKA_SESSION_ABSOLUTE_S?)" in warnings[0]
    assert "KROONIKA_REQUIRE_SERVICES" not in done.stderr
    assert value not in done.stderr + done.stdout
    assert f"TARA at https://127.0.0.1:{port} is unreachable" in done.stderr
