"""RFC 6749 OAuth 2.0: client authentication and error responses.

- Section 2.3.1: the client authenticates with HTTP Basic (``client_secret_basic``),
  its id and secret each ``application/x-www-form-urlencoded`` before joining them
  with ``:``, or with ``client_id``/``client_secret`` in the form body
  (``client_secret_post``). Section 2.3: a client "MUST NOT use more than one
  authentication method in each request": Basic together with a ``client_id`` or a
  ``client_secret`` in the body (the form here, the JSON object on the JSON routes)
  is refused as ``invalid_request`` (400), before any secret is checked and whether
  or not the two ids agree (:class:`MultipleAuthMethods`). Body credentials are "NOT
  RECOMMENDED" and defined for a form only: a route whose body is not the RFC's form
  (the JSON routes) refuses them alike (:class:`CredentialsInBody`).
- Section 3.1 (and 3.2): "Request and response parameters MUST NOT be included more
  than once": a repeated form parameter is ``invalid_request`` (:class:`FormBody` keeps
  which ones repeat). A repeated ``client_id`` or ``client_secret`` is no credential:
  its value is taken as empty, so it is ``invalid_client``, or
  :class:`MultipleAuthMethods` next to HTTP Basic, whichever value came first or last.
- Section 4.4, the client credentials grant at the token endpoint (section 3.2):
  ``grant_type=client_credentials`` in a form body from an authenticated client;
  ``scope`` is refused (``invalid_scope``: Kroonika defines no scopes), any other grant
  type is ``unsupported_grant_type`` (:func:`client_credentials_request`).
- Section 3.3: a scope is scope tokens of ``%x21 / %x23-5B / %x5D-7E`` joined by
  single spaces (:func:`is_scope`); RFC 7662 section 2.2, RFC 8693 section 4.2 and
  RFC 9068 section 2.2.3 carry it as that one string.
- Sections 5.1 and 5.2: answers carry ``Cache-Control: no-store`` and
  ``Pragma: no-cache`` (:data:`NO_STORE`), errors are JSON with ``error`` and
  ``error_description`` only, the description in the characters section 5.2 allows
  (``%x20-21 / %x23-5B / %x5D-7E``; any other is replaced by ``?``); a 429 too, its
  wait in ``Retry-After`` (:func:`too_many_requests`); ``invalid_client`` is answered with 401 and a
  ``WWW-Authenticate`` header, also
  when the client tried ``client_secret_post``: section 5.2 lets any failed client
  authentication answer 401, and RFC 9110 section 15.5.2 says a 401 "MUST" carry
  a challenge (a 401 without one leaves HTTP clients unable to tell what to send).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from kroonika.audit import Actor, ActorType
from kroonika.tokens._errors import (
    CredentialsInBody,
    InvalidClient,
    InvalidScope,
    MisplacedCredentials,
    MultipleAuthMethods,
    TokenError,
    TooManyRequests,
    UnsupportedGrantType,
)

if TYPE_CHECKING:
    from kroonika.tokens._clients import Client, ClientRegistry


FORM_REQUIRED = "the body must be application/x-www-form-urlencoded"
#: Section 5.1: "Cache-Control: no-store" and "Pragma: no-cache" on every answer that
#: carries a token or an error (section 5.2 answers too).
NO_STORE: Mapping[str, str] = MappingProxyType({"Cache-Control": "no-store", "Pragma": "no-cache"})
CLIENT_CREDENTIALS = "client_credentials"
_CREDENTIAL_FIELDS = ("client_id", "client_secret")
UNAVAILABLE = "the service cannot handle this request now; try again later"
#: Section 3.3: ``scope-token *( SP scope-token )``, ``scope-token = 1*NQCHAR``
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*")
#: Section 5.2: the characters ``error_description`` may hold, and the rest
_NOT_IN_DESCRIPTION = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


@dataclass(frozen=True, slots=True)
class Credentials:
    client_id: str
    secret: str = field(repr=False)
    method: str  # client_secret_basic | client_secret_post


@dataclass(frozen=True, slots=True)
class FormBody:
    """An ``application/x-www-form-urlencoded`` body: each parameter's value and the
    names sent more than once (section 3.1). A repeated ``client_id`` or
    ``client_secret`` has the value ``""``: no credential is read from it."""

    fields: Mapping[str, str]
    repeated: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, pairs: Iterable[tuple[str, Any]]) -> FormBody:
        """From the body's (name, value) pairs in order; a value that is not text (a
        file part) is left out."""
        fields: dict[str, str] = {}
        repeated: set[str] = set()
        for name, value in pairs:
            if not isinstance(value, str):
                continue
            if name in fields:
                repeated.add(name)
            fields[name] = value
        for name in repeated.intersection(_CREDENTIAL_FIELDS):
            fields[name] = ""
        return cls(fields, frozenset(repeated))

    def refusal(self) -> TokenError | None:
        """``invalid_request`` when a parameter is repeated (it names the parameter
        only when it is one that Kroonika reads: a name is the caller's input)."""
        if not self.repeated:
            return None
        known = sorted(self.repeated & _KNOWN_PARAMETERS)
        named = f" ({', '.join(known)})" if known else ""
        return TokenError(f"a request parameter is repeated{named}")


_KNOWN_PARAMETERS = frozenset(
    {*_CREDENTIAL_FIELDS, "token", "token_type_hint", "grant_type", "scope"}
)


@dataclass(frozen=True, slots=True)
class WireResponse:
    """What an endpoint answers: status, JSON body and extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def credentials(
    authorization: str | None, form: Mapping[str, Any], *, in_body: bool = True
) -> Credentials:
    """The client's credentials from the request: :class:`InvalidClient` when there are
    none or they are malformed, :class:`MultipleAuthMethods` when Basic comes with
    ``client_id`` or ``client_secret`` in ``form`` (the body's fields), and
    :class:`CredentialsInBody` when those come without Basic to a route that reads
    none from its body (``in_body`` false)."""
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
    if not in_body and (post_id is not None or post_secret is not None):
        raise CredentialsInBody(post_id[:64] if isinstance(post_id, str) and post_id else None)
    if isinstance(post_id, str) and isinstance(post_secret, str) and post_id and post_secret:
        return Credentials(post_id, post_secret, "client_secret_post")
    raise InvalidClient("client authentication required")


def is_scope(value: object) -> bool:
    """Whether ``value`` is a scope as section 3.3 writes one: a string of scope
    tokens (printable ASCII but space, ``"`` and ``\\``) joined by single spaces."""
    return isinstance(value, str) and _SCOPE.fullmatch(value) is not None


def description(text: str) -> str:
    """``text`` in the characters section 5.2 allows an ``error_description`` (a
    quote, a backslash, a control or non-ASCII character becomes ``?``)."""
    return _NOT_IN_DESCRIPTION.sub("?", text)


def error_response(exc: TokenError) -> WireResponse:
    """The section 5.2 answer. A server-side failure (5xx) gets a generic description:
    its message is for the operator's log, not for clients."""
    headers: dict[str, str] = dict(NO_STORE)
    if isinstance(exc, InvalidClient):
        headers["WWW-Authenticate"] = 'Basic realm="kroonika", charset="UTF-8"'
    if isinstance(exc, TooManyRequests):
        headers["Retry-After"] = str(exc.retry_after)
    text = description(str(exc)) if exc.status < 500 else UNAVAILABLE
    return WireResponse(exc.status, {"error": exc.error, "error_description": text}, headers)


def too_many_requests(limit: str, retry_after: int) -> WireResponse:
    """A token endpoint's 429 (RFC 6585 section 4): the section 5.2 object, naming the
    limit in its description, and the wait in ``Retry-After`` (RFC 9110 10.2.3)."""
    return error_response(TooManyRequests(limit, retry_after))


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
    except MisplacedCredentials as exc:
        await on_refused(_claimed(exc.claimed), exc.reason)
        return error_response(exc)
    except InvalidClient as exc:
        await on_refused(_claimed(claimed), "invalid_client")
        return error_response(exc)


def _claimed(client_id: str | None) -> Actor:
    return Actor(ActorType.CLIENT, client_id=client_id) if client_id else Actor()


def client_credentials_request(form: FormBody) -> None:
    """Section 4.4.2: the form of a client credentials access token request; raises
    the section 5.2 error when it is not one (the caller is already authenticated)."""
    refusal = form.refusal()
    if refusal is not None:
        raise refusal
    grant_type = form.fields.get("grant_type")
    if not grant_type:
        raise TokenError("grant_type is required")
    if grant_type != CLIENT_CREDENTIALS:
        raise UnsupportedGrantType()
    if form.fields.get("scope"):
        raise InvalidScope()
