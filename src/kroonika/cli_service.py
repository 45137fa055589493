"""Service commands of the ``kroonika`` CLI: ``serve``, ``mock-tara``, ``dev``, ``simulate``,
``db upgrade``. Registered on the main app by :func:`register_service_commands`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
import uvicorn
from pydantic import SecretStr

from kroonika.audit.formats._text import escape_unprintable
from kroonika.settings import Settings, SettingsError, load_settings, unknown_variables_warning

db_app = typer.Typer(no_args_is_help=True, help="The business database.")

DEV_CLIENT_ID = "kroonika-dev"
#: uvicorn's exit status for a server that could not start
STARTUP_FAILURE = 3
#: the exit status of a stop that had to leave a worker thread running (see
#: :func:`_release_workers`)
STOP_INCOMPLETE = 1
#: how long the exit waits for the worker threads once the service has stopped in order
WORKERS_EXIT_S = 10.0
WORKER_PREFIX = "kroonika-worker"

log = logging.getLogger("kroonika.cli")
ALL_METHOD_SCOPES = ["openid", "idcard", "mid", "smartid", "eidas"]


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except (SettingsError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _warn_unknown_variables() -> None:
    """One warning naming each KROONIKA_* variable that is no setting (names only)."""
    warning = unknown_variables_warning(os.environ)
    if warning is not None:
        log.warning("%s", warning)


def _escape(ch: str) -> str:
    """``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN`` for one character, as Python's repr writes it."""
    cp = ord(ch)
    if cp < 0x100:
        return f"\\x{cp:02x}"
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


class OneLineFormatter(logging.Formatter):
    """Each record is one line whatever its message holds. Messages carry what clients
    send (the access log's percent-decoded path, an identity provider's error text): a CR
    or LF there would forge a log line of its own, an ANSI escape would act on the
    operator's terminal, a bidi control would reorder what it shows ("Trojan Source") and
    a zero-width or other invisible character would hide text. So every character for
    which :meth:`str.isprintable` is False (controls, line and paragraph separators, bidi
    and format characters, non-ASCII spaces, unassigned code points) is shown escaped
    (``\\x0d``, ``\\u2028``, ``\\u200b``, ``\\U000e0041``). A traceback, added after
    the line, keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        return escape_unprintable(line, _escape)


def configure_logging(level: str = "INFO") -> None:
    """Operational log to stderr, one line per record (:class:`OneLineFormatter`).
    Transport libraries stay at WARNING: at DEBUG they dump raw headers, and the access
    log is ours (path without query string)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    for noisy in ("httpcore", "httpx", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def serve(
    host: Annotated[str | None, typer.Option(help="Listen address")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Listen port")] = None,
    log_level: Annotated[str, typer.Option(help="Log level")] = "info",
) -> None:
    """Run the Kroonika service (default 127.0.0.1:8000)."""
    from kroonika.web import create_app

    settings = _settings()
    configure_logging(log_level)
    _warn_unknown_variables()
    try:
        app = create_app(settings)
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    server = _Serving(
        uvicorn.Config(
            app,
            host=host or settings.host,
            port=port or settings.port,
            access_log=False,
            log_config=None,
            proxy_headers=False,
            timeout_graceful_shutdown=settings.shutdown_grace_s,
        )
    )
    server.run()
    if not server.started:  # what uvicorn.run ends a failed start with (e.g. port taken)
        raise typer.Exit(STARTUP_FAILURE)


def _dev_secret(settings: Settings) -> str:
    path = settings.var_dir / "secrets" / "tara_dev_client_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _dev_clients_file(settings: Settings, redirect_uri: str) -> Path:
    path = settings.var_dir / "tara-mock-clients.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# Written by `kroonika dev`: the local client registered with the TARA mock.\n"
        "[[clients]]\n"
        f'client_id = "{DEV_CLIENT_ID}"\n'
        f'secret = "{_dev_secret(settings)}"\n'
        f'redirect_uris = ["{redirect_uri}"]\n'
        'allowed_scopes = ["openid", "idcard", "mid", "smartid", "eidas", "eidasonly", '
        '"email", "phone"]\n'
    )
    path.chmod(0o600)
    return path


def mock_tara(
    clients: Annotated[Path, typer.Option(help="Registered clients (.toml or .json)")],
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8001,
    strict: Annotated[bool, typer.Option(help="Plain OIDC, no TARA quirks")] = False,
    control_api: Annotated[bool, typer.Option(help="Serve /mock/* switches")] = False,
    key_dir: Annotated[Path | None, typer.Option(help="Signing key directory")] = None,
) -> None:
    """Run the TARA mock identity provider (default 127.0.0.1:8001). With --control-api,
    /mock/* needs the bearer token in KROONIKA_MOCK_TARA_CONTROL_TOKEN if that is set, and
    answers only loopback clients if not; on a --host that is not loopback the token is
    required (the command stops with exit code 2 without it)."""
    from kroonika.tara.mock import (
        InvalidMockConfig,
        config_from_options,
        control_token_from_env,
        run,
    )

    configure_logging()
    try:
        config = config_from_options(
            clients_file=clients,
            host=host,
            port=port,
            strict=strict,
            control_api=control_api,
            control_token=control_token_from_env(os.environ),
            key_dir=key_dir,
        )
    except InvalidMockConfig as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    run(host, port, config)


def _own_workers() -> ThreadPoolExecutor:
    """The loop's worker threads (``asyncio.to_thread``), in an executor this module
    holds, so that the exit can wait for them with a bound."""
    executor = ThreadPoolExecutor(thread_name_prefix=WORKER_PREFIX)
    asyncio.get_running_loop().set_default_executor(executor)
    return executor


async def _release_workers(executor: ThreadPoolExecutor, seconds: float) -> None:
    """Once the service has stopped in order (the jobs recorded, the trail committed and
    stopped, the pools closed), wait at most ``seconds`` for the worker threads; then, if
    one still runs (a job's batch or a commit stuck on a database that does not answer),
    log it and end the process at once (exit :data:`STOP_INCOMPLETE`). Python would
    otherwise join that thread at exit without a limit (``asyncio.run`` and
    ``concurrent.futures`` both do on 3.11), so the stop would hang for ever. A stuck
    statement's transaction is not committed: its database rolls it back when the
    connection goes with the process."""
    loop = asyncio.get_running_loop()
    joined: asyncio.Future[None] = loop.create_future()

    def done() -> None:
        if not joined.done():
            joined.set_result(None)

    def join() -> None:
        executor.shutdown(wait=True)
        with contextlib.suppress(RuntimeError):  # the loop ended first: nobody waits
            loop.call_soon_threadsafe(done)

    threading.Thread(target=join, name="kroonika-exit", daemon=True).start()
    try:
        await asyncio.wait_for(asyncio.shield(joined), seconds)
    except TimeoutError:
        stuck = sum(1 for t in threading.enumerate() if t.name.startswith(WORKER_PREFIX))
        log.error(
            "stop: %d worker thread(s) still running %.0f s after the stop; exiting without them",
            stuck,
            seconds,
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(STOP_INCOMPLETE)


class _Serving(uvicorn.Server):
    """uvicorn's server with SIGINT/SIGTERM starting the stop, but not raised again once
    the service has stopped: uvicorn does (so that a parent sees the signal), which made a
    clean stop of ``kroonika serve`` end killed by SIGTERM (exit status 143, -15 to
    Python) after its lifespan had shut down in order; the stop is clean: exit 0. A
    worker thread still running after the stop does not hold the exit beyond
    :data:`WORKERS_EXIT_S` (:func:`_release_workers`)."""

    async def serve(self, sockets: list[Any] | None = None) -> None:
        workers = _own_workers()
        try:
            await super().serve(sockets)
        finally:
            await _release_workers(workers, WORKERS_EXIT_S)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        stops = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in stops}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to ``kroonika dev`` (two servers in one process
    cannot both own SIGINT/SIGTERM)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _banner(
    settings: Settings, base: str, issuer: str, *, trusts_loopback: bool, control_token: bool
) -> str:
    from sqlalchemy.engine import make_url

    def shown(url: str) -> str:
        return make_url(url).render_as_string(hide_password=True)

    lines = [
        "",
        "Kroonika is running (development mode, not for production)",
        f"  Service:      {base}/",
        f"  Log in at:    {base}/auth/login",
        f"  Your session: {base}/auth/session",
        f"  Readiness:    {base}/ready",
        f"  Dashboard:    {base}/admin/dashboard  (for the roles admin, security, auditor: "
        "see kroonika admins add --help)",
        f"  TARA mock:    {issuer}  (public test identities, e.g. 38001085718; no real TARA)",
        f"  Mock control: {issuer}/mock/config  "
        + (
            "(bearer token from KROONIKA_MOCK_TARA_CONTROL_TOKEN)"
            if control_token
            else "(loopback only, no token; set KROONIKA_MOCK_TARA_CONTROL_TOKEN to need one)"
        ),
        f"  var/:         {settings.var_dir.resolve()}",
        f"  Database:     {shown(settings.resolved_database_url())}",
        f"  Audit store:  {shown(settings.resolved_audit_store_url())}",
        "  Keys/secrets: generated under var/ on first start (keys/, secrets/)",
    ]
    if trusts_loopback:
        lines.append("  Proxies:      X-Forwarded-For from loopback is trusted (development only)")
    lines += [
        f"  Traffic:      kroonika simulate --base-url {base}",
        "  Check trail:  kroonika audit verify",
        "Stop with Ctrl-C (SIGINT) or SIGTERM; the audit trail records audit.log.stop.",
        "",
    ]
    return "\n".join(lines)


def dev(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Service port")] = 8000,
    mock_port: Annotated[int, typer.Option(min=1, max=65535, help="TARA mock port")] = 8001,
) -> None:
    """Start the TARA mock and the service on loopback with SQLite under var/ (`make run`)."""
    from kroonika.tara.mock import InvalidMockConfig, config_from_options, control_token_from_env
    from kroonika.tara.mock import create_app as create_mock
    from kroonika.web import create_app

    configure_logging()
    _warn_unknown_variables()
    base = f"http://127.0.0.1:{port}"
    issuer = f"http://127.0.0.1:{mock_port}"
    overrides: dict[str, object] = {
        "port": port,
        "public_url": base,
        "tara_issuer": issuer,
        "tara_client_id": DEV_CLIENT_ID,
        "tara_redirect_uri": base + "/auth/callback",
        "tara_scopes": ALL_METHOD_SCOPES,
        "cookie_secure": False,
    }
    settings = _settings(**overrides)
    if settings.production:
        typer.echo("error: `kroonika dev` is for development only", err=True)
        raise typer.Exit(2)
    # `kroonika simulate` presents many client addresses through X-Forwarded-For on loopback
    trusts_loopback = not settings.trusted_proxies
    if trusts_loopback:
        settings = _settings(**overrides, trusted_proxies=["127.0.0.1/32", "::1/128"])
    settings = settings.model_copy(update={"tara_client_secret": SecretStr(_dev_secret(settings))})
    clients = _dev_clients_file(settings, base + "/auth/callback")
    try:
        mock_config = config_from_options(
            clients_file=clients,
            port=mock_port,
            issuer=issuer,
            control_api=True,
            control_token=control_token_from_env(os.environ),
            key_dir=settings.var_dir / "keys" / "tara-mock",
        )
    except InvalidMockConfig as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        app = create_app(settings)
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    mock = create_mock(mock_config)

    def server(asgi: Any, listen_port: int, lifespan: Literal["on", "off"]) -> _Server:
        return _Server(
            uvicorn.Config(
                asgi,
                host="127.0.0.1",
                port=listen_port,
                access_log=False,
                log_config=None,
                lifespan=lifespan,
                proxy_headers=False,  # our middleware resolves X-Forwarded-For
                timeout_graceful_shutdown=settings.shutdown_grace_s,
            )
        )

    async def started(srv: _Server, task: asyncio.Task[None]) -> bool:
        while not srv.started:
            if task.done():
                return False
            await asyncio.sleep(0.05)
        return True

    async def run(srv: _Server) -> None:
        # uvicorn ends a failed start with SystemExit (e.g. the port is taken): keep it
        # inside the task so the other server can still be stopped in order
        with contextlib.suppress(SystemExit):
            await srv.serve()

    async def both() -> int:
        workers = _own_workers()
        mock_server = server(mock, mock_port, "off")
        app_server = server(app, port, "on")
        loop = asyncio.get_running_loop()

        def stop() -> None:
            for srv in (app_server, mock_server):
                if srv.should_exit:
                    srv.force_exit = True
                srv.should_exit = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        mock_task = asyncio.create_task(run(mock_server))
        if not await started(mock_server, mock_task):
            typer.echo(f"error: the TARA mock could not listen on {issuer}", err=True)
            return 1
        # the service checks TARA's discovery at start-up, so the mock is up first
        app_task = asyncio.create_task(run(app_server))
        if await started(app_server, app_task):
            banner = _banner(
                settings,
                base,
                issuer,
                trusts_loopback=trusts_loopback,
                control_token=mock_config.control_token is not None,
            )
            typer.echo(banner)
            await app_task
            code = 0
        else:
            typer.echo(f"error: Kroonika could not start on {base} (see the log above)", err=True)
            code = 1
        mock_server.should_exit = True
        await mock_task
        await _release_workers(workers, WORKERS_EXIT_S)
        typer.echo("Kroonika stopped.", err=True)
        return code

    raise typer.Exit(asyncio.run(both()))


def simulate(
    base_url: Annotated[str, typer.Option(help="The running service")] = "http://127.0.0.1:8000",
    people: Annotated[int, typer.Option(min=1, max=1000, help="Simulated browsers")] = 5,
    duration: Annotated[float, typer.Option(min=1, help="Seconds to run")] = 30,
    seed: Annotated[int | None, typer.Option(help="Random seed")] = None,
    attack: Annotated[
        str | None,
        typer.Option(help="brute-force | credential-stuffing | impossible-travel | rate-limit"),
    ] = None,
    mock_url: Annotated[
        str, typer.Option(help="The TARA mock (its control API, for credential-stuffing)")
    ] = "http://127.0.0.1:8001",
    client_id: Annotated[str | None, typer.Option(help="Client for token traffic")] = None,
    client_secret: Annotated[
        str | None, typer.Option(envvar="KROONIKA_SIM_CLIENT_SECRET", help="Its secret")
    ] = None,
    admin_key: Annotated[
        str | None, typer.Option(envvar="KROONIKA_SIM_ADMIN_KEY", help="Admin API key")
    ] = None,
    auditor_key: Annotated[
        str | None, typer.Option(envvar="KROONIKA_SIM_AUDITOR_KEY", help="Auditor API key")
    ] = None,
) -> None:
    """Drive realistic browser traffic (logins per method, cancels, failures, extensions,
    logouts; token and admin traffic with credentials) through the TARA mock against a
    running service; or one attack pattern with --attack. Prints a summary."""
    if attack is not None:
        from rich.console import Console as AttackConsole

        from kroonika.security.simulate_attacks import run_attack

        try:
            done = asyncio.run(
                run_attack(
                    attack,
                    base_url,
                    mock_url=mock_url,
                    mock_token=os.environ.get("KROONIKA_MOCK_TARA_CONTROL_TOKEN") or None,
                )
            )
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        for (name, outcome), n in sorted(done.items()):
            AttackConsole().print(f"{name}\t{outcome}\t{n}")
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from kroonika.web.simulate import Credentials
    from kroonika.web.simulate import simulate as run_simulation

    creds = Credentials(client_id, client_secret, admin_key, auditor_key)

    console = Console(stderr=True)
    with Progress(
        TextColumn("[bold]simulating"),
        BarColumn(),
        TextColumn("{task.fields[actions]} actions"),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("sim", total=duration, actions=0)

        def tick(actions: int, elapsed: float) -> None:
            progress.update(task, completed=min(elapsed, duration), actions=actions)

        counts = asyncio.run(
            run_simulation(
                base_url,
                people=people,
                duration=duration,
                seed=seed,
                on_progress=tick,
                credentials=creds,
            )
        )
        progress.update(task, completed=duration)
    table = Table(title=f"{sum(counts.values())} actions by {people} people in {duration:g}s")
    table.add_column("traffic")
    table.add_column("outcome")
    table.add_column("count", justify="right")
    for (kind, outcome), n in sorted(counts.items()):
        table.add_row(kind, outcome, str(n))
    Console().print(table)
    skipped = sorted({kind for (kind, outcome) in counts if outcome == "skipped"})
    if skipped:
        console.print(
            f"skipped for want of credentials: {', '.join(skipped)}. Token traffic needs "
            "--client-id/--client-secret (`kroonika clients add NAME -a AUDIENCE`), admin and "
            "auditor traffic --admin-key/--auditor-key (API keys from POST /admin/api-keys).",
            markup=False,
            highlight=False,
        )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the business database (KROONIKA_DATABASE_URL, default SQLite under var/)."""
    from kroonika.db import make_engine
    from kroonika.db.migrate import upgrade

    settings = _settings()
    engine = make_engine(settings.resolved_database_url())
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    typer.echo("database is at the newest revision")


def register_service_commands(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("mock-tara")(mock_tara)
    app.command("dev")(dev)
    app.command("simulate")(simulate)
    app.add_typer(db_app, name="db")
