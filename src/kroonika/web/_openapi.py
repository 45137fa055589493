"""The OpenAPI document says what the service really answers when it refuses.

FastAPI documents every 422 as its own ``HTTPValidationError`` (``detail``: a list of
validation errors, input values included), but the service answers every refusal with
its own small error object (``error``, ``request_id`` and, for a 422, ``fields``: where,
never the input). The admin and audit routes also refuse with 400, 401, 403, 404, 409,
429 and 503 that no route declared. Clients generated from the document and tools that
drive it (fuzzers, contract tests) read the document, not the code: this module makes
the document say what the handlers do (decision 0024). The dashboard refuses with pages,
not JSON, and the login callback may answer a page: the document says so too (decision
0037, 2026-11-28 review dash).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute

from kroonika.tara import ACR_ORDER, METHODS
from kroonika.web._auth import _CODE_MAX, _RETURN_TO_MAX, _STATE_MAX, _UI_LOCALES_MAX
from kroonika.web._login_page import LOGIN_PATHS
from kroonika.web.routes_dashboard import PageRoute

ERROR = "Error"
_REF = {"$ref": f"#/components/schemas/{ERROR}"}
_ERROR_SCHEMA: dict[str, Any] = {
    "title": ERROR,
    "type": "object",
    "description": "A refusal. Never carries the input that was refused.",
    "properties": {
        "error": {"type": "string", "description": "machine-readable code"},
        "detail": {"type": "string", "description": "what is wrong, for a person"},
        "request_id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "fields": {
            "type": "array",
            "items": {"type": "string"},
            "description": "422: where the request is malformed (e.g. body.name)",
        },
        "errors": {"description": "per-item problems, where an operation has items"},
        "reason": {"type": "string", "description": "/auth: the refusal's reason code"},
        "run": {"type": "object", "description": "a job run that did not succeed: its record"},
        "retry_after": {"type": "integer", "description": "seconds, as in Retry-After"},
    },
    "required": ["error"],
}
#: the answer of every route over a rate limit (``ratelimit.too_many_requests``)
RATE_LIMITED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "error_description": {"type": "string"},
        "limit": {"type": "string", "description": "the limit that was hit"},
        "retry_after": {"type": "integer", "description": "seconds, as in Retry-After"},
    },
    "required": ["error", "retry_after"],
}
#: what the admin and audit routes may refuse with besides a 422 and a 429
ADMIN_REFUSALS = {
    "400": "Invalid value",
    "401": "No or an unknown API key or session",
    "403": "A role, the CSRF token or the second administrator is missing",
    "404": "No such resource",
    "409": "Conflicts with the current state",
    "503": "A store or the audit trail is down: nothing was done",
}
_RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
#: what a page of the admin and audit areas (a route of ``PageRoute``) answers instead:
#: pages too (decision 0037), as (description, headers)
PAGE_REFUSALS: dict[str, tuple[str, dict[str, Any]]] = {
    "400": ("The X-Justification given is not a plain-text justification (a page)", {}),
    "401": (
        "Not logged in: a page with the way to log in through TARA",
        {"WWW-Authenticate": {"schema": {"type": "string"}}},
    ),
    "403": (
        "A role is missing, or another site opened the page with the session cookie "
        "(a page with a link that opens it from here)",
        {},
    ),
    "422": ("A path or query value is not printable (a page)", {}),
    "429": ("Over a rate limit: a page that tries again after Retry-After seconds", _RETRY_AFTER),
    "503": (
        "A store or the audit trail is down, nothing was read: a page that tries again",
        _RETRY_AFTER,
    ),
}
_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
_CROSS_SITE = "opened from another site with the session cookie (`reason` cross_site_request)"
_SESSION = {
    "401": "No live session (no cookie, or it ended or expired)",
    "403": "csrf_failed: " + _CROSS_SITE,
}
_SESSION_CHANGE = {
    **_SESSION,
    "403": "csrf_failed: the X-CSRF-Token header is missing or wrong, or " + _CROSS_SITE,
}
_LOGIN = {
    "400": "A parameter is malformed or not allowed (the answer names the reason)",
    "403": "The address or the person is on the deny-list",
    "502": "TARA, or the service's registration with it, failed",
}
_REDIRECT = {"description": "Redirect", "headers": {"Location": {"schema": {"type": "string"}}}}
#: the callback's answer when a login comes back from another site (TARA) to a page that
#: takes the session cookie from this site only (``_landing``, decision 0037)
_HOP = {
    "description": "Logged in, back from another site to a page that takes the session "
    "cookie from this site only: a page that moves on to where the login started by "
    "itself (meta refresh), so that the next request comes from this site",
    "content": {"text/html": {"schema": {"type": "string"}}},
}
#: what replaces FastAPI's default 200 (a JSON body no ``/auth`` redirect answers)
AUTH_200: dict[tuple[str, str], dict[str, Any] | None] = {
    ("get", "/auth/login"): None,  # a 302 to TARA or a refusal, never a 200
    ("get", "/auth/callback"): _HOP,
}
#: what the browser-facing routes answer besides their 200 (``/auth``, decision 0035)
AUTH_RESPONSES: dict[tuple[str, str], dict[str, str]] = {
    ("get", "/auth/login"): {"302": "To TARA's authorization endpoint", **_LOGIN},
    ("get", "/auth/callback"): {"302": "To where the login started", **_LOGIN},
    ("get", "/auth/session"): _SESSION,
    ("post", "/auth/session/extend"): _SESSION_CHANGE,
    ("get", "/auth/sessions"): _SESSION,
    ("delete", "/auth/sessions"): _SESSION_CHANGE,
    ("delete", "/auth/sessions/{ref}"): {**_SESSION_CHANGE, "404": "No such session of yours"},
    ("post", "/auth/logout"): {"303": "To / (a form post)", **_SESSION_CHANGE},
}
#: What the login routes take. Their handlers read the query by hand (a refused start or
#: callback is still an audited attempt, never a bare 422), so FastAPI documented plain
#: strings (``acr``) or nothing (the callback); the limits are the handlers' own.
_QUERY_TEXT = {"type": "string"}
AUTH_PARAMETERS: dict[str, dict[str, dict[str, Any]]] = {
    "/auth/login": {
        "acr": {"type": "string", "enum": list(ACR_ORDER)},
        "method": {
            "type": "array",
            "items": {"type": "string", "enum": list(METHODS)},
            "description": "those of KROONIKA_TARA_SCOPES; all of them when none is given",
        },
        "ui_locales": {"type": "string", "maxLength": _UI_LOCALES_MAX},
        "return_to": {"type": "string", "maxLength": _RETURN_TO_MAX},
    },
    "/auth/callback": {
        "state": {"type": "string", "minLength": 1, "maxLength": _STATE_MAX},
        "code": {"type": "string", "maxLength": _CODE_MAX},
        "error": _QUERY_TEXT,
        "error_description": _QUERY_TEXT,
    },
}
#: the one callback parameter every answer from TARA carries (RFC 6749 section 4.1.2)
_REQUIRED = {("/auth/callback", "state")}
#: the ``/auth`` routes the rate limiter counts (``login_start:ip``, ``callback:ip``)
_AUTH_LIMITED = ("/auth/login", "/auth/callback")
#: the routes a person's browser lands on: each refusal is also a page (decision 0015)
_LOGIN_PAGE = {
    "description": "The failed login's page, for a browser's navigation (Accept ranking "
    "text/html above application/json, or Sec-Fetch-Mode: navigate)",
    "schema": {"type": "string"},
}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _REF}}}


def rate_limited() -> dict[str, Any]:
    """The documented 429 of a rate-limited operation."""
    return {
        "description": "Over a rate limit: try again after Retry-After seconds",
        "content": {"application/json": {"schema": RATE_LIMITED}},
    }


def _page_response(description: str, headers: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"text/html": {"schema": {"type": "string"}}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _pages(routes: Iterable[BaseRoute]) -> set[tuple[str, str]]:
    """(method, path) of each operation whose refusals are pages (``PageRoute``)."""
    return {
        (method.lower(), context.path_format)
        for context in iter_route_contexts(list(routes))
        if isinstance(context.original_route, PageRoute) and context.path_format
        for method in context.methods or ()
    }


def describe_refusals(doc: dict[str, Any], routes: Iterable[BaseRoute] = ()) -> dict[str, Any]:
    """``doc`` with every 422 documented as the service's error object, the admin
    refusals declared on the operations that have roles (``x-roles``), as pages on
    the operations of ``routes`` whose route class answers pages (``PageRoute``), the
    browser-facing ``/auth`` routes' redirects, pages and refusals
    (:data:`AUTH_RESPONSES`) and the login routes' query parameters
    (:data:`AUTH_PARAMETERS`)."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    pages = _pages(routes)
    for path, ops in doc.get("paths", {}).items():
        for method, op in ops.items():
            responses = op.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = _error_response("Malformed request: `fields` says where")
            if (method, path) in pages:
                for status, (text, headers) in PAGE_REFUSALS.items():
                    responses[status] = _page_response(text, headers)
            elif "x-roles" in op:
                for status, text in ADMIN_REFUSALS.items():
                    responses.setdefault(status, _error_response(text))
                responses.setdefault("429", rate_limited())
    for (method, path), answer in AUTH_200.items():
        op = doc.get("paths", {}).get(path, {}).get(method)
        if op is None:
            continue
        if answer is None:
            op.setdefault("responses", {}).pop("200", None)
        else:
            op.setdefault("responses", {})["200"] = answer
    for (method, path), answers in AUTH_RESPONSES.items():
        op = doc.get("paths", {}).get(path, {}).get(method)
        if op is None:
            continue
        responses = op.setdefault("responses", {})
        for status, text in answers.items():
            responses.setdefault(
                status,
                {**_REDIRECT, "description": text}
                if status.startswith("3")
                else _error_response(text),
            )
        responses.setdefault("503", _error_response(ADMIN_REFUSALS["503"]))
        if path in _AUTH_LIMITED:
            responses.setdefault("429", rate_limited())
        if path in LOGIN_PATHS:
            for status, answer in responses.items():
                if status[0] in "45":
                    answer["content"] = {**answer["content"], "text/html": _LOGIN_PAGE}
    for path, parameters in AUTH_PARAMETERS.items():
        op = doc.get("paths", {}).get(path, {}).get("get")
        if op is not None:
            op["parameters"] = [
                {
                    "name": name,
                    "in": "query",
                    "required": (path, name) in _REQUIRED,
                    "schema": schema,
                }
                for name, schema in parameters.items()
            ]
    for name in _VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    schemas[ERROR] = _ERROR_SCHEMA
    return doc


def install_openapi(app: FastAPI) -> None:
    """Serve the document with :func:`describe_refusals` applied (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe_refusals(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    openapi_version=app.openapi_version,
                    description=app.description,
                    routes=app.routes,
                ),
                app.routes,
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
