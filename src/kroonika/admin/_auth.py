"""Who is calling the admin and audit APIs, may they, and why: authentication (TARA
session cookie or ``Authorization: Bearer kra_...``), role checks, the mandatory
justification of mutating calls, CSRF for cookie-authenticated changes, and the
``admin.request`` event of every call (refusals included) through :class:`AuditedRoute`,
and the ``admin:person`` rate limit once the caller is known.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from kroonika.admin._config import RuntimeConfig
from kroonika.admin._config_requests import ConfigRequests
from kroonika.admin._errors import (
    AdminError,
    Forbidden,
    JustificationMissing,
    NotAuthenticated,
    RequestInvalid,
)
from kroonika.admin._free_text import refuse_personal_code
from kroonika.admin._privacy import Eraser
from kroonika.admin._roles import ApiKey, ApiKeys, RoleStore, normalise_subject
from kroonika.admin._same_site import CROSS_SITE, SameSiteOnlyRoute
from kroonika.audit import (
    Actor,
    ActorType,
    AuditUnavailable,
    Correlation,
    Fingerprinter,
    Outcome,
    Source,
    StoreError,
    Target,
)
from kroonika.audit import events as ev
from kroonika.db import UNAVAILABLE
from kroonika.ratelimit import KeyKind, RateLimited, RateLimiter, RouteGroup, too_many_requests
from kroonika.security import Policy, emit_policy_violation
from kroonika.settings import ticket_regex

if TYPE_CHECKING:
    from kroonika.web._context import RequestInfo
    from kroonika.web._services import Services

log = logging.getLogger("kroonika.admin")

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: What a justification may hold besides printable characters (people paste ticket text).
_PLAIN_WHITESPACE = frozenset("\n\t")
SAFE_PARAMS = frozenset(
    {
        "jti",
        "ref",
        "entry_id",
        "client_id",
        "job",
        "key_id",
        "request_id",
        "event_id",
        "purpose",
        "status",
        "client",
        "list",
        "kind",
        "limit",
        "format",
        "type",
        "category",
        "outcome",
        "from",
        "to",
        "partial",
        "active",
        "role",
        "stream",
        "issued_after",
        "issued_before",
        "token_type",
        "approve",
    }
)
FINGERPRINTED = frozenset({"subject", "ip", "value", "actor", "correlation"})


#: How callers are named in business tables and answers (``Principal.label``).
PERSON_LABEL = "admin:"
KEY_LABEL = "api-key/"
#: The longest chain of keys made by keys that is followed (a longer one has no roles).
MAX_KEY_CHAIN = 8


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a person with a session, or an API key."""

    kind: str  # session | api_key
    roles: tuple[str, ...]
    subject: str | None = None
    key_id: str | None = None
    pseudonym: str | None = None
    session_secret: str | None = None
    #: a person's labels under the retired pseudonymisation keys (decision 0022)
    former_labels: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """Who acted, for business tables and API answers: never a clear personal code."""
        if self.kind == "api_key":
            return f"{KEY_LABEL}{self.key_id}"
        return f"{PERSON_LABEL}{self.pseudonym}"

    @property
    def labels(self) -> frozenset[str]:
        """Every label that names this caller: a person's under each pseudonymisation key
        Kroonika knows (what they made or asked for before a rotation is theirs too)."""
        return frozenset((self.label, *self.former_labels))

    def actor(self) -> Actor:
        if self.kind == "api_key":
            return Actor(ActorType.ADMIN, roles=self.roles, client_id=f"api-key/{self.key_id}")
        return Actor(ActorType.ADMIN, subject=self.subject, roles=self.roles)


@dataclass
class AdminServices:
    """What the admin and audit routes need, on ``app.state.admin``."""

    services: Services
    roles: RoleStore
    keys: ApiKeys
    config: RuntimeConfig
    fingerprinter: Fingerprinter
    jobs: Any = None  # kroonika.jobs.Scheduler (set by install)
    requests: ConfigRequests | None = None  # weakening changes awaiting approval
    eraser: Eraser | None = None  # the privacy officer's erasure (set by install)
    #: the retired pseudonymisation keys (``KROONIKA_PSEUDONYM_PREVIOUS_KEYS``)
    retired: tuple[Fingerprinter, ...] = ()

    def pseudonymiser(self, pseudonym: str) -> Fingerprinter | None:
        """The key a stored pseudonym was made with (its key id says which), or None
        when that key is no longer configured: then nobody can tell whom it names."""
        kid = pseudonym.partition(":")[0]
        return next((f for f in (self.fingerprinter, *self.retired) if f.kid == kid), None)


@dataclass
class CallState:
    """Per call, on ``request.state.admin_call`` (read by :class:`AuditedRoute`)."""

    principal: Principal | None = None
    justification: str | None = None


def request_info(request: Request) -> RequestInfo:
    """The request context the web middleware put in the scope (kroonika.web is not
    imported here: the app factory imports this package)."""
    info: RequestInfo | None = request.scope.get("state", {}).get("request_info")
    if info is None:
        raise RuntimeError("request context middleware is not installed")
    return info


def admin_services(request: Request) -> AdminServices:
    admin: AdminServices = request.app.state.admin
    return admin


def _call(request: Request) -> CallState:
    state: CallState | None = getattr(request.state, "admin_call", None)
    if state is None:
        state = CallState()
        request.state.admin_call = state
    return state


def source_of(request: Request) -> Source:
    info = request_info(request)
    return Source(ip=info.client_ip, user_agent=info.user_agent)


def correlation_of(request: Request) -> Correlation:
    info = request_info(request)
    return Correlation(request_id=info.request_id, trace_id=info.trace_id)


async def record_access(
    request: Request,
    p: Principal,
    action: str,
    *,
    query: str,
    returned: int,
    fmt: str = "json",
    result: str = "ok",
    interface: str = "api",
    target: Target | None = None,
) -> None:
    """Record one read of the trail as ``audit.access`` (decision 0002): what was asked,
    how many came back, in which format, the call's justification; raises when the
    trail cannot store it, so nothing read goes out unrecorded."""
    admin = admin_services(request)
    await admin.services.audit.trail.emit(
        ev.audit_access(
            outcome=Outcome.SUCCESS if result == "ok" else Outcome.FAILURE,
            reason=None if result == "ok" else result,
            actor=p.actor(),
            source=source_of(request),
            target=target or Target("audit_trail", action),
            correlation=correlation_of(request),
            action=action,
            query=query[:2000],
            returned=returned,
            format=fmt,
            result=result,
            interface=interface,
            justification=request.state.admin_call.justification,
        )
    )


async def authenticate(request: Request, admin: AdminServices) -> Principal:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise NotAuthenticated("Authorization must be Bearer <API key>")
        key = await asyncio.to_thread(admin.keys.authenticate, value.strip())
        if key is None:
            raise NotAuthenticated("unknown, expired or revoked API key")
        return Principal("api_key", await key_roles(admin, key), key_id=key.id)
    services = admin.services
    secret = request.cookies.get(services.cookies.session_name)
    if secret:
        info = request_info(request)
        from kroonika.sessions import RequestContext

        record = await services.sessions.current(
            secret,
            RequestContext(
                ip=info.client_ip,
                user_agent=info.user_agent,
                request_id=info.request_id,
                trace_id=info.trace_id,
            ),
        )
        if record is not None:
            roles = await asyncio.to_thread(admin.roles.roles_of, record.subject)
            return Principal(
                "session",
                roles,
                subject=record.subject,
                pseudonym=admin.fingerprinter.pseudonym(record.subject),
                session_secret=secret,
                former_labels=tuple(
                    f"{PERSON_LABEL}{f.pseudonym(record.subject)}" for f in admin.retired
                ),
            )
    raise NotAuthenticated("log in through TARA or send an API key")


async def roles_of_label(admin: AdminServices, label: str) -> set[str]:
    """The roles the person named ``admin:<pseudonym>`` holds now: the pseudonym is
    computed under the key it names, the current one or a retired one, so a rotation of
    the pseudonymisation key changes nobody's roles (decision 0022). None for any other
    label, a pseudonym no role holder has, or one under a key no longer configured."""
    if not label.startswith(PERSON_LABEL):
        return set()
    pseudonym = label[len(PERSON_LABEL) :]
    made_with = admin.pseudonymiser(pseudonym)
    if made_with is None:
        return set()
    holders = await asyncio.to_thread(admin.roles.holders)
    return {r for s, r, _, _ in holders if made_with.pseudonym(s) == pseudonym}


async def key_roles(admin: AdminServices, key: ApiKey) -> tuple[str, ...]:
    """The roles ``key`` may use now: those it was made with that its creator still holds
    (decision 0014). The creator is a person (``admin:<pseudonym>``), whose roles are read
    now, or a key (``api-key/<id>``), which must itself be usable and is followed the same
    way. A creator that cannot be resolved (unknown, revoked, expired, a cycle, a chain
    longer than :data:`MAX_KEY_CHAIN`, a person named under a pseudonymisation key that is
    no longer configured) leaves the key no roles: it fails closed."""
    allowed, creator, seen = set(key.roles), key.created_by, {key.id}
    now = int(admin.services.clock())
    for _ in range(MAX_KEY_CHAIN):
        if creator.startswith(PERSON_LABEL):
            return tuple(sorted(allowed & await roles_of_label(admin, creator)))
        if not creator.startswith(KEY_LABEL):
            return ()
        parent = await asyncio.to_thread(admin.keys.get, creator[len(KEY_LABEL) :])
        if parent is None or parent.id in seen or not parent.usable(now):
            return ()
        seen.add(parent.id)
        allowed &= set(parent.roles)
        creator = parent.created_by
    return ()


async def creators(admin: AdminServices, label: str) -> set[str]:
    """``label`` and everyone behind it: for an API key, the key that made it and so on up
    to the person who made the first (:data:`MAX_KEY_CHAIN` levels, revoked and expired
    keys included: a key stays its creator's even when it can no longer act)."""
    out, creator = {label}, label
    for _ in range(MAX_KEY_CHAIN):
        if not creator.startswith(KEY_LABEL):
            break
        key = await asyncio.to_thread(admin.keys.get, creator[len(KEY_LABEL) :])
        if key is None:
            break
        creator = key.created_by
        out.add(creator)
    return out


async def admin_now(admin: AdminServices, label: str) -> bool:
    """Whether the caller named ``label`` (a person or an API key) holds ``admin`` now."""
    if label.startswith(KEY_LABEL):
        key = await asyncio.to_thread(admin.keys.get, label[len(KEY_LABEL) :])
        now = int(admin.services.clock())
        return key is not None and key.usable(now) and "admin" in await key_roles(admin, key)
    return "admin" in await roles_of_label(admin, label)


def _header_text(value: str) -> str:
    """A header value as the client wrote it: Starlette decodes headers as Latin-1, so UTF-8
    text ("põhjendus") comes back as mojibake unless it is decoded again."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


async def justification_of(request: Request) -> str | None:
    header = request.headers.get("x-justification")
    if header:
        return _header_text(header)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return None
        if isinstance(body, dict) and isinstance(body.get("justification"), str):
            return str(body["justification"])
    return None


def printable(value: Any) -> bool:
    """Whether every text in ``value`` (a string, or lists and objects of them, keys
    included) is printable: :meth:`str.isprintable` refuses NUL, CR/LF and other controls,
    bidi, invisible and non-ASCII space characters."""
    if isinstance(value, str):
        return value.isprintable()
    if isinstance(value, list | tuple):
        return all(printable(v) for v in value)
    if isinstance(value, dict):
        return all(printable(k) and printable(v) for k, v in value.items())
    return True


def unprintable_params(request: Request) -> list[str]:
    """Where a path or query value is not :func:`printable`, as FastAPI names a parameter
    it refuses: ``path.<name>``, ``query.<name>`` for a parameter the route takes, and
    ``query`` alone for any other (its name is input too, and never repeated)."""
    where = [f"path.{k}" for k, v in request.path_params.items() if not printable(str(v))]
    taken: frozenset[str] | None = None
    for name, value in request.query_params.multi_items():
        if printable(name) and printable(value):
            continue
        if taken is None:
            taken = frozenset(_query_names(getattr(request.scope.get("route"), "dependant", None)))
        where.append(f"query.{name}" if name in taken else "query")
    return list(dict.fromkeys(where))


def _query_names(dependant: Any) -> Iterator[str]:
    """The query parameters a route (its dependencies included) takes, by their names."""
    if dependant is None:
        return
    yield from (p.alias for p in dependant.query_params)
    for sub in dependant.dependencies:
        yield from _query_names(sub)


#: Where an HTTP caller gives the justification; the CLI names its option instead.
HTTP_JUSTIFICATION = "X-Justification header or a justification field"


def check_justification(
    text: str | None, *, minimum: int, pattern: str | None, where: str = HTTP_JUSTIFICATION
) -> str:
    """The justification, stripped; :class:`JustificationMissing` says what is wrong (and
    ``where`` it is given), and :class:`PersonalCodeInText` refuses one that holds a
    personal code (decision 0033)."""
    value = (text or "").strip()
    if len(value) < minimum:
        raise JustificationMissing(
            f"a justification of at least {minimum} characters is required ({where})"
        )
    if len(value) > 2000 or not all(c.isprintable() or c in _PLAIN_WHITESPACE for c in value):
        # controls (CR, ESC, 8-bit CSI), bidi, invisible and line-separator characters
        # would forge or hide what the audit trail and its readers show
        raise JustificationMissing("a justification is plain text of at most 2000 characters")
    if pattern and ticket_regex(pattern).search(value) is None:
        raise JustificationMissing(
            f"the justification must name a ticket matching {pattern!r}",
            code="ticket_required",
        )
    refuse_personal_code(value, "justification")
    return value


def require(*roles: str, mutating: bool | None = None) -> Any:
    """A dependency: authenticated, holding one of ``roles``; mutating calls (by default
    every non-GET) carry a justification and, with a session cookie, a CSRF token. Only
    on a route of :class:`AuditedRoute`, which has refused a call with the session
    cookie that another site started before this runs (:mod:`._same_site`)."""

    async def dependency(request: Request) -> Principal:
        if not isinstance(request.scope.get("route"), SameSiteOnlyRoute):
            # a programming error: the route would take another site's requests
            raise RuntimeError(f"require() on {_template(request)}, not an AuditedRoute")
        admin = admin_services(request)
        call = _call(request)
        principal = await authenticate(request, admin)
        call.principal = principal
        await _limit(request, principal)
        if not set(principal.roles) & set(roles):
            await _violation(
                request,
                principal,
                Policy.ROLE_EXCEEDED,
                f"{request.method} {_template(request)} needing one of {','.join(sorted(roles))}",
            )
            raise Forbidden(f"needs one of the roles {sorted(roles)}")
        unprintable = unprintable_params(request)
        if unprintable:
            # NUL is a 500 in PostgreSQL; no identifier or filter holds controls
            raise RequestInvalid(
                f"{', '.join(unprintable)}: path and query values are printable characters only",
                fields=unprintable,
            )
        changes = request.method in MUTATING if mutating is None else mutating
        if changes:
            if principal.kind == "session":
                token = request.headers.get("x-csrf-token")
                if principal.session_secret is None or not admin.services.csrf_ok(
                    principal.session_secret, token
                ):
                    await _violation(
                        request,
                        principal,
                        Policy.CSRF_FAILED,
                        f"{request.method} {_template(request)} without a valid CSRF token",
                    )
                    raise Forbidden("X-CSRF-Token missing or wrong", code="csrf_failed")
            settings = admin.services.settings
            raw = await justification_of(request)
            try:
                call.justification = check_justification(
                    raw,
                    minimum=settings.admin_justification_min,
                    pattern=admin.config.get("admin.ticket_pattern"),
                )
            except JustificationMissing as exc:
                await _violation(
                    request,
                    principal,
                    Policy.JUSTIFICATION_MISSING,
                    f"{request.method} {_template(request)} without a justification",
                    reason=exc.code,
                )
                raise
        else:
            # optional on reads, but what is recorded is plain text like any justification
            raw = await justification_of(request)
            call.justification = (
                check_justification(raw, minimum=1, pattern=None) if raw and raw.strip() else None
            )
        return principal

    dependency.__name__ = "require_" + "_".join(roles)
    return Depends(dependency)


async def _limit(request: Request, principal: Principal) -> None:
    """The ``admin:person`` limit of an authenticated caller, a person or an API key, each
    counted on its own (the middleware has counted the address before authentication);
    over it raises ``RateLimited`` (429, Retry-After) and the limiter records the
    ``security.rate_limit`` event naming the caller as admin events do."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is None:
        return
    info = request_info(request)
    await limiter.hit(
        RouteGroup.ADMIN,
        ip=info.client_ip,
        person=principal.label,  # a pseudonym or an API key id, never a personal code
        request_id=info.request_id,
        user_agent=info.user_agent,
        kinds=(KeyKind.PERSON,),
        actor=principal.actor(),
    )


async def _violation(
    request: Request,
    principal: Principal,
    policy: Policy,
    attempted: str,
    *,
    reason: str | None = None,
) -> None:
    """The ``security.policy_violation`` of a refused admin call (who, from where, what)."""
    await emit_policy_violation(
        admin_services(request).services.audit.trail,
        policy,
        attempted=attempted,
        actor=principal.actor(),
        source=source_of(request),
        target=Target("admin_route", _template(request)),
        correlation=correlation_of(request),
        reason=reason,
    )


def _template(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path_format", None) or request.url.path


def _fingerprinted(fp: Fingerprinter, name: str, value: str) -> str:
    """A personal value as its fingerprint; a subject as the pseudonym the trail names
    that person with (``38001085718`` and ``EE38001085718`` alike), so an auditor can
    match the call to the person's other records."""
    if name == "subject":
        return "fp:" + fp.pseudonym(normalise_subject(value))
    return "fp:" + fp.fingerprint(name, value)


def summarise_params(request: Request, fp: Fingerprinter, body: bytes | None) -> str:
    """Parameter names with safe values; personal values (in a JSON body too) as
    fingerprints; the rest hidden."""

    def show(name: str, value: str) -> str:
        if name in SAFE_PARAMS:
            return value[:80]
        if name in FINGERPRINTED:
            return _fingerprinted(fp, name, value)
        return "[redacted]"

    out: dict[str, Any] = {}
    path = {k: show(k, str(v)) for k, v in request.path_params.items()}
    if path:
        out["path"] = path
    query = {k: show(k, v) for k, v in request.query_params.items()}
    if query:
        out["query"] = query
    if body:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            out["body_bytes"] = len(body)
        else:
            if isinstance(doc, dict):
                out["body"] = sorted(k for k in doc if k != "justification")[:50]
                refs = {
                    k: _fingerprinted(fp, k, v)
                    for k, v in doc.items()
                    if k in FINGERPRINTED and isinstance(v, str)
                }
                if refs:
                    out["body_refs"] = refs
            elif isinstance(doc, list):
                out["body_items"] = len(doc)
    return orjson.dumps(out, option=orjson.OPT_SORT_KEYS).decode()[:2000]


def error_response(request: Request, exc: AdminError) -> JSONResponse:
    body: dict[str, Any] = {
        "error": exc.code,
        "detail": str(exc),
        "request_id": request_info(request).request_id,
    }
    errors = getattr(exc, "errors", None)
    if errors:
        body["errors"] = errors
    fields = getattr(exc, "fields", None)
    if fields:
        body["fields"] = fields
    run = getattr(exc, "run", None)
    if run:
        body["run"] = run
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int):  # RFC 9110 section 10.2.3, with a 503
        body["retry_after"] = retry_after
        headers["Retry-After"] = str(retry_after)
    return JSONResponse(body, status_code=exc.status, headers=headers or None)


#: A database or the audit store cannot be read: the app answers 503 (see ``web._app``).
STORE_DOWN: tuple[type[Exception], ...] = (StoreError, *UNAVAILABLE)


class AuditedRoute(SameSiteOnlyRoute):
    """Every call of a route of this class ends in one ``admin.request`` event with the
    status it got (refusals included); :class:`AdminError` becomes its JSON answer. A
    call with the session cookie that another site started is refused first (403
    :data:`CROSS_SITE`, before the session is looked up)."""

    async def refuse_cross_site(self, request: Request) -> Response:
        """A ``csrf_failed`` violation (reason :data:`CROSS_SITE`) naming no one: who
        holds the cookie is not looked up for another site's request."""
        await emit_policy_violation(
            admin_services(request).services.audit.trail,
            Policy.CSRF_FAILED,
            attempted=f"{request.method} {self.path_format} from another site with the "
            "session cookie",
            actor=Actor(ActorType.ANONYMOUS),
            source=source_of(request),
            target=Target("admin_route", self.path_format),
            correlation=correlation_of(request),
            reason=CROSS_SITE,
        )
        raise Forbidden(
            "opened from another site: a call with the session cookie is made from "
            "this service's own pages, a bookmark or a typed address",
            code=CROSS_SITE,
        )

    def refusal(self, request: Request, exc: AdminError) -> Response:
        """The answer to a refused call (JSON; a page's route answers with a page)."""
        return error_response(request, exc)

    def rate_limited(self, request: Request, exc: RateLimited) -> Response:
        """The answer to a call over the ``admin:person`` limit (JSON; a page's route
        answers with a page)."""
        return too_many_requests(exc)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()
        template = self.path_format
        refusal, rate_limited = self.refusal, self.rate_limited

        async def handler(request: Request) -> Response:
            started = time.perf_counter()
            status = 500
            try:
                response = await original(request)
                status = response.status_code
            except AdminError as exc:
                status = exc.status
                response = refusal(request, exc)
            except RateLimited as exc:
                status = 429
                response = rate_limited(request, exc)
            except HTTPException as exc:
                await _record(request, template, exc.status_code, started)
                raise
            except RequestValidationError:
                await _record(request, template, 422, started)
                raise
            except AuditUnavailable:
                raise
            except STORE_DOWN:  # a store is down (503); the trail can still take the record
                await _record(request, template, 503, started)
                raise
            except Exception as exc:
                from kroonika.web._middleware import BodyTooLarge  # web imports this module

                await _record(
                    request, template, 413 if isinstance(exc, BodyTooLarge) else 500, started
                )
                raise
            await _record(request, template, status, started)
            return response

        return handler


def body_read(request: Request) -> bytes | None:
    """The body of ``request`` if the route read it (FastAPI for a body parameter,
    :func:`justification_of`), else None: the record never reads the stream itself (a
    refused call may not have been read, and reading it then could wait on the client).
    Starlette keeps a read body only in the private ``Request._body`` (no public "was it
    read"); ``tests/admin/test_body_read.py`` fails if that changes."""
    body = getattr(request, "_body", None)
    return body if isinstance(body, bytes) else None


async def _record(request: Request, template: str, status: int, started: float) -> None:
    admin = admin_services(request)
    call = _call(request)
    principal = call.principal
    body = body_read(request)
    duration = int((time.perf_counter() - started) * 1000)
    request.state.admin_recorded = True  # record_unrouted leaves this call alone
    await admin.services.audit.trail.emit(
        ev.admin_request(
            outcome=Outcome.SUCCESS if status < 400 else Outcome.FAILURE,
            reason=None if status < 400 else f"http_{status}",
            actor=principal.actor() if principal else Actor(ActorType.ANONYMOUS),
            source=source_of(request),
            target=Target("admin_route", template),
            correlation=correlation_of(request),
            method=request.method,
            route=template,
            status=status,
            duration_ms=duration,
            justification=call.justification,
            params=summarise_params(request, admin.fingerprinter, body),
            auth=principal.kind if principal else "none",
            api_key=principal.key_id if principal else None,
        )
    )
