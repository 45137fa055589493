"""What the token endpoints take and answer, for the OpenAPI document.

The endpoints read their bodies by hand (a JSON object, or an RFC 6749 form) so that
every refused call is audited with its client; FastAPI therefore sees no body
parameter. These schemas say in the document what the handlers accept, so that clients
and tools that drive the OpenAPI document (generators, fuzzers) can call them. Extra
fields are ignored by the handlers and left open here.
"""

from __future__ import annotations

from typing import Any

_STRING = {"type": "string"}


def _optional(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional field: the handlers take ``null`` as absent."""
    return {"anyOf": [schema, {"type": "null"}]}


_AUDIENCE = {
    "description": "one audience or a list of them; each must be allowed for the client",
    "anyOf": [_STRING, {"type": "array", "items": _STRING}, {"type": "null"}],
}
_TTL = {"type": "integer", "description": "seconds, within the service's and the client's limits"}
_MINT_FIELDS: dict[str, Any] = {
    "subject": _optional({"type": "string", "pattern": "^[\\x21-\\x7e]{1,200}$"}),
    "audience": _AUDIENCE,
    "ttl_s": _optional(_TTL),
    "claims": _optional(
        {
            "type": "object",
            "description": "custom claims the client is allowed (never reserved ones)",
        }
    ),
}
_MINT = {"type": "object", "properties": _MINT_FIELDS}
_OAUTH_ERROR = {
    "type": "object",
    "properties": {"error": _STRING, "error_description": _STRING},
    "required": ["error"],
}
#: a token route's 429: the RFC 6749 error object, the wait in Retry-After
_TOO_MANY = {
    "description": "Over a rate limit (error rate_limited, the limit named in "
    "error_description): try again after Retry-After seconds",
    "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
    "content": {"application/json": {"schema": _OAUTH_ERROR}},
}
_FORM = {
    "type": "object",
    "properties": {
        "token": {"type": "string", "minLength": 1},
        "token_type_hint": {
            "type": "string",
            "description": "access_token or refresh_token; any value is taken and ignored "
            "(RFC 7009 section 2.2, RFC 7662 section 2.1): every token here is a JWT access "
            "token",
        },
        "client_id": _STRING,
        "client_secret": _STRING,
    },
    "required": ["token"],
}


def _refusals(*statuses: int) -> dict[int | str, dict[str, Any]]:
    texts = {
        400: "Malformed request (RFC 6749 error object)",
        401: "Client or bearer authentication failed",
        403: "Refused for this client, session or source",
        404: "Not offered by this configuration",
    }
    out: dict[int | str, dict[str, Any]] = {
        status: {
            "description": texts[status],
            "content": {"application/json": {"schema": _OAUTH_ERROR}},
        }
        for status in statuses
    }
    out[429] = _TOO_MANY
    return out


def json_body(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    """``openapi_extra`` of an endpoint that takes a JSON object with ``properties``."""
    schema = {"type": "object", "properties": properties, "required": list(required)}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    }


def form_body() -> dict[str, Any]:
    """``openapi_extra`` of RFC 7662 introspection and RFC 7009 revocation: a form with
    ``token`` (client credentials in HTTP Basic or, as RFC 6749 allows, the form)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": _FORM}},
        }
    }


#: RFC 6749 section 4.4.2: the client credentials grant, the form ``/tokens`` also takes
_TOKEN_REQUEST = {
    "type": "object",
    "properties": {
        "grant_type": {"type": "string", "enum": ["client_credentials"]},
        "client_id": _STRING,
        "client_secret": _STRING,
    },
    "required": ["grant_type"],
}
MINT = json_body(_MINT_FIELDS)
MINT["requestBody"]["content"]["application/x-www-form-urlencoded"] = {"schema": _TOKEN_REQUEST}
#: ``/tokens``: 201 for the JSON mint request, 200 for the RFC 6749 token request
MINT_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "RFC 6749 section 5.1 access token response (form body: the client "
        "credentials grant)",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "access_token": _STRING,
                        "token_type": _STRING,
                        "expires_in": {"type": "integer"},
                    },
                    "required": ["access_token", "token_type", "expires_in"],
                }
            }
        },
    },
    **_refusals(400, 401, 403),
}
VALIDATE = json_body({"token": _STRING, "audience": _optional(_STRING)}, "token")
EXTEND = json_body(
    {
        "token": {**_STRING, "description": "required with client authentication"},
        "ttl_s": _optional(_TTL),
    }
)
BULK_VALIDATE = json_body(
    {"tokens": {"type": "array", "items": _STRING}, "audience": _optional(_STRING)}, "tokens"
)
BULK_REVOKE = json_body(
    {
        "items": {
            "type": "array",
            "items": {"type": "object", "properties": {"token": _STRING, "jti": _STRING}},
        },
        "reason": _optional(_STRING),
    },
    "items",
)
BULK_ISSUE = json_body({"items": {"type": "array", "items": _MINT}}, "items")
CLIENT_REFUSALS = _refusals(400, 401, 403)
#: ``/tokens/mine`` (a bad filter; no or a bad bearer token; opened from another site
#: with the access-token cookie) and ``/tokens/session`` (no session; no CSRF token or a
#: threat feed; body delivery off)
MINE_REFUSALS = _refusals(400, 401, 403)
SESSION_REFUSALS = _refusals(401, 403, 404)


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_COUNT = {"type": "integer", "minimum": 0, "maximum": 2**53}
MINE = {
    "parameters": [
        _query("limit", _COUNT, "page size, at most 100 (none or 0: 20)"),
        _query("cursor", _STRING, "next_cursor of the previous page"),
        _query(
            "state",
            {"type": "string", "enum": ["active", "expired", "replaced", "revoked"]},
            "token state",
        ),
        _query("type", {"type": "string", "enum": ["custom", "session"]}, "token type"),
        _query(
            "client_id", {"type": "string", "pattern": "^[\\x21-\\x7e]{1,64}$"}, "issuing client"
        ),
        _query("issued_after", _COUNT, "seconds since the epoch"),
        _query("issued_before", _COUNT, "seconds since the epoch"),
    ]
}
