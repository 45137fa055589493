"""Rate limiting on the ``limits`` library: moving windows per client IP, client,
person and route group, and a client's own limit over all its token routes; memory
storage, or Redis (``KROONIKA_REDIS_URL``) so that instances share counters. Over the
limit: HTTP 429 with ``Retry-After`` and a JSON error, a growing penalty for repeat
offenders, exempt networks, and summarised ``security.rate_limit`` events. Fails open
when Redis is unreachable (counted and reported as an event).

    limiter = build_limiter(settings, emit=trail.emit)
    install_rate_limiting(app, limiter)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from kroonika.ratelimit._errors import RateLimitConfigError, RateLimited, RateLimitError
from kroonika.ratelimit._limiter import Decision, Emit, RateLimiter, make_storage
from kroonika.ratelimit._middleware import (
    DEFAULT_ROUTES,
    RateLimitMiddleware,
    Refusal,
    classify,
    too_many_requests,
)
from kroonika.ratelimit._policy import DEFAULT_LIMITS, KeyKind, RateLimitPolicy, RouteGroup
from kroonika.settings import Settings


def build_limiter(settings: Settings, *, emit: Emit | None = None) -> RateLimiter:
    """The configured limiter; a bad limit or network fails here, at build time."""
    policy = RateLimitPolicy.build(
        settings.ratelimit_limits,
        settings.ratelimit_exempt_networks,
        enabled=settings.ratelimit_enabled,
    )
    return RateLimiter(policy, storage=make_storage(settings.redis_url), emit=emit)


def install_rate_limiting(
    app: Starlette,
    limiter: RateLimiter,
    routes: Sequence[tuple[str, RouteGroup]] = DEFAULT_ROUTES,
    pages: Mapping[str, Refusal] | None = None,
) -> None:
    """Add the middleware and the 429 handler for :class:`RateLimited` raised by
    routes (``await limiter.hit(RouteGroup.TOKEN_MINT, ip=..., client=...)``). A path
    in ``pages`` answers its 429s, the middleware's and its route's, with its own
    response (a page, or the error object of the protocol the path speaks), not the
    JSON of :func:`too_many_requests`."""
    answers = dict(pages or {})

    async def rate_limited(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, RateLimited):  # pragma: no cover  (registered for it only)
            raise exc
        answer = answers.get(request.scope["path"])
        return too_many_requests(exc) if answer is None else answer(request, exc)

    app.state.rate_limiter = limiter
    app.add_middleware(RateLimitMiddleware, limiter=limiter, routes=routes, pages=answers)
    app.add_exception_handler(RateLimited, rate_limited)


def limiter_of(app: Any) -> RateLimiter:
    limiter: RateLimiter = app.state.rate_limiter
    return limiter


__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_ROUTES",
    "Decision",
    "KeyKind",
    "RateLimitConfigError",
    "RateLimitError",
    "RateLimitMiddleware",
    "RateLimitPolicy",
    "RateLimited",
    "RateLimiter",
    "Refusal",
    "RouteGroup",
    "build_limiter",
    "classify",
    "install_rate_limiting",
    "limiter_of",
    "make_storage",
    "too_many_requests",
]
