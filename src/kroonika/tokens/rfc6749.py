"""RFC 6749 OAuth 2.0: client authentication and error responses.

- Section 2.3.1: the client authenticates with HTTP Basic (``client_secret_basic``),
  its id and secret each ``application/x-www-form-urlencoded`` before joining them
  with ``:``, or with ``client_id``/``client_secret`` in the form body
  (``client_secret_post``). Section 2.3: a client "MUST NOT use more than one
  authentication method in each request": Basic together with a ``client_id`` or a
  ``client_secret`` in the body (the form here, the JSON object on the JSON routes)
  is refused as ``invalid_request`` (400), before any secret is checked and whether
  or not the two ids agree (:class:`MultipleAuthMethods`).
- Section 5.2: error responses are JSON ``{"error": ..., "error_description": ...}``;
  ``invalid_client`` is answered with 401 and a ``WWW-Authenticate`` header, also
  when the client tried ``client_secret_post``: section 5.2 lets any failed client
  authentication answer 401, and RFC 9110 section 15.5.2 says a 401 "MUST" carry
  a challenge (a 401 without one leaves HTTP clients unable to tell what to send).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from kroonika.audit import Actor, ActorType
from kroonika.tokens._errors import InvalidClient, MultipleAuthMethods, TokenError

if TYPE_CHECKING:
    from kroonika.tokens._clients import Client, ClientRegistry


FORM_REQUIRED = "the body must be application/x-www-form-urlencoded"
UNAVAILABLE = "the service cannot handle this request now; try again later"


@dataclass(frozen=True, slots=True)
class Credentials:
    client_id: str
    secret: str = field(repr=False)
    method: str  # client_secret_basic | client_secret_post


@dataclass(frozen=True, slots=True)
class WireResponse:
    """What an endpoint answers: status, JSON body and extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def credentials(authorization: str | None, form: Mapping[str, Any]) -> Credentials:
    """The client's credentials from the request: :class:`InvalidClient` when there are
    none or they are malformed, :class:`MultipleAuthMethods` when Basic comes with
    ``client_id`` or ``client_secret`` in ``form`` (the body's fields)."""
    basic = None
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "basic":
            try:
                raw = base64.b64decode(value.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise InvalidClient("malformed Basic credentials") from exc
            cid, sep, secret = raw.partition(":")
            if not sep:
                raise InvalidClient("malformed Basic credentials")
            basic = Credentials(unquote_plus(cid), unquote_plus(secret), "client_secret_basic")
    post_id, post_secret = form.get("client_id"), form.get("client_secret")
    if basic is not None:
        if post_id is not None or post_secret is not None:
            raise MultipleAuthMethods(basic.client_id[:64])
        return basic
    if isinstance(post_id, str) and isinstance(post_secret, str) and post_id and post_secret:
        return Credentials(post_id, post_secret, "client_secret_post")
    raise InvalidClient("client authentication required")


def error_response(exc: TokenError) -> WireResponse:
    """The section 5.2 answer. A server-side failure (5xx) gets a generic description:
    its message is for the operator's log, not for clients."""
    headers: dict[str, str] = {"Cache-Control": "no-store"}
    if isinstance(exc, InvalidClient):
        headers["WWW-Authenticate"] = 'Basic realm="kroonika", charset="UTF-8"'
    description = str(exc) if exc.status < 500 else UNAVAILABLE
    return WireResponse(exc.status, {"error": exc.error, "error_description": description}, headers)


async def authenticate_client(
    registry: ClientRegistry,
    form: Mapping[str, str],
    authorization: str | None,
    on_refused: Callable[[Actor, str], Awaitable[None]],
) -> Client | WireResponse:
    """Client authentication for the token endpoints (RFC 6749 section 2.3.1): the
    client, or the refusal (``invalid_client``, or ``invalid_request`` for two methods
    at once) after ``on_refused`` has recorded it with its reason and the claimed
    client id (never the secret)."""
    claimed: str | None = None
    try:
        creds = credentials(authorization, form)
        claimed = creds.client_id[:64]
        return await asyncio.to_thread(registry.authenticate, creds.client_id, creds.secret)
    except MultipleAuthMethods as exc:
        await on_refused(_claimed(exc.claimed), exc.reason)
        return error_response(exc)
    except InvalidClient as exc:
        await on_refused(_claimed(claimed), "invalid_client")
        return error_response(exc)


def _claimed(client_id: str | None) -> Actor:
    return Actor(ActorType.CLIENT, client_id=client_id) if client_id else Actor()
