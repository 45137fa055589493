"""``GET /metrics`` (Prometheus text format) and the log shipping of the app.

Access: with ``KROONIKA_METRICS_TOKEN`` set, a scraper sends ``Authorization: Bearer
<token>`` (compared in constant time); without a token only a client connected from a
loopback address is served (the direct peer, never a forwarded header), so a service
exposed through a proxy does not publish its metrics by accident. ``KROONIKA_METRICS_ENABLED
=false`` removes the route. Metrics carry sink and stream names and counts only, the
rate limiter's counters (its fail-open count among them) and the state of TARA's cached
key set."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from kroonika.ratelimit import RateLimiter
from kroonika.shipping import LogShipping
from kroonika.web._context import plain_ip
from kroonika.web._services import Services

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(plain_ip(host)).is_loopback
    except ValueError:
        return False


def _limiter_metrics(limiter: RateLimiter) -> str:
    """The limiter's counters; ``storage_errors`` counts checks that failed open because
    the storage (Redis) could not be reached, ``audit_errors`` events the trail refused."""
    lines = [
        "# HELP kroonika_ratelimit_total Rate limiter counters of this instance"
        " (storage_errors: checks that failed open, the storage unreachable;"
        " audit_errors: events the audit trail refused, kept for the next summary).",
        "# TYPE kroonika_ratelimit_total counter",
    ]
    lines += [
        f'kroonika_ratelimit_total{{counter="{name}"}} {value}'
        for name, value in sorted(limiter.counts.items())
    ]
    return "\n".join(lines) + "\n"


def _tara_metrics(services: Services) -> str:
    """Whether TARA's key set is used past its TTL because it cannot be fetched, and how
    old the cached set is (decision 0005: stale-if-error)."""
    jwks = services.tara.jwks
    now = services.clock()
    health = jwks.health(now)
    stale = 1 if health is not None and health[0] == "stale" else 0
    lines = [
        "# HELP kroonika_tara_jwks_stale 1 while ID tokens are verified with cached TARA"
        " keys past their TTL because TARA's JWKS cannot be fetched.",
        "# TYPE kroonika_tara_jwks_stale gauge",
        f"kroonika_tara_jwks_stale {stale}",
    ]
    if jwks.fetched_at is not None:
        lines += [
            "# HELP kroonika_tara_jwks_age_seconds Age of the cached TARA key set.",
            "# TYPE kroonika_tara_jwks_age_seconds gauge",
            f"kroonika_tara_jwks_age_seconds {max(0, int(now - jwks.fetched_at))}",
        ]
    return "\n".join(lines) + "\n"


def _router(
    shipping: LogShipping,
    token: bytes | None,
    limiter: RateLimiter | None,
    services: Services,
) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/metrics", response_model=None, response_class=PlainTextResponse)
    async def metrics(request: Request) -> Response:
        """Sink lag and delivery counts, audit trail counters (Prometheus text 0.0.4)."""
        if token is not None:
            given = request.headers.get("authorization", "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.encode(), token):
                return JSONResponse(
                    {"error": "not_authenticated"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
        elif not _loopback(request.client.host if request.client else None):
            return JSONResponse({"error": "forbidden"}, status_code=403)
        text = await shipping.prometheus()
        if limiter is not None:
            text += _limiter_metrics(limiter)
        text += _tara_metrics(services)
        return PlainTextResponse(text, media_type=CONTENT_TYPE)

    return router


def install_log_shipping(app: FastAPI, services: Services) -> LogShipping:
    """Build the sinks (a bad sink refuses to start), keep the shipping on
    ``app.state.log_shipping`` and register ``/metrics``. The lifespan starts it after the
    trail and stops it after the trail (so ``audit.log.stop`` is shipped too)."""
    settings = services.settings
    shipping = LogShipping.from_settings(settings, services.audit.trail, services.audit.store)
    app.state.log_shipping = shipping
    if settings.metrics_enabled:
        secret = settings.metrics_token
        token = secret.get_secret_value().encode() if secret is not None else None
        if token is not None and len(token) < 16:
            from kroonika.settings import SettingsError

            raise SettingsError("KROONIKA_METRICS_TOKEN must be at least 16 characters")
        limiter = getattr(app.state, "rate_limiter", None)
        app.include_router(_router(shipping, token, limiter, services))
    return shipping


def install_alerting(app: FastAPI, services: Services) -> Any:
    """Build the alert rules (a bad rule refuses to start) and keep the evaluator on
    ``app.state.alerting``; the lifespan starts it after the trail and stops it before."""
    from kroonika.alerting import Alerting

    tokens = getattr(app.state, "tokens", None)
    alerting = Alerting.from_settings(
        services.settings,
        services.audit.trail,
        services.audit.store,
        tokens.service if tokens is not None else None,
    )
    app.state.alerting = alerting
    return alerting


def install_retention_job(admin: Any, services: Services) -> None:
    """Add ``audit_retention`` to the admin scheduler (``admin.jobs``). Like every job,
    its schedule and on/off switch are runtime configuration (``jobs.audit_retention.*``,
    default daily at 03:23 UTC, seeded from ``KROONIKA_JOBS_CRON``/``_DISABLED``)."""
    from kroonika.jobs.retention import JOB_NAME, audit_retention_job
    from kroonika.shipping import retention_policy

    settings = services.settings
    admin.jobs.jobs[JOB_NAME] = audit_retention_job(
        services.audit.store,
        retention_policy(settings),
        archive_dir=settings.audit_archive_dir,
        partitions_ahead=settings.audit_partitions_ahead,
    )
