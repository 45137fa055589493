"""The auditor's read API under ``/audit`` (role ``auditor``): search with the CLI's filters
and cursor pagination, JSONL streaming for large exports, one event with its RFC 9162
inclusion proof, the checkpoints, and the verifier's report. Every read of the trail is an
``audit.access`` event (what was asked, how many events came back, in which format) and
every call an ``admin.request``. Nothing here or anywhere else changes or deletes a record:
PUT/PATCH/DELETE on events are refused and recorded as a policy violation.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import itertools
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final, Literal

import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from kroonika.admin._auth import (
    AuditedRoute,
    Principal,
    admin_services,
    correlation_of,
    record_access,
    request_info,
    require,
    source_of,
)
from kroonika.admin._errors import NotFound, RequestInvalid
from kroonika.audit import Outcome, QueryInvalid, SqlAuditStore, Target, run_query
from kroonika.audit import Query as AuditQuery
from kroonika.audit import events as ev
from kroonika.audit.proofs import ProofUnavailable, event_proof
from kroonika.audit.query import find_event, time_bound
from kroonika.audit.signing import PublicKeys
from kroonika.audit.verify import Report, verify_store
from kroonika.security.policy import Decision, Policy

AUDITOR = ("auditor",)
router = APIRouter(prefix="/audit", tags=["audit"], route_class=AuditedRoute)
X_ROLES = {"x-roles": list(AUDITOR)}
EXPORT_CHUNK = 500
#: Below this many records ``POST /audit/verify`` checks the store in its own thread;
#: from it on, the verifier's worker processes (decision 0027). Starting them costs
#: more than they save below it: on the 2-core development VM at load 6-8, 300,000
#: records verified in 3.8-6.3 s in one thread and 4.1-6.1 s with the workers.
API_WORKERS_MIN_RECORDS: Final = 300_000


def _open(request: Request) -> SqlAuditStore:
    settings = admin_services(request).services.settings
    return SqlAuditStore(settings.resolved_audit_store_url(), read_only=True)


def encode_cursor(stream: str, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{stream}\x00{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stream, seq = raw.split("\x00", 1)
        return stream, int(seq)
    except (ValueError, UnicodeDecodeError):
        raise _invalid("cursor", "cursor is not one this API gave (next_cursor)") from None


def _invalid(param: str, detail: str, *also: str) -> RequestInvalid:
    """A refused query parameter, as FastAPI refuses one it checks itself: 422
    ``invalid_request`` with ``fields`` (``query.from``), the detail naming the parameter
    and never its value (decisions 0024, 0034)."""
    return RequestInvalid(detail, fields=[f"query.{p}" for p in (param, *also)])


def _time_param(name: str, value: str | None, *, end: bool) -> str | None:
    """An RFC 3339 bound in the stored form (stored times compare as strings)."""
    if value is None:
        return None
    try:
        return time_bound(value, end=end)
    except ValueError:
        raise _invalid(
            name, f"{name} must be an RFC 3339 time (2026-11-27T10:00:00Z) or date"
        ) from None


def _ip_param(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise _invalid("ip", "ip must be an address or network (192.0.2.0/24)") from None


@router.get(
    "/events",
    openapi_extra=X_ROLES,
    response_model=None,
    responses={
        200: {
            "description": "``json``: one page of events; ``jsonl``: every event, one a line",
            "content": {"application/json": {}, "application/x-ndjson": {}},
        }
    },
)
async def search_events(
    request: Request,
    p: Annotated[Principal, require(*AUDITOR)],
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
    type: Annotated[list[str] | None, Query()] = None,
    category: Annotated[list[str] | None, Query()] = None,
    outcome: str | None = None,
    actor: Annotated[list[str] | None, Query()] = None,
    correlation: str | None = None,
    ip: str | None = None,
    stream: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    format: Literal["json", "jsonl"] = "json",
) -> Response:
    """Search the trail. ``json``: one page of ``limit`` events and a ``next_cursor``;
    ``jsonl``: every matching event streamed, one per line (for large exports).
    ``type``, ``category`` and ``actor`` repeat: any of the values matches (several
    ``actor`` pseudonyms: one person under each pseudonymisation key, decision 0028)."""
    q = AuditQuery(
        from_time=_time_param("from", from_, end=False),
        to_time=_time_param("to", to, end=True),
        types=tuple(type or ()),
        categories=tuple(category or ()),
        outcome=outcome,
        actors=tuple(actor or ()),
        correlation=correlation,
        ip_prefix=_ip_param(ip),
        stream=stream,
        after=decode_cursor(cursor) if cursor else None,
    )
    if q.from_time and q.to_time and q.from_time > q.to_time:
        raise _invalid("from", "from is after to", "to")
    try:  # a value no event can have: refused before the trail is read (decision 0027)
        q.check()
    except QueryInvalid as exc:
        # the answer names the parameter, never the value (as every refusal, decision 0024)
        raise _invalid(exc.param, exc.without_value) from None
    store = await asyncio.to_thread(_open, request)
    if format == "json":
        try:
            bodies = await asyncio.to_thread(lambda: list(run_query(store, q, limit=limit)))
        finally:
            store.close()
        docs = [orjson.loads(b) for b in bodies]
        nxt = (
            encode_cursor(docs[-1]["stream"], docs[-1]["seq"])
            if len(docs) == limit and docs
            else None
        )
        await record_access(request, p, "query", query=q.describe(), returned=len(docs))
        return JSONResponse({"events": docs, "next_cursor": nxt})

    records = run_query(store, q)

    def next_chunk() -> list[bytes]:
        return list(itertools.islice(records, EXPORT_CHUNK))

    try:  # an unreadable store is a 503 before the 200 is sent, not a cut stream
        first = await asyncio.to_thread(next_chunk)
    except BaseException:
        store.close()
        raise

    async def lines() -> AsyncIterator[bytes]:
        n = 0
        result = "incomplete"
        chunk = first
        try:
            while chunk:
                n += len(chunk)
                yield b"".join(b + b"\n" for b in chunk)
                chunk = await asyncio.to_thread(next_chunk)
            result = "ok"
        finally:
            store.close()
            await record_access(
                request, p, "export", query=q.describe(), returned=n, fmt="jsonl", result=result
            )

    return StreamingResponse(lines(), media_type="application/x-ndjson")


def _proof(store: SqlAuditStore, event_id: str) -> dict[str, Any] | None:
    """The event and its inclusion proof as ``kroonika audit proof`` gives it
    (:func:`event_proof`); the proof is None, and ``proof_unavailable`` says why, for an
    event after the last signed head or in a damaged stream. None for no such event."""
    body = find_event(store, event_id)
    if body is None:
        return None
    doc = orjson.loads(body)
    try:
        proof, _ = event_proof(store, doc["stream"], doc["seq"])
    except ProofUnavailable as exc:
        return {"event": doc, "proof": None, "proof_unavailable": str(exc)}
    # ``path``: this answer's name for the hash list before it took the CLI's (0034).
    return {"event": doc, "proof": {**proof, "path": proof["proof"]}}


_HEX = r"^[0-9a-f]*$"


class StoredEvent(BaseModel):
    """A record as stored (the audit event format, auditor guide): the fields every
    sealed record has; the rest depend on its type and are passed on as stored."""

    model_config = ConfigDict(extra="allow")
    id: str
    stream: str
    seq: int
    time: str
    type: str
    category: str
    outcome: str
    severity: str


class SignedHead(BaseModel):
    """The signed tree head the proof is made against (its signature is the verifier's
    to check)."""

    model_config = ConfigDict(extra="forbid")
    time: str
    kid: str
    signature: str = Field(pattern=_HEX)


class InclusionProof(BaseModel):
    """The event's RFC 9162 (section 2.1.3) inclusion proof against its stream's latest
    signed tree head: the object ``kroonika audit proof`` prints, without its record."""

    model_config = ConfigDict(extra="forbid")
    stream: str
    seq: int = Field(ge=1)
    leaf_index: int = Field(ge=0, description="seq - 1")
    leaf_hash: str = Field(pattern=_HEX)
    tree_size: int = Field(ge=1)
    root: str = Field(pattern=_HEX)
    head: SignedHead
    proof: list[Annotated[str, Field(pattern=_HEX)]] = Field(
        description="the hash list (RFC 9162's inclusion path), bottom-up, as the CLI names it"
    )
    path: list[Annotated[str, Field(pattern=_HEX)]] = Field(
        deprecated=True,
        description="the same list under the name this answer had before (decision 0034): "
        "read proof",
    )


class EventWithProof(BaseModel):
    """One event and its inclusion proof; ``proof`` is null, and ``proof_unavailable``
    says why, for a record after the last signed head or in a damaged stream."""

    model_config = ConfigDict(extra="forbid")
    event: StoredEvent
    proof: InclusionProof | None
    proof_unavailable: str | None = Field(
        None,
        description="why there is no proof (only with proof null): the line "
        "kroonika audit proof prints before it exits 2",
    )


@router.get(
    "/events/{event_id}",
    openapi_extra=X_ROLES,
    response_model=EventWithProof,
    response_model_exclude_unset=True,
)
async def get_event(
    event_id: str, request: Request, p: Annotated[Principal, require(*AUDITOR)]
) -> dict[str, Any]:
    """One event and its inclusion proof against the stream's latest signed tree head."""
    store = await asyncio.to_thread(_open, request)
    try:
        found = await asyncio.to_thread(_proof, store, event_id[:64])
    finally:
        store.close()
    await record_access(request, p, "read", query=f"id={event_id[:64]}", returned=1 if found else 0)
    if found is None:
        raise NotFound("event")  # the id is not echoed (decision 0024)
    return found


@router.get("/checkpoints", openapi_extra=X_ROLES)
async def checkpoints(
    request: Request, p: Annotated[Principal, require(*AUDITOR)], stream: str | None = None
) -> dict[str, Any]:
    """Every stored checkpoint (signed tree heads chained to their predecessor)."""
    store = await asyncio.to_thread(_open, request)
    try:
        cps = await asyncio.to_thread(store.checkpoints, stream)
    finally:
        store.close()
    await record_access(
        request, p, "checkpoints", query=f"stream={stream}" if stream else "all", returned=len(cps)
    )
    return {"checkpoints": [orjson.loads(cp.to_json()) for cp in cps]}


def _records(store: SqlAuditStore) -> int | None:
    """How many records the store's streams hold by their newest blocks, or None if that
    cannot be read (the verifier then reports what it finds)."""
    try:
        states = [store.stream_state(stream) for stream in store.streams()]
    except Exception:  # noqa: BLE001  (only chooses how to verify; the verifier reports)
        return None
    return sum(state.size for state in states if state is not None)


def _verify(store: SqlAuditStore, keys: PublicKeys) -> Report:
    """The verifier's report; worker processes only for a store large enough to gain
    from them (the report is the same either way)."""
    records = _records(store)
    small = records is not None and records < API_WORKERS_MIN_RECORDS
    return verify_store(store, keys, workers=1 if small else None)


@router.post("/verify", openapi_extra=X_ROLES)
async def verify(
    request: Request, p: Annotated[Principal, require(*AUDITOR, mutating=False)]
) -> dict[str, Any]:
    """Run the verifier over the whole store and return its report."""
    admin = admin_services(request)
    keys = admin.services.audit.keyring.public_keys()
    store = await asyncio.to_thread(_open, request)
    try:
        report = await asyncio.to_thread(_verify, store, keys)
    finally:
        store.close()
    await record_access(
        request,
        p,
        "verify",
        query="all",
        returned=report.records,
        result="ok" if report.intact else "damaged",
    )
    out: dict[str, Any] = report.to_dict()
    return out


async def _immutable(request: Request) -> Response:
    admin = admin_services(request)
    await admin.services.audit.trail.emit(
        ev.security_policy_violation(
            outcome=Outcome.FAILURE,
            reason="audit_immutable",
            source=source_of(request),
            target=Target("audit_trail", request.url.path[:200]),
            correlation=correlation_of(request),
            policy=Policy.AUDIT_TRAIL_IMMUTABLE.value,
            attempted=f"{request.method} /audit/events",
            decision=Decision.DENIED.value,
        )
    )
    return JSONResponse(
        {
            "error": "audit_records_are_immutable",
            "detail": "audit records cannot be changed or deleted",
            "request_id": request_info(request).request_id,
        },
        status_code=405,
        headers={"Allow": "GET"},
    )


#: Methods the trail's records refuse with a 405 of their own (and a policy violation);
#: a 405's ``Allow`` does not offer them (see ``kroonika.web._app``).
REFUSED_WRITES: Final = ("PUT", "PATCH", "DELETE", "POST")
RECORDS_PATH: Final = re.compile(r"/audit/events(?:/[^/]+)?")


@router.api_route("/events/{event_id}", methods=list(REFUSED_WRITES), include_in_schema=False)
async def alter_event(event_id: str, request: Request) -> Response:
    """Refused for everyone: audit records cannot be altered or deleted."""
    return await _immutable(request)


@router.api_route("/events", methods=list(REFUSED_WRITES), include_in_schema=False)
async def alter_events(request: Request) -> Response:
    """Refused for everyone: audit records cannot be written, altered or deleted here."""
    return await _immutable(request)
