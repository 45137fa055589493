"""Configuration of the TARA mock: registered clients, quirks, keys and misbehaviour switches.

Everything is checked when the configuration is built (STYLE.md 6), so a server that starts
serves what it was told to. :class:`Misbehaviour` is the part that can also change at run time
through ``POST /mock/config`` when the control API is on.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "KNOWN_SCOPES",
    "AuthMethod",
    "Clock",
    "InvalidMockConfig",
    "Misbehaviour",
    "MockConfig",
    "RegisteredClient",
    "is_known_scope",
    "load_clients",
]

AuthMethod = Literal["client_secret_basic", "client_secret_post"]
Clock = Callable[[], float]
"""Returns the current time as seconds since the epoch (``time.time`` by default)."""

KNOWN_SCOPES = frozenset(
    {"openid", "idcard", "mid", "smartid", "eidas", "eidasonly", "email", "phone"}
)
"""Scopes TARA knows, besides ``eidas:country:xx`` (see :func:`is_known_scope`)."""

_COUNTRY_SCOPE = re.compile(r"eidas:country:[a-z]{2}")


def is_known_scope(scope: str) -> bool:
    """True for a TARA scope: one of :data:`KNOWN_SCOPES` or ``eidas:country:xx`` (lower case)."""
    return scope in KNOWN_SCOPES or _COUNTRY_SCOPE.fullmatch(scope) is not None


class InvalidMockConfig(ValueError):
    """The mock configuration or the clients file is unusable; the message says why."""


def _check_absolute_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError(f"{what} must be an absolute http(s) URL, got {url!r}")
    if parts.fragment:
        raise ValueError(f"{what} must not have a fragment, got {url!r}")
    return url


class RegisteredClient(BaseModel):
    """A relying party registered with the mock, as RIA registers it with TARA."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")]
    secret: SecretStr
    redirect_uris: Annotated[tuple[str, ...], Field(min_length=1)]
    allowed_scopes: frozenset[str] = frozenset(
        {"openid", "idcard", "mid", "smartid", "eidas", "email", "phone"}
    )
    """Scopes this client may ask for; ``eidas:country:xx`` is allowed with ``eidasonly``."""
    auth_method: AuthMethod = "client_secret_basic"
    """The one token endpoint authentication method this client uses; the other is refused."""
    token_request_networks: tuple[str, ...] = ()
    """If not empty, token requests from other addresses get ``unauthorized_client``, as TARA
    production answers clients outside their registered IP addresses (CIDR or single IPs)."""

    @field_validator("token_request_networks")
    @classmethod
    def _networks_parse(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for network in value:
            ipaddress.ip_network(network, strict=False)
        return value

    def accepts_token_request_from(self, address: str | None) -> bool:
        """True if a token request from ``address`` is allowed (always, with no networks)."""
        if not self.token_request_networks:
            return True
        if address is None:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(n, strict=False) for n in self.token_request_networks)

    @field_validator("secret")
    @classmethod
    def _secret_is_not_empty(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 8:
            raise ValueError("a client secret has at least 8 characters")
        return value

    @field_validator("redirect_uris")
    @classmethod
    def _redirect_uris_are_absolute(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for uri in value:
            _check_absolute_url(uri, "a redirect URI")
        return value

    @field_validator("allowed_scopes")
    @classmethod
    def _scopes_are_known(cls, value: frozenset[str]) -> frozenset[str]:
        unknown = sorted(s for s in value if s not in KNOWN_SCOPES)
        if unknown:
            raise ValueError(f"unknown scopes {unknown}; known are {sorted(KNOWN_SCOPES)}")
        if "openid" not in value:
            raise ValueError("allowed_scopes must contain openid")
        return value

    def allows_scope(self, scope: str) -> bool:
        """True if this client may ask for ``scope`` (which must already be known)."""
        if _COUNTRY_SCOPE.fullmatch(scope):
            return "eidasonly" in self.allowed_scopes
        return scope in self.allowed_scopes


class Misbehaviour(BaseModel):
    """Switches that make the mock misbehave on purpose, for negative tests of a relying party.

    All are off by default. They are part of :class:`MockConfig` and, when the control API is on,
    can be changed on a running server with ``POST /mock/config``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    user_cancel: bool = False
    """Every completed login answers ``error=user_cancel`` as if the user pressed back."""
    wrong_nonce: bool = False
    """The ID token carries a nonce other than the one asked for."""
    wrong_audience: bool = False
    """The ID token's ``aud`` is not the client id."""
    wrong_issuer: bool = False
    """The ID token's ``iss`` has a trailing slash, so it differs from the discovery issuer."""
    expired_token: bool = False
    """The ID token was issued an hour ago and expired 40 s later."""
    bad_signature: bool = False
    """The ID token's signature does not verify with the key its ``kid`` names."""
    unknown_kid: bool = False
    """The ID token's ``kid`` is not in the JWKS."""
    low_acr: bool = False
    """The ID token's ``acr`` is one level below the one asked for (``low`` at the bottom)."""
    fail_token_endpoint: bool = False
    """The token endpoint answers 500 ``server_error``."""
    slow_token_endpoint_seconds: Annotated[float, Field(ge=0, le=600)] = 0.0
    """The token endpoint waits this long before answering, for timeout tests."""
    token_endpoint_status: Annotated[int, Field(ge=0, le=599)] = 0
    """If not 0 (then 300 to 599), the token endpoint answers this HTTP status with a
    plain-text body, as a proxy or load balancer in front of TARA would."""
    garbled_token_response: bool = False
    """The token endpoint answers 200 with a body that is not JSON."""
    jwks_unavailable: bool = False
    """The JWKS endpoint answers 503 (the rest of the mock works): TARA's key set
    unreachable while a relying party's cached keys still verify its tokens."""
    foreign_endpoints: bool = False
    """The discovery document names ``token_endpoint`` and ``jwks_uri`` on another origin
    (``https://tara.attacker.invalid``), as a tampered or mistaken discovery would."""

    @field_validator("token_endpoint_status")
    @classmethod
    def _status_is_not_a_success(cls, value: int) -> int:
        if value != 0 and value < 300:
            raise ValueError("token_endpoint_status is 0 (off) or 300 to 599")
        return value


def _default_clock() -> float:
    return time.time()


@dataclass(frozen=True, kw_only=True)
class MockConfig:
    """Everything the TARA mock serves; checked when built.

    With ``strict=False`` (the default) the mock reproduces TARA's quirks: a plain-string
    ``aud``, ``nbf``, a ``state`` claim, ``at_hash`` in padded standard base64 and the misspelt
    ``phonenumber`` claim names in discovery. With ``strict=True`` it speaks plain OpenID Connect
    Core: ``aud`` is an array, ``at_hash`` is unpadded base64url, no ``state`` or ``nbf`` claim.
    """

    issuer: str = "http://127.0.0.1:8001"
    """Base URL of the mock, without a trailing slash; also the ``iss`` of its tokens."""
    clients: tuple[RegisteredClient, ...]
    strict: bool = False
    misbehaviour: Misbehaviour = field(default_factory=Misbehaviour)
    control_api: bool = False
    """Serve ``/mock/config`` and ``/mock/rotate``; off means those paths are 404."""
    control_token: SecretStr | None = None
    """If set, ``/mock/*`` requires ``Authorization: Bearer <control_token>``; if not, it
    answers only loopback clients. Either way it refuses requests with ``Origin`` (web pages)."""
    keys: tuple[RSAPrivateKey, RSAPrivateKey] | None = None
    """The two signing keys; if neither this nor ``key_dir`` is set, fresh keys are generated."""
    key_dir: Path | None = None
    """Directory with ``tara-mock-key-1.pem`` and ``-2.pem`` (PKCS #8); created if missing."""
    signing_key: Literal[0, 1] = 0
    """Which of the two keys signs at start; ``POST /mock/rotate`` switches to the other."""
    clock: Clock = _default_clock
    code_ttl_seconds: int = 30
    id_token_ttl_seconds: int = 40
    access_token_ttl_seconds: int = 600
    login_ttl_seconds: int = 1800
    """How long a login page stays usable after the authorization request."""
    max_pending_logins: int = 100_000
    """How many login pages may be open at once (about 0.7 KB each). When full, the client
    address (an IPv6 one by its /64) holding the most loses its oldest (decision 0015)."""
    allow_autologin: bool = True
    """Honour ``autologin=<personal code>`` on ``/oidc/authorize`` (skips the login page)."""

    def __post_init__(self) -> None:
        try:
            _check_absolute_url(self.issuer, "issuer")
        except ValueError as exc:
            raise InvalidMockConfig(str(exc)) from None
        parts = urlsplit(self.issuer)
        if self.issuer.endswith("/") or parts.query:
            raise InvalidMockConfig(
                f"issuer has no trailing slash and no query, got {self.issuer!r}"
            )
        if not self.clients:
            raise InvalidMockConfig("at least one client must be registered")
        ids = [c.client_id for c in self.clients]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise InvalidMockConfig(f"client ids registered twice: {duplicates}")
        if self.keys is not None and self.key_dir is not None:
            raise InvalidMockConfig("give keys or key_dir, not both")
        if self.keys is not None:
            for key in self.keys:
                if key.key_size < 2048:
                    raise InvalidMockConfig("signing keys must be RSA of at least 2048 bits")
        if self.signing_key not in (0, 1):
            raise InvalidMockConfig("signing_key is 0 or 1")
        for name in (
            "code_ttl_seconds",
            "id_token_ttl_seconds",
            "access_token_ttl_seconds",
            "login_ttl_seconds",
            "max_pending_logins",
        ):
            if getattr(self, name) <= 0:
                raise InvalidMockConfig(f"{name} must be positive")
        if self.control_token is not None and len(self.control_token.get_secret_value()) < 16:
            raise InvalidMockConfig(
                "control_token (KROONIKA_MOCK_TARA_CONTROL_TOKEN for the commands) has at "
                "least 16 characters"
            )

    def client(self, client_id: str) -> RegisteredClient | None:
        """The registered client with this id, or None."""
        for candidate in self.clients:
            if candidate.client_id == client_id:
                return candidate
        return None


class _ClientsFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    clients: Annotated[tuple[RegisteredClient, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_ids(self) -> _ClientsFile:
        ids = [c.client_id for c in self.clients]
        if len(ids) != len(set(ids)):
            raise ValueError("client ids must be unique")
        return self


def parse_clients(data: Mapping[str, Any]) -> tuple[RegisteredClient, ...]:
    """Build clients from the parsed contents of a clients file (``{"clients": [...]}``)."""
    try:
        return _ClientsFile.model_validate(data).clients
    except ValidationError as exc:
        # The secret's value never appears: pydantic shows SecretStr inputs masked only once
        # parsed, so render the error locations and messages without the inputs.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidMockConfig(f"bad clients file: {problems}") from None


def load_clients(path: Path | str) -> tuple[RegisteredClient, ...]:
    """Read registered clients from a TOML (``.toml``) or JSON (``.json``) file.

    The file holds a list ``clients`` of tables with ``client_id``, ``secret``,
    ``redirect_uris``, and optionally ``allowed_scopes`` and ``auth_method``
    (``client_secret_basic``, the default, or ``client_secret_post``)::

        [[clients]]
        client_id = "kroonika-dev"
        secret = "a long random string"
        redirect_uris = ["http://127.0.0.1:8000/auth/tara/callback"]
        allowed_scopes = ["openid", "idcard", "mid", "smartid", "email", "phone"]
        auth_method = "client_secret_basic"
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidMockConfig(f"cannot read clients file {file}: {exc.strerror}") from None
    try:
        if file.suffix == ".toml":
            data: object = tomllib.loads(text)
        elif file.suffix == ".json":
            data = json.loads(text)
        else:
            raise InvalidMockConfig(f"clients file must end in .toml or .json, got {file.name}")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise InvalidMockConfig(f"clients file {file} is not valid: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidMockConfig(f"clients file {file} must hold an object with 'clients'")
    return parse_clients(data)


def methods_for_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """The ``amr`` values the method scopes among ``scopes`` name (empty if none do)."""
    names = {"idcard": "idcard", "mid": "mID", "smartid": "smartid", "eidas": "eidas"}
    scope_set = set(scopes)
    if "eidasonly" in scope_set:
        return frozenset({"eidas"})
    return frozenset(names[s] for s in scope_set if s in names)
