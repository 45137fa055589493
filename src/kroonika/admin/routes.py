"""The admin API under ``/admin``. Every route declares the roles that may call it
(``x-roles`` in the OpenAPI document); every call is an ``admin.request`` event; every
mutating call needs a justification (``X-Justification`` or a ``justification`` field).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy import select

from kroonika.admin._auth import (
    AdminServices,
    AuditedRoute,
    Principal,
    _template,
    _violation,
    admin_now,
    admin_services,
    correlation_of,
    creators,
    key_roles,
    printable,
    require,
    roles_of_label,
    source_of,
)
from kroonika.admin._bulk import (
    EPOCH_MAX,
    EXPORT_MEDIA,
    Outcomes,
    export_lists,
    parse_list_import,
)
from kroonika.admin._config import CLIENT_WEAKENS, KEYS, Change, weakened
from kroonika.admin._config_requests import (
    APPROVED,
    CONFIG,
    PENDING,
    REJECTED,
    ConfigRequest,
    ConfigRequests,
    client_target,
)
from kroonika.admin._errors import (
    AdminError,
    ChangeConflict,
    ConfigInvalid,
    Forbidden,
    JobAlreadyRunning,
    JobRunFailed,
    NotAuthenticated,
    NotFound,
    RequestInvalid,
    RoleChangeRefused,
)
from kroonika.admin._free_text import FREE_TEXT_FIELDS, refuse_personal_code
from kroonika.admin._pseudonym_keys import in_use, labels_by_kid
from kroonika.admin._roles import (
    ROLE_REQUEST_PREFIX,
    RoleRequest,
    checked_subject,
    country_of,
    normalise_subject,
    parse_roles,
    public_holder,
    public_subject,
)
from kroonika.audit import AuditEvent, AuditUnavailable, Outcome, Target
from kroonika.audit import events as ev
from kroonika.db.sessions import session as session_table
from kroonika.db.tokens import tokens as tokens_table
from kroonika.security.policy import Decision as PolicyDecision
from kroonika.security.policy import Policy
from kroonika.sessions import EndReason, RequestContext, SessionRecord
from kroonika.settings import ticket_regex
from kroonika.tokens import (
    AccessListError,
    ClientError,
    ClientRegistry,
    ExpiryInThePast,
    ListSubject,
    NoListEntry,
    hash_secret,
)
from kroonika.tokens import RequestContext as TokenContext

#: Bounds that keep numbers inside their database columns (an overflow is a 500 there):
#: epoch seconds up to 9999-12-31, and TTLs in a 32-bit INTEGER.
# A JSON integer: ``false`` is no 0, nor "1700000000" a time (pydantic's lax mode
# would read both).
Epoch = Annotated[int, Field(ge=0, le=EPOCH_MAX, strict=True)]
TTL_MAX = 10**9

ADMIN = ("admin",)
OPS = ("admin", "security")  # incident response may read and end, not configure
JOBS_ROLES = ("admin",)

log = logging.getLogger("kroonika.admin")

router = APIRouter(prefix="/admin", tags=["admin"], route_class=AuditedRoute)


def roles(*names: str) -> dict[str, Any]:
    return {"x-roles": list(names)}


#: the answer of a change that waits for a second administrator (decision 0017)
ASKED: dict[int | str, dict[str, Any]] = {
    202: {
        "description": "A weakening change is not applied: the request a second "
        "administrator decides on (decision 0017)",
        "content": {"application/json": {}},
    }
}


class Body(BaseModel):
    """An admin request body. Every text in it (in lists and objects too) is printable:
    no NUL (PostgreSQL refuses it, which would be a 500), CR/LF, terminal codes, bidi or
    invisible characters. The justification has its own rule (line breaks allowed).
    Surrounding white space is removed first, so "   " is no reason or name. Free text
    that is stored and recorded (a ``reason``, a ``name``) holding a personal code is
    refused with 400 ``personal_code_in_text`` (decision 0033). A field the route does
    not know is refused (422), not ignored: a misspelt ``"disable": true`` must not
    answer 200 having changed nothing (decision 0035)."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _printable(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name != "justification" and not printable(value):
            raise ValueError("texts are printable characters only")
        if info.field_name in FREE_TEXT_FIELDS and isinstance(value, str):
            # not a ValueError: pydantic passes it on, and the route answers 400
            refuse_personal_code(value, info.field_name)
        return value


class ReadBody(Body):
    """The body of a read sent as POST (a search, a look-up): a justification is optional,
    in the body or in ``X-Justification``, and recorded when given."""

    justification: str | None = None


def _tokens(request: Request) -> Any:
    comps = getattr(request.app.state, "tokens", None)
    if comps is None:
        raise AdminError("the token service is not installed", code="unavailable")
    return comps


def _tctx(request: Request) -> TokenContext:
    c = correlation_of(request)
    s = source_of(request)
    return TokenContext(
        ip=s.ip, user_agent=s.user_agent, request_id=c.request_id, trace_id=c.trace_id
    )


def _sctx(request: Request) -> RequestContext:
    """The context of another person's sessions ended by this request: its correlation
    only. ``session.terminate`` is the person's event (their pseudonym is its actor), and
    its source says where the person was; the administrator's address and browser would
    place the person there (and feed the person's profile). The administrator's own
    events of the request carry them, linked by ``correlation.request_id``."""
    c = correlation_of(request)
    return RequestContext(request_id=c.request_id, trace_id=c.trace_id)


def _why(request: Request) -> str:
    return str(request.state.admin_call.justification or "")


async def _bulk_event(
    request: Request, p: Principal, operation: str, outcomes: Outcomes
) -> dict[str, Any]:
    admin = admin_services(request)
    s = outcomes.summary()
    await admin.services.audit.trail.emit(
        ev.admin_bulk(
            outcome=Outcome.SUCCESS if s["failed"] == 0 else Outcome.FAILURE,
            reason=None if s["failed"] == 0 else "partial",
            actor=p.actor(),
            source=source_of(request),
            target=Target("bulk", operation),
            correlation=correlation_of(request),
            operation=operation,
            digest=outcomes.digest(),
            justification=_why(request),
            requested=s["requested"],
            succeeded=s["succeeded"],
            failed=s["failed"],
        )
    )
    return {"summary": s, "digest": outcomes.digest(), "items": outcomes.items}


# --- tokens and sessions ------------------------------------------------------------------


TokenStatus = Literal["active", "revoked", "replaced", "expired"]
#: A personal code as a search names it (a body field; ``?subject=`` is discouraged).
SearchSubject = Annotated[str | None, Field(None, min_length=3, max_length=80)]
#: Why the query form is kept; its docs say to prefer the body (decision 0031).
_QUERY_DISCOURAGED = (
    " ``?subject=`` puts a personal code in the URL, which access logs and proxies keep:"
    " prefer ``POST {path}`` with the code in the body (decision 0031)."
)


def _pseudonymise(request: Request) -> Callable[[str], str]:
    return admin_services(request).fingerprinter.pseudonym


async def _select(
    request: Request, q: Any, shown: Callable[[Any], dict[str, Any]]
) -> list[dict[str, Any]]:
    """The rows of ``q`` from the business database (off the event loop), as ``shown``."""
    engine = admin_services(request).services.engine

    def run() -> list[dict[str, Any]]:
        with engine.connect() as conn:
            return [shown(r) for r in conn.execute(q).all()]

    return await asyncio.to_thread(run)


class TokenSearch(ReadBody):
    """``POST /admin/tokens/search``: the filters of ``GET /admin/tokens`` in a body."""

    subject: SearchSubject = None
    client: str | None = Field(None, min_length=1, max_length=64)
    status: TokenStatus | None = None
    issued_after: Epoch | None = None
    issued_before: Epoch | None = None
    limit: int = Field(100, ge=1, le=500)


async def _find_tokens(request: Request, f: TokenSearch) -> dict[str, Any]:
    """Token metadata, newest first; each subject by ``subject_ref`` and ``country``
    (``subject_type`` says whether it is a person's or one a client minted for), never
    in clear. The client id (a machine's name) is shown."""
    t = tokens_table
    q = select(t).order_by(t.c.iat.desc(), t.c.jti).limit(f.limit)
    if f.subject:
        q = q.where(t.c.subject == normalise_subject(f.subject))
    if f.client:
        q = q.where(t.c.client_id == f.client)
    if f.status:
        q = q.where(t.c.state == f.status)
    if f.issued_after is not None:
        q = q.where(t.c.iat >= f.issued_after)
    if f.issued_before is not None:
        q = q.where(t.c.iat < f.issued_before)
    pseudonymise = _pseudonymise(request)

    def shown(r: Any) -> dict[str, Any]:
        return {
            "jti": r.jti,
            "kid": r.kid,
            "token_type": r.token_type,
            **public_subject(r.subject, pseudonymise),
            # a session token's subject is the person logged in; any other's is
            # one the minting client named (the trail's token.issue subject_type)
            "subject_type": "person"
            if r.token_type == "session"  # noqa: S105 (a token type, not a secret)
            else "client_subject",
            "client_id": r.client_id,
            "audience": orjson.loads(r.audience),
            "iat": r.iat,
            "exp": r.exp,
            "state": r.state,
            "changed_by": r.changed_by,
        }

    return {"tokens": await _select(request, q, shown)}


@router.get(
    "/tokens",
    openapi_extra=roles(*OPS),
    description="Search token metadata by subject, client, status and issue time (newest"
    " first); subjects are shown by pseudonym."
    + _QUERY_DISCOURAGED.format(path="/admin/tokens/search"),
)
async def search_tokens(
    request: Request,
    p: Annotated[Principal, require(*OPS)],
    subject: str | None = None,
    client: str | None = None,
    status: TokenStatus | None = None,
    issued_after: Annotated[int | None, Query(ge=0, le=EPOCH_MAX)] = None,
    issued_before: Annotated[int | None, Query(ge=0, le=EPOCH_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Search token metadata (``?subject=`` discouraged: see ``POST /admin/tokens/search``)."""
    f = TokenSearch.model_construct(
        subject=subject,
        client=client,
        status=status,
        issued_after=issued_after,
        issued_before=issued_before,
        limit=limit,
    )
    return await _find_tokens(request, f)


@router.post("/tokens/search", openapi_extra=roles(*OPS))
async def search_tokens_by_body(
    body: TokenSearch, request: Request, p: Annotated[Principal, require(*OPS, mutating=False)]
) -> dict[str, Any]:
    """``GET /admin/tokens`` with its filters in the body, so that a personal code stays
    out of URLs (decision 0031). A read: no CSRF token, justification optional; recorded
    with the person's pseudonym, never the code."""
    return await _find_tokens(request, body)


class RevokeBody(Body):
    justification: str | None = None


@router.post("/tokens/{jti}/revoke", openapi_extra=roles(*OPS))
async def revoke_token(
    jti: str,
    request: Request,
    p: Annotated[Principal, require(*OPS)],
    body: RevokeBody | None = None,
) -> dict[str, Any]:
    """Revoke one token by its id."""
    n = await _tokens(request).service.revoke_jti(
        jti, by=p.actor(), why=_why(request), ctx=_tctx(request)
    )
    if n == 0:
        raise NotFound("active token")
    return {"revoked": n}


class SubjectRevoke(Body):
    subject: str = Field(min_length=3, max_length=80)
    ban: Literal["none", "temporary", "permanent"] = "none"
    ban_seconds: int | None = Field(None, ge=60, le=10 * 365 * 86400)
    justification: str | None = None


async def _revoke_subject(
    request: Request, p: Principal, subject: str, ban: str, ban_seconds: int | None
) -> dict[str, Any]:
    admin = admin_services(request)
    subject = normalise_subject(subject)  # "38001085718" is TARA's "EE38001085718"
    out: dict[str, Any] = {"tokens_revoked": 0, "sessions_ended": 0, "ban": None}
    comps = getattr(request.app.state, "tokens", None)
    if comps is not None:
        out["tokens_revoked"] = await comps.service.revoke_subject(
            subject, by=p.actor(), why=_why(request), ctx=_tctx(request)
        )
    ctx = _sctx(request)
    for record in await admin.services.sessions.active_for(subject, ctx):
        if await admin.services.sessions.end(
            record, EndReason.SUBJECT_REVOKED, ctx, ended_by="admin"
        ):
            out["sessions_ended"] += 1
    if ban != "none":
        if comps is None:
            raise AdminError("bans need the token service", code="unavailable")
        if ban == "temporary" and not ban_seconds:
            raise ConfigInvalid("a temporary ban needs ban_seconds", code="invalid_request")
        now = int(admin.services.clock())
        try:
            entry = await comps.service.list_add(
                "deny",
                "subject",
                subject,
                reason=_why(request),
                created_by=p.label,
                actor=p.actor(),
                expires_at=now + ban_seconds if ban == "temporary" and ban_seconds else None,
                ctx=_tctx(request),
            )
            out["ban"] = {"entry_id": entry.id, "expires_at": entry.expires_at}
        except AccessListError as exc:
            out["ban"] = {"error": str(exc)}
    return out


@router.post("/subjects/revoke", openapi_extra=roles(*OPS))
async def revoke_subject(
    body: SubjectRevoke, request: Request, p: Annotated[Principal, require(*OPS)]
) -> dict[str, Any]:
    """Revoke every token and end every session of a person, optionally banning them
    (a ban is a deny-list entry: admin only, like ``POST /admin/lists``)."""
    if body.ban != "none" and "admin" not in p.roles:
        # security revokes and ends (incident response); keeping a person out is a list
        # change, which its documented powers do not include
        await _violation(
            request,
            p,
            Policy.ROLE_EXCEEDED,
            f"POST {_template(request)} with ban={body.ban} needing admin",
        )
        raise Forbidden("a ban is a deny-list entry and needs the admin role")
    return await _revoke_subject(request, p, body.subject, body.ban, body.ban_seconds)


class SessionSearch(ReadBody):
    """``POST /admin/sessions/search``: the filters of ``GET /admin/sessions`` in a body."""

    subject: SearchSubject = None
    active: bool = True
    limit: int = Field(100, ge=1, le=500)


async def _find_sessions(request: Request, f: SessionSearch) -> dict[str, Any]:
    """Sessions, newest first; the person by ``subject_ref`` and ``country``."""
    s = session_table
    q = select(s).order_by(s.c.created_at.desc(), s.c.ref).limit(f.limit)
    if f.subject:
        q = q.where(s.c.subject == normalise_subject(f.subject))
    if f.active:
        q = q.where(s.c.ended_at.is_(None))
    pseudonymise = _pseudonymise(request)

    def shown(r: Any) -> dict[str, Any]:
        return {
            "ref": r.ref,
            **public_subject(r.subject, pseudonymise),
            "method": r.method,
            "acr": r.acr,
            "created_at": r.created_at,
            "last_seen_at": r.last_seen_at,
            "idle_expires_at": r.idle_expires_at,
            "absolute_expires_at": r.absolute_expires_at,
            "ended_at": r.ended_at,
            "end_reason": r.end_reason,
        }

    return {"sessions": await _select(request, q, shown)}


@router.get(
    "/sessions",
    openapi_extra=roles(*OPS),
    description="Search sessions by subject; active ones by default; people are shown by"
    " pseudonym." + _QUERY_DISCOURAGED.format(path="/admin/sessions/search"),
)
async def search_sessions(
    request: Request,
    p: Annotated[Principal, require(*OPS)],
    subject: str | None = None,
    active: bool = True,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Search sessions (``?subject=`` discouraged: see ``POST /admin/sessions/search``)."""
    f = SessionSearch.model_construct(subject=subject, active=active, limit=limit)
    return await _find_sessions(request, f)


@router.post("/sessions/search", openapi_extra=roles(*OPS))
async def search_sessions_by_body(
    body: SessionSearch, request: Request, p: Annotated[Principal, require(*OPS, mutating=False)]
) -> dict[str, Any]:
    """``GET /admin/sessions`` with its filters in the body, so that a personal code stays
    out of URLs (decision 0031). A read, recorded with the person's pseudonym."""
    return await _find_sessions(request, body)


@router.delete("/sessions/{ref}", openapi_extra=roles(*OPS))
async def end_session(
    ref: str, request: Request, p: Annotated[Principal, require(*OPS)]
) -> dict[str, Any]:
    """End one session (``session.terminate`` with reason ``admin``) and revoke its tokens."""
    admin = admin_services(request)
    record = await admin.services.sessions.by_ref(ref)
    if record is None or not record.active:
        raise NotFound("active session")
    _, revoked = await _end_session(request, p, record)
    return {"ended": 1, "tokens_revoked": revoked}


async def _end_session(request: Request, p: Principal, record: SessionRecord) -> tuple[bool, int]:
    """End a session for an administrator and revoke the tokens bound to it (they would
    otherwise stay active until they expire): (ended, tokens revoked)."""
    admin = admin_services(request)
    ended = await admin.services.sessions.end(
        record, EndReason.ADMIN, _sctx(request), ended_by="admin"
    )
    comps = getattr(request.app.state, "tokens", None)
    revoked = 0
    if comps is not None:
        revoked = await comps.service.revoke_session(
            record.ref, by=p.actor(), why=_why(request), ctx=_tctx(request)
        )
    return bool(ended), revoked


# --- bulk ----------------------------------------------------------------------------------


class BulkRevoke(Body):
    items: list[dict[str, str]] = Field(min_length=1, max_length=1000)
    justification: str | None = None


@router.post("/bulk/revoke", openapi_extra=roles(*OPS))
async def bulk_revoke(
    body: BulkRevoke, request: Request, p: Annotated[Principal, require(*OPS)]
) -> dict[str, Any]:
    """Revoke many tokens (``{"jti": ...}``) and/or subjects (``{"subject": ...}``) as one
    unit: per-item outcomes, a summary, one ``admin.bulk`` event."""
    comps = _tokens(request)
    outcomes = Outcomes()
    for i, item in enumerate(body.items):
        if "jti" in item and not 1 <= len(item["jti"]) <= 200:
            outcomes.add(i, "invalid", error="a jti is 1..200 characters")
        elif "subject" in item and not 3 <= len(item["subject"].strip()) <= 80:
            outcomes.add(i, "invalid", error="a subject is 3..80 characters")
        elif "jti" in item:
            n = await comps.service.revoke_jti(
                item["jti"], by=p.actor(), why=_why(request), ctx=_tctx(request)
            )
            outcomes.add(i, "ok" if n else "not_found", revoked=n)
        elif "subject" in item:
            r = await _revoke_subject(request, p, item["subject"], "none", None)
            outcomes.add(i, "ok", revoked=r["tokens_revoked"], sessions_ended=r["sessions_ended"])
        else:
            outcomes.add(i, "invalid", error="an item names a jti or a subject")
    return await _bulk_event(request, p, "revoke", outcomes)


class BulkSessions(Body):
    refs: list[str] = Field(min_length=1, max_length=1000)
    justification: str | None = None


@router.post("/bulk/sessions/end", openapi_extra=roles(*OPS))
async def bulk_end_sessions(
    body: BulkSessions, request: Request, p: Annotated[Principal, require(*OPS)]
) -> dict[str, Any]:
    """End many sessions as one unit."""
    admin = admin_services(request)
    outcomes = Outcomes()
    for i, ref in enumerate(body.refs):
        record = await admin.services.sessions.by_ref(ref)
        if record is None or not record.active:
            outcomes.add(i, "not_found")
            continue
        ended, revoked = await _end_session(request, p, record)
        outcomes.add(i, "ok" if ended else "not_found", tokens_revoked=revoked)
    return await _bulk_event(request, p, "sessions_end", outcomes)


# --- allow/deny lists -----------------------------------------------------------------------


def _entry(e: Any, pseudonymise: Callable[[str], str]) -> dict[str, Any]:
    """An entry as answers show it: a subject entry by ``subject_ref`` (the trail's
    ``value_ref`` of its records) and ``country``, without ``value``; the other kinds
    with their value, an IP network as the administrator typed it (decision 0031)."""
    shown = public_subject(e.value, pseudonymise) if e.kind == "subject" else {"value": e.value}
    return {
        "id": e.id,
        "list": e.list,
        "kind": e.kind,
        **shown,
        "reason": e.reason,
        "created_by": e.created_by,
        "created_at": e.created_at,
        "expires_at": e.expires_at,
        "updated_at": e.updated_at,
    }


@router.get("/lists", openapi_extra=roles(*OPS))
async def list_entries(
    request: Request,
    p: Annotated[Principal, require(*OPS)],
    list: Literal["allow", "deny"] | None = None,
    kind: Literal["jti", "subject", "client", "ip"] | None = None,
) -> dict[str, Any]:
    """Allow- and deny-list entries."""
    lists = _tokens(request).lists
    entries = await asyncio.to_thread(lists.entries, list, kind)
    return {"entries": [_entry(e, _pseudonymise(request)) for e in entries]}


class NewEntry(Body):
    list: Literal["allow", "deny"]
    kind: Literal["jti", "subject", "client", "ip"]
    value: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=3, max_length=500)
    expires_at: Epoch | None = None
    justification: str | None = None


@router.post("/lists", status_code=201, openapi_extra=roles(*ADMIN))
async def add_entry(
    body: NewEntry, request: Request, p: Annotated[Principal, require(*ADMIN)]
) -> dict[str, Any]:
    """Add an entry."""
    try:
        e = await _tokens(request).service.list_add(
            body.list,
            body.kind,
            normalise_subject(body.value) if body.kind == "subject" else body.value,
            reason=body.reason,
            created_by=p.label,
            actor=p.actor(),
            expires_at=body.expires_at,
            ctx=_tctx(request),
        )
    except ExpiryInThePast as exc:
        raise RequestInvalid(str(exc), fields=["body.expires_at"]) from None
    except AccessListError as exc:
        raise AdminError(str(exc), code="invalid_entry") from None
    return _entry(e, _pseudonymise(request))


class EntryUpdate(Body):
    reason: str | None = Field(None, min_length=3, max_length=500)
    expires_at: Epoch | None = None
    clear_expiry: bool = False
    justification: str | None = None


@router.patch("/lists/{entry_id}", openapi_extra=roles(*ADMIN))
async def update_entry(
    entry_id: str,
    body: EntryUpdate,
    request: Request,
    p: Annotated[Principal, require(*ADMIN)],
) -> dict[str, Any]:
    """Change an entry's reason or expiry."""
    try:
        e = await _tokens(request).service.list_update(
            entry_id,
            why=_why(request),
            actor=p.actor(),
            reason=body.reason,
            expires_at=body.expires_at,
            clear_expiry=body.clear_expiry,
            ctx=_tctx(request),
        )
    except ExpiryInThePast as exc:
        raise RequestInvalid(str(exc), fields=["body.expires_at"]) from None
    except NoListEntry:
        raise NotFound("list entry") from None
    except AccessListError as exc:  # a reason of white space only
        raise RequestInvalid(str(exc), fields=["body.reason"]) from None
    return _entry(e, _pseudonymise(request))


@router.delete("/lists/{entry_id}", openapi_extra=roles(*ADMIN))
async def remove_entry(
    entry_id: str, request: Request, p: Annotated[Principal, require(*ADMIN)]
) -> dict[str, Any]:
    """Remove an entry."""
    try:
        e = await _tokens(request).service.list_remove(
            entry_id, why=_why(request), actor=p.actor(), ctx=_tctx(request)
        )
    except NoListEntry:
        raise NotFound("list entry") from None
    return {"removed": e.id}


@router.get(
    "/lists/export",
    openapi_extra=roles(*OPS),
    response_model=None,
    responses={
        200: {
            "description": "Every entry, in the asked format",
            "content": {"application/json": {}, "text/csv": {}},
        }
    },
)
async def export_entries(
    request: Request,
    p: Annotated[Principal, require(*OPS)],
    format: Literal["csv", "json"] = "json",
) -> Response:
    """Every entry as CSV or JSON, a subject entry by ``subject_ref`` and ``country``
    with an empty ``value``: importable again except those (the privacy officer's
    ``POST /admin/privacy/lists/export`` has their codes; decision 0031)."""
    entries = await asyncio.to_thread(_tokens(request).lists.entries)
    data = export_lists(entries, format, pseudonymise=_pseudonymise(request))
    return Response(data, media_type=EXPORT_MEDIA[format])


_IMPORT_ENTRY = {
    "type": "object",
    "properties": {
        name: {"type": "string"} for name in ("list", "kind", "value", "reason", "expires_at")
    },
    "required": ["list", "kind", "value", "reason"],
}
#: the import's body is read by hand (CSV or JSON, as ``format`` says): documented here
_IMPORT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {
                "schema": {
                    "type": "string",
                    "description": "a header line list,kind,value,reason,expires_at, then entries",
                }
            },
            "application/json": {
                "schema": {
                    "anyOf": [
                        {"type": "array", "items": _IMPORT_ENTRY},
                        {
                            "type": "object",
                            "properties": {"entries": {"type": "array", "items": _IMPORT_ENTRY}},
                            "required": ["entries"],
                        },
                    ]
                }
            },
        },
    }
}


@router.post("/lists/import", openapi_extra={**roles(*ADMIN), **_IMPORT_BODY}, response_model=None)
async def import_entries(
    request: Request,
    p: Annotated[Principal, require(*ADMIN)],
    format: Literal["csv", "json"] = "csv",
    partial: bool = False,
) -> Response:
    """Bulk import (CSV with a header line, or JSON) of at most 1000 entries (more: 413
    ``too_many_entries``, nothing imported). Every line is validated first; with any bad
    line nothing is imported (422 with per-line errors) unless ``partial=true``, which
    imports the good lines and reports the bad ones. Justification: ``X-Justification``."""
    data = await request.body()
    lines, errors = parse_list_import(
        data, format, check_expiry=_tokens(request).lists.check_expiry
    )
    if errors and not partial:
        return JSONResponse(
            {"error": "invalid_lines", "imported": 0, "errors": errors, "valid": len(lines)},
            status_code=422,
        )
    comps = _tokens(request)
    outcomes = Outcomes()
    for err in errors:
        outcomes.add(err["line"], "invalid", error=err["error"])
    for item in lines:
        try:
            e = await comps.service.list_add(
                item.list,
                item.kind,
                item.value,
                reason=item.reason,
                created_by=p.label,
                actor=p.actor(),
                expires_at=item.expires_at,
                ctx=_tctx(request),
            )
            outcomes.add(item.line, "ok", id=e.id)
        except AccessListError as exc:
            outcomes.add(item.line, "rejected", error=str(exc))
    outcomes.items.sort(key=lambda i: i["index"])
    result = await _bulk_event(request, p, "list_import", outcomes)
    return JSONResponse(result, status_code=200)


class StatusCheck(ReadBody):
    """``POST /admin/lists/status``: what ``GET /admin/lists/status`` takes, in a body."""

    subject: SearchSubject = None
    jti: str | None = Field(None, min_length=1, max_length=128)
    ip: str | None = Field(None, min_length=2, max_length=64)
    client: str | None = Field(None, min_length=1, max_length=64)


async def _list_status(request: Request, f: StatusCheck) -> dict[str, Any]:
    """Would this subject / token / IP / client be allowed now, and by which entry?"""
    if not (f.subject or f.jti or f.ip or f.client):
        raise AdminError("name a subject, jti, ip or client", code="invalid_request")
    if f.ip is not None:
        try:
            ipaddress.ip_address(f.ip)
        except ValueError:
            raise AdminError("ip is not an IP address", code="invalid_request") from None
    lists = _tokens(request).lists
    who = ListSubject(
        jti=f.jti,
        subject=normalise_subject(f.subject) if f.subject else None,
        client=f.client,
        ip=f.ip,
    )
    try:
        d = await asyncio.to_thread(lists.check, who)
    except (AccessListError, ValueError) as exc:
        raise AdminError(str(exc), code="invalid_request") from None
    return {"allowed": d.allowed, "reason": d.reason, "entry_id": d.entry_id}


@router.get(
    "/lists/status",
    openapi_extra=roles(*OPS),
    description="Would this subject / token / IP / client be allowed now, and by which"
    " entry?" + _QUERY_DISCOURAGED.format(path="/admin/lists/status"),
)
async def list_status(
    request: Request,
    p: Annotated[Principal, require(*OPS)],
    subject: str | None = None,
    jti: str | None = None,
    ip: str | None = None,
    client: str | None = None,
) -> dict[str, Any]:
    """Would this subject / token / IP / client be allowed now (``?subject=``
    discouraged: see ``POST /admin/lists/status``)?"""
    f = StatusCheck.model_construct(subject=subject, jti=jti, ip=ip, client=client)
    return await _list_status(request, f)


@router.post("/lists/status", openapi_extra=roles(*OPS))
async def list_status_by_body(
    body: StatusCheck, request: Request, p: Annotated[Principal, require(*OPS, mutating=False)]
) -> dict[str, Any]:
    """``GET /admin/lists/status`` with its question in the body, so that a personal code
    stays out of URLs (decision 0031). A read: no CSRF token, justification optional;
    recorded with the person's pseudonym, never the code."""
    return await _list_status(request, body)


# --- clients --------------------------------------------------------------------------------


def _client(c: Any) -> dict[str, Any]:
    return {
        "client_id": c.client_id,
        "name": c.name,
        "allowed_audiences": list(c.allowed_audiences),
        "allowed_claims": list(c.allowed_claims),
        "max_ttl_s": c.max_ttl_s,
        "rate_limit": c.rate_limit,
        "created_at": c.created_at,
        "disabled": c.disabled,
    }


def _client_event(
    request: Request,
    p: Principal,
    client_id: str,
    key: str,
    before: Any,
    after: Any,
    *,
    secret: bool = False,
) -> AuditEvent:
    return ev.config_change(
        actor=p.actor(),
        source=source_of(request),
        target=Target("client", client_id),
        correlation=correlation_of(request),
        key=f"client.{key}",
        before="set" if secret else orjson.dumps(before).decode(),
        after="changed" if secret else orjson.dumps(after).decode(),
        secret=secret,
        justification=_why(request),
    )


async def _client_change(
    request: Request,
    p: Principal,
    client_id: str,
    key: str,
    before: Any,
    after: Any,
    *,
    secret: bool = False,
) -> None:
    await admin_services(request).services.audit.trail.emit(
        _client_event(request, p, client_id, key, before, after, secret=secret)
    )


@router.get("/clients", openapi_extra=roles(*ADMIN))
async def list_clients(
    request: Request, p: Annotated[Principal, require(*ADMIN)]
) -> dict[str, Any]:
    """Registered relying services."""
    found = await asyncio.to_thread(_tokens(request).clients.list)
    return {"clients": [_client(c) for c in found]}


class NewClientBody(Body):
    name: str = Field(min_length=1, max_length=200)
    allowed_audiences: list[str] = Field(default_factory=list)
    allowed_claims: list[str] = Field(default_factory=list)
    max_ttl_s: int = Field(3600, ge=1, le=TTL_MAX)
    rate_limit: str | None = Field(None, max_length=64)
    justification: str | None = None


@router.post("/clients", status_code=201, openapi_extra=roles(*ADMIN))
async def create_client(
    body: NewClientBody, request: Request, p: Annotated[Principal, require(*ADMIN)]
) -> dict[str, Any]:
    """Register a relying service; its secret is in this answer only."""
    try:
        new = await asyncio.to_thread(
            _tokens(request).clients.register,
            body.name,
            allowed_audiences=body.allowed_audiences,
            allowed_claims=body.allowed_claims,
            max_ttl_s=body.max_ttl_s,
            rate_limit=body.rate_limit,
        )
    except ClientError as exc:
        raise AdminError(str(exc), code="invalid_client") from None
    try:
        await _client_change(request, p, new.client.client_id, "created", None, _client(new.client))
    except AuditUnavailable:  # no credential without its record
        await asyncio.to_thread(_tokens(request).clients.remove, new.client.client_id)
        raise
    return {**_client(new.client), "client_secret": new.secret}


class ClientUpdate(Body):
    """The fields to change; a field left out stays as it is. ``rate_limit`` ``null``
    removes the client's own limit (null for another field is refused: it cannot be
    removed)."""

    # SkipJsonSchema: the OpenAPI document does not offer null where the route refuses it
    name: Annotated[str, Field(min_length=1, max_length=200)] | SkipJsonSchema[None] = None
    allowed_audiences: list[str] | SkipJsonSchema[None] = None
    allowed_claims: list[str] | SkipJsonSchema[None] = None
    max_ttl_s: Annotated[int, Field(ge=1, le=TTL_MAX)] | SkipJsonSchema[None] = None
    rate_limit: str | None = Field(
        None,
        max_length=64,
        description="the client's own limit, e.g. `100/minute`; `null` removes it (while "
        "`admin.second_approval` is on, a second administrator approves that first); "
        "left out, it stays",
    )
    disabled: bool | SkipJsonSchema[None] = None
    justification: str | None = None


def _client_settings(c: Any) -> dict[str, Any]:
    """A client's settings as ``PATCH /admin/clients/{id}`` changes them, keyed as their
    ``config.change`` events are (``client.<field>``, :data:`CLIENT_WEAKENS`)."""
    shown = _client(c)
    return {key: shown[key.removeprefix("client.")] for key in CLIENT_WEAKENS}


def _fields(changes: dict[str, Any]) -> dict[str, Any]:
    """``client.<field>``: value as the registry's field: value."""
    return {k.removeprefix("client."): v for k, v in changes.items()}


def _revised(request: Request, current: Any, changes: dict[str, Any]) -> Any:
    """``current`` with ``changes`` (``client.<field>``: value) under the registry's
    rules; 400 ``invalid_client`` for a field a client cannot have."""
    try:
        return _tokens(request).clients.revised(current, _fields(changes))
    except ClientError as exc:
        raise AdminError(str(exc), code="invalid_client") from None


@router.patch("/clients/{client_id}", openapi_extra=roles(*ADMIN), responses=ASKED)
async def update_client(
    client_id: str, body: ClientUpdate, request: Request, p: Annotated[Principal, require(*ADMIN)]
) -> JSONResponse:
    """Change a client's name, audiences, claims, TTL cap, rate limit or disabled flag;
    a field left out stays as it is, and ``"rate_limit": null`` removes the client's own
    limit. One ``config.change`` per changed field, with its value before and after.
    While ``admin.second_approval`` is on, a change that gives the client more (an
    audience or claim, a longer TTL cap, a looser own rate limit or none at all, enabled
    again) waits for a second administrator like a configuration change (202 with the
    request, decision 0017). Only the fields changed are written, and only if none of
    them changed meanwhile (409 ``stale`` otherwise)."""
    admin = admin_services(request)
    comps = _tokens(request)
    before = await asyncio.to_thread(comps.clients.get, client_id)
    if before is None:
        raise NotFound("client")
    fields = body.model_dump(include=body.model_fields_set - {"justification"})
    wanted = _client_settings(
        _revised(request, before, {f"client.{k}": v for k, v in fields.items()})
    )
    current = _client_settings(before)
    clean = {k: v for k, v in wanted.items() if v != current[k]}
    weakening = weakened(CLIENT_WEAKENS, current, clean)
    await asyncio.to_thread(admin.config.refresh)  # another instance may have switched it on
    if weakening and admin.config.get("admin.second_approval"):
        asked = await _ask_second(
            request,
            p,
            clean,
            weakening,
            target=client_target(client_id),
            expected={k: (0, current[k]) for k in clean},
        )
        return JSONResponse(asked, status_code=202)
    await _change_client(request, p, client_id, current, clean, weakening)
    return JSONResponse(_client(await asyncio.to_thread(comps.clients.get, client_id)))


async def _change_client(
    request: Request,
    p: Principal,
    client_id: str,
    current: dict[str, Any],
    clean: dict[str, Any],
    weakening: list[str],
    *,
    approved: ConfigRequest | None = None,
) -> list[Change]:
    """Store ``clean`` on the client (its next call sees it) and record it: only those
    fields, and only if each still has its value in ``current`` (409 ``stale``
    otherwise), so a change that landed meanwhile (a ``/disable``) is never undone by
    one that did not touch it. When the trail refuses the record, those fields are put
    back unless the client was written since (:func:`_put_back`)."""
    clients = _tokens(request).clients
    before = {k: current[k] for k in clean}
    version = await asyncio.to_thread(clients.change, client_id, _fields(before), _fields(clean))
    if version is None:
        raise ChangeConflict(f"client {client_id} has changed since the change was asked for")
    changes = [Change(k, before[k], v, False, 0) for k, v in sorted(clean.items())]
    await _record_changes(
        request,
        p,
        changes,
        weakening,
        approved=approved,
        where=client_target(client_id),
        restore=functools.partial(
            _put_back, clients, client_id, version, _fields(clean), _fields(before)
        ),
    )
    return changes


def _put_back(
    clients: ClientRegistry,
    client_id: str,
    version: int,
    wrote: dict[str, Any],
    before: dict[str, Any],
) -> bool:
    """Undo a client change whose record the trail refused: the fields it wrote
    (``wrote``) get their values in ``before`` back, but only while the client is still
    at the ``version`` the change produced (:meth:`ClientRegistry.undo`). A write that
    landed meanwhile (an enable, another disable, another PATCH, even of the same value)
    is never overwritten, and a warning names the fields left: the trail is down,
    nothing is recorded. Field names only, never values. False when a field was left
    (the change is still in force)."""
    left = clients.undo(client_id, version, wrote, before)
    if left:
        _undo_skipped(client_id, left)
    return not left


def _undo_skipped(client_id: str, fields: Sequence[str]) -> None:
    log.warning(
        "client %s: the undo of a change the audit trail refused was skipped for %s, "
        "changed meanwhile",
        client_id,
        ", ".join(fields),
    )


@router.post("/clients/{client_id}/rotate-secret", openapi_extra=roles(*ADMIN))
async def rotate_client_secret(
    client_id: str, request: Request, p: Annotated[Principal, require(*ADMIN)]
) -> dict[str, Any]:
    """A new client secret (in this answer only); the old one stops working at once."""
    import secrets as _secrets

    comps = _tokens(request)
    client = await asyncio.to_thread(comps.clients.get, client_id)
    if client is None:
        raise NotFound("client")
    secret = _secrets.token_urlsafe(32)
    encoded = await asyncio.to_thread(hash_secret, secret, n=comps.settings.token_client_scrypt_n)
    # the secret hash only (a disable meanwhile stays), over exactly the hash read
    old_hash = await asyncio.to_thread(comps.clients.swap_secret_hash, client_id, encoded)
    if old_hash is None:
        raise ChangeConflict(f"client {client_id} is gone or got another secret meanwhile")
    try:
        await _client_change(request, p, client_id, "secret", None, None, secret=True)
    except AuditUnavailable:  # the old secret stays the one that works
        # conditional on the hash this call wrote, not on the row version: a hash is
        # never written twice (a fresh salt), so a newer rotation always shows, and a
        # change of another field meanwhile must not keep a secret nobody was given
        if not await asyncio.to_thread(
            comps.clients.swap_secret_hash, client_id, old_hash, expected=encoded
        ):
            _undo_skipped(client_id, ["secret"])
        raise
    return {"client_id": client_id, "client_secret": secret}


@router.post("/clients/{client_id}/disable", openapi_extra=roles(*ADMIN))
async def disable_client(
    client_id: str, request: Request, p: Annotated[Principal, require(*ADMIN)]
) -> dict[str, Any]:
    """Disable a client: it can no longer authenticate."""
    comps = _tokens(request)
    client = await asyncio.to_thread(comps.clients.get, client_id)
    if client is None:
        raise NotFound("client")
    version = await asyncio.to_thread(comps.clients.set_disabled, client_id, True)
    if version is None:
        raise NotFound("client")
    try:
        await _client_change(request, p, client_id, "disabled", client.disabled, True)
    except AuditUnavailable:  # no permission change without its record
        await asyncio.to_thread(
            _put_back,
            comps.clients,
            client_id,
            version,
            {"disabled": True},
            {"disabled": client.disabled},
        )
        raise
    return {"client_id": client_id, "disabled": True}


# --- keys -----------------------------------------------------------------------------------


@router.get("/keys", openapi_extra=roles(*ADMIN))
async def list_keys(request: Request, p: Annotated[Principal, require(*ADMIN)]) -> dict[str, Any]:
    """Token signing keys (public parts), the audit checkpoint keys, and the
    pseudonymisation key ids: the active one (and since the first start under it that
    was kept), the retired ones still configured, and per key id how many usable API
    keys and pending requests name a person under it (decision 0022)."""
    admin = admin_services(request)
    comps = getattr(request.app.state, "tokens", None)
    signing = comps.keys.jwks()["keys"] if comps is not None else []
    ring = admin.services.audit.keyring
    engine, now = admin.services.engine, int(admin.services.clock())
    state = await asyncio.to_thread(in_use, engine)
    active = admin.fingerprinter.kid
    return {
        "signing": [{"kid": k.get("kid"), "alg": k.get("alg")} for k in signing],
        "checkpoint": {"active": ring.active_kid, "kids": ring.public_keys().kids()},
        "pseudonymisation": {
            "active": active,
            "since": state.since if state is not None and state.kid == active else None,
            "retired": sorted(f.kid for f in admin.retired),
            "labels": dict(sorted((await asyncio.to_thread(labels_by_kid, engine, now)).items())),
        },
    }


@router.post("/keys/{purpose}/rotate", openapi_extra=roles(*ADMIN))
async def rotate_key(
    purpose: Literal["signing", "checkpoint"],
    request: Request,
    p: Annotated[Principal, require(*ADMIN)],
) -> dict[str, Any]:
    """Rotate the token signing key (the old one stays published until its tokens expire)
    or the audit checkpoint key (new heads are signed with the new key)."""
    admin = admin_services(request)
    ring = _tokens(request).keys if purpose == "signing" else None
    if ring is not None:
        # staged: the new signing key signs nothing until its rotation is recorded
        old, new = await asyncio.to_thread(ring.rotate, staged=True)
    else:
        # staged too: the heads (this event's included) are signed by the old key until
        # the rotation is recorded
        checkpoint_ring = admin.services.audit.keyring
        old, new = checkpoint_ring.active_kid, await asyncio.to_thread(checkpoint_ring.stage)
    try:
        await admin.services.audit.trail.emit(
            ev.key_rotate(
                actor=p.actor(),
                source=source_of(request),
                target=Target("key", new),
                correlation=correlation_of(request),
                purpose=purpose,
                old_kid=old,
                new_kid=new,
                justification=_why(request),
            )
        )
    except BaseException:
        if ring is not None:
            await asyncio.to_thread(ring.discard, new)  # it never signed
        else:
            await asyncio.to_thread(checkpoint_ring.discard, new)
        raise
    if ring is not None:
        await asyncio.to_thread(ring.activate, new, immediate=True)
    else:
        await asyncio.to_thread(checkpoint_ring.activate, new)
    return {"purpose": purpose, "old_kid": old, "new_kid": new}


# --- configuration --------------------------------------------------------------------------


@router.get("/config", openapi_extra=roles(*ADMIN))
async def get_config(request: Request, p: Annotated[Principal, require(*ADMIN)]) -> dict[str, Any]:
    """Every runtime-changeable setting: value (secrets masked), source, version, doc."""
    admin = admin_services(request)
    await asyncio.to_thread(admin.config.refresh)
    return {"config": admin.config.public()}


class Decision(Body):
    approve: bool = True
    justification: str | None = None


class ConfigPatch(Body):
    changes: dict[str, Any] = Field(min_length=1, max_length=len(KEYS))
    justification: str | None = None


@router.patch("/config", openapi_extra=roles(*ADMIN), responses=ASKED)
async def patch_config(
    body: ConfigPatch, request: Request, p: Annotated[Principal, require(*ADMIN)]
) -> JSONResponse:
    """Validate, persist and apply changes without a restart; one ``config.change`` per
    changed key with its before and after value (secrets: set/changed only). While
    ``admin.second_approval`` is on, a change that weakens a control is not applied: it
    waits for a second administrator (202 with the request, decision 0017)."""
    admin = admin_services(request)
    clean = admin.config.validate(body.changes)
    await asyncio.to_thread(admin.config.refresh)  # another instance may have switched it on
    settings = admin.services.settings
    if clean.get("admin.second_approval") is False and settings.admin_second_approval:
        # the deployment's KROONIKA_ADMIN_SECOND_APPROVAL=true is a floor (decision 0014)
        refused = RoleChangeRefused(
            "the deployment requires a second approval (KROONIKA_ADMIN_SECOND_APPROVAL); "
            "it cannot be switched off at run time",
            code="four_eyes",
        )
        await _sod_violation(request, p, refused)
        raise refused
    pattern = clean.get("admin.ticket_pattern")
    if pattern is not None and ticket_regex(pattern).search(_why(request)) is None:
        # one that nothing matches would refuse every later change, its own reset too
        err = ConfigInvalid("invalid configuration")
        err.errors = {  # type: ignore[attr-defined]
            "admin.ticket_pattern": "the justification of this change must match it"
        }
        raise err
    admin.config.check(clean)
    weakening = admin.config.weakening(clean)
    if weakening and admin.config.get("admin.second_approval"):
        return JSONResponse(await _ask_second(request, p, clean, weakening), status_code=202)
    changes = await asyncio.to_thread(admin.config.change, body.changes, by=p.label)
    await _record_changes(request, p, changes, weakening)
    return JSONResponse({"changed": [c.key for c in changes], "config": admin.config.public()})


async def _record_changes(
    request: Request,
    p: Principal,
    changes: list[Change],
    weakening: list[str],
    *,
    approved: ConfigRequest | None = None,
    where: str = CONFIG,
    restore: Callable[[], object] | None = None,
) -> None:
    """The ``config.change`` of each applied change of ``where``; when the trail refuses
    them the changes are undone (``restore``, by default the runtime configuration's) and
    an approved request is pending again, unless ``restore`` says False (a client change
    whose undo was skipped is still in force: its request stays approved)."""
    admin = admin_services(request)
    state = None if approved is None else APPROVED
    try:
        await admin.services.audit.trail.emit_many(
            _config_events(request, p, changes, weakening, req=approved, state=state, where=where)
        )
    except AuditUnavailable:
        undone = await asyncio.to_thread(
            restore or functools.partial(admin.config.restore, changes, by="audit_unavailable")
        )
        if approved is not None and undone is not False:
            await asyncio.to_thread(_requests(admin).undo, approved)
        raise


def _requests(admin: AdminServices) -> ConfigRequests:
    if admin.requests is None:
        raise AdminError("configuration requests are not installed", code="unavailable")
    return admin.requests


def _config_events(
    request: Request,
    p: Principal,
    changes: list[Change],
    weakening: Iterable[str],
    *,
    req: ConfigRequest | None = None,
    state: str | None = None,
    where: str = CONFIG,
) -> list[AuditEvent]:
    """One ``config.change`` per key of ``where`` (the runtime configuration, or a
    request's target): applied (success, with its version if it has one), asked for
    (``state`` pending, outcome unknown: nothing changed yet) or rejected (failure); a
    change of a request names it, its requester and, once decided, the decider."""
    outcome = {PENDING: Outcome.UNKNOWN, REJECTED: Outcome.FAILURE}.get(state or "")
    weak = set(weakening)
    where = req.target if req else where
    return [
        ev.config_change(
            outcome=outcome or Outcome.SUCCESS,
            reason=REJECTED if state == REJECTED else None,
            actor=p.actor(),
            source=source_of(request),
            target=Target("config", c.key) if where == CONFIG else Target(*where.split("/", 1)),
            correlation=correlation_of(request),
            key=c.key,
            before=c.shown()[0],
            after=c.shown()[1],
            secret=c.secret,
            version=None if outcome else c.version or None,  # a client's has none
            justification=_why(request),
            weakening=True if c.key in weak else None,
            request_id=req.id if req else None,
            state=state,
            requested_by=req.requested_by if req else None,
            expires_at=req.expires_at if req and outcome else None,
            decided_by=p.label if req and state != PENDING else None,
        )
        for c in changes
    ]


async def _ask_second(
    request: Request,
    p: Principal,
    clean: dict[str, Any],
    weakening: list[str],
    *,
    target: str = CONFIG,
    expected: dict[str, tuple[int, Any]] | None = None,
) -> dict[str, Any]:
    """Store a weakening change of ``target`` as a request for a second administrator,
    recorded before the answer (a request the trail refuses is removed again: 503)."""
    admin = admin_services(request)
    store = _requests(admin)
    req = await asyncio.to_thread(
        store.create,
        clean,
        weakening,
        by=p.label,
        why=_why(request),
        ttl_s=admin.services.settings.admin_approval_ttl_s,
        target=target,
        expected=expected,
    )
    try:
        await admin.services.audit.trail.emit_many(
            _config_events(request, p, req.diff(), req.weakening, req=req, state=PENDING)
        )
    except AuditUnavailable:
        await asyncio.to_thread(store.withdraw, req.id)
        raise
    return {"request": req.public(int(admin.services.clock()))}


@router.get("/config/requests", openapi_extra=roles(*ADMIN))
async def list_config_requests(
    request: Request,
    p: Annotated[Principal, require(*ADMIN)],
    status: Literal["pending", "approved", "rejected", "expired"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Changes that need or needed a second administrator, newest first: configuration
    and client changes (``target`` ``config`` or ``client/<id>``; secret values masked,
    decided here) and role requests (``target`` ``roles/<subject_ref>``, with
    ``subject_ref``, ``role`` and ``action``; decided at ``POST
    /admin/roles/requests/{id}``; decision 0025)."""
    admin = admin_services(request)
    store = _requests(admin)
    found = await asyncio.to_thread(store.list, status, limit)
    asked = await asyncio.to_thread(admin.roles.requests, status, newest_first=True, limit=limit)
    now = int(admin.services.clock())
    listed = [(r.requested_at, r.id, r.public(now)) for r in found]
    listed += [(q.requested_at, q.id, q.public(admin.fingerprinter.pseudonym, now)) for q in asked]
    listed.sort(key=lambda x: (-x[0], x[1]))
    return {"requests": [shown for _, _, shown in listed[:limit]]}


async def _second_pair_of_eyes(
    request: Request, p: Principal, requested_by: str, *, approve: bool, what: str
) -> None:
    """Refuse (409, a separation_of_duties violation) a decision that is not a second
    person's: an API key, the requester, anyone behind the requester's key or any key of
    theirs; and the approval of a request whose requester is no longer an administrator
    (decision 0014)."""
    admin = admin_services(request)
    refused: RoleChangeRefused | None = None
    if p.kind == "api_key":
        refused = RoleChangeRefused(f"{what} are decided by people", code="api_key")
    elif (await creators(admin, p.label) | p.labels) & await creators(admin, requested_by):
        refused = RoleChangeRefused("a second administrator must decide", code="same_admin")
    elif approve and not await admin_now(admin, requested_by):
        refused = RoleChangeRefused(
            "the requester no longer holds the admin role; reject the request",
            code="requester_not_admin",
        )
    if refused is not None:
        await _sod_violation(request, p, refused)
        raise refused


@router.post("/config/requests/{request_id}", openapi_extra=roles(*ADMIN))
async def decide_config_request(
    request_id: str, body: Decision, request: Request, p: Annotated[Principal, require(*ADMIN)]
) -> dict[str, Any]:
    """Approve (apply exactly as asked; 409 ``stale`` if a key or client field changed
    since) or reject a configuration or client request: a person other than the requester
    and whoever made the requester's key; 409 ``expired`` after
    ``KROONIKA_ADMIN_APPROVAL_TTL_S``."""
    admin = admin_services(request)
    store = _requests(admin)
    pending = await asyncio.to_thread(store.get, request_id)
    if pending is None and request_id.startswith(ROLE_REQUEST_PREFIX):
        raise NotFound("configuration request", role_request_hint=True)
    if pending is None:
        raise NotFound("configuration request")
    await _second_pair_of_eyes(
        request, p, pending.requested_by, approve=body.approve, what="configuration requests"
    )
    decided = await asyncio.to_thread(store.decide, request_id, approve=body.approve, by=p.label)
    now = int(admin.services.clock())
    if not body.approve:
        try:
            await admin.services.audit.trail.emit_many(
                _config_events(
                    request, p, decided.diff(), decided.weakening, req=decided, state=REJECTED
                )
            )
        except AuditUnavailable:
            await asyncio.to_thread(store.undo, decided)
            raise
        return {"request": decided.public(now), "changed": []}
    if decided.client_id is not None:
        changes = await _approve_client(request, p, decided, decided.client_id)
        client = await asyncio.to_thread(_tokens(request).clients.get, decided.client_id)
        return {
            "request": decided.public(now),
            "changed": [c.key for c in changes],
            "client": _client(client),
        }
    try:
        changes = await asyncio.to_thread(
            admin.config.change,
            decided.changes,
            by=f"{decided.requested_by}+{p.label}",
            expect=decided.expected,
        )
    except AdminError:  # stale, or no longer a valid whole configuration
        await asyncio.to_thread(store.undo, decided)
        raise
    await _record_changes(request, p, changes, list(decided.weakening), approved=decided)
    return {
        "request": decided.public(now),
        "changed": [c.key for c in changes],
        "config": admin.config.public(),
    }


async def _approve_client(
    request: Request, p: Principal, decided: ConfigRequest, client_id: str
) -> list[Change]:
    """Apply an approved client request: only its fields, and only if each still has the
    value it had when the request was made (409 ``stale``, the request pending again,
    otherwise, or when the client is gone). Fields it does not change keep whatever they
    have now: a client disabled meanwhile stays disabled."""
    admin = admin_services(request)
    try:
        clients = _tokens(request).clients
        current = await asyncio.to_thread(clients.get, client_id)
        if current is None:
            raise ChangeConflict(f"client {client_id} is gone")
        _revised(request, current, decided.changes)  # still a client the registry accepts
        return await _change_client(
            request,
            p,
            client_id,
            {k: v for k, (_, v) in decided.expected.items()},
            decided.changes,
            list(decided.weakening),
            approved=decided,
        )
    except AdminError:  # stale, gone, no longer valid, or no token service
        await asyncio.to_thread(_requests(admin).undo, decided)
        raise


# --- jobs -----------------------------------------------------------------------------------


@router.get("/jobs", openapi_extra=roles(*JOBS_ROLES))
async def list_jobs(
    request: Request, p: Annotated[Principal, require(*JOBS_ROLES)]
) -> dict[str, Any]:
    """Jobs with their schedule, last run and next run."""
    admin = admin_services(request)
    return {"jobs": await asyncio.to_thread(admin.jobs.status)}


#: why the database gave a run up, for the answer (never the SQL nor the server's text)
_GIVEN_UP = {
    "lock_timeout": "blocked on a lock another database session holds",
    "statement_timeout": "a statement ran longer than the jobs' statement timeout",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds until the scheduler tries the job again (its backoff)",
        "schema": {"type": "integer"},
    }
}
#: the service's error object (``kroonika.web._openapi`` adds it to the document)
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_RUN_REFUSALS: dict[int | str, dict[str, Any]] = {
    409: {
        "description": "`job_busy`: the job runs here or on another instance; "
        "`job_interrupted`: another instance took the run over (`run`)",
        "content": _ERROR,
    },
    500: {
        "description": "`job_failed`: the run failed (`run` says how); nothing is retried",
        "content": _ERROR,
    },
    503: {
        "content": _ERROR,
        "description": "`job_locked` (a lock another database session holds) or "
        "`job_timed_out` (a statement too slow): the database gave the run up, try again "
        "after Retry-After; `job_unavailable`: the database or the audit trail is down. "
        "`run` is the run's record",
        "headers": _RETRY_AFTER,
    },
}


@router.post("/jobs/{job}/run", openapi_extra=roles(*JOBS_ROLES), responses=_RUN_REFUSALS)
async def run_job(
    job: str, request: Request, p: Annotated[Principal, require(*JOBS_ROLES)]
) -> dict[str, Any]:
    """Run a job now (refused with 409 while it runs here or on another instance). A run
    that fails answers 500 ``job_failed`` (503 ``job_unavailable`` when the database or
    the trail was down; 503 ``job_locked`` or ``job_timed_out`` with ``Retry-After`` when
    the database gave it up, a lock held elsewhere or a statement too slow; 409
    ``job_interrupted`` when another instance took it over) with the run's record under
    ``run``."""
    from kroonika.jobs import JobBusy, RunUnrecorded, UnknownJob

    admin = admin_services(request)
    try:
        result = await admin.jobs.run(
            job, trigger=p.label, actor=p.actor(), correlation=correlation_of(request)
        )
    except UnknownJob:
        raise NotFound("job") from None
    except JobBusy as exc:
        raise JobAlreadyRunning(str(exc)) from None
    except RunUnrecorded as exc:  # the run is in the history; its job.run is not in the trail
        run = {**exc.result.public(), "recorded": False}
        raise JobRunFailed(str(exc), run, cause="audit_unavailable") from None
    public: dict[str, Any] = result.public()
    if result.outcome != "success":
        # the run is recorded (history and job.run); the answer says it did not succeed
        message = f"job {job} run {result.run_id}: {result.outcome}"
        if result.error in _GIVEN_UP:
            message += f" ({_GIVEN_UP[result.error]}); try again in {result.retry_after} s"
        raise JobRunFailed(message, public, cause=result.cause, retry_after=result.retry_after)
    return public


@router.get("/jobs/{job}/runs", openapi_extra=roles(*JOBS_ROLES))
async def job_history(
    job: str,
    request: Request,
    p: Annotated[Principal, require(*JOBS_ROLES)],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """A job's run history, newest first."""
    from kroonika.jobs import UnknownJob

    admin = admin_services(request)
    try:
        return {"runs": await asyncio.to_thread(admin.jobs.history, job, limit)}
    except UnknownJob:
        raise NotFound("job") from None


# --- roles and API keys -----------------------------------------------------------------------


async def _sod_violation(request: Request, p: Principal, exc: RoleChangeRefused) -> None:
    await admin_services(request).services.audit.trail.emit(
        ev.security_policy_violation(
            outcome=Outcome.FAILURE,
            reason=exc.code,
            actor=p.actor(),
            source=source_of(request),
            target=Target("admin_route", _template(request)),
            correlation=correlation_of(request),
            policy=Policy.SEPARATION_OF_DUTIES.value,
            attempted=exc.code,
            decision=PolicyDecision.DENIED.value,
        )
    )


async def _roles_event(
    request: Request,
    p: Principal,
    subject: str,
    before: tuple[str, ...],
    after: tuple[str, ...],
    *,
    req: RoleRequest | None = None,
    state: str | None = None,
) -> None:
    """The ``config.change`` of ``admin.roles``: applied (success), or a step of a request
    a second administrator decides, recorded as a configuration request's is: asked
    (``state`` pending, outcome unknown, with ``expires_at``), approved, or rejected
    (failure); ``after`` is then the roles as asked."""
    admin = admin_services(request)
    outcome = {PENDING: Outcome.UNKNOWN, REJECTED: Outcome.FAILURE}.get(state or "")
    await admin.services.audit.trail.emit(
        ev.config_change(
            outcome=outcome or Outcome.SUCCESS,
            reason=REJECTED if state == REJECTED else None,
            actor=p.actor(),
            source=source_of(request),
            target=Target("admin_roles", admin.fingerprinter.pseudonym(subject)),
            correlation=correlation_of(request),
            key="admin.roles",
            before=orjson.dumps(list(before)).decode(),
            after=orjson.dumps(list(after)).decode(),
            justification=_why(request),
            request_id=req.id if req else None,
            state=state,
            requested_by=req.requested_by if req else None,
            expires_at=req.expires_at if req and outcome else None,
            decided_by=p.label if req and state != PENDING else None,
        )
    )


@router.get("/roles", openapi_extra=roles(*ADMIN))
async def list_roles(request: Request, p: Annotated[Principal, require(*ADMIN)]) -> dict[str, Any]:
    """Role holders and pending role requests. A holder is named by ``subject_ref``, the
    pseudonym the audit trail names them with (the target of their ``admin.roles``
    records), and ``country``, never by personal code: ask about a known code with
    ``POST /admin/roles/lookup``. ``pending`` is also in ``GET /admin/config/requests``
    (decision 0025)."""
    admin = admin_services(request)
    holders = await asyncio.to_thread(admin.roles.holders)
    pending = await asyncio.to_thread(admin.roles.requests, "pending")
    now = int(admin.services.clock())
    return {
        "holders": [public_holder(*h, admin.fingerprinter.pseudonym) for h in holders],
        "pending": [q.public(admin.fingerprinter.pseudonym, now) for q in pending],
    }


class RoleLookup(ReadBody):
    subject: str = Field(min_length=3, max_length=80)


@router.post("/roles/lookup", openapi_extra=roles(*ADMIN))
async def lookup_roles(
    body: RoleLookup, request: Request, p: Annotated[Principal, require(*ADMIN, mutating=False)]
) -> dict[str, Any]:
    """The roles and pending role requests of the person whose personal code is in the
    body (a code in a URL would land in access logs). A read: recorded as every call,
    with the person's pseudonym, never the code; the answer does not repeat the code.
    Someone holding nothing gets empty lists."""
    admin = admin_services(request)
    try:
        subject = checked_subject(body.subject)
    except ValueError as exc:
        raise AdminError(str(exc), code="invalid_request") from None
    grants = await asyncio.to_thread(admin.roles.holders, subject)
    pending = await asyncio.to_thread(admin.roles.requests, "pending")
    now = int(admin.services.clock())
    pseudonymise = admin.fingerprinter.pseudonym
    return {
        "subject_ref": pseudonymise(subject),
        "country": country_of(subject),
        "roles": [public_holder(*g, pseudonymise) for g in grants],
        "pending": [q.public(pseudonymise, now) for q in pending if q.subject == subject],
    }


class RoleChange(Body):
    subject: str = Field(min_length=3, max_length=80)
    role: str
    action: Literal["grant", "revoke"] = "grant"
    justification: str | None = None


@router.post("/roles", status_code=202, openapi_extra=roles(*ADMIN))
async def change_role(
    body: RoleChange, request: Request, p: Annotated[Principal, require(*ADMIN)]
) -> JSONResponse:
    """Ask for a role change. Nobody can change their own roles; with
    ``admin.second_approval`` a second administrator must approve it."""
    admin = admin_services(request)
    try:
        parse_roles([body.role])
        if p.kind == "api_key":
            raise RoleChangeRefused("role changes are made by people", code="api_key")
        req = await asyncio.to_thread(
            admin.roles.request,
            body.subject,
            body.role,
            body.action,
            by=p.label,
            by_subject=p.subject,
            why=_why(request),
            ttl_s=admin.services.settings.admin_approval_ttl_s,
        )
    except ValueError as exc:
        raise AdminError(str(exc), code="invalid_role") from None
    except RoleChangeRefused as exc:
        await _sod_violation(request, p, exc)
        raise
    if not admin.config.get("admin.second_approval"):
        return JSONResponse(await _decide(request, p, req.id, approve=True), status_code=200)
    before = await asyncio.to_thread(admin.roles.roles_of, req.subject)
    try:  # recorded before the answer, like a configuration request
        await _roles_event(
            request, p, req.subject, before, req.asked(before), req=req, state=PENDING
        )
    except AuditUnavailable:
        await asyncio.to_thread(admin.roles.withdraw, req.id)
        raise
    now = int(admin.services.clock())
    return JSONResponse(
        {"request": req.public(admin.fingerprinter.pseudonym, now)}, status_code=202
    )


async def _decide(
    request: Request, p: Principal, request_id: str, *, approve: bool
) -> dict[str, Any]:
    admin = admin_services(request)
    pending = await asyncio.to_thread(admin.roles.get_request, request_id)
    if pending is None:
        raise NotFound("role request")
    before = await asyncio.to_thread(admin.roles.roles_of, pending.subject)
    try:
        if (
            approve
            and pending.requested_by not in p.labels
            and "admin" not in await roles_of_label(admin, pending.requested_by)
        ):
            # the second pair of eyes confirms an administrator's request, not an
            # orphan's: whoever asked must still be one (decision 0014)
            raise RoleChangeRefused(
                "the requester no longer holds the admin role; reject the request",
                code="requester_not_admin",
            )
        if not admin.config.get("admin.second_approval") and pending.requested_by in p.labels:
            decided = await asyncio.to_thread(
                admin.roles.decide,
                request_id,
                approve=approve,
                by="policy:single",
                by_subject=p.subject,
            )
        else:
            decided = await asyncio.to_thread(
                admin.roles.decide,
                request_id,
                approve=approve,
                by=p.label,
                by_subject=p.subject,
                by_labels=p.labels,
            )
    except RoleChangeRefused as exc:
        await _sod_violation(request, p, exc)
        raise
    after = await asyncio.to_thread(admin.roles.roles_of, pending.subject)
    # a second administrator's decision is recorded even when it changes nothing (a
    # rejection, a role already held): it ends the request the trail saw asked for
    second = decided.decided_by != "policy:single"
    if before != after or second:
        try:
            await _roles_event(
                request,
                p,
                pending.subject,
                before,
                after if approve else decided.asked(before),
                req=decided if second else None,
                state=(APPROVED if approve else REJECTED) if second else None,
            )
        except AuditUnavailable:  # no role and no decision without its record
            await asyncio.to_thread(admin.roles.undo, decided)
            raise
    now = int(admin.services.clock())
    return {"request": decided.public(admin.fingerprinter.pseudonym, now), "roles": list(after)}


@router.post("/roles/requests/{request_id}", openapi_extra=roles(*ADMIN))
async def decide_role(
    request_id: str, body: Decision, request: Request, p: Annotated[Principal, require(*ADMIN)]
) -> dict[str, Any]:
    """Approve or reject a role request (a different administrator than the requester, and
    not the person concerned)."""
    if p.kind == "api_key":
        refused = RoleChangeRefused("role changes are decided by people", code="api_key")
        await _sod_violation(request, p, refused)
        raise refused
    return await _decide(request, p, request_id, approve=body.approve)


@router.get("/api-keys", openapi_extra=roles(*ADMIN))
async def list_api_keys(
    request: Request, p: Annotated[Principal, require(*ADMIN)]
) -> dict[str, Any]:
    """API keys (never their secrets), each with ``effective_roles``: the roles it was
    made with that its creator still holds, which are all it may use."""
    admin = admin_services(request)
    keys = await asyncio.to_thread(admin.keys.list)
    return {
        "api_keys": [
            {**k.public(), "effective_roles": list(await key_roles(admin, k))} for k in keys
        ]
    }


class NewApiKey(Body):
    name: str = Field(min_length=1, max_length=200)
    roles: list[str] = Field(min_length=1)
    ttl_s: int = Field(30 * 86400, ge=60)
    justification: str | None = None


@router.post("/api-keys", status_code=201, openapi_extra=roles(*ADMIN))
async def create_api_key(
    body: NewApiKey, request: Request, p: Annotated[Principal, require(*ADMIN)]
) -> dict[str, Any]:
    """A new API key with some of the caller's own roles; the key is in this answer only."""
    admin = admin_services(request)
    try:
        wanted = parse_roles(body.roles)
    except ValueError as exc:
        raise AdminError(str(exc), code="invalid_role") from None
    if not set(wanted) <= set(p.roles):
        refused = RoleChangeRefused(
            "an API key can carry only roles its creator holds", code="self_grant"
        )
        await _sod_violation(request, p, refused)
        raise refused
    ttl = min(body.ttl_s, admin.services.settings.admin_api_key_max_ttl_s)
    if p.kind == "api_key" and p.key_id is not None:
        # a key made by a key expires with it: automation cannot renew itself for ever
        parent = await asyncio.to_thread(admin.keys.get, p.key_id)
        if parent is not None:
            ttl = min(ttl, parent.expires_at - int(admin.services.clock()))
        if ttl <= 0:
            raise NotAuthenticated("the calling API key has expired")
    key, value = await asyncio.to_thread(
        admin.keys.create, body.name, wanted, by=p.label, ttl_s=ttl
    )
    try:
        await admin.services.audit.trail.emit(
            ev.config_change(
                actor=p.actor(),
                source=source_of(request),
                target=Target("api_key", key.id),
                correlation=correlation_of(request),
                key="admin.api_key",
                before="null",
                after=orjson.dumps(
                    {"roles": list(key.roles), "expires_at": key.expires_at}
                ).decode(),
                secret=True,
                justification=_why(request),
            )
        )
    except AuditUnavailable:  # no credential without its record
        await asyncio.to_thread(admin.keys.revoke, key.id, by="audit_unavailable")
        raise
    return {**key.public(), "api_key": value}


@router.delete("/api-keys/{key_id}", openapi_extra=roles(*ADMIN))
async def revoke_api_key(
    key_id: str, request: Request, p: Annotated[Principal, require(*ADMIN)]
) -> dict[str, Any]:
    """Revoke an API key at once."""
    admin = admin_services(request)
    key = await asyncio.to_thread(admin.keys.revoke, key_id, by=p.label)
    await admin.services.audit.trail.emit(
        ev.config_change(
            actor=p.actor(),
            source=source_of(request),
            target=Target("api_key", key.id),
            correlation=correlation_of(request),
            key="admin.api_key",
            before="active",
            after="revoked",
            justification=_why(request),
        )
    )
    return key.public()


__all__ = ["AdminServices", "router"]
