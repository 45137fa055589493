"""A minimal page for the citizen: log in with a method, see and end own sessions.

Opened from another site (a link, a redirect: ``Sec-Fetch-Site: cross-site``) with the
session cookie, the page is shown without the session: not looked up, not marked used,
nothing of the person on it, and a link that opens the page from here (one click of the
person's on this site's page, so another site cannot have the session read or kept
alive by sending the browser here; decision 0037, 2026-11-28 review crosssite2)."""

from __future__ import annotations

import datetime
from html import escape
from typing import Final

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from kroonika.admin._same_site import SameSiteOnlyRoute
from kroonika.web import routes_dashboard as dashboard
from kroonika.web._auth import _configured_methods, current_session
from kroonika.web._services import ServicesDep

_NAMES = {"idcard": "ID-kaart", "mid": "Mobiil-ID", "smartid": "Smart-ID", "eidas": "eIDAS"}
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}"
    "table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ccc;"
    "padding:.3rem;text-align:left}a.b,button{padding:.4rem .8rem;margin:.2rem}"
)


def _time(ts: int) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


#: The dashboard's strict headers (no framing: the logout button cannot be clicked
#: through another site's frame; no inline style but this page's own, by hash), with
#: two differences. The page's form posts to this service (``form-action 'self'``).
#: The service's ``no-referrer`` makes a browser send ``Origin: null`` with that form
#: (Fetch, "serializing a request origin"), which the CORS check must refuse as a
#: credentialed request from another origin: the button never logged anyone out.
#: ``same-origin`` sends the real origin to this service and nothing to any other
#: (decision 0037, 2026-11-28 review framing).
HEADERS: Final = {
    **dashboard.HEADERS,
    "content-security-policy": dashboard.strict_csp(_STYLE, form_action="'self'"),
    "referrer-policy": "same-origin",
}


def _page(body: str) -> HTMLResponse:
    return HTMLResponse(
        f'<!doctype html><html lang="et"><head><meta charset="utf-8"><title>Kroonika</title>'
        f"<style>{_STYLE}</style></head><body><h1>Kroonika</h1>{body}</body></html>",
        headers=HEADERS,
    )


class PersonalPageRoute(SameSiteOnlyRoute):
    """The citizen's page: from another site with the session cookie it is shown
    without the session (the module docstring). Not a refusal and not recorded: a link
    to the service from another site is ordinary."""

    async def refuse_cross_site(self, request: Request) -> Response:
        return _page(
            "<p>Avatud teiselt saidilt / Opened from another site.</p>"
            '<p><a class="b" id="open-here" href="/">Ava oma leht / Open your page</a></p>'
        )


router = APIRouter(tags=["pages"], route_class=PersonalPageRoute)


@router.get("/", response_class=HTMLResponse)
async def index(request: Request, services: ServicesDep) -> HTMLResponse:
    cur = await current_session(request, services)
    if cur is None:
        links = "".join(
            f'<a class="b" href="/auth/login?method={m}">{_NAMES[m]}</a>'
            for m in _configured_methods(services)
        )
        return _page(f"<p>Logi sisse / Log in:</p><p>{links}</p>")
    r = cur.record
    live = await services.sessions.active_for(r.subject, cur.ctx)
    csrf = services.csrf_token(cur.secret)
    rows = "".join(
        f"<tr><td>{escape(s.ref)}{' (see / this)' if s.ref == r.ref else ''}</td>"
        f"<td>{escape(s.method)}</td><td>{escape(s.acr)}</td><td>{_time(s.created_at)}</td>"
        f"<td>{_time(s.idle_expires_at)}</td><td>{escape(s.user_agent or '')}</td></tr>"
        for s in live
    )
    name = escape(" ".join(p for p in (r.given_name, r.family_name) if p) or r.subject)
    return _page(
        f"<p>Tere, <b>{name}</b> ({escape(r.subject)})</p>"
        f"<h2>Sessioonid / Sessions</h2><table><tr><th>id</th><th>method</th><th>acr</th>"
        f"<th>created</th><th>expires</th><th>browser</th></tr>{rows}</table>"
        f'<form method="post" action="/auth/logout">'
        f'<input type="hidden" name="csrf_token" value="{csrf}">'
        f'<button type="submit">Logi välja / Log out</button></form>'
    )
