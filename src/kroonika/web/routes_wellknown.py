"""``/.well-known``: the JWK set (RFC 7517) and the authorization server metadata
(RFC 8414) naming the issuer, JWKS, introspection and revocation endpoints.

The metadata is RFC 8414's at ``oauth-authorization-server`` and, for the consumers
that look there, the same document at ``openid-configuration`` (RFC 8414 section 5:
that name, reused, refers to general OAuth features). Kroonika is no OpenID Provider:
it issues no ID tokens, so the members OpenID Connect Discovery 1.0 section 3
requires of one (``authorization_endpoint``, ``subject_types_supported``,
``id_token_signing_alg_values_supported``) are absent rather than untrue. RFC 8414
section 2 requires ``response_types_supported``: empty, as there is no authorization
endpoint. ``token_endpoint`` is an RFC 6749 token endpoint: ``/tokens`` takes the
client credentials grant (section 4.4) in a form body besides Kroonika's own JSON
mint request, so ``grant_types_supported`` names that grant (its absence would mean
``authorization_code`` and ``implicit``).

Both are cacheable (RFC 9111 ``Cache-Control: public, max-age``) and carry a strong
``ETag`` (a digest of the body); a conditional ``GET`` whose ``If-None-Match`` names
it is answered ``304 Not Modified`` without a body (RFC 9110 sections 8.8.3, 13.1.2
and 15.4.5), so a relying service can revalidate its cached key set cheaply. ``HEAD``
is answered like ``GET`` without the body (section 9.3.2). The
JWKS is cached for at most the signing-key publish lead: a set fetched just before a
rotation still names the new key before that key signs its first token.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from kroonika.tokens import TokenComponents

router = APIRouter(tags=["well-known"])


def _comps(request: Request) -> TokenComponents:
    comps: TokenComponents = request.app.state.tokens
    return comps


#: The longest a relying service may cache the JWKS (capped by the publish lead).
JWKS_MAX_AGE_S = 300
METADATA_MAX_AGE_S = 3600


def _none_match(header: str | None, etag: str) -> bool:
    """RFC 9110 section 13.1.2: ``*`` or any listed tag equal to ``etag`` under the weak
    comparison (a ``W/`` prefix does not count)."""
    if header is None:
        return False
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or etag in (t.removeprefix("W/") for t in tags)


def cacheable(request: Request, body: dict[str, Any], max_age_s: int) -> Response:
    """``body`` as JSON with Cache-Control and its ETag, or 304 when the caller's
    ``If-None-Match`` already names that ETag."""
    response = JSONResponse(body)
    etag = '"' + hashlib.sha256(bytes(response.body)).hexdigest()[:32] + '"'
    headers = {"Cache-Control": f"public, max-age={max_age_s}", "ETag": etag}
    if _none_match(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    response.headers.update(headers)
    return response


_CACHE_HEADERS = {
    "ETag": {"schema": {"type": "string"}, "description": "the body's entity tag"},
    "Cache-Control": {"schema": {"type": "string"}, "description": "public, max-age"},
}
#: what a cacheable document answers: its ETag and Cache-Control, and a 304 to an
#: ``If-None-Match`` that names the ETag (a relying service's cache revalidating)
CONDITIONAL: dict[int | str, dict[str, Any]] = {
    200: {"headers": _CACHE_HEADERS},
    304: {"description": "Not Modified: If-None-Match names the ETag", "headers": _CACHE_HEADERS},
}
IF_NONE_MATCH: dict[str, Any] = {
    "parameters": [
        {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "ETags the caller holds (RFC 9110 section 13.1.2)",
        }
    ]
}
WELL_KNOWN: dict[str, Any] = {
    "response_model": None,
    "responses": CONDITIONAL,
    "openapi_extra": IF_NONE_MATCH,
}


# HEAD is GET without the body (RFC 9110 section 9.3.2): the server sends the headers
# of the GET answer (ETag, Cache-Control, length) and drops the body. One route per
# method, so each has its own OpenAPI operation id.
@router.get("/.well-known/jwks.json", **WELL_KNOWN)
@router.head("/.well-known/jwks.json", **WELL_KNOWN)
async def jwks(request: Request) -> Response:
    """Every published signing key: pending (published before use), active, and
    superseded ones whose tokens have not all expired yet."""
    ring = _comps(request).keys
    keys = await asyncio.to_thread(ring.jwks)
    return cacheable(request, keys, min(JWKS_MAX_AGE_S, ring.publish_lead_s))


#: How a client authenticates at each endpoint (RFC 6749 section 2.3.1).
AUTH_METHODS = ("client_secret_basic", "client_secret_post")


def metadata(issuer: str, algs: list[str]) -> dict[str, Any]:
    """The RFC 8414 section 2 document. Every name is in the IANA "OAuth Authorization
    Server Metadata" registry but ``token_signing_alg_values_supported`` (the
    algorithms of the access tokens' signatures): no registered name says that (RFC
    9068 defines none; ``token_endpoint_auth_signing_alg_values_supported`` is about
    the JWTs a client authenticates with, which Kroonika does not take), section 2
    allows more members, and relying services pin it as the user guide tells them."""
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "introspection_endpoint": f"{issuer}/introspect",
        "introspection_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "revocation_endpoint": f"{issuer}/revoke",
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint": f"{issuer}/tokens",
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_signing_alg_values_supported": algs,
        "response_types_supported": [],
        "grant_types_supported": ["client_credentials"],
    }


@router.get("/.well-known/openid-configuration", **WELL_KNOWN)
@router.head("/.well-known/openid-configuration", **WELL_KNOWN)
@router.get("/.well-known/oauth-authorization-server", **WELL_KNOWN)
@router.head("/.well-known/oauth-authorization-server", **WELL_KNOWN)
async def server_metadata(request: Request) -> Response:
    comps = _comps(request)
    # every published key's algorithm, not only that of new keys: tokens of an older
    # key (another algorithm before KROONIKA_TOKEN_ALG changed) stay valid, and a
    # consumer that pins the advertised algorithms must accept them
    published = await asyncio.to_thread(comps.keys.published)
    algs: list[str] = sorted({comps.keys.alg, *(k.alg for k in published)})
    body = metadata(comps.service.policy.issuer, algs)
    return cacheable(request, body, METADATA_MAX_AGE_S)
