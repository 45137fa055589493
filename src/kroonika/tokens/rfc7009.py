"""RFC 7009 OAuth 2.0 Token Revocation.

- Section 2.1, request: ``POST`` form body with ``token`` (REQUIRED) and
  ``token_type_hint`` (OPTIONAL: ``access_token`` or ``refresh_token``; a server
  that does not find the token under the hint extends its search). The client
  authenticates (RFC 6749 section 2.3). "The authorization server first validates
  the client credentials ... and then verifies whether the token was issued to
  the client making the revocation request. If this validation fails, the
  request is refused": RFC 6749 ``unauthorized_client``.
- Before anything else the token's signature is verified, so a forged token that
  carries a victim's ``jti`` can never revoke the victim's token.
- Section 2.2, response: 200 on success "and also if the client submitted an
  invalid token" (invalid tokens do not cause an error; the trail records them): a
  token revoked now is a success (count 1), one already revoked or expired a success
  that changed nothing (reason ``not_active``; an expired token is not revoked after
  the fact), one that is not ours (unknown, forged, malformed) a failure with its
  reason. A repeated parameter is ``invalid_request`` (RFC 6749 section 3.1).
- Section 2.2: "An invalid token type hint value is ignored by the authorization
  server and does not influence the revocation response": every token here is a JWT
  access token, found the same way whatever the hint says (``unsupported_token_type``
  would be for a token type the server cannot revoke; there is none).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from kroonika.audit import Actor, ActorType, Outcome, events
from kroonika.tokens._clients import Client, ClientRegistry
from kroonika.tokens._errors import NotPermitted, TokenError
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
    """Authenticate the caller, then revoke (section 2). ``form`` is ``None`` when the
    body was not ``application/x-www-form-urlencoded``. Every refusal is audited."""

    async def refused(actor: Actor, reason: str, *, authenticated: bool = False) -> None:
        event = events.token_revoke(
            outcome=Outcome.FAILURE,
            reason=reason,
            actor=actor,
            source=ctx.source(),
            correlation=ctx.correlation(),
            count=0,
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
    try:
        await service.revoke(token, caller=client, why="client_request", ctx=ctx)
    except NotPermitted as exc:
        return error_response(exc)
    return WireResponse(200, {}, dict(NO_STORE))
