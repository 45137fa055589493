"""Which routes take the session cookie from this site only is said once, by their route
class: the check runs in the handler the class builds, and the login's landing asks the
routes, so a new guarded area gets both (decision 0037, 2026-11-28 review dash)."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.routing import APIRoute

from kroonika.admin._auth import AuditedRoute, require
from kroonika.admin._same_site import same_site_only
from kroonika.web._auth import _landing
from kroonika.web._auth import router as auth_router


def _app(*routers: APIRouter) -> FastAPI:
    app = FastAPI()
    for r in routers:
        app.include_router(r)
    return app


def _reports() -> APIRouter:
    """A new area under a prefix nothing else names, built as every admin area is."""
    reports = APIRouter(prefix="/reports", route_class=AuditedRoute)

    @reports.get("/weekly/{week}")
    async def weekly(week: str) -> dict[str, str]:
        return {"week": week}

    return reports


def _plain() -> APIRouter:
    plain = APIRouter()

    @plain.get("/news")
    async def news() -> dict[str, str]:
        return {}

    return plain


@pytest.mark.parametrize(
    ("path", "guarded"),
    [
        ("/reports/weekly/48", True),
        ("/reports/weekly/48?format=html", True),
        ("/reports/%77eekly/48", True),  # the browser asks for what the router decodes
        ("/reports", False),  # no route: a 404 whatever the header
        ("/news", False),
        ("/auth/session", True),
        ("/auth/session/extend", True),
        ("/auth/sessions", True),
        ("/auth/login", False),
        ("/auth/callback", False),
    ],
)
def test_a_guarded_area_is_known_by_its_routes(path: str, guarded: bool) -> None:
    """A route of the guarded class is guarded at its full path (an included router's
    prefix included), and nothing else is."""
    outer = APIRouter()
    outer.include_router(_reports())
    app = _app(outer, _plain(), auth_router)
    assert same_site_only(app.routes, path) is guarded


def _callback_request(app: FastAPI, fetch_site: str) -> Request:
    headers = [(b"sec-fetch-site", fetch_site.encode())]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "app": app})


@pytest.mark.parametrize(
    ("return_to", "hop"),
    [
        ("/reports/weekly/48", True),
        ("/news", False),
        ("https://app.example/reports/weekly/48", False),  # another origin, allow-listed
    ],
)
def test_the_login_lands_on_a_new_guarded_area_from_this_site(return_to: str, hop: bool) -> None:
    """A login back from another site to a new area of the guarded class answers the
    page that moves on from this site, with no list to extend; other targets keep
    the 302, and so does a login back from this site."""
    app = _app(_reports(), _plain())
    answer = _landing(_callback_request(app, "cross-site"), return_to)
    assert answer.status_code == (200 if hop else 302)
    assert _landing(_callback_request(app, "same-origin"), return_to).status_code == 302


def test_require_refuses_to_run_on_a_route_that_is_not_guarded() -> None:
    """``require`` on a plain route would take another site's requests with the session
    cookie: it is a programming error, not an answer."""
    plain = APIRoute("/unguarded", lambda: None)
    request = Request({"type": "http", "method": "GET", "path": "/", "route": plain})
    dependency = require("admin").dependency
    assert dependency is not None
    with pytest.raises(RuntimeError, match="not an AuditedRoute"):
        asyncio.run(dependency(request))
