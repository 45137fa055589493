"""RFC 7662 OAuth 2.0 Token Introspection.

- Section 2.1, request: ``POST`` with an ``application/x-www-form-urlencoded`` body;
  ``token`` is REQUIRED, ``token_type_hint`` OPTIONAL. "The protected resource
  calls the introspection endpoint using an HTTP POST request" and the endpoint
  "MUST also require some form of authorization": here, RFC 6749 client
  authentication (:mod:`kroonika.tokens.rfc6749`).
- Section 2.2, response: JSON with ``active`` REQUIRED; for an active token the
  optional members ``scope``, ``client_id``, ``username``, ``token_type``, ``exp``,
  ``iat``, ``nbf``, ``sub``, ``aud``, ``iss``, ``jti``. Anything that is not an
  active token for this caller is exactly ``{"active": false}`` — "the
  authorization server SHOULD NOT include any additional information about an
  inactive token, including why the token is inactive" (the reason goes only to
  the audit trail).
- Section 2.3, errors: a failed client authentication is RFC 6749 section 5.2
  ``invalid_client`` (401); a missing or repeated ``token`` (any repeated parameter,
  RFC 6749 section 3.1) or a body that is not a form is ``invalid_request`` (400),
  audited like the refusal it is.
- Section 4, security: a token is reported active only to a client it was issued
  to or for (its audience), to stop token scanning across clients.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from kroonika.audit import Actor, ActorType, Outcome, events
from kroonika.tokens._clients import Client, ClientRegistry
from kroonika.tokens._errors import TokenError
from kroonika.tokens._service import RequestContext, TokenService
from kroonika.tokens.rfc6749 import (
    FORM_REQUIRED,
    NO_STORE,
    FormBody,
    WireResponse,
    authenticate_client,
    error_response,
)


async def respond(
    service: TokenService,
    registry: ClientRegistry,
    form: FormBody | None,
    authorization: str | None,
    ctx: RequestContext,
    *,
    admit: Callable[[Client], Awaitable[None]] | None = None,
) -> WireResponse:
    """Authenticate the caller, then introspect (section 2). ``form`` is ``None`` when
    the body was not ``application/x-www-form-urlencoded``."""

    async def refused(actor: Actor, reason: str, *, authenticated: bool = False) -> None:
        event = events.token_introspect(
            outcome=Outcome.FAILURE,
            reason=reason,
            actor=actor,
            source=ctx.source(),
            correlation=ctx.correlation(),
            active=False,
        )
        if authenticated and actor.client_id:
            event.details["client"] = actor.client_id
        await service.trail.emit(event)

    fields = form.fields if form is not None else {}
    client = await authenticate_client(registry, fields, authorization, refused)
    if isinstance(client, WireResponse):
        return client
    if admit is not None:  # the caller's per-client checks (its rate limit) may raise
        await admit(client)
    caller = Actor(ActorType.CLIENT, client_id=client.client_id)
    if form is None:
        await refused(caller, "invalid_request", authenticated=True)
        return error_response(TokenError(FORM_REQUIRED))
    repeated = form.refusal()
    if repeated is not None:
        await refused(caller, "invalid_request", authenticated=True)
        return error_response(repeated)
    token = form.fields.get("token")
    if not token:
        await refused(caller, "invalid_request", authenticated=True)
        return error_response(TokenError("the token parameter is required"))
    body = await service.introspect(token, caller=client, ctx=ctx)
    return WireResponse(200, body, dict(NO_STORE))
