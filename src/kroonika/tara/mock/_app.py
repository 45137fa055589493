"""The TARA mock as a Starlette application: discovery, authorize, login page, token, JWKS,
userinfo and the ``/mock/*`` control API.

Wire behaviour follows /work/shared/TARA.md (RIA's TARA technical specification): OAuth 2.0
(RFC 6749) authorization-code flow, OpenID Connect Core 1.0 and Discovery 1.0, with TARA's
quirks unless ``MockConfig.strict``. State is in memory: run one process.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import ipaddress
import json
import logging
import re
import unicodedata
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.datastructures import FormData, QueryParams, UploadFile
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from kroonika.tara.isikukood import InvalidPersonalCode
from kroonika.tara.isikukood import validate as validate_personal_code
from kroonika.tara.mock._identities import (
    DEFAULT_ACR,
    METHODS,
    PUBLIC_IDENTITIES,
    Acr,
    Method,
    acr_rank,
    parse_acr,
    parse_method,
    public_identity,
)
from kroonika.tara.mock._keys import KeyRing, generate_key, load_or_generate
from kroonika.tara.mock._pages import DEFAULT_LOCALE, LOCALES, Pages, pick_locale, text
from kroonika.tara.mock._store import ExpiringStore
from kroonika.tara.mock._tokens import (
    AuthorizationRequest,
    Grant,
    Person,
    id_token_claims,
    sign,
    userinfo_claims,
)
from kroonika.tara.mock.config import (
    KNOWN_SCOPES,
    Misbehaviour,
    MockConfig,
    RegisteredClient,
    is_known_scope,
    methods_for_scopes,
)

__all__ = ["MockServer", "create_app"]

logger = logging.getLogger("kroonika.tara.mock")

_AUTHORIZE_PARAMS = (
    "response_type",
    "scope",
    "state",
    "nonce",
    "ui_locales",
    "acr_values",
    "autologin",
    "autologin_method",
    "autologin_given_name",
    "autologin_family_name",
    "autologin_acr",
)
#: Token request parameters, each at most once (RFC 6749 section 3.2). PKCE's
#: ``code_challenge``, ``code_challenge_method`` and ``code_verifier`` are not among these
#: lists: TARA does not document PKCE, so the mock ignores them as TARA ignores every
#: parameter it does not document (RFC 6749 sections 3.1 and 3.2; decision 0005).
_TOKEN_PARAMS = (
    "grant_type",
    "code",
    "redirect_uri",
    "client_id",
    "client_secret",
)
#: Bounds on what an authorization request may carry. TARA.md gives none; these leave
#: headroom over what a relying party sends (Kroonika: a 43-character state and nonce,
#: ui_locales of at most 64, the longest sensible scope under 100 characters) and match
#: Kroonika's own callback, which refuses a state over 256 (decision 0015).
_STATE_MAX = 256
_NONCE_MAX = 256
_UI_LOCALES_MAX = 64
_SCOPE_MAX = 1024
#: Form bodies (the login form, the token request): what they carry is a few hundred
#: bytes in at most ten fields, so a body is read only up to these bounds.
_FORM_TYPE = "application/x-www-form-urlencoded"
_FORM_MAX_BYTES = 16 * 1024
_FORM_MAX_FIELDS = 32
#: A /mock/* body: every switch at once is under 400 bytes.
_CONTROL_MAX_BYTES = 16 * 1024
_CONTENT_LENGTH = re.compile(r"[0-9]{1,20}")
_NAME = re.compile(r"[^\W\d_]+(?:(?:[ \-’']|’ |' )[^\W\d_]+)*")
_DEFAULT_PHONE = "+37200000766"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class MockServer:
    """The running state of one mock: configuration, keys, switches and the in-memory stores."""

    def __init__(self, config: MockConfig) -> None:
        self.config = config
        if config.keys is not None:
            keys = config.keys
        elif config.key_dir is not None:
            keys = load_or_generate(config.key_dir)
        else:
            keys = (generate_key(), generate_key())
        self.keys = KeyRing(keys, config.signing_key)
        self.misbehaviour: Misbehaviour = config.misbehaviour
        self.logins: ExpiringStore[AuthorizationRequest] = ExpiringStore(
            config.login_ttl_seconds,
            config.clock,
            max_entries=config.max_pending_logins,
            name="pending logins",
            owned_by="client address",
        )
        self.codes: ExpiringStore[Grant] = ExpiringStore(
            config.code_ttl_seconds, config.clock, name="authorization codes"
        )
        self.access_tokens: ExpiringStore[Grant] = ExpiringStore(
            config.access_token_ttl_seconds, config.clock, prefix="AT-", name="access tokens"
        )
        self.pages = Pages()

    def now(self) -> int:
        """The injected clock, in whole seconds."""
        return int(self.config.clock())


def _server(request: Request) -> MockServer:
    server = request.app.state.mock
    if not isinstance(server, MockServer):
        raise TypeError("app.state.mock is not a MockServer")
    return server


class _LoginRefused(Exception):
    """The login form or autologin parameters cannot complete; the message is for the user."""


# --- discovery and keys -------------------------------------------------------------------


def discovery_document(config: MockConfig) -> dict[str, Any]:
    """OpenID Provider metadata (OIDC Discovery 1.0 section 3) as TARA publishes it."""
    issuer = config.issuer
    phone_claims = (
        ["phone_number", "phone_number_verified"]
        if config.strict
        else ["phonenumber", "phonenumber_verified"]  # sic: TARA's discovery spelling
    )
    auth_methods = (
        ["client_secret_basic", "client_secret_post"] if config.strict else ["client_secret_basic"]
    )
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oidc/authorize",
        "token_endpoint": f"{issuer}/oidc/token",
        "userinfo_endpoint": f"{issuer}/oidc/profile",
        "jwks_uri": f"{issuer}/oidc/jwks",
        "scopes_supported": [*sorted(KNOWN_SCOPES), "eidas:country:*"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "acr_values_supported": ["low", "substantial", "high"],
        "ui_locales_supported": list(LOCALES),
        "claim_types_supported": ["normal"],
        "claims_supported": [
            "sub",
            "given_name",
            "family_name",
            "date_of_birth",
            "email",
            "email_verified",
            *phone_claims,
        ],
    }


#: Where the ``foreign_endpoints`` switch says the back-channel endpoints are.
FOREIGN_ORIGIN = "https://tara.attacker.invalid"


async def discovery(request: Request) -> Response:
    """``GET /.well-known/openid-configuration`` (and the legacy ``/oidc/...`` path)."""
    server = _server(request)
    document = discovery_document(server.config)
    if server.misbehaviour.foreign_endpoints:
        for name in ("token_endpoint", "jwks_uri"):
            document[name] = FOREIGN_ORIGIN + urlsplit(document[name]).path
    return JSONResponse(document)


async def jwks(request: Request) -> Response:
    """``GET /oidc/jwks``: both public keys (503 under the ``jwks_unavailable`` switch)."""
    server = _server(request)
    if server.misbehaviour.jwks_unavailable:
        return PlainTextResponse("the key set is unavailable", status_code=503)
    return JSONResponse(server.keys.jwks())


# --- authorization ---------------------------------------------------------------------------


def _redirect(uri: str, params: dict[str, str]) -> RedirectResponse:
    separator = "&" if urlsplit(uri).query else "?"
    return RedirectResponse(
        uri + separator + urlencode(params),
        status_code=302,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


#: What RFC 6749 (section 4.1.2.1) allows in error_description: printable ASCII but '"'
#: and '\\'. A description naming what was sent (an unknown scope) is cut to this form.
_NOT_OAUTH_TEXT = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
_DESCRIPTION_MAX = 200


def _oauth_text(description: str) -> str:
    shown = _NOT_OAUTH_TEXT.sub("?", description)
    return shown if len(shown) <= _DESCRIPTION_MAX else shown[: _DESCRIPTION_MAX - 3] + "..."


def _redirect_error(
    redirect_uri: str, error: str, description: str, state: str | None
) -> RedirectResponse:
    params = {"error": error, "error_description": _oauth_text(description)}
    if state is not None:
        params["state"] = state
    logger.info("authorization refused: %s", error)
    return _redirect(redirect_uri, params)


def _parse_scopes(raw: str) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for scope in raw.split(" "):
        if scope:
            seen.setdefault(scope, None)
    return tuple(seen)


def _bound_problem(params: QueryParams) -> tuple[str, str] | None:
    """The OAuth error and description for a parameter over its bound, or None."""
    nonce = params.get("nonce")
    if nonce is not None and len(nonce) > _NONCE_MAX:
        return "invalid_request", f"nonce has at most {_NONCE_MAX} characters"
    ui_locales = params.get("ui_locales")
    if ui_locales is not None and len(ui_locales) > _UI_LOCALES_MAX:
        return "invalid_request", f"ui_locales has at most {_UI_LOCALES_MAX} characters"
    if len(params.get("scope", "")) > _SCOPE_MAX:
        return "invalid_scope", f"scope has at most {_SCOPE_MAX} characters"
    return None


def _scope_problem(scopes: tuple[str, ...], client: RegisteredClient) -> str | None:
    if "openid" not in scopes:
        return "scope must contain openid"
    unknown = [s for s in scopes if not is_known_scope(s)]
    if unknown:
        return f"unknown scope: {' '.join(unknown)}"
    refused = [s for s in scopes if not client.allows_scope(s)]
    if refused:
        return f"scope not allowed for this client: {' '.join(refused)}"
    if any(s.startswith("eidas:country:") for s in scopes) and "eidasonly" not in scopes:
        return "eidas:country scope is only allowed with eidasonly"
    return None


def _allowed_methods(scopes: tuple[str, ...], client: RegisteredClient) -> tuple[Method, ...]:
    # No method scope asked: every method the client is registered for (eidasonly in the
    # registration only means that the client may ask for eIDAS alone).
    registered = {"eidas" if s == "eidasonly" else s for s in client.allowed_scopes}
    wanted = methods_for_scopes(scopes) or methods_for_scopes(registered)
    return tuple(m for m in METHODS if not wanted or m in wanted)


async def authorize(request: Request) -> Response:
    """``GET /oidc/authorize``: validate, then show the login page (or log in automatically)."""
    server = _server(request)
    params = request.query_params
    ui_locales = params.get("ui_locales")
    locale = pick_locale(ui_locales if ui_locales and len(ui_locales) <= _UI_LOCALES_MAX else None)
    for name in ("client_id", "redirect_uri"):
        if len(params.getlist(name)) > 1:
            return server.pages.error(locale, text(locale, "duplicate_parameter", name=name))
    client = server.config.client(params.get("client_id", ""))
    if client is None:
        logger.info("authorization refused: unknown client")
        return server.pages.error(locale, text(locale, "unknown_client"))
    redirect_uri = params.get("redirect_uri")
    if redirect_uri is None or redirect_uri not in client.redirect_uris:
        logger.info("authorization refused: unregistered redirect_uri")
        return server.pages.error(locale, text(locale, "bad_redirect_uri"))

    raw_state = params.get("state")
    # A state over the bound goes back in no redirect: the RP cannot have sent it, and
    # would get its own string of up to a URL's length back.
    state = raw_state if raw_state is None or len(raw_state) <= _STATE_MAX else None
    duplicate = next((n for n in _AUTHORIZE_PARAMS if len(params.getlist(n)) > 1), None)
    if duplicate is not None:
        return _redirect_error(
            redirect_uri, "invalid_request", f"parameter {duplicate} occurs more than once", state
        )
    if params.get("response_type") != "code":
        return _redirect_error(
            redirect_uri,
            "unsupported_response_type",
            "only response_type=code is supported",
            state,
        )
    if raw_state is None or not 8 <= len(raw_state) <= _STATE_MAX:
        return _redirect_error(
            redirect_uri,
            "invalid_state",
            f"state is required and has 8 to {_STATE_MAX} characters",
            state,
        )
    bound_problem = _bound_problem(params)
    if bound_problem is not None:
        error, description = bound_problem
        return _redirect_error(redirect_uri, error, description, state)
    scopes = _parse_scopes(params.get("scope", ""))
    problem = _scope_problem(scopes, client)
    if problem is not None:
        return _redirect_error(redirect_uri, "invalid_scope", problem, state)
    raw_acr = params.get("acr_values")
    acr = DEFAULT_ACR if raw_acr is None else parse_acr(raw_acr)
    if acr is None:
        return _redirect_error(
            redirect_uri, "invalid_request", "acr_values is one of low, substantial, high", state
        )

    auth_request = AuthorizationRequest(
        client_id=client.client_id,
        redirect_uri=redirect_uri,
        scopes=scopes,
        state=raw_state,
        nonce=params.get("nonce"),
        acr=acr,
        locale=locale,
        methods=_allowed_methods(scopes, client),
    )
    autologin = params.get("autologin")
    if autologin is not None:
        if not server.config.allow_autologin:
            return server.pages.error(locale, text(locale, "autologin_disabled"))
        if autologin == "cancel":
            return _cancel(auth_request)
        try:
            person = _person(
                server,
                auth_request,
                locale,
                code=autologin,
                given_name=params.get("autologin_given_name"),
                family_name=params.get("autologin_family_name"),
                method=params.get("autologin_method"),
                acr=params.get("autologin_acr"),
            )
        except _LoginRefused as refused:
            return server.pages.error(locale, text(locale, "autologin_failed", reason=str(refused)))
        return _complete(server, auth_request, person)

    tx = server.logins.put(auth_request, owner=_source(request))
    return _login_page(server, auth_request, tx, locale)


def _source(request: Request) -> str:
    """Whose pending login this is, for the store's fair share: the client address, an
    IPv6 one by its /64 (one host or home network is given a whole /64 and can pick any
    address in it), an IPv4-mapped one as IPv4."""
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _login_page(
    server: MockServer,
    auth_request: AuthorizationRequest,
    tx: str,
    locale: str,
    *,
    error: str | None = None,
    form: dict[str, str] | None = None,
    selected: str | None = None,
) -> Response:
    identities = [p for p in PUBLIC_IDENTITIES if p.method in auth_request.methods]
    values = {"personal_code": "", "given_name": "", "family_name": "", "method": "", "acr": ""}
    values.update({name: _printable(value) for name, value in (form or {}).items()})
    return server.pages.login(
        locale,
        status_code=200 if error is None else 400,
        tx=tx,
        client_id=auth_request.client_id,
        requested_acr=auth_request.acr,
        identities=identities,
        methods=auth_request.methods,
        error=error,
        form=values,
        selected=selected,
    )


def _printable(value: str) -> str:
    """``value`` without control and format characters (Unicode Cc, Cf: ESC, CR, LF, NUL,
    bidi overrides, zero-width ones), for showing typed input back on the page."""
    return "".join(c for c in value if unicodedata.category(c) not in ("Cc", "Cf"))


def _clean_name(value: str | None, locale: str) -> str:
    name = unicodedata.normalize("NFC", (value or "").strip())
    if not name:
        raise _LoginRefused(text(locale, "names_required"))
    if len(name) > 100 or _NAME.fullmatch(name) is None:
        raise _LoginRefused(text(locale, "bad_name"))
    return name.upper()


def _person(
    server: MockServer,
    auth_request: AuthorizationRequest,
    locale: str,
    *,
    code: str,
    given_name: str | None,
    family_name: str | None,
    method: str | None,
    acr: str | None,
) -> Person:
    """The person logging in, from a public identity or typed data, checked against the request."""
    try:
        decoded = validate_personal_code(code.strip())
    except InvalidPersonalCode as exc:
        raise _LoginRefused(text(locale, "bad_code", reason=exc.reason)) from None
    known = public_identity(decoded.code)
    chosen_method: Method | None
    if method:
        chosen_method = parse_method(method)
    elif known is not None:
        chosen_method = known.method
    else:
        chosen_method = auth_request.methods[0]
    if chosen_method is None or chosen_method not in auth_request.methods:
        raise _LoginRefused(text(locale, "method_not_allowed"))
    chosen_acr: Acr | None
    if acr:
        chosen_acr = parse_acr(acr)
    elif known is not None:
        chosen_acr = known.acr
    else:
        chosen_acr = "substantial" if chosen_method == "eidas" else "high"
    if chosen_acr is None:
        raise _LoginRefused(text(locale, "choose"))
    if acr_rank(chosen_acr) < acr_rank(auth_request.acr):
        raise _LoginRefused(text(locale, "acr_too_low", acr=chosen_acr, requested=auth_request.acr))
    if known is not None and not given_name and not family_name:
        given, family = known.given_name, known.family_name
    else:
        given = _clean_name(given_name, locale)
        family = _clean_name(family_name, locale)
    phone = None
    if chosen_method == "mID":
        phone = known.phone_number if known is not None and known.phone_number else _DEFAULT_PHONE
    return Person(
        code=decoded.code,
        given_name=given,
        family_name=family,
        date_of_birth=decoded.birth_date,
        method=chosen_method,
        acr=chosen_acr,
        phone_number=phone,
    )


def _cancel(auth_request: AuthorizationRequest) -> Response:
    return _redirect_error(
        auth_request.redirect_uri,
        "user_cancel",
        "User canceled the authentication process.",
        auth_request.state,
    )


def _complete(server: MockServer, auth_request: AuthorizationRequest, person: Person) -> Response:
    if server.misbehaviour.user_cancel:
        return _cancel(auth_request)
    grant = Grant(request=auth_request, person=person, auth_time=server.now())
    code = server.codes.put(grant)
    logger.info(
        "authorization code issued: client=%s method=%s acr=%s",
        auth_request.client_id,
        person.method,
        person.acr,
    )
    return _redirect(
        auth_request.redirect_uri,
        {"code": code, "state": auth_request.state, "scope": auth_request.scope},
    )


class _BodyRefused(Exception):
    """A form body that is not read: ``reason`` is a text key, ``status_code`` the answer's."""

    def __init__(self, reason: str, status_code: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


async def _bounded_body(request: Request, limit: int) -> bytes | None:
    """The body, or None if it has more than ``limit`` bytes: refused from its
    ``Content-Length``, or as soon as more has arrived, never read whole."""
    declared = request.headers.get("content-length", "")
    if _CONTENT_LENGTH.fullmatch(declared) and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


async def _read_form(request: Request) -> FormData:
    """The fields of an ``application/x-www-form-urlencoded`` body, strictly: at most
    :data:`_FORM_MAX_BYTES` read (a larger body is refused before the rest arrives), at
    most :data:`_FORM_MAX_FIELDS` fields, and UTF-8 throughout, raw or percent-encoded.
    (Starlette's parser reads raw bytes as Latin-1, replaces bad percent-encoded UTF-8,
    answers a malformed body in plain text and reads up to 1,000 fields of 1 MiB each.)"""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != _FORM_TYPE:
        raise _BodyRefused("form_content_type", 415)
    body = await _bounded_body(request, _FORM_MAX_BYTES)
    if body is None:
        raise _BodyRefused("form_too_large", 413)
    try:
        fields: list[tuple[str, str | UploadFile]] = list(
            parse_qsl(
                body.decode("utf-8"),
                keep_blank_values=True,
                encoding="utf-8",
                errors="strict",
                max_num_fields=_FORM_MAX_FIELDS,
            )
        )
    except UnicodeDecodeError:  # raw bytes, or percent-encoded ones, that are not UTF-8
        raise _BodyRefused("form_not_utf8", 400) from None
    except ValueError:  # parse_qsl: more than max_num_fields
        raise _BodyRefused("form_too_many_fields", 400) from None
    return FormData(fields)


def _form_str(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


async def login_page(request: Request) -> Response:
    """``GET /oidc/login?tx=...&lang=...``: the login page again, e.g. in another language."""
    server = _server(request)
    lang = request.query_params.get("lang", "")
    tx = request.query_params.get("tx", "")
    auth_request = server.logins.get(tx)
    locale = lang if lang in LOCALES else (auth_request.locale if auth_request else "et")
    if auth_request is None:
        return server.pages.error(locale, text(locale, "login_expired"))
    return _login_page(server, auth_request, tx, locale)


async def login_submit(request: Request) -> Response:
    """``POST /oidc/login``: the user picked or typed an identity, or pressed back."""
    server = _server(request)
    # The page posts its language in the URL too, so that a body it cannot read is still
    # refused in the language the page was shown in; without one, Estonian (TARA's default).
    url_lang = request.query_params.get("lang", "")
    try:
        form = await _read_form(request)
    except _BodyRefused as refused:
        logger.info("login form refused: %s", refused.reason)
        locale = url_lang if url_lang in LOCALES else DEFAULT_LOCALE
        message = text(
            locale, refused.reason, limit=str(_FORM_MAX_BYTES), fields=str(_FORM_MAX_FIELDS)
        )
        return server.pages.error(locale, message, status_code=refused.status_code)
    tx = _form_str(form, "tx")
    lang = _form_str(form, "lang") or url_lang
    auth_request = server.logins.get(tx)
    locale = lang if lang in LOCALES else (auth_request.locale if auth_request else "et")
    if auth_request is None:
        return server.pages.error(locale, text(locale, "login_expired"))
    if _form_str(form, "action") == "cancel":
        server.logins.take(tx)
        return _cancel(auth_request)

    selected = _form_str(form, "identity")
    typed = {
        name: _form_str(form, name)
        for name in ("personal_code", "given_name", "family_name", "method", "acr")
    }
    try:
        if selected == "custom" or (not selected and typed["personal_code"]):
            person = _person(
                server,
                auth_request,
                locale,
                code=typed["personal_code"],
                given_name=typed["given_name"],
                family_name=typed["family_name"],
                method=typed["method"],
                acr=typed["acr"],
            )
        elif selected:
            if public_identity(selected) is None:
                raise _LoginRefused(text(locale, "unknown_identity"))
            person = _person(
                server,
                auth_request,
                locale,
                code=selected,
                given_name=None,
                family_name=None,
                method=None,
                acr=None,
            )
        else:
            raise _LoginRefused(text(locale, "choose"))
    except _LoginRefused as refused:
        return _login_page(
            server,
            auth_request,
            tx,
            locale,
            error=str(refused),
            form=typed,
            selected=selected or None,
        )
    if server.logins.take(tx) is None:
        return server.pages.error(locale, text(locale, "login_expired"))
    return _complete(server, auth_request, person)


# --- token endpoint (RFC 6749 section 4.1.3 and 5) ------------------------------------------


class _TokenError(Exception):
    def __init__(self, error: str, description: str, status_code: int = 400) -> None:
        super().__init__(error)
        self.error = error
        self.description = description
        self.status_code = status_code

    def response(self) -> JSONResponse:
        headers = dict(_NO_STORE)
        if self.status_code == 401:
            headers["WWW-Authenticate"] = 'Basic realm="tara-mock"'
        return JSONResponse(
            {"error": self.error, "error_description": self.description},
            status_code=self.status_code,
            headers=headers,
        )


_TOKEN_BODY_REFUSALS = {
    "form_content_type": f"the body must be {_FORM_TYPE}",
    "form_too_large": f"the body has at most {_FORM_MAX_BYTES} bytes",
    "form_not_utf8": "the body is not UTF-8",
    "form_too_many_fields": f"the body has at most {_FORM_MAX_FIELDS} fields",
}


def _basic_credentials(header: str) -> tuple[str, str]:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise _TokenError("invalid_client", "unsupported Authorization scheme", 401)
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error (not base64), non-ASCII text, UnicodeDecodeError
        raise _TokenError("invalid_client", "malformed Basic credentials", 401) from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise _TokenError("invalid_client", "malformed Basic credentials", 401)
    # RFC 6749 section 2.3.1: both parts are application/x-www-form-urlencoded first.
    return unquote_plus(client_id), unquote_plus(secret)


def _authenticate_client(server: MockServer, request: Request, form: FormData) -> RegisteredClient:
    header = request.headers.get("authorization")
    form_id, form_secret = form.get("client_id"), form.get("client_secret")
    if header is not None:
        if form_secret is not None:
            raise _TokenError("invalid_client", "use exactly one client authentication method", 401)
        client_id, secret = _basic_credentials(header)
        method = "client_secret_basic"
        if form_id is not None and form_id != client_id:
            raise _TokenError("invalid_client", "client_id differs from the credentials", 401)
    elif isinstance(form_id, str) and isinstance(form_secret, str):
        client_id, secret, method = form_id, form_secret, "client_secret_post"
    else:
        raise _TokenError("invalid_client", "client authentication is required", 401)
    client = server.config.client(client_id)
    expected = client.secret.get_secret_value() if client is not None else "x" * 32
    secret_ok = hmac.compare_digest(secret.encode("utf-8"), expected.encode("utf-8"))
    if client is None or not secret_ok:
        raise _TokenError("invalid_client", "unknown client or wrong secret", 401)
    if client.auth_method != method:
        raise _TokenError("invalid_client", f"this client must use {client.auth_method}", 401)
    return client


async def token(request: Request) -> Response:
    """``POST /oidc/token``: exchange a code for the ID token and an access token."""
    server = _server(request)
    misbehaviour = server.misbehaviour
    if misbehaviour.slow_token_endpoint_seconds > 0:
        await asyncio.sleep(misbehaviour.slow_token_endpoint_seconds)
    if misbehaviour.fail_token_endpoint:
        return JSONResponse(
            {"error": "server_error", "error_description": "switched on: fail_token_endpoint"},
            status_code=500,
            headers=_NO_STORE,
        )
    if misbehaviour.token_endpoint_status:
        return PlainTextResponse(
            "switched on: token_endpoint_status",
            status_code=misbehaviour.token_endpoint_status,
            headers=_NO_STORE,
        )
    if misbehaviour.garbled_token_response:
        return PlainTextResponse(
            "<html>switched on: garbled_token_response", status_code=200, headers=_NO_STORE
        )
    try:
        return await _token(server, request)
    except _TokenError as exc:
        logger.info("token request refused: %s (%s)", exc.error, exc.description)
        return exc.response()


async def _token(server: MockServer, request: Request) -> Response:
    try:
        form = await _read_form(request)
    except _BodyRefused as refused:
        raise _TokenError("invalid_request", _TOKEN_BODY_REFUSALS[refused.reason]) from None
    # Before authentication: which of two client_id or client_secret values counts is
    # unknowable, and a refused request must not use up the code.
    for name in _TOKEN_PARAMS:
        if len(form.getlist(name)) > 1:
            raise _TokenError("invalid_request", f"parameter {name} occurs more than once")
    client = _authenticate_client(server, request, form)
    if not client.accepts_token_request_from(request.client.host if request.client else None):
        raise _TokenError("unauthorized_client", "token request from an unregistered address")
    grant_type, code, redirect_uri = (form.get(n) for n in ("grant_type", "code", "redirect_uri"))
    if not isinstance(grant_type, str):
        raise _TokenError("invalid_request", "grant_type is required")
    if grant_type != "authorization_code":
        raise _TokenError("unsupported_grant_type", "only authorization_code is supported")
    if not isinstance(code, str) or not code:
        raise _TokenError("invalid_request", "code is required")
    if not isinstance(redirect_uri, str) or not redirect_uri:
        raise _TokenError("invalid_request", "redirect_uri is required")
    # Single use: any presentation by an authenticated client consumes the code.
    grant = server.codes.take(code)
    if grant is None:
        raise _TokenError("invalid_grant", "the code is unknown, expired or already used")
    if grant.request.client_id != client.client_id:
        raise _TokenError("invalid_grant", "the code was issued to another client")
    if grant.request.redirect_uri != redirect_uri:
        raise _TokenError("invalid_grant", "redirect_uri differs from the authorization request")

    access_token = server.access_tokens.put(grant)
    misbehaviour = server.misbehaviour
    claims = id_token_claims(
        grant,
        issuer=server.config.issuer,
        access_token=access_token,
        now=server.now(),
        ttl_seconds=server.config.id_token_ttl_seconds,
        strict=server.config.strict,
        misbehaviour=misbehaviour,
    )
    id_token = sign(claims, server.keys, misbehaviour)
    logger.info("tokens issued: client=%s", client.client_id)
    return JSONResponse(
        {
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": server.config.access_token_ttl_seconds,
            "id_token": id_token,
            "scope": grant.request.scope,
        },
        headers=_NO_STORE,
    )


# --- userinfo (OIDC Core section 5.3) --------------------------------------------------------


async def profile(request: Request) -> Response:
    """``GET/POST /oidc/profile``: the person behind a bearer access token."""
    server = _server(request)
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    grant = server.access_tokens.get(value.strip()) if scheme.lower() == "bearer" else None
    if grant is None:
        error = "invalid_token" if scheme.lower() == "bearer" else "invalid_request"
        return JSONResponse(
            {"error": error, "error_description": "a valid bearer access token is required"},
            status_code=401,
            headers={**_NO_STORE, "WWW-Authenticate": f'Bearer error="{error}"'},
        )
    return JSONResponse(userinfo_claims(grant), headers=_NO_STORE)


# --- control API ------------------------------------------------------------------------------


def _forbidden(description: str) -> JSONResponse:
    logger.info("control API refused: %s", description)
    return JSONResponse({"error": "forbidden", "error_description": description}, 403)


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is a loopback address (an IPv4-mapped one counts as IPv4)."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _control_refusal(server: MockServer, request: Request) -> Response | None:
    """Why this request may not use the control API, or None.

    A browser page never may: it sends ``Origin`` (every POST does, and a page that DNS
    rebinding has put on 127.0.0.1 too), and tools (curl, ``kroonika simulate``) do not.
    Without a control token only loopback clients may; with one, its bearer token."""
    if "origin" in request.headers:
        return _forbidden("the control API does not answer web pages (Origin)")
    expected = server.config.control_token
    if expected is None and not is_loopback(request.client.host if request.client else None):
        return _forbidden(
            "without a control token the control API answers only loopback clients "
            "(set KROONIKA_MOCK_TARA_CONTROL_TOKEN)"
        )
    if expected is not None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        given = value.strip().encode("utf-8")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given, expected.get_secret_value().encode("utf-8")
        ):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
    if request.method == "POST":
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return JSONResponse({"error": "the body must be application/json"}, status_code=415)
    return None


async def _json_object(request: Request) -> dict[str, Any] | Response:
    raw = await _bounded_body(request, _CONTROL_MAX_BYTES)
    if raw is None:
        return JSONResponse(
            {"error": f"the body has at most {_CONTROL_MAX_BYTES} bytes"}, status_code=413
        )
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json can parse
        return JSONResponse({"error": "the body is not JSON"}, status_code=400)
    if not isinstance(body, dict):
        return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
    return body


def _control_state(server: MockServer) -> dict[str, Any]:
    return {
        "misbehaviour": server.misbehaviour.model_dump(),
        "strict": server.config.strict,
        "signing_kid": server.keys.signing_kid,
        "kids": list(server.keys.kids),
    }


async def control_config(request: Request) -> Response:
    """``GET /mock/config`` shows, ``POST /mock/config`` changes the misbehaviour switches."""
    server = _server(request)
    refusal = _control_refusal(server, request)
    if refusal is not None:
        return refusal
    if request.method == "POST":
        body = await _json_object(request)
        if isinstance(body, Response):
            return body
        try:
            server.misbehaviour = Misbehaviour.model_validate(
                {**server.misbehaviour.model_dump(), **body}
            )
        except ValidationError as exc:
            problems = [
                {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]}
                for e in exc.errors()
            ]
            return JSONResponse({"error": "invalid switches", "problems": problems}, 400)
        logger.warning("misbehaviour switches changed: %s", server.misbehaviour.model_dump())
    return JSONResponse(_control_state(server))


async def control_reset(request: Request) -> Response:
    """``POST /mock/reset``: the misbehaviour switches as configured at start."""
    server = _server(request)
    refusal = _control_refusal(server, request)
    if refusal is not None:
        return refusal
    server.misbehaviour = server.config.misbehaviour
    return JSONResponse(_control_state(server))


async def control_rotate(request: Request) -> Response:
    """``POST /mock/rotate`` ``{"new_key": bool}``: sign with the other key (a fresh one if
    ``new_key``; it replaces the key that was not signing, and is published at once)."""
    server = _server(request)
    refusal = _control_refusal(server, request)
    if refusal is not None:
        return refusal
    body = await _json_object(request)
    if isinstance(body, Response):
        return body
    new_key = body.get("new_key", False)
    if set(body) - {"new_key"} or not isinstance(new_key, bool):
        return JSONResponse({"error": "the only field is new_key, a boolean"}, status_code=400)
    kid = server.keys.rotate(generate_key() if new_key else None)
    logger.warning("signing key rotated to kid=%s", kid)
    return JSONResponse(_control_state(server))


# --- application ----------------------------------------------------------------------------


def create_app(config: MockConfig) -> Starlette:
    """Build the mock for ``config``; keys are loaded or generated here, not per request."""
    server = MockServer(config)
    routes = [
        Route("/.well-known/openid-configuration", discovery, methods=["GET"]),
        Route("/oidc/.well-known/openid-configuration", discovery, methods=["GET"]),
        Route("/oidc/authorize", authorize, methods=["GET"]),
        Route("/oidc/login", login_page, methods=["GET"]),
        Route("/oidc/login", login_submit, methods=["POST"]),
        Route("/oidc/token", token, methods=["POST"]),
        Route("/oidc/jwks", jwks, methods=["GET"]),
        Route("/oidc/profile", profile, methods=["GET", "POST"]),
    ]
    if config.control_api:
        routes += [
            Route("/mock/config", control_config, methods=["GET", "POST"]),
            Route("/mock/reset", control_reset, methods=["POST"]),
            Route("/mock/rotate", control_rotate, methods=["POST"]),
        ]
    app = Starlette(routes=routes, exception_handlers={ClientDisconnect: _client_gone})
    app.state.mock = server
    return app


async def _client_gone(request: Request, exc: Exception) -> Response:
    """The caller closed its connection before its body arrived (a request cancelled on
    its side): nobody is left to answer, so one line, not uvicorn's traceback."""
    logger.info(
        "%s %s: the client went away before its body arrived", request.method, request.url.path
    )
    return Response(status_code=400)
