"""ASGI middleware: request id and trace id, client address, body size limit, security
headers and one access-log line per request (path without query: callbacks carry codes;
the path with any secret or personal code cut out, and cut short)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import orjson
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kroonika.audit import Counters
from kroonika.audit.processors.redact import Redact
from kroonika.web._context import (
    RequestInfo,
    TrustedProxies,
    current_request,
    new_request_id,
    new_trace_id,
    request_id_from,
    trace_id_from,
)

access_log = logging.getLogger("kroonika.web.access")
log = logging.getLogger("kroonika.web")

#: How much of a path the access log shows (a path can be as long as the server takes).
LOGGED_PATH_MAX = 512
# The trail's own safety net: a client may put a token, a key or a personal code (in any
# script's digits) in a path (a mistaken link, a probe); the log names the request
# without it. What it cuts is counted here, not in the trail's counters.
_redact = Redact(Counters())


def loggable_path(path: str) -> str:
    """``path`` as the access log shows it: each secret or personal code replaced by
    ``[REDACTED:<kind>]``, then at most :data:`LOGGED_PATH_MAX` characters and how many
    more there were. Control characters are left to the log's formatter to escape."""
    path = _redact.scrub(path)
    if len(path) > LOGGED_PATH_MAX:
        return f"{path[:LOGGED_PATH_MAX]}…(+{len(path) - LOGGED_PATH_MAX} characters)"
    return path


SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "cache-control": "no-store",
}


class BodyTooLarge(Exception):
    """The request body grew past ``max_body_bytes`` while it was read: the answer is 413
    (the admin API's audited routes record that status, not a crash)."""


#: Exceptions that mean a component the request needs is down, and the error code the
#: answer (503) carries. The app's handlers answer them inside the routes; this middleware
#: answers those raised by the middleware between it and the routes (the rate limiter and
#: CORS emit audit events), which Starlette's handlers never see.
Outages = Sequence[tuple[type[Exception], str]]
#: Called once per request with the status, just before the answer starts (the admin
#: package records refusals that no route saw); it must not raise.
BeforeResponse = Callable[[Scope, int], Awaitable[None]]


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        proxies: TrustedProxies,
        max_body_bytes: int,
        hsts: bool,
        outages: Outages = (),
        before_response: BeforeResponse | None = None,
    ) -> None:
        self.app = app
        self.before_response = before_response
        self.proxies = proxies
        self.max_body = max_body_bytes
        self.hsts = hsts
        self.outages = tuple(outages)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        peer = scope.get("client")
        info = RequestInfo(
            request_id=request_id_from(headers.get("x-request-id")) or new_request_id(),
            trace_id=trace_id_from(headers.get("traceparent")) or new_trace_id(),
            # every X-Forwarded-For line, in order (RFC 9110 5.3: a proxy may append a
            # line of its own after the client's instead of extending the client's line)
            client_ip=self.proxies.client_ip(
                peer[0] if peer else None, ",".join(headers.getlist("x-forwarded-for")) or None
            ),
            user_agent=(headers.get("user-agent") or "")[:512] or None,
        )
        scope.setdefault("state", {})["request_info"] = info
        token = current_request.set(info)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                if not response_started and self.before_response is not None:
                    await self.before_response(scope, message["status"])
                response_started = True
                status = message["status"]
                out = MutableHeaders(scope=message)
                out["x-request-id"] = info.request_id
                for name, value in SECURITY_HEADERS.items():
                    if name not in out:
                        out[name] = value
                if self.hsts:
                    out["strict-transport-security"] = "max-age=31536000; includeSubDomains"
            await send(message)

        try:
            declared = headers.get("content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
                await _too_large(send_wrapper)
                return
            received = 0

            async def receive_wrapper() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body:
                        raise BodyTooLarge
                return message

            try:
                await self.app(scope, receive_wrapper, send_wrapper)
            except BodyTooLarge:
                if not response_started:
                    await _too_large(send_wrapper)
            except asyncio.CancelledError:
                # uvicorn cancels the requests still running when the stop's grace
                # (KROONIKA_SHUTDOWN_GRACE_S) ends: their callers got a bare 500 and the
                # log a traceback. The task is the server's own, ended on purpose: it
                # ends here, with an answer that says why (decision 0010, 2026-11-28).
                log.warning("request cancelled by the stop request_id=%s", info.request_id)
                if not response_started:
                    await _json(send_wrapper, 503, "shutting_down", info.request_id)
            except Exception as exc:
                if response_started:
                    raise
                error = next((code for kind, code in self.outages if isinstance(exc, kind)), None)
                if error is None:  # a bug: the traceback goes to the log, never the answer
                    log.error(
                        "unhandled %s request_id=%s",
                        type(exc).__name__,
                        info.request_id,
                        exc_info=exc,
                    )
                    await _json(send_wrapper, 500, "internal_error", info.request_id)
                    return
                log.error("%s, request refused: %s", error, type(exc).__name__)
                await _json(send_wrapper, 503, error, info.request_id)
        finally:
            access_log.info(
                "%s %s %s %.1fms request_id=%s",
                scope.get("method"),
                loggable_path(str(scope.get("path", ""))),
                status,
                (time.perf_counter() - started) * 1000,
                info.request_id,
            )
            current_request.reset(token)


async def _too_large(send: Send) -> None:
    await _send_body(send, 413, b'{"error":"payload_too_large"}')


async def _json(send: Send, status: int, error: str, request_id: str) -> None:
    await _send_body(send, status, orjson.dumps({"error": error, "request_id": request_id}))


async def _send_body(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
