"""ASGI middleware: classify a request into a route group and apply the IP limits.

Limits per client (relying service) and per person need the caller to be
authenticated first; routes apply those with :meth:`RateLimiter.hit` (or the
FastAPI dependency :func:`limit`) once they know who is calling.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from kroonika.ratelimit._errors import RateLimited
from kroonika.ratelimit._limiter import RateLimiter
from kroonika.ratelimit._policy import RouteGroup

# (path prefix, group): the first matching prefix wins. Each prefix is a route the
# service serves (or has routes under it), and each is in the operator guide's *Rate
# limits* table: tests/docs checks both.
DEFAULT_ROUTES: tuple[tuple[str, RouteGroup], ...] = (
    ("/auth/login", RouteGroup.LOGIN_START),
    ("/auth/callback", RouteGroup.CALLBACK),
    ("/tokens/validate", RouteGroup.VALIDATE),
    ("/tokens/bulk/validate", RouteGroup.VALIDATE),
    ("/introspect", RouteGroup.VALIDATE),
    ("/revoke", RouteGroup.VALIDATE),
    ("/tokens", RouteGroup.TOKEN_MINT),
    ("/admin", RouteGroup.ADMIN),
    ("/audit", RouteGroup.ADMIN),  # the auditor's API: same keys, same callers
)


def too_many_requests(exc: RateLimited) -> JSONResponse:
    """HTTP 429 with ``Retry-After`` (RFC 9110 section 10.2.3) and a JSON error."""
    return JSONResponse(
        {
            "error": exc.error,
            "error_description": "Too many requests; try again later.",
            "limit": exc.limit,
            "retry_after": exc.retry_after,
        },
        status_code=429,
        headers={"Retry-After": str(exc.retry_after), "Cache-Control": "no-store"},
    )


#: How a path answers its 429 when it is not the JSON of :func:`too_many_requests` (a
#: page people look at answers with a page: the dashboard).
Refusal = Callable[[Request, RateLimited], Response]


def classify(path: str, routes: Sequence[tuple[str, RouteGroup]]) -> RouteGroup | None:
    for prefix, group in routes:
        if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
            return group
    return None


class RateLimitMiddleware:
    """Per-IP limits by route group, before the route runs. The client address is
    the ASGI ``client`` (put the proxy-headers middleware in front of this one when
    behind a trusted proxy)."""

    def __init__(
        self,
        app: ASGIApp,
        limiter: RateLimiter,
        routes: Sequence[tuple[str, RouteGroup]] = DEFAULT_ROUTES,
        pages: Mapping[str, Refusal] | None = None,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.routes = tuple(routes)
        self.pages = dict(pages or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        group = classify(scope["path"], self.routes)
        if group is None:
            await self.app(scope, receive, send)
            return
        if self.limiter.flusher is None:
            await self.limiter.start()
        client = scope.get("client")
        ip = client[0] if client else None
        headers = dict(scope.get("headers") or [])
        ua = headers.get(b"user-agent", b"").decode("latin-1")[:512] or None
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or None
        # The service's request-context middleware (outside this one) has already
        # resolved the client behind trusted proxies and assigned the request id.
        info = (scope.get("state") or {}).get("request_info")
        if info is not None:
            ip = getattr(info, "client_ip", ip)
            rid = getattr(info, "request_id", rid)
        decision = await self.limiter.check(group, ip=ip, user_agent=ua, request_id=rid)
        if decision.allowed:
            await self.app(scope, receive, send)
            return
        refused = RateLimited(decision.limit or group.value, decision.retry_after)
        page = self.pages.get(scope["path"])
        response = too_many_requests(refused) if page is None else page(Request(scope), refused)
        await response(scope, receive, send)


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None
