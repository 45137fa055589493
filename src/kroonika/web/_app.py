"""The FastAPI application factory: everything is built here and kept on ``app.state``."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kroonika.admin import install_admin, record_unrouted
from kroonika.audit import AuditUnavailable, StoreError
from kroonika.audit._tls import KEY_LOG_VARIABLE, key_log_requested, trust_store_context
from kroonika.auditing import build_audit
from kroonika.db import UNAVAILABLE, make_engine
from kroonika.db.migrate import upgrade
from kroonika.ratelimit import build_limiter, install_rate_limiting
from kroonika.security.service import build_enrichment, build_monitor
from kroonika.sessions import Clock, FlowStore, SessionManager, SessionPolicy, SessionStore
from kroonika.settings import Settings, SettingsError
from kroonika.tara import DiscoveryError, TaraClient, TaraClientConfig, TaraError
from kroonika.web import _auth, _pages, routes_dashboard
from kroonika.web import _login_page as login_page
from kroonika.web._context import TrustedProxies, current_request
from kroonika.web._cors import CorsMiddleware, allowed_origins
from kroonika.web._login_page import LOGIN_PATHS
from kroonika.web._metrics import install_alerting, install_log_shipping, install_retention_job
from kroonika.web._middleware import RequestContextMiddleware
from kroonika.web._openapi import install_openapi
from kroonika.web._services import CookieConfig, Services
from kroonika.web.routes_audit import RECORDS_PATH, REFUSED_WRITES
from kroonika.web.routes_tokens import install_tokens, rate_limit_answers

log = logging.getLogger("kroonika.web")

DEV_CLIENT_SECRET = "kroonika-dev-secret-not-for-production"  # noqa: S105 (the dev mock's)


def _request_id() -> str | None:
    info = current_request.get()
    return info.request_id if info else None


def _tara_config(settings: Settings) -> TaraClientConfig:
    secret = settings.tara_client_secret
    if secret is None:
        if settings.production:
            raise SettingsError("KROONIKA_TARA_CLIENT_SECRET must be set in production")
        from pydantic import SecretStr

        secret = SecretStr(DEV_CLIENT_SECRET)
    try:
        return TaraClientConfig(
            issuer=settings.tara_issuer,
            client_id=settings.tara_client_id,
            client_secret=secret,
            redirect_uri=settings.resolved_tara_redirect_uri(),
            scopes=tuple(settings.tara_scopes),
            timeout_s=settings.tara_timeout_s,
            leeway_s=settings.tara_leeway_s,
            jwks_ttl_s=settings.tara_jwks_ttl_s,
            jwks_stale_if_error_s=settings.tara_jwks_stale_if_error_s,
        )
    except ValueError as exc:
        raise SettingsError(f"TARA settings: {exc}") from None


async def check_tara(app: FastAPI, *, bound: float | None = None) -> str:
    """Check TARA's discovery document and key set; keep and return the verdict (``ok``,
    ``misconfigured``: the document does not fit the configuration, e.g. another issuer;
    ``unreachable``). ``bound`` cuts the whole check short (each call to TARA has its
    own timeout besides). The reason goes to the operational log, never a secret."""
    services: Services = app.state.services
    detail: str | None
    try:
        async with asyncio.timeout(bound):
            await services.tara.check()
    except TimeoutError:
        verdict = "unreachable"
        detail = f"TARA did not answer within {bound:g} s (KROONIKA_TARA_READY_TIMEOUT_S)"
    except DiscoveryError as exc:
        verdict, detail = "misconfigured", str(exc)
    except TaraError as exc:
        verdict, detail = "unreachable", str(exc)
    else:
        verdict, detail = "ok", None
        app.state.tara_found_fine = True
    app.state.tara_status = verdict
    app.state.tara_detail = detail
    return verdict


class TaraReadiness:
    """``/ready``'s view of TARA: each check is cut at ``timeout_s`` (a TARA that takes the
    connection and never answers must not hold the probe) and its verdict kept
    ``cache_s`` seconds, also once TARA was found fine (an outage or a changed discovery
    document that starts later shows after at most ``cache_s``); concurrent probes wait
    for the check under way rather than start their own. So probes, however many, reach
    TARA at most once per ``cache_s``. Once TARA was found fine, a change of its verdict
    is one WARNING (away from ``ok``) or INFO (back) on the operational log."""

    def __init__(
        self, timeout_s: float, cache_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.timeout_s = timeout_s
        self.cache_s = cache_s
        self._clock = clock
        self._checked_at: float | None = None
        self._lock = asyncio.Lock()

    async def verdict(self, app: FastAPI) -> str:
        async with self._lock:
            now = self._clock()
            if self._checked_at is not None and now - self._checked_at < self.cache_s:
                cached: str = app.state.tara_status
                return cached
            before: str = app.state.tara_status
            found_fine = app.state.tara_found_fine
            verdict = await check_tara(app, bound=self.timeout_s)
            self._checked_at = self._clock()
            if found_fine and verdict != before:
                issuer = app.state.settings.tara_issuer
                if verdict == "ok":
                    log.info("readiness: TARA at %s answers again (was %s)", issuer, before)
                else:
                    log.warning(
                        "readiness: TARA at %s is %s: %s; logins fail until it is fine "
                        "again, the rest of the service works (/ready: degraded)",
                        issuer,
                        verdict,
                        app.state.tara_detail,
                    )
            return verdict


async def _startup_tara(app: FastAPI, settings: Settings) -> None:
    """Production refuses to start with TARA misconfigured or unreachable; development
    starts anyway (the mock may come up later) and ``/ready`` reports not ready."""
    verdict = await check_tara(app)
    if verdict == "ok":
        return
    detail = app.state.tara_detail
    if settings.production:
        log.critical(
            "TARA at %s is %s: %s; refusing to start in production",
            settings.tara_issuer,
            verdict,
            detail,
        )
        raise SettingsError(f"TARA at {settings.tara_issuer} is {verdict}: {detail}")
    log.warning(
        "TARA at %s is %s: %s; /ready reports not ready until it answers",
        settings.tara_issuer,
        verdict,
        detail,
    )


def check_key_log(settings: Settings, environ: Mapping[str, str]) -> None:
    """``SSLKEYLOGFILE`` makes Python's TLS write every connection's session keys to a
    file: with it and a capture anyone reads the tokens, credentials and events sent.
    Kroonika's own contexts ignore it (Redis over TLS too, decision 0034); a context some
    other library makes for itself would not. So production refuses to start, development
    warns once (decision 0032)."""
    if not key_log_requested(environ):
        return
    what = (
        f"{KEY_LOG_VARIABLE} is set: Python's TLS writes the session keys of a connection "
        "to that file, and with it anyone holding a capture reads what was sent"
    )
    if settings.production:
        raise SettingsError(f"{what}; unset it (refused in production)")
    log.warning(
        "%s. Kroonika's own TLS clients (sinks, TARA, Redis) log no keys; a library that "
        "makes its own context may. Unset it outside a debugging session",
        what,
    )


class RefusedStart:
    """A start refused for its configuration (:class:`SettingsError`: TARA unreachable in
    production, a bad sink or rule) is reported to the server as one line, ``refusing to
    start: <why>``, instead of the traceback Starlette formats for any failed lifespan
    (framework frames the operator cannot act on)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state

        async def report(message: Message) -> None:
            refused = getattr(state, "start_refused", None)
            if message["type"] == "lifespan.startup.failed" and refused is not None:
                message = {"type": message["type"], "message": f"refusing to start: {refused}"}
            await send(message)

        await self.app(scope, receive, report)


#: how long one part of the service's stop may take before the stop goes on without it
PART_STOP_S = 10.0
#: the audit trail's stop (its writer commits what is queued) and the sinks' (they ship
#: audit.log.stop) may take longer
TRAIL_STOP_S = 30.0


async def _bounded(part: str, stopping: Awaitable[None], seconds: float | None = None) -> None:
    """Await one part of the stop for at most ``seconds`` (default :data:`PART_STOP_S`); a
    part that hangs is cancelled and one that fails is logged (its type only), and the
    stop goes on either way."""
    seconds = PART_STOP_S if seconds is None else seconds
    try:
        await asyncio.wait_for(stopping, seconds)
    except TimeoutError:
        log.error("stop: %s did not stop within %.0f s; going on without it", part, seconds)
    except Exception as exc:  # noqa: BLE001 (the other parts must still stop)
        log.error("stop: %s failed to stop (%s); going on", part, type(exc).__name__)


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    http_client: httpx.AsyncClient | None = None,
    audit_clock: Callable[[], int] | None = None,
) -> FastAPI:
    """Build the service. Configuration is checked here (not on the first request); the
    audit trail starts and stops with the app's lifespan. ``audit_clock`` (ns since the
    epoch) stamps the events: tests that need a time of day inject it."""
    clock = clock or time.time
    check_key_log(settings, os.environ)
    if settings.production:
        if not settings.cookie_secure:
            raise SettingsError("KROONIKA_COOKIE_SECURE must be true in production")
        if not settings.tara_issuer.startswith("https://"):
            raise SettingsError("KROONIKA_TARA_ISSUER must be https in production")
    try:
        policy = SessionPolicy(
            idle_s=settings.session_idle_s,
            absolute_s=settings.session_absolute_s,
            max_per_person=settings.session_max_per_person,
        )
        proxies = TrustedProxies(settings.trusted_proxies)
        cors_origins = allowed_origins(settings.cors_allowed_origins)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    tara_config = _tara_config(settings)
    csrf_key = settings.secret_bytes("session_key")

    enrichment = build_enrichment(settings)
    audit = build_audit(settings, enrichers=enrichment.enrichers, clock=audit_clock)
    engine = make_engine(settings.resolved_database_url())
    if settings.db_auto_upgrade:
        upgrade(engine)
    limiter = build_limiter(settings, emit=audit.trail.emit)
    monitor = build_monitor(settings, audit.trail, engine, threat=enrichment.threat)
    http = http_client or httpx.AsyncClient(
        timeout=settings.tara_timeout_s,
        follow_redirects=False,
        trust_env=False,
        verify=trust_store_context({}),  # certifi's bundle, as before; no key log
    )
    secure = settings.cookie_secure
    services = Services(
        settings=settings,
        audit=audit,
        engine=engine,
        flows=FlowStore(engine),
        sessions=SessionManager(
            SessionStore(engine), policy, audit.trail, audit.fingerprinter, clock=clock
        ),
        tara=TaraClient(
            tara_config,
            http,
            clock=clock,
            on_keys_change=_auth.idp_keys_reporter(audit.trail, settings.tara_issuer),
        ),
        http=http,
        clock=clock,
        cookies=CookieConfig(
            session_name=(
                "__Host-kroonika_session"
                if secure and settings.cookie_domain is None
                else "kroonika_session"
            ),
            flow_name="kroonika_flow",
            secure=secure,
            domain=settings.cookie_domain,
        ),
        proxies=proxies,
        csrf_key=csrf_key,
        owns_http=http_client is None,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await _startup_tara(app, settings)
        except SettingsError as exc:
            app.state.start_refused = str(exc)
            if services.owns_http:
                await services.http.aclose()
            audit.store.close()
            engine.dispose()
            raise

        async def shut_down(reason: str) -> None:
            # uvicorn has stopped accepting and let the requests in flight finish. Each
            # stop is a no-op for a part that never started; each is bounded, and one
            # that hangs (a dead Redis or NATS) or fails is logged and the rest still
            # stop (decision 0010, 2026-11-28).
            await _bounded("the jobs", app.state.admin_stop())
            await _bounded("the tokens", app.state.tokens.aclose())  # list notices' Redis
            await _bounded("the security monitor", monitor.stop())  # detector windows' Redis
            await _bounded("alerting", app.state.alerting.stop())  # writes alert.raise
            await _bounded("the rate limiter", limiter.stop())  # writes its summaries
            await _bounded("the audit trail", audit.trail.stop(reason), TRAIL_STOP_S)
            # after the trail: audit.log.stop ships too
            await _bounded("log shipping", app.state.log_shipping.stop(), TRAIL_STOP_S)
            await _bounded("the rate limiter's Redis", limiter.close())
            if services.owns_http:
                await _bounded("the TARA client", services.http.aclose())
            audit.trail.close_store()  # left open while a hung commit still holds it
            engine.dispose()

        await audit.trail.start()
        try:
            await app.state.tokens.start()  # its key.rotate needs the trail
            await app.state.log_shipping.start()  # before the monitor: listeners nest
            await app.state.alerting.start()  # so does this one
            await monitor.start()
            await app.state.admin_start()
        except BaseException as exc:
            # the trail recorded audit.log.start: it records why the start ended too
            if isinstance(exc, SettingsError):
                app.state.start_refused = str(exc)
            await shut_down("startup_failed")
            raise
        try:
            yield
        finally:
            await shut_down("shutdown")

    app = FastAPI(
        title="Kroonika",
        lifespan=lifespan,
        docs_url=None if settings.production else "/docs",
        redoc_url=None,
        openapi_url=None if settings.production else "/openapi.json",
    )
    app.state.services = services
    app.state.settings = settings
    app.state.tara_status = "unchecked"
    app.state.tara_detail = None
    app.state.tara_found_fine = False  # once True, TARA's outages leave the service ready
    app.state.tara_readiness = TaraReadiness(
        settings.tara_ready_timeout_s, settings.tara_ready_cache_s
    )
    app.state.security_monitor = monitor
    app.state.threat_intel = enrichment.threat
    app.add_middleware(
        CorsMiddleware,
        allowed=sorted(cors_origins),
        emit=audit.trail.emit,
        public_url=settings.public_url,
        max_age_s=settings.cors_max_age_s,
    )
    # inside the request context (client IP, request id); the dashboard's 429 is a page,
    # a token route's the RFC 6749 error object, a login route's a page for a browser
    pages = {
        **routes_dashboard.rate_limit_answers(),
        **rate_limit_answers(),
        **dict.fromkeys(LOGIN_PATHS, login_page.busy),
    }
    install_rate_limiting(app, limiter, pages=pages)
    app.add_middleware(
        RequestContextMiddleware,
        proxies=proxies,
        max_body_bytes=settings.max_body_bytes,
        hsts=secure,
        outages=OUTAGES,
        before_response=record_unrouted,  # 413s and admin:ip 429s under /admin leave a trail
    )
    app.add_middleware(RefusedStart)  # outermost: it sees the lifespan's messages first
    _install_error_handlers(app)
    app.include_router(_health_router())
    app.include_router(_auth.router)
    app.include_router(_pages.router)
    install_tokens(app, services)  # /tokens, /introspect, /revoke, JWKS; login/logout hooks
    install_log_shipping(app, services)  # sinks, /metrics (a bad sink refuses to start)
    install_alerting(app, services)  # the alert rules (a bad rule refuses to start)
    install_admin(app, services)  # /admin, /audit; roles, runtime config, cleanup jobs
    install_retention_job(app.state.admin, services)  # audit_retention on the scheduler
    install_openapi(app)  # the document says how the routes refuse
    return app


def _ending(task: asyncio.Task[None] | None) -> str:
    """Why the audit writer task is not running (for the log line, never the answer)."""
    if task is None:
        return "not started"
    if task.cancelled():
        return "cancelled"
    exc = task.exception()
    return "finished" if exc is None else f"crashed ({type(exc).__name__})"


def _health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/health")
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @router.get("/ready", response_model=None)
    async def ready(request: Request) -> JSONResponse:
        """Readiness: the business database and the audit store are reachable, the audit
        writer runs, and TARA's discovery document and keys fit the configuration
        (checked at start-up and again here, cut at ``KROONIKA_TARA_READY_TIMEOUT_S`` and
        kept ``KROONIKA_TARA_READY_CACHE_S``: see :class:`TaraReadiness`). Once TARA was
        found fine, its later outages show (``checks.tara``, ``tara_detail``, status
        ``degraded``) but do not make the service unready (200): tokens are validated
        without TARA, and logins fail with ``idp_unavailable`` (or ``idp_misconfigured``
        while the discovery does not fit) and say so (decision 0010)."""
        services: Services = request.app.state.services
        checks: dict[str, str] = {}

        def db_ok() -> None:
            with services.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        def audit_ok() -> None:
            services.audit.store.streams()

        for name, probe in (("database", db_ok), ("audit_store", audit_ok)):
            try:
                await asyncio.to_thread(probe)
                checks[name] = "ok"
            except Exception as exc:  # noqa: BLE001 (readiness reports any failure as down)
                log.warning("readiness: %s down: %s", name, type(exc).__name__)
                checks[name] = "down"
        writer = services.audit.trail._task  # ended (crashed, cancelled): nothing is written
        checks["audit_writer"] = "ok" if writer is not None and not writer.done() else "down"
        if checks["audit_writer"] != "ok":
            log.warning("readiness: audit_writer down: %s", _ending(writer))
        checks["tara"] = await request.app.state.tara_readiness.verdict(request.app)
        tara_needed = not request.app.state.tara_found_fine  # until TARA was found fine
        ok = all(v == "ok" for k, v in checks.items() if k != "tara" or tara_needed)
        status = "unavailable" if not ok else "ok" if checks["tara"] == "ok" else "degraded"
        body: dict[str, object] = {"status": status, "checks": checks}
        if checks["tara"] != "ok":
            body["tara_issuer"] = services.settings.tara_issuer
            body["tara_detail"] = request.app.state.tara_detail
        keys = services.tara.jwks.health(services.clock())
        if keys is not None:  # TARA's JWKS down: logins go on with cached keys, for a while
            body["tara_keys"], body["tara_keys_detail"] = keys
        return JSONResponse(
            body,
            status_code=200 if ok else 503,
        )

    return router


#: A component the request needs is down: 503 with this error (fail closed: an action
#: whose audit event cannot be written does not happen).
OUTAGES: tuple[tuple[type[Exception], str], ...] = (
    (AuditUnavailable, "audit_unavailable"),
    (StoreError, "audit_unavailable"),  # the trail cannot be read
    *((kind, "database_unavailable") for kind in UNAVAILABLE),
)


#: the methods a 405 may name in ``Allow``
_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str:
    """Every method the path is routed for (RFC 9110 section 15.5.6): Starlette's 405
    names only those of the first route whose path matches, and ``/admin/lists/export``
    also matches ``/admin/lists/{entry_id}``. Each method is tried against the routes as
    the router would (FastAPI nests included routers, so the routes' own ``methods``
    are not all at the top). The trail's records are routed for writes only to refuse
    them (``PUT /audit/events`` answers 405 itself): those are not offered."""
    routes = request.app.router.routes
    refused = REFUSED_WRITES if RECORDS_PATH.fullmatch(request.url.path) else ()
    return ", ".join(
        method
        for method in _METHODS
        if method not in refused
        and any(r.matches({**request.scope, "method": method})[0] is Match.FULL for r in routes)
    )


#: What a validation error asks for, from its type and the schema's limits (``ctx``):
#: never pydantic's message, which for some types (a custom validator's, a UUID's) quotes
#: the input.
_EXPECTED: Mapping[str, str] = {
    "missing": "is required",
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_parsing": "must be a number",
    "bool_parsing": "must be true or false",
    "string_type": "must be text",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_attributes_type": "must be an object",
    "json_invalid": "must be JSON",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "literal_error": "must be {expected}",
    "enum": "must be {expected}",
    "string_too_short": "must be at least {min_length} characters",
    "string_too_long": "must be at most {max_length} characters",
    "too_short": "must have at least {min_length} items",
    "too_long": "must have at most {max_length} items",
    "extra_forbidden": "is not taken",
}


def _expected(error: Mapping[str, object]) -> str:
    template = _EXPECTED.get(str(error.get("type")), "is not valid")
    ctx = error.get("ctx")
    try:
        return template.format_map(ctx if isinstance(ctx, dict) else {})
    except (KeyError, IndexError, ValueError):
        return "is not valid"


def _install_error_handlers(app: FastAPI) -> None:
    def body(error: str) -> dict[str, str | None]:
        return {"error": error, "request_id": _request_id()}

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "not_authenticated"}
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": _allowed_methods(request)}
        return JSONResponse(
            body(codes.get(exc.status_code, "http_error")),
            status_code=exc.status_code,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Only where the problem is, never the input (it could be a code or a token).
        # A location can hold a key the caller sent (an unknown field, a key of an
        # object): such a key is named only when it is a plain identifier.
        where = [".".join(_location(p) for p in e.get("loc", ())) for e in exc.errors()]
        detail = "; ".join(
            f"{field} {_expected(e)}" for field, e in zip(where, exc.errors(), strict=True)
        )
        return JSONResponse(
            {**body("invalid_request"), "detail": detail, "fields": where}, status_code=422
        )

    def refusal(request: Request, error: str, status: int) -> Response:
        """The JSON error; on a login route, the failure page for a person's browser."""
        answer = JSONResponse(body(error), status_code=status)
        if request.url.path in LOGIN_PATHS:
            return login_page.answer(request, answer, error)
        return answer

    def outage(error: str) -> Callable[[Request, Exception], Awaitable[Response]]:
        async def refuse(request: Request, exc: Exception) -> Response:
            if isinstance(exc, StoreError):  # the driver's first line, no SQL parameters
                log.error("%s, request refused: %s", error, exc)
            else:
                log.error("%s, request refused: %s", error, type(exc).__name__)
            return refusal(request, error, 503)

        return refuse

    for kind, error in OUTAGES:
        app.add_exception_handler(kind, outage(error))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        log.error("unhandled %s request_id=%s", type(exc).__name__, _request_id(), exc_info=False)
        return refusal(request, "internal_error", 500)


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")


def _location(part: object) -> str:
    """One step of a validation error's location: an index, or a name if it is a plain
    identifier (``<key>`` otherwise: a key may be a personal code or hold a line break)."""
    if isinstance(part, int):
        return str(part)
    text = str(part)
    return text if _IDENTIFIER.fullmatch(text) else "<key>"
