"""``/.well-known``: the JWK set (RFC 7517) and the server metadata (RFC 8414, the
``openid-configuration`` shape) naming the issuer, JWKS, introspection and revocation
endpoints."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from kroonika.tokens import TokenComponents

router = APIRouter(tags=["well-known"])


def _comps(request: Request) -> TokenComponents:
    comps: TokenComponents = request.app.state.tokens
    return comps


@router.get("/.well-known/jwks.json", response_model=None)
async def jwks(request: Request) -> Response:
    """Every published signing key: pending (published before use), active, and
    superseded ones whose tokens have not all expired yet."""
    keys = await asyncio.to_thread(_comps(request).keys.jwks)
    return JSONResponse(keys, headers={"Cache-Control": "public, max-age=300"})


def metadata(issuer: str, algs: list[str]) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "introspection_endpoint": f"{issuer}/introspect",
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
        ],
        "revocation_endpoint": f"{issuer}/revoke",
        "revocation_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
        ],
        "token_endpoint": f"{issuer}/tokens",
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "id_token_signing_alg_values_supported": algs,
        "token_signing_alg_values_supported": algs,
        "subject_types_supported": ["public"],
        "response_types_supported": [],
        "grant_types_supported": [],
    }


@router.get("/.well-known/openid-configuration", response_model=None)
@router.get("/.well-known/oauth-authorization-server", response_model=None)
async def server_metadata(request: Request) -> Response:
    comps = _comps(request)
    return JSONResponse(
        metadata(comps.service.policy.issuer, [comps.keys.alg]),
        headers={"Cache-Control": "public, max-age=3600"},
    )
