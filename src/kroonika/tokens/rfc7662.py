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
  ``invalid_client`` (401); a missing ``token`` is ``invalid_request`` (400).
- Section 4, security: a token is reported active only to a client it was issued
  to or for (its audience), to stop token scanning across clients.
"""

from __future__ import annotations

from collections.abc import Mapping

from kroonika.audit import Actor, Outcome, events
from kroonika.tokens._clients import ClientRegistry
from kroonika.tokens._errors import TokenError
from kroonika.tokens._service import RequestContext, TokenService
from kroonika.tokens.rfc6749 import WireResponse, authenticate_client, error_response

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def respond(
    service: TokenService,
    registry: ClientRegistry,
    form: Mapping[str, str],
    authorization: str | None,
    ctx: RequestContext,
) -> WireResponse:
    """Authenticate the caller, then introspect (section 2)."""

    async def refused(actor: Actor) -> None:
        await service.trail.emit(
            events.token_introspect(
                outcome=Outcome.FAILURE,
                reason="invalid_client",
                actor=actor,
                source=ctx.source(),
                correlation=ctx.correlation(),
                active=False,
            )
        )

    client = await authenticate_client(registry, form, authorization, refused)
    if isinstance(client, WireResponse):
        return client
    token = form.get("token")
    if not token:
        return error_response(TokenError("the token parameter is required"))
    body = await service.introspect(token, caller=client, ctx=ctx)
    return WireResponse(200, body, dict(NO_STORE))
