"""``GET /admin/dashboard``: the security dashboard, one server-rendered page for people
with the ``admin``, ``security`` or ``auditor`` role (a TARA session cookie or an API
key). It shows the open and recently acknowledged alerts, the last hour's and the last
day's counts, and the trail's health, read from the trail as of the request
(:mod:`kroonika.audit.dashboard`). Every view reads the trail, so it is an
``audit.access`` (action ``dashboard``) besides the ``admin.request`` of every call.

The page carries no script: it reloads itself with ``<meta http-equiv="refresh">``. Its
Content-Security-Policy allows nothing but its own style sheet (by hash), and no framing.
Every stored string is shown as inert text: controls (CR/LF, ESC, bidi, invisible
characters) as visible escapes (``\\u202e``), a personal code as ``[personal code]``,
then HTML-escaped; addresses as anonymised networks, people by pseudonym.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import functools
import hashlib
import logging
import re
import unicodedata
from collections.abc import Callable, Coroutine, Iterable
from html import escape
from typing import Annotated, Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from kroonika.admin._auth import (
    AuditedRoute,
    Principal,
    admin_services,
    record_access,
    request_info,
    require,
)
from kroonika.admin._errors import AdminError
from kroonika.admin._same_site import CROSS_SITE
from kroonika.admin.routes_alerts import current_alerts
from kroonika.audit import AuditUnavailable, StoreError
from kroonika.audit.alerting import Alert
from kroonika.audit.dashboard import Overview, Window, overview
from kroonika.audit.formats._text import escape_unprintable
from kroonika.audit.personal_codes import is_personal_code
from kroonika.db import UNAVAILABLE
from kroonika.ratelimit import RateLimited, Refusal
from kroonika.shipping import SinkStatus
from kroonika.web.routes_audit import _open

VIEWERS: Final = ("admin", "security", "auditor")
PATH: Final = "/admin/dashboard"

_STYLE: Final = (
    "body{font-family:system-ui,sans-serif;max-width:72rem;margin:1.5rem auto;padding:0 1rem}"
    "table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}"
    "td,th{border-bottom:1px solid #ccc;padding:.25rem .4rem;text-align:left;"
    "vertical-align:top;overflow-wrap:anywhere}"
    "td.n,th.n{text-align:right}.sev-alert,.sev-critical,.sev-emergency,.sev-error"
    "{color:#a00;font-weight:bold}.sev-warning{color:#a60}.bad{color:#a00;font-weight:bold}"
    ".ok{color:#070}.muted{color:#666}section{margin-bottom:2rem}"
    ".cols{display:flex;gap:2rem;flex-wrap:wrap}.cols>div{flex:1 1 30rem}"
)


def strict_csp(style: str, *, form_action: str = "'none'") -> str:
    """Nothing but the page's own style sheet ``style`` (by its hash): no script, image,
    font, frame or (unless ``form_action`` names one) form target, and no framing. The
    citizen's page (:mod:`kroonika.web._pages`) has its own style and a logout form."""
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    return (
        f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'none'; "
        f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    )


CSP: Final = strict_csp(_STYLE)
HEADERS: Final = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "cache-control": "no-store",
    "pragma": "no-cache",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}
#: eleven digits (any script's: full-width digits are a personal code too, as NFKC says)
_CODE: Final = re.compile(r"(?<!\d)\d{11}(?!\d)")
_OUTCOMES: Final = ("success", "failure", "unknown")
_WINDOW_NAMES: Final = {"1h": "Last hour", "24h": "Last 24 hours"}
SHOWN_MAX: Final = 500


log = logging.getLogger("kroonika.web.dashboard")
#: What a store or the trail being away raises (the app answers these 503 elsewhere).
_OUTAGES: Final[tuple[type[Exception], ...]] = (AuditUnavailable, StoreError, *UNAVAILABLE)


class PageRoute(AuditedRoute):
    """An audited route that answers a refusal with a page (the same status), and an
    outage (503) with a page that reloads itself: a screen left open comes back by
    itself once the trail does."""

    def refusal(self, request: Request, exc: AdminError) -> Response:
        return refusal_page(request, exc)

    def rate_limited(self, request: Request, exc: RateLimited) -> Response:
        return busy_page(request, exc)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        audited = super().get_route_handler()  # it records the call, as for every route

        async def handler(request: Request) -> Response:
            try:
                return await audited(request)
            except _OUTAGES as exc:
                log.error("dashboard view refused, a store is away: %s", type(exc).__name__)
                return outage_page(request)

        return handler


router = APIRouter(prefix="/admin", tags=["admin"], route_class=PageRoute)


def rate_limit_answers() -> dict[str, Refusal]:
    """How each page answers its 429 (the rate limiter's ``pages``, for the middleware's
    ``admin:ip`` limit): as its route answers the ``admin:person`` one, taken from the
    routes themselves, so a page's path is written once (in its route)."""
    return {
        route.path: route.rate_limited for route in router.routes if isinstance(route, PageRoute)
    }


def _visible(ch: str) -> str:
    return ascii(ch)[1:-1]


def _mask(match: re.Match[str]) -> str:
    digits = unicodedata.normalize("NFKC", match.group())
    return "[personal code]" if is_personal_code(digits) else match.group()


def shown(value: object, limit: int = SHOWN_MAX) -> str:
    """A stored value as inert HTML text (see the module docstring)."""
    text = escape_unprintable(_CODE.sub(_mask, str(value)), _visible)
    if len(text) > limit:
        text = text[:limit] + "…"
    return escape(text, quote=True)


def _time(value: str | None) -> str:
    if not value:
        return "—"
    return shown(value[:19].replace("T", " ") + " UTC" if value.endswith("Z") else value)


def _page(title: str, body: str, *, refresh_s: int | None = None, lang: str = "en") -> str:
    """A page with the dashboard's style (the one its CSP allows); the login's failure
    page (:mod:`kroonika.web._login_page`) is one too."""
    meta = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s else ""
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">{meta}'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )


def _table(table_id: str, head: Iterable[str], rows: list[str], empty: str) -> str:
    if not rows:
        return f'<p id="{table_id}" class="muted">{escape(empty)}</p>'
    cells = "".join(
        f"<th{' class=n' if h.startswith('#') else ''}>{escape(h.lstrip('#'))}</th>" for h in head
    )
    body = "".join(rows)
    return f'<table id="{table_id}"><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>'


def _alert_row(a: Alert) -> str:
    sev = shown(a.severity)
    return (
        f'<tr data-alert-id="{shown(a.alert_id)}"><td>{_time(a.raised_at)}</td>'
        f'<td class="sev-{sev}">{sev}</td><td>{shown(a.rule)}</td>'
        f'<td class="summary">{shown(a.summary)}</td><td>{shown(a.alert_id)}</td>'
        f'<td class="response">{shown(a.responses_text())}</td></tr>'
    )


def _ack_row(a: Alert) -> str:
    return (
        f'<tr data-alert-id="{shown(a.alert_id)}"><td>{_time(a.acknowledged_at)}</td>'
        f"<td>{shown(a.acknowledged_by or '')}</td><td>{shown(a.note or '')}</td>"
        f'<td class="sev-{shown(a.severity)}">{shown(a.severity)}</td><td>{shown(a.rule)}</td>'
        f'<td class="summary">{shown(a.summary)}</td><td>{_time(a.raised_at)}</td></tr>'
    )


def _counts(pairs: Iterable[tuple[str, int]], table_id: str, name: str, empty: str) -> str:
    rows = [
        f'<tr><td>{shown(k)}</td><td class="n">{n}</td></tr>'
        for k, n in sorted(pairs, key=lambda kv: (-kv[1], kv[0]))
    ]
    return _table(table_id, (name, "#events"), rows, empty)


def _window(w: Window) -> str:
    label = shown(w.label)
    categories = sorted({c for c, _ in w.by_category})
    rows = [
        f'<tr data-category="{shown(c)}"><td>{shown(c)}</td>'
        + "".join(f'<td class="n">{w.by_category.get((c, o), 0)}</td>' for o in _OUTCOMES)
        + f'<td class="n">{sum(w.by_category.get((c, o), 0) for o in _OUTCOMES)}</td></tr>'
        for c in categories
    ]
    others = sum(n for (_, o), n in w.by_category.items() if o not in _OUTCOMES)
    return (
        f'<div id="window-{label}"><h3>{escape(_WINDOW_NAMES.get(w.label, w.label))}'
        f' <span class="muted">(since {_time(w.since)})</span></h3>'
        f'<p>Events: <b id="events-{label}">{w.events}</b> · failed logins: '
        f'<b id="failed-logins-{label}" class="{"bad" if w.failed_logins else "ok"}">'
        f"{w.failed_logins}</b>"
        + (f" · other outcomes: {others}" if others else "")
        + "</p>"
        + _table(
            f"counts-{label}",
            ("category", "#success", "#failure", "#unknown", "#all"),
            rows,
            "No events.",
        )
        + "<h4>Failed logins by reason</h4>"
        + _counts(w.login_reasons.items(), f"login-reasons-{label}", "reason", "None.")
        + "<h4>Security events by type</h4>"
        + _counts(w.security.items(), f"security-{label}", "type", "None.")
        + "<h4>Top sources of failures</h4>"
        + _counts(
            w.failure_sources.most_common(10), f"sources-{label}", "network (anonymised)", "None."
        )
        + "<h4>Top pseudonyms with failures</h4>"
        + _counts(w.failure_actors.most_common(10), f"actors-{label}", "pseudonym", "None.")
        + "</div>"
    )


def _health(ov: Overview, sinks: list[SinkStatus] | None) -> str:
    rows = [
        f"<tr><td>{shown(s.stream)}</td><td class=n>{s.size}</td><td>{_time(s.head_time)}</td>"
        f"<td>{_time(s.checkpoint_time)}</td>"
        f'<td class="n">{"—" if s.checkpoint_size is None else s.checkpoint_size}</td></tr>'
        for s in ov.streams
    ]
    out = _table(
        "streams",
        ("stream", "#events", "last signed head", "last checkpoint", "#checkpoint size"),
        rows,
        "The trail holds no stream yet.",
    )
    v = ov.verification
    if v is None:
        out += (
            '<p id="verification" class="muted">No verification recorded since '
            f"{_time(ov.verification_since)} (<code>kroonika audit verify</code>, "
            "<code>POST /audit/verify</code>).</p>"
        )
    else:
        good = v.result in ("ok", "intact")
        out += (
            f'<p id="verification">Last verification: <b class="{"ok" if good else "bad"}">'
            f"{shown(v.result)}</b> at {_time(v.time)} through {shown(v.interface)}"
            + (f", {v.records} records" if v.records is not None else "")
            + "</p>"
        )
    if sinks is None:
        return out + '<p id="sinks" class="muted">No log shipping sinks are configured.</p>'
    sink_rows = [
        f'<tr><td>{shown(s.sink)}</td><td class="{"bad" if s.failing else "ok"}">'
        f'{"failing" if s.failing else "ok"}</td><td class="n">{s.lag_events}</td>'
        f'<td class="n">{s.lag_seconds:.1f}</td><td class="n">{s.failures}</td>'
        f'<td class="n">{s.dead_letters_pending}</td><td>{shown(s.last_error, 200)}</td></tr>'
        for s in sinks
    ]
    return out + _table(
        "sinks",
        (
            "sink",
            "state",
            "#lag (events)",
            "#oldest undelivered (s)",
            "#failed attempts",
            "#dead letters",
            "last error",
        ),
        sink_rows,
        "No log shipping sinks are configured.",
    )


def render(ov: Overview, sinks: list[SinkStatus] | None, *, refresh_s: int, viewer: str) -> str:
    """The dashboard page of ``ov`` (and the sinks, None when none is configured)."""
    open_rows = [_alert_row(a) for a in ov.open_alerts]
    more = ov.open_total - len(ov.open_alerts)
    body = (
        "<h1>Kroonika security dashboard</h1>"
        f'<p id="generated">Generated <time>{_time(ov.generated)}</time> for {shown(viewer)};'
        f" reloads every {refresh_s} s. Read {ov.read} records.</p>"
        f'<section id="alerts"><h2>Open alerts (<span id="open-count">{ov.open_total}</span>)'
        "</h2>"
        + _table(
            "open-alerts",
            ("raised", "severity", "rule", "summary", "alert id", "response"),
            open_rows,
            "No open alerts.",
        )
        + (f'<p class="muted">{more} older open alerts are not listed.</p>' if more > 0 else "")
        + "<h3>Acknowledged in the last 24 hours</h3>"
        + _table(
            "acknowledged-alerts",
            ("acknowledged", "by", "note", "severity", "rule", "summary", "raised"),
            [_ack_row(a) for a in ov.acknowledged],
            "None.",
        )
        + '</section><section id="activity"><h2>Activity</h2><div class="cols">'
        + "".join(f"<div>{_window(w)}</div>" for w in ov.windows)
        + '</div></section><section id="trail"><h2>The trail</h2>'
        + _health(ov, sinks)
        + "</section>"
    )
    return _page("Kroonika security dashboard", body, refresh_s=refresh_s)


def refusal_page(request: Request, exc: AdminError) -> HTMLResponse:
    """A refused view of the dashboard as a page: the status, what is wrong and, for a
    caller who is not logged in, the way to log in and come back; for a view another
    site opened, a link that opens it from here."""
    login = ""
    if exc.status == 401:
        login = f'<p><a href="/auth/login?return_to={PATH}">Log in through TARA</a></p>'
    elif exc.code == CROSS_SITE:  # a click here is same-origin (and after TARA's redirects)
        login = f'<p><a id="open-here" href="{PATH}">Open the dashboard here</a></p>'
    body = (
        f'<h1>{exc.status}</h1><p id="refusal">{shown(str(exc))}</p>{login}'
        f'<p class="muted">request {shown(request_info(request).request_id)}</p>'
    )
    headers = dict(HEADERS)
    if exc.status == 401:
        headers["www-authenticate"] = "Bearer"
    return HTMLResponse(_page(f"{exc.status}", body), status_code=exc.status, headers=headers)


def _retrying_page(request: Request, status: int, why: str, retry: int) -> HTMLResponse:
    """A refusal that passes: ``why`` (HTML), and the page reloads itself after
    ``retry`` seconds, which ``Retry-After`` says too."""
    body = (
        f'<h1>{status}</h1><p id="refusal">{why}; this page tries again in {retry} s.</p>'
        f'<p class="muted">request {shown(request_info(request).request_id)}</p>'
    )
    return HTMLResponse(
        _page(str(status), body, refresh_s=retry),
        status_code=status,
        headers={**HEADERS, "retry-after": str(retry)},
    )


def outage_page(request: Request) -> HTMLResponse:
    """503 as a page (nothing of the trail) that tries again after the dashboard's
    refresh interval."""
    retry = admin_services(request).services.settings.dashboard_refresh_s
    why = "audit_unavailable: the audit trail or a store the dashboard reads cannot be used now"
    return _retrying_page(request, 503, why, retry)


def busy_page(request: Request, exc: RateLimited) -> HTMLResponse:
    """429 as a page, for the ``admin:ip`` limit (the middleware, before routing) and the
    ``admin:person`` limit (the route): it tries again once the limit allows it, never
    sooner than the dashboard's refresh interval (a screen reloading faster than that
    would only be refused again and lengthen its penalty)."""
    retry = max(exc.retry_after, admin_services(request).services.settings.dashboard_refresh_s)
    why = f"rate_limited: too many requests ({shown(exc.limit)})"
    return _retrying_page(request, 429, why, retry)


@router.get(
    "/dashboard",
    openapi_extra={"x-roles": list(VIEWERS)},
    response_class=HTMLResponse,
)
async def dashboard(request: Request, p: Annotated[Principal, require(*VIEWERS)]) -> HTMLResponse:
    """The security dashboard (HTML): open and recently acknowledged alerts, counts of
    the last hour and day, the trail's health; an ``audit.access`` of the trail."""
    admin = admin_services(request)
    services = admin.services
    settings = services.settings
    now = datetime.datetime.fromtimestamp(services.clock(), datetime.UTC)
    alerts = await current_alerts(request)  # the state GET /admin/alerts lists
    store = await asyncio.to_thread(_open, request)
    try:
        ov = await asyncio.to_thread(
            functools.partial(
                overview, store, now, alerts=alerts, alert_days=settings.dashboard_alert_days
            )
        )
    finally:
        store.close()
    shipping = getattr(request.app.state, "log_shipping", None)
    sinks = None
    if shipping is not None and shipping.runner is not None:
        sinks = await asyncio.to_thread(shipping.sink_status)
    await record_access(
        request,
        p,
        "dashboard",
        query=f"dashboard alerts=all verification_since={ov.verification_since} windows=1h,24h",
        returned=ov.read,
        fmt="html",
        interface="web",
    )
    viewer = ", ".join(p.roles)
    html = render(ov, sinks, refresh_s=settings.dashboard_refresh_s, viewer=viewer)
    return HTMLResponse(html, headers=HEADERS)
