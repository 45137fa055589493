"""The privacy officer's API under ``/admin/privacy`` (role ``privacy`` only; every call
needs a justification and, with a session cookie, the CSRF token):

- ``POST /admin/privacy/erasures``: erase a person by crypto-shredding (GDPR art. 17);
- ``POST /admin/privacy/re-identify``: decrypt the personal data of named events;
- ``POST /admin/privacy/pseudonyms``: a person's pseudonym under every pseudonymisation
  key, current and retired (to follow them across a rotation, decision 0028);
- ``POST /admin/privacy/lists/export``: the allow/deny-lists with personal codes in
  clear, to import into another instance (decision 0031);
- ``POST /admin/privacy/free-text/scan`` and ``.../redact``: personal codes typed into
  stored free text before decision 0033, found and removed (decision 0038).

Each is recorded before it acts or answers (``audit.erasure``, ``audit.access`` with
action ``re-identify``, ``pseudonymise`` or ``export``): if the trail cannot record, the
answer is 503 and nothing was deleted or revealed. See :mod:`kroonika.admin._privacy`
and decision 0012.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import Field

from kroonika.admin._auth import (
    STORE_DOWN,
    AuditedRoute,
    Principal,
    admin_services,
    correlation_of,
    record_access,
    require,
    source_of,
)
from kroonika.admin._bulk import EXPORT_MEDIA, export_lists
from kroonika.admin._errors import AdminError, RequestInvalid
from kroonika.admin._privacy import (
    REVEAL_MAX,
    Eraser,
    ErasureCounts,
    HoldsRoles,
    Person,
    PrivacyRequestInvalid,
    Revealed,
    decrypt_events,
    end_active,
    erasure_event,
    pseudonymise_event,
    reidentify_event,
    reveal_refs,
)
from kroonika.admin._stored_text import (
    RowRedaction,
    StoredText,
    redaction_events,
    scan_event,
)
from kroonika.admin.routes import Body, _sctx, _tctx, _tokens
from kroonika.audit import AuditEvent, AuditUnavailable, SqlAuditStore, Target

PRIVACY = ("privacy",)
#: What a deletion that cannot complete raises (a database or the audit store down).
DELETE_FAILED: tuple[type[Exception], ...] = (AuditUnavailable, *STORE_DOWN)
router = APIRouter(prefix="/admin/privacy", tags=["privacy"], route_class=AuditedRoute)
X_ROLES = {"x-roles": list(PRIVACY)}


class PersonHoldsRoles(AdminError):
    status = 409

    def __init__(self, exc: HoldsRoles) -> None:
        super().__init__(str(exc), code="holds_admin_roles")


def _eraser(request: Request) -> Eraser:
    eraser: Eraser | None = admin_services(request).eraser
    if eraser is None:
        raise AdminError("erasure is not configured", code="unavailable")
    return eraser


class PersonBody(Body):
    """A person named by personal code or by pseudonym (the code only in a body: a URL is
    logged by proxies and kept in histories)."""

    personal_code: str | None = Field(None, max_length=80)
    pseudonym: str | None = Field(None, max_length=64)
    justification: str | None = None


class ErasureBody(PersonBody):
    """Whom to erase, and why."""


async def _person(eraser: Eraser, body: PersonBody) -> Person:
    try:  # named by pseudonym, the business tables are searched: off the event loop
        return await asyncio.to_thread(
            eraser.person, personal_code=body.personal_code, pseudonym=body.pseudonym
        )
    except PrivacyRequestInvalid as exc:
        raise RequestInvalid(str(exc)) from None


@router.post("/erasures", openapi_extra=X_ROLES)
async def erase(
    request: Request, p: Annotated[Principal, require(*PRIVACY)], body: ErasureBody
) -> dict[str, Any]:
    """Erase a person (by ``personal_code`` or ``pseudonym``): their audit data keys under
    every pseudonym, their security profile, their sessions and the clear subject of their
    tokens; sessions still active are ended (reason ``erasure``) and active tokens revoked
    first, each with its own record. The ``audit.erasure`` record is stored first (503 and
    nothing done if it cannot be); a step whose record is refused is undone (503, run it
    again). 409 ``holds_admin_roles`` while the person is an administrator. A person with
    nothing stored gets the same answer with zero counts. The personal code is never
    echoed or recorded."""
    eraser = _eraser(request)
    person = await _person(eraser, body)
    trail = admin_services(request).services.audit.trail
    why = str(request.state.admin_call.justification)

    def event(counts: ErasureCounts, failed: str | None = None) -> AuditEvent:
        return erasure_event(
            person,
            counts,
            actor=p.actor(),
            justification=why,
            interface="api",
            source=source_of(request),
            correlation=correlation_of(request),
            failed=failed,
        )

    held = await asyncio.to_thread(eraser.roles, person)
    if held:
        raise PersonHoldsRoles(HoldsRoles(held))
    planned = await asyncio.to_thread(eraser.plan, person)
    await trail.emit(event(planned))  # fail closed: no record, nothing deleted
    admin = admin_services(request)
    tokens = getattr(getattr(request.app.state, "tokens", None), "service", None)
    try:
        ended, revoked = await end_active(
            person,
            admin.services.sessions,
            tokens,
            actor=p.actor(),
            why="erasure",
            sctx=_sctx(request),
            tctx=_tctx(request),
        )
        done = await asyncio.to_thread(
            eraser.apply, person, ended=ended, revoked=revoked, planned=planned
        )
    except DELETE_FAILED:
        # the recorded erasure did not (fully) happen: say so, then answer 503
        with contextlib.suppress(AuditUnavailable):
            await trail.emit(event(planned, failed="incomplete"))
        raise
    monitor = getattr(request.app.state, "security_monitor", None)
    if monitor is not None:  # this instance's recent failures of the person (decision 0018)
        await asyncio.to_thread(monitor.forget, person.pseudonyms)
    return {
        "status": "erased" if done.deleted_any else "nothing_found",
        "pseudonym": person.pseudonyms[0],
        "pseudonyms": list(person.pseudonyms),
        "deleted": done.as_dict(),
    }


class Position(Body):
    stream: str = Field(max_length=128)
    seq: int = Field(ge=1, le=2**53)


class ReidentifyBody(Body):
    event_ids: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list, max_length=REVEAL_MAX
    )
    positions: list[Position] = Field(default_factory=list, max_length=REVEAL_MAX)
    justification: str | None = None


@router.post("/re-identify", openapi_extra=X_ROLES)
async def re_identify(
    request: Request, p: Annotated[Principal, require(*PRIVACY)], body: ReidentifyBody
) -> dict[str, Any]:
    """Decrypt the personal data of up to 50 events (by id or by stream and seq). The
    ``audit.access`` record (action ``re-identify``: the justification, the ids of the
    events revealed and the names of the fields, never their values) is stored before the
    answer; an erased person's event answers ``erased``."""
    try:
        ids, positions = reveal_refs(body.event_ids, [(x.stream, x.seq) for x in body.positions])
    except PrivacyRequestInvalid as exc:
        raise RequestInvalid(str(exc)) from None
    admin = admin_services(request)
    keys = admin.services.audit.subject_keys
    url = admin.services.settings.resolved_audit_store_url()

    def run() -> Revealed:
        store = SqlAuditStore(url, read_only=True)
        try:
            return decrypt_events(store, keys, ids, positions)
        finally:
            store.close()

    revealed = await asyncio.to_thread(run)
    await admin.services.audit.trail.emit(
        reidentify_event(
            revealed,
            ids,
            positions,
            actor=p.actor(),
            justification=request.state.admin_call.justification,
            interface="api",
            source=source_of(request),
            correlation=correlation_of(request),
        )
    )
    return {"events": revealed.items}


@router.post("/pseudonyms", openapi_extra=X_ROLES)
async def pseudonyms(
    request: Request, p: Annotated[Principal, require(*PRIVACY)], body: PersonBody
) -> dict[str, Any]:
    """A person's pseudonym under the current pseudonymisation key and under every
    retired one, current first, each with its key's standing (``current``, ``retired``,
    ``unconfigured``): the ``actor`` values that follow them across key rotations. Named
    by ``personal_code`` or by one ``pseudonym`` (found under the other keys through the
    business tables). ``audit.access`` (action ``pseudonymise``: the justification and
    the current pseudonym, never the code) is stored before the answer (503 otherwise)."""
    eraser = _eraser(request)
    person = await _person(eraser, body)
    await admin_services(request).services.audit.trail.emit(
        pseudonymise_event(
            person,
            actor=p.actor(),
            justification=request.state.admin_call.justification,
            interface="api",
            source=source_of(request),
            correlation=correlation_of(request),
        )
    )
    return {
        "pseudonyms": [{"pseudonym": n, "key": k} for n, k in eraser.standing(person)],
    }


class ClearListExport(Body):
    format: Literal["csv", "json"] = "json"
    justification: str | None = None


@router.post(
    "/lists/export",
    openapi_extra=X_ROLES,
    response_model=None,
    responses={
        200: {
            "description": "Every entry, personal codes in clear",
            "content": {"application/json": {}, "text/csv": {}},
        }
    },
)
async def export_lists_in_clear(
    request: Request, p: Annotated[Principal, require(*PRIVACY)], body: ClearListExport
) -> Response:
    """Every allow/deny-list entry with the personal codes of subject entries in clear,
    the file ``POST /admin/lists/import`` takes whole (``GET /admin/lists/export`` names
    people by pseudonym). An un-anonymised export: the privacy role and a justification;
    the ``audit.access`` record (action ``export``: format, entries, how many name a
    person, never a code) is stored before the answer (decision 0031)."""
    entries = await asyncio.to_thread(_tokens(request).lists.entries)
    people = sum(1 for e in entries if e.kind == "subject")
    await record_access(
        request,
        p,
        "export",
        query=f"access lists, subjects in clear: {people}",
        returned=len(entries),
        fmt=body.format,
        target=Target("access_list", "export"),
    )
    return Response(export_lists(entries, body.format), media_type=EXPORT_MEDIA[body.format])


class FreeTextBody(Body):
    justification: str | None = None


def _stored_text(request: Request) -> StoredText:
    admin = admin_services(request)
    return StoredText(admin.services.engine, admin.fingerprinter.pseudonym)


async def _scan_recorded(
    request: Request, p: Principal, stored: StoredText, *, redact: bool
) -> list[dict[str, Any]]:
    """Scan, and record the scan (``audit.access``, action ``scan-free-text``) before
    anything is answered or changed."""
    findings = await asyncio.to_thread(stored.scan)
    event = scan_event(
        findings,
        redact=redact,
        actor=p.actor(),
        justification=str(request.state.admin_call.justification),
        interface="api",
        source=source_of(request),
        correlation=correlation_of(request),
    )
    await admin_services(request).services.audit.trail.emit(event)
    return [f.public() for f in findings]


@router.post("/free-text/scan", openapi_extra=X_ROLES)
async def scan_free_text(
    request: Request, p: Annotated[Principal, require(*PRIVACY)], body: FreeTextBody
) -> dict[str, Any]:
    """Values of the business database's free-text columns (justifications, reasons,
    names, change reasons, configuration request changes, job errors) that hold a valid
    personal code, typed before decision 0033 refused them: table, column, row id and
    the people's pseudonyms (``subject_refs``), never the code or the text. Recorded as
    ``audit.access`` (action ``scan-free-text``) before the answer (503 otherwise)."""
    return {"findings": await _scan_recorded(request, p, _stored_text(request), redact=False)}


@router.post("/free-text/redact", openapi_extra=X_ROLES)
async def redact_free_text(
    request: Request, p: Annotated[Principal, require(*PRIVACY)], body: FreeTextBody
) -> dict[str, Any]:
    """Scan as ``/free-text/scan`` does, then replace each code found (with its prefix)
    by ``[REDACTED:personal_code]``, one transaction per table; each changed row is
    recorded as ``admin.text.redact`` before its table commits. If the trail refuses,
    that table is left as it was and the answer is 503 (tables done before stay done
    and recorded: call it again). ``left`` counts values that changed meanwhile."""
    stored = _stored_text(request)
    findings = await _scan_recorded(request, p, stored, redact=True)
    trail = admin_services(request).services.audit.trail
    loop = asyncio.get_running_loop()
    why = str(request.state.admin_call.justification)
    source, correlation = source_of(request), correlation_of(request)

    def emit(rows: list[RowRedaction], failed: str | None = None) -> None:
        events = redaction_events(
            rows,
            actor=p.actor(),
            justification=why,
            interface="api",
            failed=failed,
            source=source,
            correlation=correlation,
        )
        # from the worker thread that holds the table's transaction: the writer runs here
        asyncio.run_coroutine_threadsafe(trail.emit_many(events), loop).result()

    def failed(rows: list[RowRedaction]) -> None:
        with contextlib.suppress(AuditUnavailable):
            emit(rows, failed="incomplete")

    def run() -> int:
        return sum(len(rows) for rows in stored.redact(emit, failed)) if findings else 0

    redacted = await asyncio.to_thread(run)
    left = await asyncio.to_thread(stored.scan) if findings else []
    return {"findings": findings, "redacted": redacted, "left": len(left)}
