"""Token endpoints: mint, validate, RFC 7662 introspection, RFC 7009 revocation, extend,
``/tokens/mine``, bulk operations, and the session access token after a TARA login.

:func:`install_tokens` builds the token subsystem for an app made by ``create_app``,
registers the routers, and hooks into the login (mint the session's access token)
and into the end of sessions (revoke the tokens bound to them).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from kroonika.admin._same_site import CROSS_SITE
from kroonika.audit import Actor, ActorType, AuditEvent, Outcome, events
from kroonika.audit.enrich import FeedAction, ThreatIntel
from kroonika.ratelimit import KeyKind, RateLimited, RateLimiter, Refusal, RouteGroup
from kroonika.sessions import EndReason, SessionRecord
from kroonika.sessions import RequestContext as SessionContext
from kroonika.tara import VerifiedIdToken
from kroonika.tokens import (
    Client,
    InvalidClient,
    MintRefused,
    MisplacedCredentials,
    NotPermitted,
    RequestContext,
    TokenComponents,
    TokenError,
    build_tokens,
    parse_mint_request,
    rfc7009,
    rfc7662,
)
from kroonika.tokens.rfc6749 import (
    NO_STORE,
    FormBody,
    WireResponse,
    client_credentials_request,
    credentials,
    error_response,
    too_many_requests,
)
from kroonika.web import _token_schemas as schemas
from kroonika.web._auth import SessionRoute
from kroonika.web._policy import PolicyEmitter
from kroonika.web._services import Services, request_context
from kroonika.web.routes_wellknown import router as wellknown_router

log = logging.getLogger("kroonika.web.tokens")
router = APIRouter(tags=["tokens"])
_JSON_TYPE = re.compile(r"application/(?:[a-z0-9.+-]+\+)?json")
_STATES = frozenset({"active", "revoked", "expired", "replaced"})
_TYPES = frozenset({"session", "custom"})
_CLIENT_ID = re.compile(r"[\x21-\x7e]{1,64}")
_MAX_QUERY_INT = 2**53
CUSTOM = "custom"  # the token type of a client's token


def install_tokens(app: FastAPI, services: Services) -> TokenComponents:
    """Build the token subsystem on ``app.state.tokens`` and wire it into the app."""
    comps = build_tokens(
        services.settings,
        engine=services.engine,
        trail=services.audit.trail,
        fingerprinter=services.audit.fingerprinter,
        create=not services.settings.db_auto_upgrade,
    )
    # Refusals that are policy violations (revoked or expired token, denylisted
    # subject or address, reserved claims, failed client authentication) get their
    # security.policy_violation in the same batch, whichever route refused.
    comps.service.trail = PolicyEmitter(comps.service.trail)
    app.state.tokens = comps
    services.post_login.append(_mint_after_login)
    services.on_sessions_ended.append(_revoke_ended_sessions)

    async def revoke_lapsed(record: SessionRecord, reason: EndReason, ctx: SessionContext) -> None:
        await comps.service.revoke_session(
            record.ref,
            by=Actor(ActorType.SYSTEM),
            why=f"session_{reason.value}",
            ctx=RequestContext(
                ip=ctx.ip,
                user_agent=ctx.user_agent,
                request_id=ctx.request_id,
                trace_id=ctx.trace_id,
            ),
        )

    services.sessions.on_lapsed.append(revoke_lapsed)
    app.include_router(router)
    app.include_router(wellknown_router)
    return comps


def _comps(request: Request) -> TokenComponents:
    comps: TokenComponents = request.app.state.tokens
    return comps


def _ctx(request: Request) -> RequestContext:
    c = request_context(request)
    return RequestContext(
        ip=c.ip, user_agent=c.user_agent, request_id=c.request_id, trace_id=c.trace_id
    )


def _wire(resp: WireResponse) -> JSONResponse:
    return JSONResponse(resp.body, status_code=resp.status, headers=resp.headers)


def _error(exc: TokenError) -> JSONResponse:
    return _wire(error_response(exc))


def _too_many(_request: Request, exc: RateLimited) -> Response:
    """A token route's 429: the RFC 6749 section 5.2 object, the wait in Retry-After."""
    return _wire(too_many_requests(exc.limit, exc.retry_after))


def rate_limit_answers() -> dict[str, Refusal]:
    """How each token route answers its 429 (the rate limiter's ``pages``): as the
    RFC 6749 error it answers every other refusal with, not the service's generic 429
    (whose ``limit`` and ``retry_after`` members no OAuth client reads)."""
    return {route.path: _too_many for route in router.routes if isinstance(route, APIRoute)}


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


class _RepeatedName(ValueError):
    """A JSON object in the body names a member twice."""


def _no_repeats(pairs: list[tuple[str, Any]]) -> None:
    """``object_pairs_hook`` that only compares names: the values come from orjson."""
    if len({name for name, _ in pairs}) != len(pairs):
        raise _RepeatedName


_NAMES = json.JSONDecoder(object_pairs_hook=_no_repeats)


def _parse_json_object(raw: bytes) -> dict[str, Any]:
    """The JSON object in ``raw``; :class:`TokenError` when it is none, or when any
    object in it names a member twice (RFC 8259 section 4 leaves the meaning of that
    to each parser: a proxy, a WAF or the client may have read the first value where
    orjson reads the last). orjson decides what the values are; the standard library's
    decoder, run only over what orjson accepted, checks the names and builds nothing."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise TokenError("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise TokenError("the body must be a JSON object")
    try:
        _NAMES.decode(raw.decode())
    except _RepeatedName:
        raise TokenError("the body must not repeat a member name in an object") from None
    except RecursionError:  # deeper than the interpreter's stack, orjson's limit is 1024
        raise TokenError("the body is nested too deeply") from None
    return body


async def _parsed_json(request: Request) -> dict[str, Any] | TokenError:
    """The body's JSON object, or why it is none: read and parsed once per request
    (the client authentication looks at it before the route does)."""
    cached: dict[str, Any] | TokenError | None = getattr(request.state, "json_body", None)
    if cached is None:
        try:
            cached = _parse_json_object(await request.body())
        except TokenError as exc:
            cached = exc
        request.state.json_body = cached
    return cached


async def _json(request: Request) -> dict[str, Any]:
    """The JSON object in the body; the body must say it is JSON (``application/json``),
    so that no HTML form or other "simple" cross-site request is taken for one."""
    if not _JSON_TYPE.fullmatch(_media_type(request)):
        raise TokenError("the body must be application/json")
    body = await _parsed_json(request)
    if isinstance(body, TokenError):
        raise TokenError(str(body))  # a fresh error: each refusal is audited on its own
    return body


async def _form(request: Request) -> FormBody | None:
    """The form parameters, or ``None`` when the body is not a form (refused by the
    endpoint once it knows, and has audited, who asked)."""
    if _media_type(request) != "application/x-www-form-urlencoded":
        return None
    form = await request.form()
    return FormBody.parse(form.multi_items())


def _limiter(request: Request) -> RateLimiter | None:
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    return limiter


async def _admit_source(request: Request) -> None:
    """Refuse (``RateLimited``: 429, Retry-After) a source address that has used up its
    failed client authentications (``client_auth:ip``), before its secret costs a
    check; a source under the limit is not counted here."""
    limiter = _limiter(request)
    if limiter is None:
        return
    ctx = _ctx(request)
    decision = await limiter.check_failures(
        RouteGroup.CLIENT_AUTH, ip=ctx.ip, request_id=ctx.request_id, user_agent=ctx.user_agent
    )
    if not decision.allowed:
        raise RateLimited(decision.limit or RouteGroup.CLIENT_AUTH.value, decision.retry_after)


async def _authentication_failed(request: Request) -> None:
    limiter = _limiter(request)
    if limiter is not None:
        await limiter.count_failure(RouteGroup.CLIENT_AUTH, ip=_ctx(request).ip)


async def _body_fields(request: Request) -> Mapping[str, Any]:
    """The body's top-level fields (a form's, or a JSON object's members) for the
    RFC 6749 section 2.3 check that Basic comes alone; ``{}`` for any other body (the
    route refuses a body it cannot read once it knows, and has audited, who asked)."""
    media_type = _media_type(request)
    if media_type == "application/x-www-form-urlencoded":
        form = await _form(request)
        return form.fields if form is not None else {}
    if not _JSON_TYPE.fullmatch(media_type):
        return {}
    body = await _parsed_json(request)
    return {} if isinstance(body, TokenError) else body


async def _client(request: Request, failed: AuditEvent, *, in_body: bool = False) -> Client:
    """The authenticated client: HTTP Basic, alone (a ``client_id`` or ``client_secret``
    in the body too is ``MultipleAuthMethods``); in the body only where ``in_body`` (the
    client credentials grant's form), elsewhere ``CredentialsInBody``. A failed
    authentication is counted against the source address, and every refusal audited
    with ``failed``."""
    comps = _comps(request)
    claimed: str | None = None
    await _admit_source(request)
    try:
        creds = credentials(
            request.headers.get("authorization"), await _body_fields(request), in_body=in_body
        )
        claimed = creds.client_id[:64]
        return await asyncio.to_thread(comps.clients.authenticate, creds.client_id, creds.secret)
    except MisplacedCredentials as exc:
        failed.reason = exc.reason
        await _client_refused(request, failed, exc, exc.claimed)
        raise
    except InvalidClient as exc:
        await _authentication_failed(request)
        failed.reason = "invalid_client"
        await _client_refused(request, failed, exc, claimed)
        raise


async def _client_refused(
    request: Request, failed: AuditEvent, exc: TokenError, claimed: str | None
) -> None:
    """Audit a refused client authentication (``failed`` has its reason) under the
    client id the caller claimed, if any."""
    ctx = _ctx(request)
    failed.outcome = Outcome.FAILURE
    failed.actor = Actor(ActorType.CLIENT, client_id=claimed) if claimed else Actor()
    failed.source = ctx.source()
    failed.correlation = ctx.correlation()
    await _comps(request).service.trail.emit(failed)
    exc.audited = True


async def _refused(
    request: Request, event: AuditEvent, exc: TokenError, client: Client | None = None
) -> JSONResponse:
    """The error answer for ``exc``; a refusal nobody audited yet (a malformed request,
    a wrong content type) is audited first with ``event``, so every call of a token
    operation leaves its record, the refused ones included."""
    if not exc.audited:
        ctx = _ctx(request)
        event.outcome = Outcome.FAILURE
        event.reason = getattr(exc, "reason", None) or exc.error
        event.actor = Actor(ActorType.CLIENT, client_id=client.client_id) if client else Actor()
        event.source = ctx.source()
        event.correlation = ctx.correlation()
        if client is not None:
            event.details.setdefault("client", client.client_id)
        await _comps(request).service.trail.emit(event)
        exc.audited = True
    return _error(exc)


def _summary(results: list[dict[str, Any]], ok: set[str]) -> dict[str, int]:
    good = sum(1 for r in results if r["status"] in ok)
    return {"requested": len(results), "succeeded": good, "failed": len(results) - good}


async def _limit(
    request: Request,
    group: RouteGroup,
    client: Client,
    *,
    subject: str | None = None,
    kinds: tuple[KeyKind, ...] = (KeyKind.CLIENT, KeyKind.PERSON),
) -> None:
    """The group's per-client and per-person limits (only ``kinds``) and the client's
    own limit, once the caller is known (the middleware has counted the address);
    over a limit raises ``RateLimited`` (429, Retry-After)."""
    limiter = _limiter(request)
    if limiter is None:
        return
    services: Services = request.app.state.services
    ctx = _ctx(request)
    await limiter.hit(
        group,
        ip=ctx.ip,
        client=client.client_id,
        person=services.audit.fingerprinter.pseudonym(subject) if subject else None,
        request_id=ctx.request_id,
        user_agent=ctx.user_agent,
        kinds=kinds,
        client_limit=client.rate_limit,
    )


def _admit(request: Request, group: RouteGroup) -> Callable[[Client], Awaitable[None]]:
    """The limits of an authenticated client on ``group`` (see :func:`_limit`)."""

    async def admit(client: Client) -> None:
        await _limit(request, group, client)

    return admit


async def _form_route(
    request: Request,
    respond: Callable[..., Awaitable[WireResponse]],
) -> JSONResponse:
    """An RFC 7662 / 7009 endpoint (form body, client authentication) under the same
    limits as the JSON routes: the source's failed authentications before the secret
    check, the validation group's per-client limits after it."""
    comps = _comps(request)
    form = await _form(request)
    await _admit_source(request)
    resp = await respond(
        comps.service,
        comps.clients,
        form,
        request.headers.get("authorization"),
        _ctx(request),
        admit=_admit(request, RouteGroup.VALIDATE),
    )
    if resp.status == 401 and resp.body.get("error") == "invalid_client":
        await _authentication_failed(request)
    return _wire(resp)


async def _threat_refused(request: Request, actor: Actor, token_type: str) -> bool:
    """True (and audited: token.issue refused plus its policy violation) when a threat
    feed whose action is ``deny_token`` lists the caller's address."""
    intel: ThreatIntel | None = getattr(request.app.state, "threat_intel", None)
    ctx = _ctx(request)
    if intel is None or ctx.ip is None:
        return False
    matches = await asyncio.to_thread(intel.denies, ctx.ip, FeedAction.DENY_TOKEN)
    if not matches:
        return False
    await _comps(request).service.trail.emit(
        events.token_issue(
            outcome=Outcome.FAILURE,
            reason="threat_intel_deny",
            actor=actor,
            source=ctx.source(),
            correlation=ctx.correlation(),
            threat=[m.threat_match() for m in matches],
            token_type=token_type,
            **_client_detail(actor),
        )
    )
    return True


def _client_detail(actor: Actor) -> dict[str, Any]:
    return {"client": actor.client_id} if actor.client_id else {}


_THREAT_DENIED = "token minting is refused for this source address"


def _threat_denied() -> JSONResponse:
    """RFC 6749 section 5.2: a token endpoint refusing an authenticated client answers
    ``unauthorized_client`` (400); ``access_denied`` is the authorization endpoint's
    (section 4.1.2.1), and ``invalid_client`` (401) would say its credentials failed."""
    return _error(NotPermitted(_THREAT_DENIED))


def _session_denied(description: str) -> JSONResponse:
    """``/tokens/session`` is the browser's session API, not an RFC 6749 token endpoint:
    a refused source or person is 403 ``access_denied``, like its other refusals
    (``not_authenticated``, ``csrf_failed``) in the service's own words."""
    return JSONResponse(
        {"error": "access_denied", "error_description": description},
        status_code=403,
        headers=dict(NO_STORE),
    )


# --- minting -------------------------------------------------------------------------------


@router.post(
    "/tokens",
    response_model=None,
    status_code=201,
    openapi_extra=schemas.MINT,
    responses=schemas.MINT_ANSWERS,
)
async def mint(request: Request) -> Response:
    """Mint a custom JWT for an authenticated client (reserved claims cannot be set):
    a JSON mint request, or (a form body) the RFC 6749 section 4.4 client credentials
    grant, which mints what an empty JSON request would."""
    comps = _comps(request)
    client: Client | None = None
    form = await _form(request)
    try:
        client = await _client(request, events.token_issue(), in_body=form is not None)
        if form is not None:
            client_credentials_request(form)
            req = parse_mint_request({})
        else:
            req = parse_mint_request(await _json(request))
        await _limit(
            request,
            RouteGroup.TOKEN_MINT,
            client,
            subject=req.subject if isinstance(req.subject, str) else None,
        )
        if await _threat_refused(
            request, Actor(ActorType.CLIENT, client_id=client.client_id), "custom"
        ):
            return _threat_denied()
        issued = await comps.service.issue(client, req, _ctx(request))
    except TokenError as exc:
        return await _refused(request, events.token_issue(token_type=CUSTOM), exc, client)
    rec = issued.record
    answer: dict[str, Any] = {
        "access_token": issued.token,
        "token_type": "Bearer",
        "expires_in": rec.exp - rec.iat,
    }
    if form is not None:  # RFC 6749 section 5.1: 200, and no member of Kroonika's own
        return JSONResponse(answer, headers=dict(NO_STORE))
    answer.update(expires_at=rec.exp, jti=rec.jti)
    return JSONResponse(answer, status_code=201, headers=dict(NO_STORE))


@router.post(
    "/tokens/validate",
    response_model=None,
    openapi_extra=schemas.VALIDATE,
    responses=schemas.CLIENT_REFUSALS,
)
async def validate(request: Request) -> Response:
    """The detailed verdict for an authenticated client."""
    comps = _comps(request)
    client: Client | None = None
    try:
        client = await _client(request, events.token_validate())
        await _limit(request, RouteGroup.VALIDATE, client)
        body = await _json(request)
        token, audience = body.get("token"), body.get("audience")
        if not isinstance(token, str) or (audience is not None and not isinstance(audience, str)):
            raise TokenError("token (string) is required; audience must be a string")
        verdict = await comps.service.validate(
            token, audience=audience, caller=client, ctx=_ctx(request)
        )
    except TokenError as exc:
        return await _refused(request, events.token_validate(), exc, client)
    out: dict[str, Any] = {"valid": verdict.valid}
    if not verdict.valid:
        out["reason"] = str(verdict.reason)
    if verdict.token is not None:
        vt = verdict.token
        out.update(jti=vt.jti, exp=vt.exp, iat=vt.iat, aud=list(vt.aud), kid=vt.kid)
        if verdict.valid and vt.sub is not None:
            out["sub"] = vt.sub
    return JSONResponse(out, headers=dict(NO_STORE))


@router.post(
    "/introspect",
    response_model=None,
    openapi_extra=schemas.form_body(),
    responses=schemas.CLIENT_REFUSALS,
)
async def introspect(request: Request) -> Response:
    """RFC 7662 token introspection (form body, client authentication)."""
    return await _form_route(request, rfc7662.respond)


@router.post(
    "/revoke",
    response_model=None,
    openapi_extra=schemas.form_body(),
    responses=schemas.CLIENT_REFUSALS,
)
async def revoke(request: Request) -> Response:
    """RFC 7009 token revocation (form body, client authentication)."""
    return await _form_route(request, rfc7009.respond)


@router.post(
    "/tokens/extend",
    response_model=None,
    openapi_extra=schemas.EXTEND,
    responses=schemas.CLIENT_REFUSALS,
)
async def extend(request: Request) -> Response:
    """With client authentication (Basic): extend the token in the body (token.extend).
    With ``Authorization: Bearer``: refresh that bearer token (token.refresh)."""
    comps = _comps(request)
    auth = request.headers.get("authorization") or ""
    bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
    client: Client | None = None
    try:
        if bearer is None:
            client = await _client(request, events.token_extend())
            await _limit(request, RouteGroup.TOKEN_MINT, client)
        body = await _json(request)
        ttl = body.get("ttl_s")
        if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool)):
            raise TokenError("ttl_s must be an integer")
        if bearer is not None:
            issued = await comps.service.extend(bearer, caller=None, ttl_s=ttl, ctx=_ctx(request))
        else:
            token = body.get("token")
            if not isinstance(token, str):
                raise TokenError("token (string) is required")
            issued = await comps.service.extend(token, caller=client, ttl_s=ttl, ctx=_ctx(request))
    except TokenError as exc:
        if bearer is not None:
            refused = events.token_refresh()
            if bearer:
                refused.details["fingerprint"] = comps.service.fingerprinter.fingerprint(
                    "token", bearer
                )
            return await _refused(request, refused, exc)
        return await _refused(request, events.token_extend(), exc, client)
    rec = issued.record
    return JSONResponse(
        {
            "access_token": issued.token,
            "token_type": "Bearer",
            "expires_in": rec.exp - rec.iat,
            "expires_at": rec.exp,
            "jti": rec.jti,
        },
        headers=dict(NO_STORE),
    )


def _bearer(request: Request, comps: TokenComponents) -> str | None:
    auth = request.headers.get("authorization") or ""
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.cookies.get(comps.settings.token_session_cookie)


class AccessTokenCookieRoute(SessionRoute):
    """A route that takes the session's access token from its cookie (when no
    ``Authorization`` header brings one): another site's request with that cookie or the
    session's is refused before the token is checked, as the session routes refuse
    (decision 0037, 2026-11-28 review crosssite2). A token sent in ``Authorization`` is
    sent on purpose by its holder and answered from anywhere."""

    def guarded_cookies(self, request: Request) -> Iterable[str]:
        services: Services = request.app.state.services
        return (services.cookies.session_name, _comps(request).settings.token_session_cookie)

    def cookies_said(self, request: Request) -> str:
        """The cookies of :meth:`guarded_cookies` the request carried, by what they are
        (the access-token cookie by its name: a name, not a value)."""
        services: Services = request.app.state.services
        token = _comps(request).settings.token_session_cookie
        said = (
            (token, f"the access-token cookie {token}"),
            (services.cookies.session_name, "the session cookie"),
        )
        return " and ".join(what for name, what in said if request.cookies.get(name))

    async def refuse_cross_site(self, request: Request) -> Response:
        await self.record_cross_site(request)
        return JSONResponse(
            {
                "error": "csrf_failed",
                "error_description": f"{CROSS_SITE}: opened from another site; the session's "
                "tokens are listed from this service's own pages or with the token in "
                "Authorization",
            },
            status_code=403,
            headers=dict(NO_STORE),
        )


#: the routes that read the access-token cookie (included into :data:`router` below)
by_cookie = APIRouter(tags=["tokens"], route_class=AccessTokenCookieRoute)


@by_cookie.get(
    "/tokens/mine",
    response_model=None,
    openapi_extra=schemas.MINE,
    responses=schemas.MINE_REFUSALS,
)
async def mine(request: Request) -> Response:
    """The bearer's own tokens, newest first, with filters and cursor pagination."""
    comps = _comps(request)
    bearer = _bearer(request, comps)
    if not bearer:
        return JSONResponse(
            {"error": "invalid_token"},
            status_code=401,
            headers={**NO_STORE, "WWW-Authenticate": 'Bearer realm="kroonika"'},
        )
    q = request.query_params

    def num(name: str) -> int | None:
        value = q.get(name)
        if value is None:
            return None
        # ASCII digits only ("²".isdigit() is true, and int() refuses it), and a size
        # every database column takes.
        if not (value.isascii() and value.isdigit() and len(value) <= 16):
            raise TokenError(f"{name} must be a non-negative integer")
        number = int(value)
        if number > _MAX_QUERY_INT:
            raise TokenError(f"{name} is out of range")
        return number

    def one_of(name: str, allowed: frozenset[str]) -> str | None:
        value = q.get(name)
        if value is not None and value not in allowed:
            raise TokenError(f"{name} must be one of {', '.join(sorted(allowed))}")
        return value

    try:
        client_id = q.get("client_id")
        if client_id is not None and not _CLIENT_ID.fullmatch(client_id):
            raise TokenError("client_id must be 1..64 visible ASCII characters")
        page = await comps.service.mine(
            bearer,
            limit=num("limit") or 20,
            cursor=q.get("cursor"),
            state=one_of("state", _STATES),
            token_type=one_of("type", _TYPES),
            client_id=client_id,
            issued_after=num("issued_after"),
            issued_before=num("issued_before"),
            ctx=_ctx(request),
        )
    except TokenError as exc:
        if exc.error == "invalid_grant":
            return JSONResponse(
                {"error": "invalid_token"},
                status_code=401,
                headers={
                    **NO_STORE,
                    "WWW-Authenticate": 'Bearer realm="kroonika", error="invalid_token"',
                },
            )
        return _error(exc)
    return JSONResponse(
        {"items": [r.public() for r in page.items], "next_cursor": page.next_cursor},
        headers=dict(NO_STORE),
    )


router.include_router(by_cookie)  # after its routes: their class is kept


# --- bulk ----------------------------------------------------------------------------------


@router.post(
    "/tokens/bulk/validate",
    response_model=None,
    openapi_extra=schemas.BULK_VALIDATE,
    responses=schemas.CLIENT_REFUSALS,
)
async def bulk_validate(request: Request) -> Response:
    comps = _comps(request)
    client: Client | None = None
    try:
        client = await _client(request, events.token_validate())
        await _limit(request, RouteGroup.VALIDATE, client)
        body = await _json(request)
        tokens = body.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise TokenError("tokens must be a list of strings")
        audience = body.get("audience")
        if audience is not None and not isinstance(audience, str):
            # never drop an audience check the caller asked for: refuse instead
            raise TokenError("audience must be a string")
        results = await comps.service.bulk_validate(
            tokens, caller=client, audience=audience, ctx=_ctx(request)
        )
    except TokenError as exc:
        return await _refused(request, events.token_validate(), exc, client)
    items = [r.as_dict() for r in results]
    return JSONResponse(
        {"results": items, "summary": _summary(items, {"valid"})}, headers=dict(NO_STORE)
    )


@router.post(
    "/tokens/bulk/revoke",
    response_model=None,
    openapi_extra=schemas.BULK_REVOKE,
    responses=schemas.CLIENT_REFUSALS,
)
async def bulk_revoke(request: Request) -> Response:
    comps = _comps(request)
    client: Client | None = None
    try:
        client = await _client(request, events.token_revoke())
        await _limit(request, RouteGroup.TOKEN_MINT, client)
        body = await _json(request)
        items = body.get("items")
        if not isinstance(items, list):
            raise TokenError("items must be a list")
        why = body.get("reason")
        if why is not None and not isinstance(why, str):
            raise TokenError("reason must be a string")
        # one line of display text: no control, line-break or bidi characters
        why = "".join(ch if ch.isprintable() else " " for ch in (why or "")[:500]).strip()
        results = await comps.service.bulk_revoke(
            items, caller=client, why=why or "client_request", ctx=_ctx(request)
        )
    except TokenError as exc:
        refused = events.token_revoke(count=0)
        if client is not None:
            refused.details["revoked_by"] = f"client:{client.client_id}"
        return await _refused(request, refused, exc, client)
    out = [r.as_dict() for r in results]
    return JSONResponse(
        {"results": out, "summary": _summary(out, {"revoked"})}, headers=dict(NO_STORE)
    )


@router.post(
    "/tokens/bulk/issue",
    response_model=None,
    openapi_extra=schemas.BULK_ISSUE,
    responses=schemas.CLIENT_REFUSALS,
)
async def bulk_issue(request: Request) -> Response:
    comps = _comps(request)
    client: Client | None = None
    try:
        client = await _client(request, events.token_issue())
        await _limit(request, RouteGroup.TOKEN_MINT, client)
        body = await _json(request)
        items = body.get("items")
        if not isinstance(items, list):
            raise TokenError("items must be a list")
        if await _threat_refused(
            request, Actor(ActorType.CLIENT, client_id=client.client_id), "custom"
        ):
            return _threat_denied()
        # each item is parsed (and, when malformed, refused and audited) on its own
        results = await comps.service.bulk_issue(client, items, ctx=_ctx(request))
    except TokenError as exc:
        return await _refused(request, events.token_issue(token_type=CUSTOM), exc, client)
    out = [r.as_dict() for r in results]
    return JSONResponse(
        {"results": out, "summary": _summary(out, {"issued"})}, headers=dict(NO_STORE)
    )


# --- the session's access token ------------------------------------------------------------


async def _mint_after_login(
    request: Request, response: Response, session: SessionRecord, identity: VerifiedIdToken
) -> None:
    """Post-login hook: the session's access token, bound to the session (``sid``)."""
    comps = _comps(request)
    settings = comps.settings
    if await _threat_refused(request, Actor(ActorType.USER, subject=identity.subject), "session"):
        return  # the login stands (its feed denies tokens, not logins); no access token
    try:
        issued = await comps.service.issue_session_token(
            session_ref=session.ref,
            subject=identity.subject,
            given_name=identity.given_name,
            family_name=identity.family_name,
            amr=identity.amr,
            acr=str(identity.acr),
            ctx=_ctx(request),
        )
    except TokenError as exc:
        # Refused (allow-list mode without an allow entry, a denylisted token id ...) and
        # audited as token.issue: the login stands, without an access token. Failing
        # here would answer 500 to a login whose session exists and is audited.
        log.info("no session access token after login: %s", getattr(exc, "reason", exc.error))
        return
    if settings.token_session_delivery in ("cookie", "both"):
        services: Services = request.app.state.services
        response.set_cookie(
            settings.token_session_cookie,
            issued.token,
            max_age=issued.record.exp - issued.record.iat,
            path="/",
            httponly=True,
            secure=services.cookies.secure,
            samesite="lax",
            domain=services.cookies.domain,
        )


async def _revoke_ended_sessions(
    request: Request, sessions: list[SessionRecord], reason: str
) -> None:
    """Session-ended hook: every token bound to those sessions is revoked."""
    comps = _comps(request)
    ctx = _ctx(request)
    for s in sessions:
        await comps.service.revoke_session(
            s.ref, by=Actor(ActorType.USER, subject=s.subject), why=f"session_{reason}", ctx=ctx
        )


@router.post("/tokens/session", response_model=None, responses=schemas.SESSION_REFUSALS)
async def session_token(request: Request) -> Response:
    """Body delivery: a fresh access token for the caller's current session, in the
    response (session cookie and CSRF token required, like other session actions)."""
    from kroonika.web._auth import csrf_violation, current_session

    comps = _comps(request)
    services: Services = request.app.state.services
    if comps.settings.token_session_delivery not in ("body", "both"):
        return JSONResponse({"error": "not_found"}, status_code=404, headers=dict(NO_STORE))
    cur = await current_session(request, services)
    if cur is None:
        return JSONResponse({"error": "not_authenticated"}, status_code=401, headers=dict(NO_STORE))
    if not services.csrf_ok(cur.secret, request.headers.get("x-csrf-token")):
        await csrf_violation(request, services, cur.record)
        return JSONResponse({"error": "csrf_failed"}, status_code=403, headers=dict(NO_STORE))
    s = cur.record
    if await _threat_refused(request, Actor(ActorType.USER, subject=s.subject), "session"):
        return _session_denied(_THREAT_DENIED)
    try:
        issued = await comps.service.issue_session_token(
            session_ref=s.ref,
            subject=s.subject,
            given_name=s.given_name,
            family_name=s.family_name,
            amr=(s.method,),
            acr=s.acr,
            ctx=_ctx(request),
        )
    except MintRefused as exc:
        if exc.error == "unauthorized_client":  # a deny-list entry, no allow entry
            return _session_denied(str(exc))
        return _error(exc)
    except TokenError as exc:
        return _error(exc)
    rec = issued.record
    return JSONResponse(
        {
            "access_token": issued.token,
            "token_type": "Bearer",
            "expires_in": rec.exp - rec.iat,
            "jti": rec.jti,
        },
        headers=dict(NO_STORE),
    )
