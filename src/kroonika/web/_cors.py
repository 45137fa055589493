"""CORS (Fetch standard, "CORS protocol"): allowed origins answered, the rest refused
and audited.

- A preflight (``OPTIONS`` with ``Access-Control-Request-Method``) from an allowed
  origin gets 204 with ``Access-Control-Allow-Origin`` (the origin itself, never
  ``*``: responses may be credentialed), ``-Allow-Credentials``, ``-Allow-Methods``,
  ``-Allow-Headers`` (the requested ones among those the service reads) and
  ``-Max-Age``. From any other origin: 403 and a ``security.policy_violation``
  (``cors_origin_not_allowed``).
- A request from another origin that carries credentials (a cookie or an
  ``Authorization`` header) is refused with 403 and audited the same way, so a
  disallowed site can neither read nor act with the user's cookies. Without
  credentials it passes without CORS headers (the browser keeps the response from
  the page), and is not audited (public resources such as the JWKS).
- The service's own origin (``public_url``, or the request's scheme and ``Host``)
  is always same-origin, whatever the list says.

Failure policy: fails closed; if the violation cannot be stored the request gets 503.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kroonika.audit import Actor, AuditEvent, AuditUnavailable, Correlation, Source, Target
from kroonika.security import Policy, policy_violation

log = logging.getLogger("kroonika.web.cors")

ALLOWED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
ALLOWED_HEADERS = frozenset(
    {
        "authorization",
        "content-type",
        "x-csrf-token",
        "x-justification",
        "x-request-id",
        "traceparent",
    }
)

Emit = Callable[[AuditEvent], Awaitable[object]]


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL, lower-cased; ``None`` if it has none."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def allowed_origins(values: Sequence[str]) -> frozenset[str]:
    """The configured origins, normalised; ``ValueError`` for one that is not an origin."""
    out = set()
    for value in values:
        origin = origin_of(value)
        if origin is None or urlsplit(value.strip()).path not in ("", "/"):
            raise ValueError(f"KROONIKA_CORS_ALLOWED_ORIGINS: {value!r} is not an origin")
        out.add(origin)
    return frozenset(out)


class CorsMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed: Sequence[str],
        emit: Emit,
        public_url: str | None = None,
        max_age_s: int = 600,
    ) -> None:
        self.app = app
        self.allowed = allowed_origins(allowed)
        self.public = origin_of(public_url) if public_url else None
        self.emit = emit
        self.max_age = str(max_age_s)

    def _same_origin(self, scope: Scope, headers: Headers, origin: str) -> bool:
        if self.public is not None and origin == self.public:
            return True
        host = headers.get("host")
        return host is not None and origin == f"{scope.get('scheme', 'http')}://{host}".lower()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        origin = origin.strip().lower()
        if self._same_origin(scope, headers, origin):
            await self.app(scope, receive, send)
            return
        allowed = origin in self.allowed
        preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in headers
        if preflight:
            response = (
                self._preflight(origin, headers)
                if allowed
                else await self._refuse(scope, headers, origin, "preflight")
            )
            await response(scope, receive, send)
            return
        if not allowed:
            if "cookie" in headers or "authorization" in headers:
                response = await self._refuse(scope, headers, origin, "credentialed request")
                await response(scope, receive, send)
                return
            await self.app(scope, receive, self._vary(send))
            return
        await self.app(scope, receive, self._allow(send, origin))

    def _preflight(self, origin: str, headers: Headers) -> Response:
        method = headers["access-control-request-method"].strip().upper()
        asked = [
            h.strip().lower()
            for h in headers.get("access-control-request-headers", "").split(",")
            if h.strip()
        ]
        return Response(
            status_code=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true",
                "Access-Control-Allow-Methods": ", ".join(
                    ALLOWED_METHODS if method not in ALLOWED_METHODS else (method,)
                ),
                "Access-Control-Allow-Headers": ", ".join(h for h in asked if h in ALLOWED_HEADERS),
                "Access-Control-Max-Age": self.max_age,
                "Vary": "Origin",
            },
        )

    async def _refuse(self, scope: Scope, headers: Headers, origin: str, what: str) -> Response:
        info = (scope.get("state") or {}).get("request_info")
        method = headers.get("access-control-request-method", scope["method"])[:16]
        event = policy_violation(
            Policy.CORS_ORIGIN_NOT_ALLOWED,
            attempted=f"{what}: {method} {scope['path'][:200]} from origin {origin[:200]}",
            actor=Actor(),
            source=Source(ip=info.client_ip, user_agent=info.user_agent) if info else None,
            target=Target("origin", origin[:200]),
            correlation=(
                Correlation(request_id=info.request_id, trace_id=info.trace_id) if info else None
            ),
        )
        try:
            await self.emit(event)
        except AuditUnavailable:
            log.error("audit trail unavailable, CORS refusal not recorded")
            return JSONResponse({"error": "audit_unavailable"}, status_code=503)
        return JSONResponse(
            {"error": "cors_origin_not_allowed"}, status_code=403, headers={"Vary": "Origin"}
        )

    @staticmethod
    def _vary(send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"vary", b"Origin")]
            await send(message)

        return wrapped

    @staticmethod
    def _allow(send: Send, origin: str) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"access-control-allow-origin", origin.encode("latin-1")),
                    (b"access-control-allow-credentials", b"true"),
                    (b"vary", b"Origin"),
                ]
            await send(message)

        return wrapped
