"""The OpenAPI document says what the pages answer: a route that refuses with pages
(``PageRoute``) documents its refusals as ``text/html``, wherever it is mounted; an
admin route keeps the JSON error; the login callback documents the page it answers when
a login comes back from another site (decision 0037, 2026-11-28 review dash)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse

from kroonika.admin._auth import AuditedRoute
from kroonika.web._auth import router as auth_router
from kroonika.web._openapi import PAGE_REFUSALS, describe_refusals
from kroonika.web.routes_dashboard import PageRoute
from kroonika.web.routes_dashboard import router as dashboard_router

ROLES = {"x-roles": ["auditor"]}


def _doc() -> dict[str, Any]:
    pages = APIRouter(prefix="/reports", route_class=PageRoute)
    api = APIRouter(prefix="/reports", route_class=AuditedRoute)

    @pages.get("/weekly", openapi_extra=ROLES, response_class=HTMLResponse)
    async def weekly() -> str:
        return ""

    @api.get("/weekly.json", openapi_extra=ROLES)
    async def weekly_json() -> dict[str, str]:
        return {}

    outer = APIRouter()
    outer.include_router(pages)
    app = FastAPI()
    for router in (outer, api, dashboard_router, auth_router):
        app.include_router(router)
    return describe_refusals(get_openapi(title="t", version="1", routes=app.routes), app.routes)


def _media(doc: dict[str, Any], path: str, method: str = "get") -> dict[str, list[str]]:
    responses = doc["paths"][path][method]["responses"]
    return {status: list(r.get("content", {})) for status, r in responses.items()}


def test_a_page_documents_its_refusals_as_pages_wherever_it_is() -> None:
    """The dashboard and a new page of the same route class, under a nested router,
    document every refusal as ``text/html``, with ``Retry-After`` where it is sent."""
    doc = _doc()
    for path in ("/admin/dashboard", "/reports/weekly"):
        media = _media(doc, path)
        assert media == {s: ["text/html"] for s in ("200", *PAGE_REFUSALS)}, path
        responses = doc["paths"][path]["get"]["responses"]
        assert "Retry-After" in responses["429"]["headers"]
        assert "Retry-After" in responses["503"]["headers"]
        assert "WWW-Authenticate" in responses["401"]["headers"]


def test_an_api_route_keeps_its_json_refusals() -> None:
    """An admin route that is not a page still documents the JSON error object."""
    media = _media(_doc(), "/reports/weekly.json")
    assert all(media[s] == ["application/json"] for s in ("401", "403", "404", "429", "503"))


def test_the_login_routes_document_what_they_answer() -> None:
    """The callback's 200 is the HTML page that moves on (never JSON); the login start
    never answers 200; the session routes document the cross-site 403."""
    doc = _doc()
    callback = doc["paths"]["/auth/callback"]["get"]["responses"]
    assert list(callback["200"]["content"]) == ["text/html"]
    assert "another site" in callback["200"]["description"]
    assert "200" not in doc["paths"]["/auth/login"]["get"]["responses"]
    for path, method in (("/auth/session", "get"), ("/auth/sessions", "get")):
        forbidden = doc["paths"][path][method]["responses"]["403"]
        assert "cross_site_request" in forbidden["description"]
