"""Wires administration into an app made by ``create_app``: role store (bootstrapped from
``KROONIKA_ADMIN_BOOTSTRAP``), API keys, runtime configuration with its appliers, the job
scheduler, and the ``/admin`` and ``/audit`` routers."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from starlette.routing import Match
from starlette.types import Scope

from kroonika.admin._auth import (
    STORE_DOWN,
    AdminServices,
    AuditedRoute,
    _call,
    admin_services,
    authenticate,
)
from kroonika.admin._auth import _record as record_call
from kroonika.admin._config import JOB_NAMES, Applier, RuntimeConfig, SecretBox, apply_log_levels
from kroonika.admin._config_requests import ConfigRequests
from kroonika.admin._errors import AdminError
from kroonika.admin._privacy import Eraser
from kroonika.admin._pseudonym_keys import record_rotation
from kroonika.admin._roles import ApiKeys, RoleStore
from kroonika.audit import AuditUnavailable
from kroonika.db import StatementLimits, metadata
from kroonika.db import admin as admin_tables
from kroonika.jobs import JOBS, JobDeps, Scheduler
from kroonika.sessions import SessionPolicy
from kroonika.settings import SettingsError

if TYPE_CHECKING:
    from kroonika.web._services import Services

log = logging.getLogger("kroonika.admin")


def _appliers(app: FastAPI, services: Services) -> list[Applier]:
    def tokens_check(v: Mapping[str, Any]) -> None:
        if not v["token.ttl_min_s"] <= v["token.ttl_default_s"] <= v["token.ttl_max_s"]:
            raise ValueError("token TTLs need min <= default <= max")
        if not v["token.session_audience"]:
            raise ValueError("the session audience cannot be empty")

    def tokens_apply(v: Mapping[str, Any]) -> None:
        comps = getattr(app.state, "tokens", None)
        if comps is None:
            return
        comps.service.policy = dataclasses.replace(
            comps.service.policy,
            ttl_min_s=v["token.ttl_min_s"],
            ttl_default_s=v["token.ttl_default_s"],
            ttl_max_s=v["token.ttl_max_s"],
            session_ttl_s=v["token.session_ttl_s"],
            session_audience=tuple(v["token.session_audience"]),
        )

    def session_policy(v: Mapping[str, Any]) -> SessionPolicy:
        return SessionPolicy(
            idle_s=v["session.idle_s"],
            absolute_s=v["session.absolute_s"],
            max_per_person=v["session.max_per_person"],
        )

    def sessions_apply(v: Mapping[str, Any]) -> None:
        services.sessions.policy = session_policy(v)

    def ratelimit_policy(v: Mapping[str, Any]) -> Any:
        from kroonika.ratelimit import RateLimitPolicy

        try:
            return RateLimitPolicy.build(
                v["ratelimit.limits"],
                services.settings.ratelimit_exempt_networks,
                enabled=v["ratelimit.enabled"],
            )
        except Exception as exc:  # noqa: BLE001 (RateLimitConfigError and limit parse errors)
            raise ValueError(str(exc)) from None

    def ratelimit_apply(v: Mapping[str, Any]) -> None:
        limiter = getattr(app.state, "rate_limiter", None)
        if limiter is not None:
            limiter.configure(ratelimit_policy(v))

    def alerts_apply(v: Mapping[str, Any]) -> None:
        monitor = getattr(app.state, "security_monitor", None)
        if monitor is None:
            return
        monitor.config = dataclasses.replace(
            monitor.config,
            brute_force_failures=v["alerts.brute_force_failures"],
            brute_force_window_s=float(v["alerts.brute_force_window_s"]),
            stuffing_people=v["alerts.stuffing_people"],
            stuffing_attempts=v["alerts.stuffing_attempts"],
            travel_max_kmh=float(v["alerts.travel_max_kmh"]),
        )
        # the monitor keeps observations for its longest window
        monitor._span = max(monitor.config.brute_force_window_s, monitor.config.stuffing_window_s)

    def nothing(_: Mapping[str, Any]) -> None:
        return None

    return [
        Applier("tokens", tokens_check, tokens_apply),
        Applier("sessions", session_policy, sessions_apply),
        Applier("ratelimit", ratelimit_policy, ratelimit_apply),
        Applier("log", nothing, apply_log_levels),
        Applier("alerts", nothing, alerts_apply),
    ]


def install_admin(app: FastAPI, services: Services) -> AdminServices:
    """Build administration on ``app.state.admin`` and register ``/admin`` and ``/audit``.
    Call ``await app.state.admin_start()`` / ``admin_stop()`` from the lifespan."""
    from kroonika.admin.routes import router as admin_router
    from kroonika.admin.routes_alerts import router as alerts_router
    from kroonika.admin.routes_privacy import router as privacy_router
    from kroonika.web.routes_audit import router as audit_router
    from kroonika.web.routes_dashboard import router as dashboard_router

    settings = services.settings
    if not settings.db_auto_upgrade:
        metadata.create_all(
            services.engine,
            tables=[getattr(admin_tables, name) for name in admin_tables.__all__],
            checkfirst=True,
        )
    roles = RoleStore(services.engine, clock=services.clock)
    try:
        roles.bootstrap(settings.admin_bootstrap)
    except ValueError as exc:
        raise SettingsError(f"KROONIKA_ADMIN_BOOTSTRAP: {exc}") from None
    for variable, named in (
        ("KROONIKA_JOBS_CRON", settings.jobs_cron),
        ("KROONIKA_JOBS_DISABLED", settings.jobs_disabled),
    ):
        unknown = sorted(set(named) - set(JOB_NAMES))
        if unknown:  # a misspelt job would keep its default schedule, silently
            shown = [repr(n) if n.isascii() and n.isprintable() else "?" for n in unknown]
            raise SettingsError(
                f"{variable}: no job named {', '.join(shown)} (jobs: {', '.join(JOB_NAMES)})"
            )
    config = RuntimeConfig(
        services.engine,
        settings,
        services.clock,
        _appliers(app, services),
        box=SecretBox(settings.secret_bytes("master_key")),
    )
    try:
        config.validate(config.defaults() | {"alerts.webhook_secret": "x" * 16})
    except Exception as exc:  # noqa: BLE001 (any invalid default is a settings error)
        raise SettingsError(f"runtime configuration defaults: {exc}") from None
    config.refresh()

    def schedule(name: str) -> tuple[str, bool]:
        eff = config.effective()
        return str(eff[f"jobs.{name}.cron"]), bool(eff[f"jobs.{name}.enabled"])

    scheduler = Scheduler(
        dict(JOBS),
        JobDeps(
            engine=services.engine,
            trail=services.audit.trail,
            sessions=services.sessions,
            tokens=lambda: getattr(app.state, "tokens", None),
            flow_retention_s=settings.jobs_flow_retention_s,
            token_retention_s=settings.jobs_token_retention_s,
            session_retention_s=settings.jobs_session_retention_s,
            profile_retention_s=settings.jobs_profile_retention_s,
        ),
        clock=services.clock,
        schedule=schedule,
        lease_s=settings.jobs_lease_s,
        batch_size=settings.jobs_batch_size,
        tick_s=settings.jobs_tick_s,
        on_tick=config.refresh,
        statement_limits=StatementLimits(
            lock_timeout_s=settings.jobs_lock_timeout_s,
            statement_timeout_s=settings.jobs_statement_timeout_s,
        ),
    )
    admin = AdminServices(
        services=services,
        roles=roles,
        keys=ApiKeys(services.engine, clock=services.clock),
        config=config,
        fingerprinter=services.audit.fingerprinter,
        jobs=scheduler,
        requests=ConfigRequests(config, clock=services.clock),
        eraser=Eraser(
            services.engine,
            services.audit.subject_keys,
            (services.audit.fingerprinter, *services.audit.retired),
            services.audit.store,
        ),
        retired=services.audit.retired,
    )
    app.state.admin = admin

    async def start() -> None:
        await record_rotation(admin)  # a new pseudonymisation key: key.rotate first
        if settings.jobs_enabled:
            await scheduler.start()

    app.state.admin_start = start
    app.state.admin_stop = scheduler.stop
    app.include_router(admin_router)
    app.include_router(privacy_router)
    app.include_router(alerts_router)
    app.include_router(audit_router)
    app.include_router(dashboard_router)
    # what record_unrouted matches a refused call against (FastAPI nests included routers)
    app.state.admin_routes = (*admin_router.routes, *audit_router.routes, *dashboard_router.routes)
    _audit_unmatched(app)
    return admin


ADMIN_PREFIXES = ("/admin", "/audit")


#: The trail or a store is down: a refused call's record is lost (and logged).
REFUSED_BY_TRAIL: tuple[type[Exception], ...] = (AuditUnavailable, *STORE_DOWN)


def _admin_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in ADMIN_PREFIXES)


def _route_of(app: Any, scope: Scope) -> tuple[AuditedRoute, Mapping[str, Any]] | None:
    """The audited route this call would have reached (a full match, else one of the
    path only), with its path parameters."""
    partial = None
    for route in app.state.admin_routes:
        if isinstance(route, AuditedRoute):
            match, child = route.matches(scope)
            if match is Match.FULL:
                return route, child
            if match is Match.PARTIAL and partial is None:
                partial = route, child
    return partial


async def record_unrouted(scope: Scope, status: int) -> None:
    """The ``admin.request`` of a call under ``/admin`` or ``/audit`` that was answered
    before any route recorded it: a body over ``max_body_bytes`` (413) or the
    ``admin:ip`` limit (429), both refused by middleware before routing and before
    authentication. The caller is anonymous (nothing is authenticated for a refused call,
    so a flood costs no database work), the route is the template the path would have
    reached (``/admin/{unmatched}`` if none: the raw path can hold a personal code), the
    parameters are summarised as for any call, and the body is never read. Called by the
    request-context middleware just before the answer starts; a record the trail refuses
    is logged and the refusal stands (no action happened that lacks its record)."""
    if scope.get("type") != "http" or not _admin_path(scope.get("path", "")):
        return
    state = scope.get("state") or {}
    app = scope.get("app")
    if state.get("admin_recorded") or getattr(getattr(app, "state", None), "admin", None) is None:
        return
    routed: dict[str, Any] = dict(scope)
    template = ("/audit" if scope["path"].startswith("/audit") else "/admin") + "/{unmatched}"
    found = _route_of(app, scope)
    if found is not None:
        routed.update(found[1])
        template = found[0].path_format
    try:
        await record_call(Request(routed), template, status, time.perf_counter())
    except REFUSED_BY_TRAIL as exc:  # the refusal is answered all the same
        log.error(
            "admin.request of a refused call (%s) not recorded: %s", status, type(exc).__name__
        )


def _audit_unmatched(app: FastAPI) -> None:
    """``admin.request`` also for calls under ``/admin`` and ``/audit`` that no route took:
    unknown paths (404) and known paths with a method they do not allow (405). The app's
    own answer is kept; the path itself stays out of the event (it could carry a personal
    code): the route is ``/admin/{unmatched}`` or, for a 405, the route's template."""
    from starlette.exceptions import HTTPException as StarletteHTTPException

    original = app.exception_handlers.get(StarletteHTTPException)
    if original is None:  # the app factory installs one; without it there is nothing to wrap
        raise RuntimeError("install_admin needs the app's HTTP error handler")

    async def handler(request: Request, exc: Exception) -> Response:
        path = request.url.path
        status = getattr(exc, "status_code", 500)
        if status in (404, 405) and _admin_path(path):
            route = request.scope.get("route")
            ran = isinstance(route, AuditedRoute) and request.method in (route.methods or ())
            if not ran:  # an audited route that ran has recorded its own call
                template = (
                    route.path_format
                    if isinstance(route, AuditedRoute)
                    else ("/audit" if path.startswith("/audit") else "/admin") + "/{unmatched}"
                )
                admin = admin_services(request)
                with contextlib.suppress(AdminError):
                    _call(request).principal = await authenticate(request, admin)
                await record_call(request, template, status, time.perf_counter())
        response = original(request, exc)
        if inspect.isawaitable(response):
            response = await response
        return response

    app.add_exception_handler(StarletteHTTPException, handler)
