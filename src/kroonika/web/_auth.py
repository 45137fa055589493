"""``/auth/*``: the TARA login flow and the citizen's sessions, every step audited.

A login attempt gives exactly one ``auth.login`` and one ``auth.flow.transition`` per step
(``none → started → redirected → callback_received → code_exchanged → id_token_verified →
session_created``, or ``… → failed``), all sharing ``correlation.flow_id``. A callback that
names no known flow gets a flow id of its own, so it is still one attempt with one event.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import html
import logging
import re
import secrets
import uuid
from dataclasses import dataclass, field, replace
from typing import Annotated, Any
from urllib.parse import SplitResult, urlsplit

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.exceptions import HTTPException

from kroonika.admin._same_site import CROSS_SITE, SameSiteOnlyRoute, same_site_only
from kroonika.audit import (
    Actor,
    ActorType,
    AuditEvent,
    AuditTrail,
    AuditUnavailable,
    Correlation,
    Outcome,
    PersonalData,
    Severity,
    Source,
    Target,
    ThreatMatch,
)
from kroonika.audit import events as ev
from kroonika.audit.enrich import FeedAction, ThreatIntel
from kroonika.db import UNAVAILABLE
from kroonika.ratelimit import KeyKind, RateLimiter, RouteGroup
from kroonika.sessions import (
    EndReason,
    FlowStatus,
    LoginFlow,
    Lookup,
    RequestContext,
    SessionIdentity,
    SessionRecord,
)
from kroonika.tara import (
    ACR_ORDER,
    METHODS,
    Acr,
    ClientRejected,
    CodeExchangeFailed,
    DiscoveryError,
    IdTokenInvalid,
    KeySetChange,
    KeySetListener,
    RequestRejected,
    TaraError,
    VerifiedIdToken,
    acr_rank,
    digest,
)
from kroonika.tokens import AccessLists, ListSubject
from kroonika.web import routes_dashboard as dashboard
from kroonika.web._login_page import LOGIN, VARY, again_link, answer, wants_page
from kroonika.web._policy import REASON_POLICIES, violation
from kroonika.web._services import Services, ServicesDep, request_context

log = logging.getLogger("kroonika.web.auth")
router = APIRouter(prefix="/auth", tags=["auth"])

_LOCALES = ("et", "en", "ru")
_UI_LOCALES_MAX = 64
_RETURN_TO_MAX = 1024
_IDP_ERROR = re.compile(r"[a-z_]{1,64}")


def state_for(binding: str) -> str:
    """The ``state`` is the hash of the browser-bound cookie value."""
    return base64.urlsafe_b64encode(hashlib.sha256(binding.encode()).digest()).rstrip(b"=").decode()


def _error(status: int, error: str, request: Request, **extra: Any) -> JSONResponse:
    info = request.scope.get("state", {}).get("request_info")
    body = {"error": error, **extra}
    if info is not None:
        body["request_id"] = info.request_id
    return JSONResponse(body, status_code=status)


def _refusal(
    status: int, error: str, request: Request, *, again: str = LOGIN, **extra: Any
) -> Response:
    """A login route's refusal: :func:`_error`'s JSON for an API client, the failure page
    for a person's browser (decision 0015, 2026-11-28)."""
    code = extra.get("reason", error)
    return answer(
        request,
        _error(status, error, request, **extra),
        code,
        detail=extra.get("detail"),
        again=again,
    )


def safe_return_to(value: str | None, allowed: list[str]) -> str | None:
    """A same-site path (or an allow-listed absolute URL prefix); None if not allowed."""
    if value is None or value == "":
        return "/"
    if len(value) > _RETURN_TO_MAX or "\\" in value or any(ord(c) < 0x20 for c in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        # Origin by origin, not by string prefix: "https://app.example" must not admit
        # "https://app.example.evil.example/" or "https://app.example@evil.example/".
        return (
            value
            if any(
                a.startswith(("http://", "https://")) and _within(parts, urlsplit(a))
                for a in allowed
            )
            else None
        )
    if not value.startswith("/") or value.startswith("//"):
        return None
    return (
        value
        if any(not a.startswith(("http://", "https://")) and value.startswith(a) for a in allowed)
        else None
    )


def _within(target: SplitResult, allowed: SplitResult) -> bool:
    """Same scheme, same host and port (no user info), and under the allowed path."""
    return (
        target.scheme.lower() == allowed.scheme.lower()
        and target.netloc.lower() == allowed.netloc.lower()
        and (target.path or "/").startswith(allowed.path or "/")
    )


def _configured_methods(services: Services) -> tuple[str, ...]:
    scoped = tuple(m for m in METHODS if m in services.settings.tara_scopes)
    return scoped or METHODS


# --- GET /auth/login ---------------------------------------------------------------------


def _shown(value: str, limit: int) -> str:
    """At most ``limit`` characters of a refused value for a violation's ``attempted``,
    controls escaped (never for an answer: answers do not repeat what was sent)."""
    return value[:limit].encode("unicode_escape").decode("ascii")


@router.get("/login", response_model=None)
async def login(
    request: Request,
    services: ServicesDep,
    acr: str | None = None,
    method: Annotated[list[str] | None, Query()] = None,
    ui_locales: str | None = None,
    return_to: str | None = None,
) -> Response:
    """Start a login: a flow stored server side, a browser-bound state, 302 to TARA.

    The parameters are checked here, not by FastAPI: a refused start (a bad or over-long
    value included) is still an attempt with its one failed ``auth.login``."""
    settings = services.settings
    ctx = request_context(request)
    refused = _Attempt(services, ctx, flow_id=str(uuid.uuid4()))
    minimum: Acr = settings.tara_acr_minimum
    if acr is not None and acr not in ACR_ORDER:
        await _refuse_start(request, refused, "invalid_acr", "login with an unknown acr")
        return _refusal(400, "invalid_request", request, detail="acr is low, substantial or high")
    wanted: Acr = minimum
    if acr is not None and acr_rank(acr) > acr_rank(minimum):
        wanted = ACR_ORDER[acr_rank(acr)]
    configured = _configured_methods(services)
    methods = tuple(dict.fromkeys(m.lower() for m in (method or ())))
    if any(m not in configured for m in methods):
        asked = ",".join(_shown(m, 16) for m in methods if m not in configured)
        await _refuse_start(request, refused, "method_not_allowed", f"login with method {asked}")
        return _refusal(400, "invalid_request", request, detail=f"method is one of {configured}")
    if ui_locales is not None and len(ui_locales) > _UI_LOCALES_MAX:
        await _refuse_start(request, refused, "invalid_request", "login with over-long ui_locales")
        return _refusal(
            400,
            "invalid_request",
            request,
            detail=f"ui_locales is at most {_UI_LOCALES_MAX} characters",
        )
    locale = next((loc for loc in (ui_locales or "").split() if loc in _LOCALES), _LOCALES[0])
    target = safe_return_to(return_to, settings.login_return_to_allowed)
    if target is None:
        shown = _shown(return_to or "", 200)
        await _refuse_start(request, refused, "invalid_return_to", f"login with return_to {shown}")
        return _refusal(400, "invalid_return_to", request)
    # The database gone (access lists, the flow store) still concludes the attempt
    # with its one failed auth.login; the error goes on to the 503 handler.
    try:
        denied = await _source_denied(request, services, ctx.ip)
        if denied is not None:
            await _refuse_start(
                request,
                refused,
                denied.reason,
                f"login start from {denied.what}",
                threat=denied.threat,
            )
            return _refusal(403, "access_denied", request, reason=denied.reason)

        now = int(services.clock())
        binding = secrets.token_urlsafe(32)
        state = state_for(binding)
        nonce = secrets.token_urlsafe(32)
        flow = LoginFlow(
            flow_id=str(uuid.uuid4()),
            state_digest=digest(state),
            nonce_digest=digest(nonce),
            acr_requested=wanted,
            methods=methods,
            ui_locales=locale,
            return_to=target,
            status=FlowStatus.STARTED,
            created_at=now,
            expires_at=now + settings.login_flow_ttl_s,
        )
        await asyncio.to_thread(services.flows.add, flow)
        attempt = refused = _Attempt(services, ctx, flow_id=flow.flow_id, flow=flow)
        await attempt.step(FlowStatus.STARTED)
        try:
            url = await services.tara.authorization_url(
                state=state,
                nonce=nonce,
                acr=wanted,
                methods=methods,
                ui_locales=locale,
            )
        except TaraError as exc:
            # TARA down is the same answer here as at the callback (decision 0019).
            if isinstance(exc, DiscoveryError):
                log.error(
                    "login could not start: %s: %s; %s flow_id=%s",
                    exc.reason,
                    exc,
                    _DISCOVERY_FIX.get(exc.cause, _DISCOVERY_FIX["issuer"]),
                    flow.flow_id,
                )
            else:
                log.warning("login could not start: %s flow_id=%s", exc.reason, flow.flow_id)
            await attempt.fail(exc.reason)
            await asyncio.to_thread(services.flows.set_status, flow.flow_id, FlowStatus.FAILED)
            return _refusal(502, "login_failed", request, reason=exc.reason)
        await asyncio.to_thread(services.flows.set_status, flow.flow_id, FlowStatus.REDIRECTED)
        await attempt.step(FlowStatus.REDIRECTED)
        response = RedirectResponse(url, status_code=302)
        _make_room_for_a_flow(request, response, services, flow.flow_id)
        response.set_cookie(
            _flow_cookie_name(services, state),
            f"{now}.{binding}",
            max_age=settings.login_flow_ttl_s,
            path="/auth",
            httponly=True,
            secure=services.cookies.secure,
            samesite="lax",
            domain=services.cookies.domain,
        )
        return response
    except UNAVAILABLE as exc:
        if not refused.finished:
            log.error(
                "login start failed: database_unavailable (%s) flow_id=%s",
                type(exc).__name__,
                refused.flow_id,
            )
            with contextlib.suppress(AuditUnavailable):
                await refused.fail("database_unavailable")
        raise


# --- the flow cookies --------------------------------------------------------------------
#
# Each pending login of a browser has a cookie of its own, so logins started in several
# tabs do not overwrite each other: named ``<flow_name>_<the first 16 characters of the
# state>`` (the state is in the browser's URLs anyway), holding ``<started>.<binding>``
# with ``state == state_for(binding)``. A browser keeps at most
# ``login_pending_flows_max`` of them; starting one more drops the oldest.

_TAG = 16
_STARTED = re.compile(r"[0-9]{1,12}")  # ASCII only: "²".isdigit() holds, int("²") fails
#: A tag the service writes (base64url). Another name under the prefix is left alone: it
#: cannot be ours, and Set-Cookie cannot carry every name a Cookie header can.
_TAG_FORM = re.compile(rf"[A-Za-z0-9_-]{{{_TAG}}}")


def _flow_cookie_name(services: Services, state: str) -> str:
    return f"{services.cookies.flow_name}_{state[:_TAG]}"


def _flow_binding(request: Request, services: Services, state: str) -> str | None:
    """The binding this browser holds for ``state`` (or the single cookie of a login
    started before flow cookies were per state), unchecked."""
    value = request.cookies.get(_flow_cookie_name(services, state))
    if value is not None:
        _, dot, binding = value.partition(".")
        return binding if dot else None
    return request.cookies.get(services.cookies.flow_name)


def _pending_flow_cookies(request: Request, services: Services) -> list[tuple[int, str]]:
    """This browser's flow cookies as (started, name), oldest first; an unreadable one
    counts as the oldest (it is dropped first)."""
    prefix = services.cookies.flow_name + "_"
    pending = []
    for name, value in request.cookies.items():
        if name.startswith(prefix) and _TAG_FORM.fullmatch(name, len(prefix)):
            started, _, _ = value.partition(".")
            readable = _STARTED.fullmatch(started) is not None
            pending.append((int(started) if readable else -1, name))
    return sorted(pending)


def _make_room_for_a_flow(
    request: Request, response: Response, services: Services, flow_id: str
) -> None:
    pending = _pending_flow_cookies(request, services)
    excess = len(pending) - (services.settings.login_pending_flows_max - 1)
    if excess <= 0:
        return
    log.info(
        "browser holds %d pending logins, dropping the oldest %d flow_id=%s",
        len(pending),
        excess,
        flow_id,
    )
    for _, name in pending[:excess]:
        _delete_flow_cookie(response, services, name)


# --- GET /auth/callback ------------------------------------------------------------------


class _Failed(Exception):
    def __init__(
        self,
        reason: str,
        status: int = 400,
        *,
        attempted: str | None = None,
        threat: list[ThreatMatch] | None = None,
        headers: dict[str, str] | None = None,
        explain: str | None = None,
        **details: Any,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.explain = explain  # the answer's ``detail``, never a value that was sent
        self.attempted = attempted
        self.threat = threat
        self.headers = headers
        self.details = details


@dataclass(frozen=True, slots=True)
class _Denied:
    reason: str  # threat_intel_deny | denylisted_ip | denylisted_subject
    what: str  # for the violation's ``attempted``
    threat: list[ThreatMatch] | None = None


async def _source_denied(
    request: Request, services: Services, ip: str | None, subject: str | None = None
) -> _Denied | None:
    """Threat intelligence (feeds whose action is ``deny_login``), then the denylist
    (IP, and the person once known). Allowlists govern tokens, not logins."""
    intel: ThreatIntel | None = getattr(request.app.state, "threat_intel", None)
    if intel is not None and ip is not None:
        matches = await asyncio.to_thread(intel.denies, ip, FeedAction.DENY_LOGIN)
        if matches:
            feeds = ",".join(sorted({m.feed for m in matches}))
            return _Denied(
                "threat_intel_deny",
                f"an address listed by {feeds}",
                [m.threat_match() for m in matches],
            )
    tokens = getattr(request.app.state, "tokens", None)
    lists: AccessLists | None = getattr(tokens, "lists", None)
    if lists is None or (ip is None and subject is None):
        return None
    decision = await asyncio.to_thread(lists.check, ListSubject(subject=subject, ip=ip))
    if decision.reason in ("denylisted_ip", "denylisted_subject"):
        who = (
            "a denylisted address" if decision.reason == "denylisted_ip" else "a denylisted person"
        )
        return _Denied(decision.reason, who)
    return None


def _violations(
    request: Request,
    attempt: _Attempt,
    reason: str,
    attempted: str,
    threat: list[ThreatMatch] | None = None,
) -> tuple[AuditEvent, ...]:
    policy = REASON_POLICIES.get(reason)
    if policy is None:
        return ()
    return (
        violation(
            request,
            policy,
            attempted=attempted,
            actor=attempt._actor(),
            target=Target("login_flow", attempt.flow_id),
            flow_id=attempt.flow_id,
            threat=threat,
        ),
    )


async def _refuse_start(
    request: Request,
    attempt: _Attempt,
    reason: str,
    attempted: str,
    threat: list[ThreatMatch] | None = None,
) -> None:
    """A login refused before it started: one failed attempt and its violation."""
    log.info("login refused at start: %s flow_id=%s", reason, attempt.flow_id)
    await attempt.fail(reason, extra=_violations(request, attempt, reason, attempted, threat))


@dataclass
class _Attempt:
    """One login attempt's audit events: transitions and the single ``auth.login``."""

    services: Services
    ctx: RequestContext
    flow_id: str
    flow: LoginFlow | None = None
    state: str = FlowStatus.NONE
    identity: VerifiedIdToken | None = None
    subject: str | None = None  # of an authentic ID token refused by policy (acr, amr)
    method: str | None = None
    acr: str | None = None
    bound: bool = False  # the flow is this browser's (its cookie matched the state)
    finished: bool = False
    pending: list[AuditEvent] = field(default_factory=list)

    def _source(self) -> Source:
        return Source(ip=self.ctx.ip, user_agent=self.ctx.user_agent)

    def _corr(self, session_ref: str | None = None) -> Correlation:
        return Correlation(
            request_id=self.ctx.request_id,
            trace_id=self.ctx.trace_id,
            flow_id=self.flow_id,
            session_ref=session_ref,
        )

    def _actor(self) -> Actor:
        if self.identity is not None:
            return Actor(ActorType.USER, subject=self.identity.subject)
        if self.subject is not None:
            return Actor(ActorType.USER, subject=self.subject)
        return Actor(ActorType.ANONYMOUS)

    def transition(self, to: str) -> AuditEvent:
        event = ev.auth_flow_transition(
            actor=self._actor(),
            source=self._source(),
            target=Target("login_flow", self.flow_id),
            correlation=self._corr(),
            from_state=str(self.state),
            to_state=str(to),
            method=self.method,
            acr=self.acr,
        )
        self.state = str(to)
        return event

    async def step(self, to: str) -> None:
        await self.services.audit.trail.emit(self.transition(to))

    def _login(self, outcome: Outcome, reason: str | None, **details: Any) -> AuditEvent:
        self.finished = True
        flow = self.flow
        return ev.auth_login(
            outcome=outcome,
            reason=reason,
            actor=self._actor(),
            source=self._source(),
            target=Target("login_flow", self.flow_id),
            correlation=self._corr(details.pop("session_ref", None)),
            method=self.method,
            acr=self.acr,
            acr_requested=flow.acr_requested if flow else None,
            amr=list(self.identity.amr) if self.identity else None,
            country=self.identity.country if self.identity else None,
            idp="tara",
            **details,
        )

    async def fail(
        self, reason: str, *, extra: tuple[AuditEvent, ...] = (), **details: Any
    ) -> None:
        """The failed transition, the attempt's one ``auth.login`` and any ``extra``
        (the policy violation) in one batch."""
        await self.services.audit.trail.emit_many(
            [
                self.transition(FlowStatus.FAILED),
                self._login(Outcome.FAILURE, reason, **details),
                *extra,
            ]
        )

    async def succeed(self, session_ref: str) -> None:
        """The last transition and the successful ``auth.login``, which records what TARA
        said about the person (encrypted into ``pii`` by the trail)."""
        who = self.identity
        personal = (
            PersonalData(
                given_name=who.given_name,
                family_name=who.family_name,
                email=who.email,
                phone=who.phone_number,
            )
            if who is not None
            else None
        )
        await self.services.audit.trail.emit_many(
            [
                self.transition(FlowStatus.SESSION_CREATED),
                self._login(Outcome.SUCCESS, None, session_ref=session_ref, personal=personal),
            ]
        )


#: Errors TARA sends the browser back with that are not the citizen's doing (TARA.md;
#: RFC 6749 section 4.1.2.1): TARA failing, or refusing what this service asked for.
#: ``user_cancel`` (and a code TARA does not send) stays the citizen's 400.
_IDP_FAILED = frozenset({"server_error", "temporarily_unavailable"})
_REQUEST_REFUSED = frozenset(
    {
        "invalid_scope",
        "invalid_request",
        "invalid_state",
        "unsupported_response_type",
        "unauthorized_client",
    }
)
#: The callback's own parameters: each at most once.
_CALLBACK_PARAMS = ("state", "code", "error", "error_description")
#: Our state is 43 characters and TARA's codes are short: anything far longer is no
#: callback of ours, and is refused before a database lookup or a request to TARA.
_STATE_MAX = 256
_CODE_MAX = 2048
#: Refusals that leave this browser's pending flow as it was (its cookie stays).
_FLOW_UNTOUCHED = frozenset(
    {"state_not_bound", "state_unknown", "state_missing", "state_invalid", "duplicate_parameter"}
)


@router.get("/callback", response_model=None)
async def callback(request: Request, services: ServicesDep) -> Response:
    """Complete a login: every check, then a session and a redirect to ``return_to``."""
    params = request.query_params
    ctx = request_context(request)
    attempt = _Attempt(services, ctx, flow_id=str(uuid.uuid4()))
    consumed = False
    try:
        response = await _complete(request, services, attempt, params)
        consumed = True
        return response
    except _Failed as failed:
        consumed = attempt.flow is not None and attempt.flow.consumed_at is not None
        log.info("login failed: %s flow_id=%s", failed.reason, attempt.flow_id)
        extra = _violations(
            request,
            attempt,
            failed.reason,
            failed.attempted or f"login callback refused: {failed.reason}",
            failed.threat,
        )
        await attempt.fail(failed.reason, extra=extra, **failed.details)
        if attempt.flow is not None and failed.reason not in (
            Lookup.REPLAYED.value,
            "state_not_bound",
        ):
            await asyncio.to_thread(services.flows.set_status, attempt.flow_id, FlowStatus.FAILED)
        extra_body = {"detail": failed.explain} if failed.explain else {}
        response = _refusal(
            failed.status,
            "login_failed",
            request,
            again=_start_again(services, attempt),
            reason=failed.reason,
            **extra_body,
        )
        if failed.headers:
            response.headers.update(failed.headers)
        if failed.reason not in _FLOW_UNTOUCHED:
            consumed = True
        if consumed:
            _clear_flow_cookie(request, response, services, params.get("state"))
        return response
    except Exception as exc:
        # A crash (a bug, the database gone) still concludes the attempt with its one
        # failed auth.login (reason database_unavailable or internal_error), since a used
        # flow is never looked at again; the error itself goes on to the 503/500 handler.
        if not attempt.finished:
            reason = "database_unavailable" if isinstance(exc, UNAVAILABLE) else "internal_error"
            log.error(
                "login failed: %s (%s) flow_id=%s", reason, type(exc).__name__, attempt.flow_id
            )
            with contextlib.suppress(AuditUnavailable):
                await attempt.fail(reason)
        raise


def _start_again(services: Services, attempt: _Attempt) -> str:
    """Where the failure page's link starts a login: for this browser's own flow, the
    same target and level of assurance; for any other, a plain login (decision 0015)."""
    flow = attempt.flow
    if flow is None or not attempt.bound:
        return LOGIN
    acr = flow.acr_requested if flow.acr_requested != services.settings.tara_acr_minimum else None
    return again_link(flow.return_to if flow.return_to != "/" else None, acr)


def _clear_flow_cookie(
    request: Request, response: Response, services: Services, state: str | None
) -> None:
    """Drop the cookie of the login that ``state`` names (and a single cookie of before)."""
    if state and _TAG_FORM.match(state):
        name = _flow_cookie_name(services, state)
        if name in request.cookies:
            _delete_flow_cookie(response, services, name)
    if services.cookies.flow_name in request.cookies:
        _delete_flow_cookie(response, services, services.cookies.flow_name)


def _delete_flow_cookie(response: Response, services: Services, name: str) -> None:
    response.delete_cookie(
        name,
        path="/auth",
        secure=services.cookies.secure,
        httponly=True,
        samesite="lax",
        domain=services.cookies.domain,
    )


async def _complete(
    request: Request, services: Services, attempt: _Attempt, params: Any
) -> Response:
    now = int(services.clock())
    repeated = next((n for n in _CALLBACK_PARAMS if len(params.getlist(n)) > 1), None)
    if repeated is not None:
        # Which of two values is TARA's is unknowable (parameter pollution): touch no
        # flow and send no code to TARA.
        await attempt.step(FlowStatus.CALLBACK_RECEIVED)
        raise _Failed("duplicate_parameter", explain=f"{repeated} occurs more than once")
    state = params.get("state")
    if not state or len(state) > _STATE_MAX:
        await attempt.step(FlowStatus.CALLBACK_RECEIVED)
        raise _Failed(
            "state_invalid" if state else "state_missing",
            explain=f"state is at most {_STATE_MAX} characters" if state else None,
        )
    lookup, flow = await asyncio.to_thread(services.flows.find, digest(state), now)
    if flow is None:
        await attempt.step(FlowStatus.CALLBACK_RECEIVED)
        raise _Failed(Lookup.UNKNOWN.value)
    attempt.flow_id = flow.flow_id
    attempt.flow = flow
    attempt.state = flow.status
    await attempt.step(FlowStatus.CALLBACK_RECEIVED)
    if lookup is not Lookup.OK:
        raise _Failed(
            lookup.value,
            attempted="login callback with a used state" if lookup is Lookup.REPLAYED else None,
        )
    binding = _flow_binding(request, services, state)
    if not binding or not hmac.compare_digest(state_for(binding), state):
        raise _Failed("state_not_bound")
    attempt.bound = True
    if not await asyncio.to_thread(services.flows.consume, flow.flow_id, now):
        raise _Failed(Lookup.REPLAYED.value, attempted="login callback with a used state")
    attempt.flow = flow = replace(flow, consumed_at=now)

    error = params.get("error")
    if error is not None:
        code = error if _IDP_ERROR.fullmatch(error) else "unrecognised"
        if code == "user_cancel":
            raise _Failed("user_cancel")
        if code in _IDP_FAILED:
            log.warning("TARA could not serve the login: %s flow_id=%s", code, flow.flow_id)
            raise _Failed("idp_unavailable", 502, idp_error=code)
        if code in _REQUEST_REFUSED:
            log.error(
                "TARA refused this service's authorization request: %s; check "
                "KROONIKA_TARA_SCOPES, KROONIKA_TARA_CLIENT_ID and KROONIKA_TARA_REDIRECT_URI "
                "against the registration with RIA flow_id=%s",
                code,
                flow.flow_id,
            )
            raise _Failed("idp_request_rejected", 502, idp_error=code)
        raise _Failed("idp_error", idp_error=code)
    code_value = params.get("code")
    if not code_value or len(code_value) > _CODE_MAX:
        raise _Failed(
            "code_invalid" if code_value else "code_missing",
            explain=f"code is at most {_CODE_MAX} characters" if code_value else None,
        )
    denied = await _source_denied(request, services, attempt.ctx.ip)
    if denied is not None:
        raise _Failed(
            denied.reason, 403, attempted=f"login from {denied.what}", threat=denied.threat
        )
    code_ref = services.audit.fingerprinter.fingerprint("authorization_code", code_value)
    if services.used_codes.seen(code_ref, now):
        raise _Failed("code_reused", attempted="login callback with an already used code")

    try:
        tokens = await services.tara.exchange_code(code_value)
    except TaraError as exc:
        _log_exchange_failure(exc, flow.flow_id)
        error = exc.error if isinstance(exc, CodeExchangeFailed) else None
        raise _Failed(exc.reason, status=502 if exc.upstream else 400, idp_error=error) from None
    services.used_codes.add(code_ref, now)
    await attempt.step(FlowStatus.CODE_EXCHANGED)

    methods = flow.methods or _configured_methods(services)
    try:
        verified = await services.tara.verify(
            tokens.id_token,
            nonce_digest=flow.nonce_digest,
            acr_minimum=flow.acr_requested,  # type: ignore[arg-type]
            methods=methods,
            state=state,
        )
    except TaraError as exc:
        if isinstance(exc, IdTokenInvalid) and exc.upstream:
            _log_id_token_failure(exc, flow.flow_id, services.settings.tara_leeway_s)
            raise _Failed(
                exc.reason, 502, explain=f"TARA's ID token failed the {exc.check} check"
            ) from None
        log.warning("ID token rejected: %s flow_id=%s", exc.reason, flow.flow_id)
        attempt.subject = getattr(exc, "subject", None)
        attempted = {
            "acr_too_low": f"login below the level of assurance {flow.acr_requested}",
            "amr_not_allowed": f"login with a method outside {','.join(methods)}",
        }.get(exc.reason)
        raise _Failed(
            exc.reason, status=502 if exc.upstream else 400, attempted=attempted
        ) from None
    attempt.identity = verified
    attempt.method = verified.method
    attempt.acr = verified.acr
    await attempt.step(FlowStatus.ID_TOKEN_VERIFIED)
    denied = await _source_denied(request, services, attempt.ctx.ip, verified.subject)
    if denied is not None:
        raise _Failed(denied.reason, 403, attempted=f"login of {denied.what}")
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None:
        decision = await limiter.check(
            RouteGroup.LOGIN_START,
            ip=attempt.ctx.ip,
            person=services.audit.fingerprinter.pseudonym(verified.subject),
            request_id=attempt.ctx.request_id,
            user_agent=attempt.ctx.user_agent,
            kinds=(KeyKind.PERSON,),
        )
        if not decision.allowed:
            raise _Failed("rate_limited", 429, headers={"Retry-After": str(decision.retry_after)})
    await _carry_profile(request, services, verified.subject)

    new = await services.sessions.create(
        SessionIdentity(
            subject=verified.subject,
            method=verified.method,
            acr=verified.acr,
            given_name=verified.given_name,
            family_name=verified.family_name,
        ),
        attempt.ctx,
        flow_id=flow.flow_id,
    )
    await attempt.succeed(services.sessions.session_ref(new.record))
    await asyncio.to_thread(services.flows.set_status, flow.flow_id, FlowStatus.SESSION_CREATED)
    if new.ended:
        await _ended(request, services, list(new.ended), EndReason.LIMIT.value)
    await _supersede(request, services, attempt.ctx, keep=new.record)

    response = _landing(request, flow.return_to)
    set_session_cookie(response, services, new.secret)
    _clear_flow_cookie(request, response, services, state)
    for hook in services.post_login:
        await hook(request, response, new.record, verified)
    return response


def _landing(request: Request, return_to: str) -> Response:
    """Where a completed login sends the browser. TARA is another site in production, so
    a 302 from this callback reaches ``return_to`` as ``Sec-Fetch-Site: cross-site`` (the
    browser judges the whole redirect chain), and the routes that take the session
    cookie from this site only (the admin and audit pages, the session routes) refuse
    that. For those targets a callback another site started answers a page that moves
    on by itself: its request comes from this site (decision 0037, 2026-11-28). Which
    targets those are, the routes say themselves (:func:`same_site_only`). ``return_to``
    passed ``safe_return_to`` at the start of the login."""
    parts = urlsplit(return_to)
    here = not parts.scheme and not parts.netloc  # an allow-listed origin is not this app
    guarded = here and same_site_only(request.app.routes, parts.path)
    if not guarded or request.headers.get("sec-fetch-site") != "cross-site":
        return RedirectResponse(return_to, status_code=302)
    target = html.escape(return_to, quote=True)
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="0;url={target}"><title>Signed in</title>'
        f'</head><body><p>Signed in. <a href="{target}">Continue</a>.</p></body></html>'
    )
    return HTMLResponse(body, status_code=200, headers=dashboard.HEADERS)


#: What the operator checks when TARA's discovery document does not fit, by its cause
#: (:attr:`DiscoveryError.cause`): only another issuer is this service's setting.
_DISCOVERY_FIX = {
    "issuer": "check KROONIKA_TARA_ISSUER (it must be exactly the issuer TARA's discovery names)",
    "foreign_endpoint": "not a setting here (the issuer is right): something between this "
    "service and TARA answers in its place (check the network path and any outgoing "
    "proxy), or TARA's discovery is mistaken (report it to RIA); nothing is sent there",
    "endpoints": "TARA's discovery names no authorization, token or key set endpoint: check "
    "KROONIKA_TARA_ISSUER and that nothing between answers in TARA's place",
    "keys": "TARA's key set has no RS256 signing key: something between this service and "
    "TARA answers in its place, or TARA misbehaves (report it to RIA)",
}
#: What the operator fixes when TARA refuses this service rather than the citizen's code.
_OPERATOR_FIX = {
    "invalid_client": "check KROONIKA_TARA_CLIENT_ID and KROONIKA_TARA_CLIENT_SECRET against "
    "the registration with RIA (was the secret rotated?)",
    "unauthorized_client": "TARA accepts token requests only from the addresses registered "
    "with RIA: register this service's outgoing address",
}


def _log_exchange_failure(exc: TaraError, flow_id: str) -> None:
    """One operator-facing line (the message names status and error code, never the code,
    the secret or TARA's free text): ERROR when the operator must act, WARNING for TARA
    being down or refusing one code."""
    if isinstance(exc, ClientRejected):
        fix = _OPERATOR_FIX.get(exc.error or "", _OPERATOR_FIX["invalid_client"])
        log.error("TARA refused this service's token request: %s; %s flow_id=%s", exc, fix, flow_id)
    elif isinstance(exc, RequestRejected):
        log.error(
            "TARA refused the token request as malformed: %s; Kroonika's TARA client is at "
            "fault (report it) flow_id=%s",
            exc,
            flow_id,
        )
    else:
        log.warning("code exchange failed: %s (%s) flow_id=%s", exc.reason, exc, flow_id)


#: ``idp.keys``: stale keys still carry logins (warning), expired ones fail them (error).
_IDP_KEYS_SEVERITY = {
    "stale": Severity.WARNING,
    "expired": Severity.ERROR,
    "recovered": Severity.NOTICE,
}
#: How many key ids an ``idp.keys`` event names at most (TARA publishes two or so).
_KIDS_SHOWN = 20


def idp_keys_reporter(trail: AuditTrail, issuer: str) -> KeySetListener:
    """The TARA client's ``on_keys_change``: each change of trust in the cached key set
    becomes one ``idp.keys`` event, awaited by the login (or probe) that saw it, so that
    a login verified with stale keys is never answered before the trail says they are
    stale (fail closed: if the trail cannot be written the login gets 503 and the next
    one records the change)."""

    async def report(change: KeySetChange) -> None:
        recovered = change.state == "recovered"
        await trail.emit(
            ev.idp_keys(
                outcome=Outcome.SUCCESS if recovered else Outcome.FAILURE,
                reason=None if recovered else f"idp_keys.{change.state}",
                severity=_IDP_KEYS_SEVERITY[change.state],
                actor=Actor(ActorType.SYSTEM),
                target=Target("idp", issuer),
                state=change.state,
                age_s=change.age_s,
                kids=list(change.kids[:_KIDS_SHOWN]),
                window_s=change.window_s,
                error=change.error or None,
                outage_s=change.outage_s if recovered else None,
                withdrawn=list(change.withdrawn[:_KIDS_SHOWN]) if recovered else None,
            )
        )

    return report


_KEYS = (
    "check the key set (JWKS) at the jwks_uri of KROONIKA_TARA_ISSUER's discovery and the "
    "network path to TARA: a token TARA did not sign means someone answers in its place"
)
_FORM = (
    "something between this service and TARA answers in its place (check "
    "KROONIKA_TARA_ISSUER and any outgoing proxy), or TARA misbehaves (report it to RIA)"
)
#: What the operator checks when TARA's ID token fails a check (decision 0019).
_ID_TOKEN_FIX = {
    "malformed": "the token is not a JWS: " + _FORM,
    "alg": "the token is not RS256: " + _FORM,
    "missing_claim": "a claim TARA documents is missing: " + _FORM,
    "acr_invalid": "acr is not low, substantial or high: " + _FORM,
    "unknown_kid": "its kid is not in TARA's key set even after a JWKS refresh: " + _KEYS,
    "bad_signature": "it does not verify under the key its kid names: " + _KEYS,
    "issuer_mismatch": "its iss is not the issuer of TARA's discovery document: check "
    "KROONIKA_TARA_ISSUER (tara-test.ria.ee and tara.ria.ee are different issuers) and "
    "that nothing between answers for TARA",
    "audience_mismatch": "its aud is not this service: check KROONIKA_TARA_CLIENT_ID "
    "against the registration with RIA",
}
_CLOCK_CLAIMS = {"expired": "exp", "issued_in_future": "iat", "not_yet_valid": "nbf"}


def _log_id_token_failure(exc: IdTokenInvalid, flow_id: str, leeway: int) -> None:
    """One ERROR line for the operator: which check an ID token TARA sent over the back
    channel failed and what to check (never the token, only the check and, for a clock
    check, how far apart the clocks are)."""
    claim = _CLOCK_CLAIMS.get(exc.check)
    if claim is not None and isinstance(exc.expected, int) and isinstance(exc.actual, int):
        fix = (
            f"its {claim} is {abs(exc.actual - exc.expected)} s from this host's clock, "
            f"beyond KROONIKA_TARA_LEEWAY_S={leeway}: check this host's clock (NTP); "
            "if it is right, TARA's is not or its answer is stale"
        )
    else:
        fix = _ID_TOKEN_FIX.get(exc.check, _FORM)
    log.error(
        "TARA's ID token failed the %s check after a good code exchange: %s flow_id=%s",
        exc.check,
        fix,
        flow_id,
    )


async def _carry_profile(request: Request, services: Services, subject: str) -> None:
    """The person's first login after a rotation of the pseudonymisation key takes the
    security profile they had under a retired key along (before the login is recorded,
    so the detectors compare it with their history, not with nothing; decision 0022)."""
    monitor = getattr(request.app.state, "security_monitor", None)
    retired = services.audit.retired
    if monitor is None or not retired:
        return
    current = services.audit.fingerprinter.pseudonym(subject)
    former = {f.pseudonym(subject) for f in retired}
    await asyncio.to_thread(monitor.profiles.adopt, current, former)


async def _supersede(
    request: Request, services: Services, ctx: RequestContext, *, keep: SessionRecord
) -> None:
    """The browser's previous session, if still live, ends (``superseded``) with its tokens:
    the new cookie replaces its cookie, so nothing could reach or end it any more."""
    previous = await services.sessions.current(
        request.cookies.get(services.cookies.session_name), ctx
    )
    if previous is None or previous.ref == keep.ref:
        return
    if await services.sessions.end(previous, EndReason.SUPERSEDED, ctx, ended_by="system"):
        await _ended(request, services, [previous], EndReason.SUPERSEDED.value)


def set_session_cookie(response: Response, services: Services, secret: str) -> None:
    response.set_cookie(
        services.cookies.session_name,
        secret,
        max_age=services.settings.session_absolute_s,
        path="/",
        httponly=True,
        secure=services.cookies.secure,
        samesite="lax",
        domain=services.cookies.domain,
    )


def clear_session_cookie(response: Response, services: Services) -> None:
    response.delete_cookie(
        services.cookies.session_name,
        path="/",
        httponly=True,
        secure=services.cookies.secure,
        samesite="lax",
        domain=services.cookies.domain,
    )


# --- sessions ----------------------------------------------------------------------------


class SessionRoute(SameSiteOnlyRoute):
    """A route of the person's own session: another site's request with the session
    cookie is refused before the session is looked up (:mod:`kroonika.admin._same_site`):
    it would read the person's session (their personal code, names and CSRF token
    included) or mark it used on that site's behalf."""

    async def refuse_cross_site(self, request: Request) -> Response:
        await self.record_cross_site(request)
        return _error(
            403,
            "csrf_failed",
            request,
            reason=CROSS_SITE,
            detail="opened from another site: the session is used from this service's own pages",
        )

    def cookies_said(self, request: Request) -> str:
        """Which of the person's cookies the refused request carried, as the log and the
        trail say it (a route that reads another cookie names it)."""
        return "the session cookie"

    async def record_cross_site(self, request: Request) -> None:
        """One WARNING line and one ``csrf_failed`` violation (reason :data:`CROSS_SITE`)
        naming no one: whose cookie it is, is not looked up for another site."""
        services: Services = request.app.state.services
        info = request.scope.get("state", {}).get("request_info")
        carried = self.cookies_said(request)
        log.warning(
            "refused %s %s from another site with %s request_id=%s",
            request.method,
            self.path_format,
            carried,
            info.request_id if info is not None else None,
        )
        await services.audit.trail.emit(
            violation(
                request,
                REASON_POLICIES["csrf_failed"],
                attempted=f"{request.method} {self.path_format} from another site with {carried}",
                actor=Actor(ActorType.ANONYMOUS),
                reason=CROSS_SITE,
            )
        )


#: the session routes, under ``/auth`` (included into :data:`router` at the end)
sessions = APIRouter(route_class=SessionRoute)


@dataclass(frozen=True, slots=True)
class Current:
    record: SessionRecord
    secret: str
    ctx: RequestContext


async def current_session(request: Request, services: Services) -> Current | None:
    secret = request.cookies.get(services.cookies.session_name)
    ctx = request_context(request)
    record = await services.sessions.current(secret, ctx)
    if record is None or secret is None:
        return None
    return Current(record, secret, ctx)


def _unauthenticated(request: Request, services: Services) -> JSONResponse:
    response = _error(401, "not_authenticated", request)
    if request.cookies.get(services.cookies.session_name):
        clear_session_cookie(response, services)
    return response


async def _csrf_token_from(request: Request) -> str | None:
    header = request.headers.get("x-csrf-token")
    if header:
        return header
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        try:
            form = await request.form()
        except HTTPException:  # Starlette refusing the body (no boundary, a part too large)
            return None
        value = form.get("csrf_token")
        return value if isinstance(value, str) else None
    return None


async def csrf_violation(request: Request, services: Services, record: SessionRecord) -> None:
    """The session's CSRF token was missing or wrong on a state-changing call."""
    ref = services.sessions.session_ref(record)
    await services.audit.trail.emit(
        violation(
            request,
            REASON_POLICIES["csrf_failed"],
            attempted=f"{request.method} {request.url.path[:200]} without a valid CSRF token",
            actor=Actor(ActorType.USER, subject=record.subject),
            target=Target("session", ref),
            session_ref=ref,
        )
    )


def _session_view(services: Services, cur: Current) -> dict[str, Any]:
    r = cur.record
    return {
        **r.public(current=True),
        "subject": r.subject,
        "given_name": r.given_name,
        "family_name": r.family_name,
        "csrf_token": services.csrf_token(cur.secret),
    }


@sessions.get("/session", response_model=None)
async def get_session(request: Request, services: ServicesDep) -> Response:
    """The current session (and the CSRF token for state-changing calls)."""
    cur = await current_session(request, services)
    if cur is None:
        return _unauthenticated(request, services)
    return JSONResponse(_session_view(services, cur))


async def _authorised(
    request: Request, services: Services
) -> tuple[Current | None, Response | None]:
    cur = await current_session(request, services)
    if cur is None:
        return None, _unauthenticated(request, services)
    if not services.csrf_ok(cur.secret, await _csrf_token_from(request)):
        log.warning("CSRF check failed request_id=%s", cur.ctx.request_id)
        await csrf_violation(request, services, cur.record)
        return None, _error(403, "csrf_failed", request)
    return cur, None


@sessions.post("/session/extend", response_model=None)
async def extend_session(request: Request, services: ServicesDep) -> Response:
    """Slide the idle expiry up to the absolute limit (CSRF-protected)."""
    cur, refusal = await _authorised(request, services)
    if cur is None:
        return refusal  # type: ignore[return-value]
    updated = await services.sessions.extend(cur.record, cur.ctx)
    if updated is None:
        return _unauthenticated(request, services)
    return JSONResponse(_session_view(services, Current(updated, cur.secret, cur.ctx)))


@sessions.get("/sessions", response_model=None)
async def list_sessions(request: Request, services: ServicesDep) -> Response:
    """The citizen's own live sessions (public references only)."""
    cur = await current_session(request, services)
    if cur is None:
        return _unauthenticated(request, services)
    live = await services.sessions.active_for(cur.record.subject, cur.ctx)
    return JSONResponse({"sessions": [s.public(current=s.ref == cur.record.ref) for s in live]})


async def _ended(
    request: Request, services: Services, records: list[SessionRecord], reason: str
) -> None:
    for hook in services.on_sessions_ended:
        await hook(request, records, reason)


@sessions.delete("/sessions/{ref}", response_model=None)
async def end_one(ref: str, request: Request, services: ServicesDep) -> Response:
    """End one of the citizen's own sessions (CSRF-protected)."""
    cur, refusal = await _authorised(request, services)
    if cur is None:
        return refusal  # type: ignore[return-value]
    target = await services.sessions.by_ref(ref)
    if target is None or target.subject != cur.record.subject or not target.active:
        return _error(404, "session_not_found", request)
    if not await services.sessions.end(target, EndReason.USER, cur.ctx, ended_by="user"):
        return _error(404, "session_not_found", request)  # ended meanwhile, and audited then
    await _ended(request, services, [target], EndReason.USER.value)
    response = JSONResponse({"ended": 1, "current_ended": target.ref == cur.record.ref})
    if target.ref == cur.record.ref:
        clear_session_cookie(response, services)
    return response


@sessions.delete("/sessions", response_model=None)
async def end_all(request: Request, services: ServicesDep) -> Response:
    """End every session of the citizen, the current one included (CSRF-protected)."""
    cur, refusal = await _authorised(request, services)
    if cur is None:
        return refusal  # type: ignore[return-value]
    live = await services.sessions.active_for(cur.record.subject, cur.ctx)
    ended = []
    for record in live:
        if await services.sessions.end(record, EndReason.USER, cur.ctx, ended_by="user"):
            ended.append(record)
    await _ended(request, services, ended, EndReason.USER.value)
    response = JSONResponse({"ended": len(ended), "current_ended": True})
    clear_session_cookie(response, services)
    return response


#: what a browser's refused logout says, by status: (element id, Estonian, English)
_LOGOUT_SAID: dict[int, tuple[str, str, str]] = {
    401: (
        "logged-out",
        "Te olete juba välja logitud (seanss on lõppenud).",
        "You are already logged out (the session has ended).",
    ),
    403: (
        "stale-form",
        "See vorm on vanem kui teie praegune seanss. Avage oma leht ja logige välja sealt.",
        "This form is older than your current session. Open your page and log out from there.",
    ),
}


def _logout_refusal(request: Request, json: JSONResponse) -> Response:
    """A refused logout: ``json`` for an API client; for a browser that submitted the
    page's form (:func:`wants_page`) a small page with the same status, the same cleared
    cookie and links to the person's page and a new login (decision 0037, 2026-11-28
    review framing). The page names nothing of the session."""
    if not wants_page(request) or json.status_code not in _LOGOUT_SAID:
        json.headers["vary"] = VARY
        return json
    element, et, en = _LOGOUT_SAID[json.status_code]
    body = (
        f'<main><h1>Väljalogimine</h1><p id="{element}">{dashboard.shown(et)}</p>'
        f'<h2 lang="en">Log out</h2><p lang="en">{dashboard.shown(en)}</p>'
        '<p><a id="home" href="/">Ava oma leht <span lang="en">/ Open your page</span></a> · '
        f'<a id="again" href="{LOGIN}">Logi uuesti sisse <span lang="en">/ Log in again</span>'
        "</a></p></main>"
    )
    page = HTMLResponse(
        dashboard._page("Väljalogimine / Log out", body, lang="et"),
        status_code=json.status_code,
        headers={**dashboard.HEADERS, "vary": VARY},
    )
    page.raw_headers.extend((k, v) for k, v in json.raw_headers if k == b"set-cookie")
    return page


@sessions.post("/logout", response_model=None)
async def logout(request: Request, services: ServicesDep) -> Response:
    """End the current session (CSRF-protected) and clear the cookie. Refused, a
    browser's form gets a page and an API client JSON (:func:`_logout_refusal`)."""
    cur, refusal = await _authorised(request, services)
    if cur is None:
        return _logout_refusal(request, refusal)  # type: ignore[arg-type]
    record = cur.record
    if not await services.sessions.end(record, EndReason.LOGOUT, cur.ctx, ended_by="user"):
        # Another request ended it meanwhile (a racing logout): that one was audited.
        return _logout_refusal(request, _unauthenticated(request, services))
    ref = services.sessions.session_ref(record)
    await services.audit.trail.emit(
        ev.auth_logout(
            actor=Actor(ActorType.USER, subject=record.subject),
            source=Source(ip=cur.ctx.ip, user_agent=cur.ctx.user_agent),
            target=Target("session", ref),
            correlation=Correlation(
                request_id=cur.ctx.request_id,
                trace_id=cur.ctx.trace_id,
                flow_id=record.flow_id,
                session_ref=ref,
            ),
            method=record.method,
            scope="session",
        )
    )
    await _ended(request, services, [record], EndReason.LOGOUT.value)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    response: Response
    if ctype == "application/x-www-form-urlencoded":
        response = RedirectResponse("/", status_code=303)
    else:
        response = JSONResponse({"logged_out": True})
    clear_session_cookie(response, services)
    return response


router.include_router(sessions)  # after its routes: their class (SessionRoute) is kept
