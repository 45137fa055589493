"""A failed login as a page for the person whose browser it is, JSON for everyone else.

The login routes (``/auth/login``, ``/auth/callback``) are where a browser lands: TARA
sends the citizen back to the callback, a cancel included. Their refusals were JSON
only, so a citizen who pressed "back to service provider" at TARA saw raw JSON. A
request that is a browser's navigation (``Accept`` ranks ``text/html`` above
``application/json``, or ``Sec-Fetch-Mode: navigate`` where ``Accept`` prefers neither)
now gets a small page: the same status, Estonian (TARA's default) and English, the
error code, the request id and a link that starts the login again. It is the
dashboard's page (:mod:`kroonika.web.routes_dashboard`: its style, its strict CSP with
no script, its headers). Everything else (``Accept: application/json``, no ``Accept``,
``*/*``) gets the JSON it always had (decision 0015, 2026-11-28).

The page names only what the service itself decided (the reason code, its own
``detail`` texts, the request id): never the code, state, nonce, a cookie or TARA's
``error_description``; and even those go through the dashboard's :func:`shown`
(controls made visible, HTML escaped).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from html import escape
from typing import Final
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from kroonika.ratelimit import RateLimited, too_many_requests
from kroonika.web.routes_dashboard import HEADERS, _page, shown

#: the routes whose refusals a browser lands on
LOGIN_PATHS: Final = ("/auth/login", "/auth/callback")
LOGIN: Final = "/auth/login"
#: the answer depends on these request headers (RFC 9110 section 12.5.5)
VARY: Final = "Accept, Sec-Fetch-Mode"

_QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")


def _quality(accept: str, wanted: str) -> float:
    """The quality ``accept`` gives ``wanted`` (RFC 9110 section 12.5.1): that of the most
    specific range that matches it, 0 if none does. A range with a malformed ``q`` is
    ignored."""
    kind = wanted.split("/", 1)[0]
    best, quality = -1, 0.0
    for item in accept.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        media = media.lower()
        specific = {wanted: 2, f"{kind}/*": 1, "*/*": 0}.get(media, -1)
        if specific <= best:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                q = float(value) if _QVALUE.fullmatch(value.strip()) else -1.0
        if q >= 0:
            best, quality = specific, q
    return quality


def wants_page(request: Request) -> bool:
    """Whether the request is a person's browser navigating (see the module docstring)."""
    accept = ",".join(request.headers.getlist("accept"))
    html = _quality(accept, "text/html") if accept else 0.0
    json = _quality(accept, "application/json") if accept else 0.0
    if html != json:
        return html > json
    return request.headers.get("sec-fetch-mode") == "navigate"


#: what a person reads for each reason: (Estonian, English)
_SAID: Final[Mapping[str, tuple[str, str]]] = {
    "user_cancel": ("Katkestasite sisselogimise.", "You cancelled the login."),
    "state_expired": (
        "Sisselogimine aegus. Alustage uuesti.",
        "The login took too long and expired. Please start again.",
    ),
    "state_replayed": (
        "Seda sisselogimist on juba kasutatud (näiteks pärast nuppu „Tagasi“ või lehe "
        "värskendamist).",
        "This login was already used (for example after the Back button or a reload).",
    ),
    "state_not_bound": (
        "Sisselogimist ei alustatud selles brauseris või on brauseri küpsised vahepeal kustutatud.",
        "The login was not started in this browser, or its cookies were cleared meanwhile.",
    ),
    "acr_too_low": (
        "Valitud sisselogimisviis ei anna nõutud tagatistaset. Proovige ID-kaardi, "
        "Mobiil-ID või Smart-ID-ga.",
        "The method you used does not give the level of assurance required. Please use "
        "ID-card, Mobile-ID or Smart-ID.",
    ),
    "amr_not_allowed": (
        "Seda sisselogimisviisi siin ei lubata.",
        "This login method is not allowed here.",
    ),
    "idp_unavailable": (
        "Riigi autentimisteenus TARA ei ole praegu kättesaadav. Proovige mõne aja pärast uuesti.",
        "The state authentication service TARA cannot be reached right now. Please try "
        "again in a while.",
    ),
    "invalid_request": ("Sisselogimise link oli vigane.", "The login link was not valid."),
    "invalid_return_to": (
        "Sisselogimise link viitas lehele, kuhu see teenus ei suuna.",
        "The login link named a page this service does not lead to.",
    ),
    "rate_limited": (
        "Liiga palju katseid. Proovige mõne minuti pärast uuesti.",
        "Too many attempts. Please try again in a few minutes.",
    ),
}
_REUSED: Final = _SAID["state_replayed"]
#: by status, for a reason without its own text
_BY_STATUS: Final[Mapping[int, tuple[str, str]]] = {
    400: (
        "Sisselogimise vastus oli puudulik või tundmatu. Alustage uuesti.",
        "The answer that came back from the login was incomplete or not recognised. "
        "Please start again.",
    ),
    403: (
        "Sisselogimine sellelt aadressilt või sellele isikule ei ole lubatud.",
        "Logging in from this address or as this person is not allowed.",
    ),
    502: (
        "Sisselogimine ei õnnestunud TARA või selle teenuse seadistuse vea tõttu. Proovige "
        "hiljem uuesti; kui viga kordub, teatage veakood teenuse haldajale.",
        "The login failed because of TARA or this service's setup with it. Please try "
        "again later; if it keeps failing, tell the service's operator the error code.",
    ),
    503: (
        "Teenus on ajutiselt kättesaamatu. Proovige mõne aja pärast uuesti.",
        "The service is temporarily unavailable. Please try again in a while.",
    ),
}
_ANY: Final = (
    "Sisselogimine ei õnnestunud teenuse vea tõttu.",
    "The login failed because of an error in this service.",
)


def _said(status: int, code: str) -> tuple[str, str]:
    if code == "code_reused":
        return _REUSED
    if code.startswith("id_token.") and status == 400:
        return (
            "TARA-st saadud kinnitust ei õnnestunud kontrollida. Alustage uuesti.",
            "The confirmation that came from TARA could not be verified. Please start again.",
        )
    return _SAID.get(code) or _BY_STATUS.get(status, _ANY)


def again_link(return_to: str | None = None, acr: str | None = None) -> str:
    """``/auth/login`` for the same target and level of assurance (both as the login's
    start accepted them), URL-encoded; plain ``/auth/login`` without them."""
    query = {k: v for k, v in (("return_to", return_to), ("acr", acr)) if v}
    return f"{LOGIN}?{urlencode(query)}" if query else LOGIN


def failure_page(
    request: Request,
    status: int,
    code: str,
    *,
    detail: str | None = None,
    again: str = LOGIN,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """The page of a failed login: ``code`` is the reason (or the error where there is
    none), ``detail`` the service's own explanation, ``again`` where to start over."""
    et, en = _said(status, code)
    info = request.scope.get("state", {}).get("request_info")
    rid = info and f' · päring / request <code id="request-id">{shown(info.request_id)}</code>'
    more = f'<p lang="en" class="muted" id="detail">{shown(detail)}</p>' if detail else ""
    body = (
        f'<main><h1>Sisselogimine ebaõnnestus</h1><p id="why">{shown(et)}</p>'
        f'<h2 lang="en">Login failed</h2><p lang="en" id="why-en">{shown(en)}</p>'
        f'<p><a id="again" href="{escape(again, quote=True)}">Alusta uuesti '
        '<span lang="en">/ Start again</span></a></p>'
        f'{more}<p class="muted">Veakood / <span lang="en">Error code</span>: '
        f'<code id="error-code">{shown(code)}</code>{rid or ""}</p></main>'
    )
    return HTMLResponse(
        _page("Sisselogimine ebaõnnestus / Login failed", body, lang="et"),
        status_code=status,
        headers={**HEADERS, "vary": VARY, **(headers or {})},
    )


def answer(
    request: Request,
    json: JSONResponse,
    code: str,
    *,
    detail: str | None = None,
    again: str = LOGIN,
) -> Response:
    """``json`` for an API client; for a browser the failure page with its status (and its
    ``Retry-After``). Either way ``Vary`` says what chose."""
    if wants_page(request):
        retry = json.headers.get("retry-after")
        headers = {"retry-after": retry} if retry is not None else None
        return failure_page(
            request, json.status_code, code, detail=detail, again=again, headers=headers
        )
    json.headers["vary"] = VARY
    return json


def busy(request: Request, exc: RateLimited) -> Response:
    """The login routes over their per-address limit (checked before the route)."""
    return answer(request, too_many_requests(exc), exc.error)
