"""A stand-in TARA for an app made in process (``create_app(..., http_client=...)``):
the start-up check reads its discovery document and its key set, nothing more."""

from __future__ import annotations

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "http://127.0.0.1:8001"


def stand_in_tara(request: httpx.Request) -> httpx.Response:
    """Discovery and a key set with one RSA key (an ``httpx.MockTransport`` handler)."""
    if request.url.path == "/.well-known/openid-configuration":
        return httpx.Response(
            200,
            json={
                "issuer": ISSUER,
                "authorization_endpoint": ISSUER + "/oidc/authorize",
                "token_endpoint": ISSUER + "/oidc/token",
                "jwks_uri": ISSUER + "/oidc/jwks",
            },
        )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    jwk = RSAAlgorithm.to_jwk(key, as_dict=True) | {"kid": "k1", "use": "sig", "alg": "RS256"}
    return httpx.Response(200, json={"keys": [jwk]})


def tara_client() -> httpx.AsyncClient:
    """The HTTP client an app made in process reaches the stand-in TARA with."""
    return httpx.AsyncClient(transport=httpx.MockTransport(stand_in_tara))
