"""The TARA relying party's network side: discovery, the JWKS cache, the code exchange.

The HTTP client is injected (an ``httpx.AsyncClient``; tests pass one with a transport) and
every call has a timeout. Pure checks live in :mod:`kroonika.tara._verify`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlencode

import httpx
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import RSAAlgorithm
from jwt.exceptions import InvalidKeyError
from pydantic import SecretStr

from kroonika.tara._errors import (
    ClientRejected,
    CodeExchangeFailed,
    DiscoveryError,
    IdpBadResponse,
    IdpUnavailable,
    IdTokenInvalid,
    RequestRejected,
    TaraError,
)
from kroonika.tara._verify import Acr, Expectations, VerifiedIdToken, verify_id_token

Clock = Callable[[], float]

log = logging.getLogger("kroonika.tara")

_METHOD_SCOPES = {"idcard", "mid", "smartid", "eidas"}
#: Every scope TARA knows (TARA.md), besides ``eidas:country:xx``; any other is answered
#: with ``invalid_scope`` on every login.
TARA_SCOPES = frozenset({"openid", "eidasonly", "email", "phone", *_METHOD_SCOPES})
_COUNTRY_SCOPE = re.compile(r"eidas:country:[a-z]{2}")


def _scope_problem(scopes: Sequence[str]) -> str | None:
    """Why TARA would refuse ``scopes`` (or None): openid missing, a scope it does not
    know (scope names are case-sensitive), ``eidas:country:xx`` without ``eidasonly``."""
    if "openid" not in scopes:
        return "scopes must contain openid"
    unknown = [s for s in scopes if s not in TARA_SCOPES and not _COUNTRY_SCOPE.fullmatch(s)]
    if unknown:
        return f"TARA does not know the scopes {unknown}; it knows {sorted(TARA_SCOPES)}"
    if any(_COUNTRY_SCOPE.fullmatch(s) for s in scopes) and "eidasonly" not in scopes:
        return "an eidas:country:xx scope needs eidasonly"
    return None


@dataclass(frozen=True, slots=True)
class TaraClientConfig:
    issuer: str
    client_id: str
    client_secret: SecretStr
    redirect_uri: str
    scopes: tuple[str, ...] = ("openid",)
    timeout_s: float = 5.0
    leeway_s: int = 10
    jwks_ttl_s: int = 3600
    jwks_stale_if_error_s: int = 86400
    unknown_kid_cooldown_s: float = 10.0

    def __post_init__(self) -> None:
        if self.issuer.endswith("/"):
            raise ValueError("the TARA issuer has no trailing slash")
        problem = _scope_problem(self.scopes)
        if problem is not None:
            raise ValueError(problem)
        if not self.client_id:
            raise ValueError("a client id is required")
        if len(self.client_secret.get_secret_value()) < 8:
            raise ValueError("the client secret is missing or too short")


@dataclass(frozen=True, slots=True)
class Discovery:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


@dataclass(frozen=True, slots=True)
class TokenResponse:
    id_token: str
    access_token: str | None
    scope: str | None


KeySetState = Literal["stale", "expired", "recovered"]


@dataclass(frozen=True, slots=True)
class KeySetChange:
    """A change in how far the cached key set is trusted, for the ``idp.keys`` event:
    ``stale`` (the set cannot be fetched; tokens under a cached kid are verified with
    it), ``expired`` (the stale-if-error window ran out: logins fail) or ``recovered``
    (a fresh set arrived). ``age_s`` is the cached set's age then (for ``recovered``:
    of the set replaced), ``kids`` the key ids it holds (for ``recovered``: the fresh
    set's), ``window_s`` the stale-if-error window; ``error`` says why the set could
    not be fetched; ``recovered`` adds how long the outage lasted (since it was first
    seen) and the kids TARA dropped meanwhile (they were trusted on stale data)."""

    state: KeySetState
    age_s: int
    kids: tuple[str, ...]
    window_s: int
    error: str = ""
    outage_s: int = 0
    withdrawn: tuple[str, ...] = ()


KeySetListener = Callable[[KeySetChange], Awaitable[None]]


class JwksCache:
    """Keys by ``kid``, kept for ``ttl``; an unknown ``kid`` refetches the set, bounded
    twice so that tokens under forged ``kid`` values cannot make us hammer TARA: the same
    ``kid`` at most once per ``cooldown`` seconds, and all unknown ones together at most
    ``burst`` times per ``window`` seconds. TARA publishes a new key before it signs with
    it, so a rotation needs one refetch; a refetch refused by the bound still waits for
    one that is running, and so sees the keys it brings.

    Stale-if-error (RFC 5861's idea): when the set is past ``ttl`` and cannot be fetched,
    the cached keys are still used for up to ``stale_if_error`` seconds more, and the
    fetch is tried again at most once per ``retry_after`` seconds meanwhile (so logins do
    not each wait for a dead endpoint). Only tokens under a cached ``kid`` verify so: an
    unknown ``kid`` still needs a fetch, and fails while there is none. One WARNING when
    such an outage begins, one INFO when it ends; :attr:`stale_since` says it is on.

    ``on_change`` (awaited) hears each change of trust once however many callers see
    it (:class:`KeySetChange`: stale, expired, recovered); the caller that saw it waits
    for it, and if it raises, the caller gets the error and the next caller reports the
    change again (the owner records it in the audit trail, which fails closed)."""

    def __init__(
        self,
        fetch: Callable[[], Any],
        *,
        ttl: float,
        cooldown: float,
        clock: Clock,
        burst: int = 3,
        window: float = 60.0,
        stale_if_error: float = 0.0,
        retry_after: float = 60.0,
        on_change: KeySetListener | None = None,
    ) -> None:
        if burst < 1 or window <= 0:
            raise ValueError("the unknown-kid refetch bound needs burst >= 1 and window > 0")
        if stale_if_error < 0 or retry_after <= 0:
            raise ValueError("stale_if_error must be >= 0 and retry_after > 0")
        self._fetch = fetch
        self._ttl = ttl
        self._cooldown = cooldown
        self._clock = clock
        self._burst = burst
        self._window = window
        self._stale_if_error = stale_if_error
        self._retry_after = retry_after
        self._keys: dict[str, RSAPublicKey] = {}
        self._fetched_at: float | None = None
        self._misses: dict[str, float] = {}
        self._refetches: deque[float] = deque()
        self._lock = asyncio.Lock()
        self.fetches = 0
        self._attempts = 0
        self._failure = "the key set could not be fetched"
        self._retry_at = 0.0
        self.stale_since: float | None = None
        """When the keys began to be used past their TTL because the set could not be
        fetched (None: they are fresh)."""
        self._on_change = on_change
        self._reported: Literal["fresh", "stale", "expired"] = "fresh"
        # the outage told to on_change: when first seen, the set's fetch time and kids
        self._outage: tuple[float, float, tuple[str, ...]] | None = None

    @property
    def fetched_at(self) -> float | None:
        return self._fetched_at

    def stale_until(self) -> float | None:
        """Until when the cached keys are used while the set cannot be fetched."""
        if self._fetched_at is None:
            return None
        return self._fetched_at + self._ttl + self._stale_if_error

    def health(self, now: float) -> tuple[str, str] | None:
        """None while the keys are fresh (or no outage was seen since the last fetch);
        else ``stale`` (still used) or ``expired`` (the window is over: tokens fail
        ``idp_unavailable``) and a sentence for the operator."""
        until = self.stale_until()
        if self.stale_since is None or until is None or self._fetched_at is None:
            return None
        age = int(now - self._fetched_at)
        if now > until:
            return (
                "expired",
                f"TARA's key set could not be fetched ({self._failure}); the keys fetched "
                f"{age} s ago are past KROONIKA_TARA_JWKS_STALE_IF_ERROR_S and no longer used",
            )
        return (
            "stale",
            f"TARA's key set could not be fetched ({self._failure}); ID tokens under a "
            f"cached kid are verified with the keys fetched {age} s ago for {int(until - now)}"
            " s more (KROONIKA_TARA_JWKS_STALE_IF_ERROR_S)",
        )

    def _fresh(self, now: float) -> bool:
        return self._fetched_at is not None and now - self._fetched_at <= self._ttl

    async def keys(self) -> Mapping[str, RSAPublicKey]:
        now = self._clock()
        if not self._fresh(now):
            if self.stale_since is not None and now < self._retry_at:
                return await self._stale(now)  # an outage under way: no try due yet
            try:
                await self._refresh(seen=self._attempts)
            except IdpUnavailable as exc:
                self._failure = str(exc)
                self._retry_at = now + self._retry_after
                return await self._stale(now)
            if not self._fresh(self._clock()):
                return await self._stale(now)  # a concurrent attempt failed
        if self._reported != "fresh":
            await self._recovered()
        else:  # an outage whose report failed and that ended before one succeeded
            self._outage = None
        return self._keys

    async def _stale(self, now: float) -> Mapping[str, RSAPublicKey]:
        """The cached keys while the set cannot be fetched and the window lasts; else
        :class:`IdpUnavailable`."""
        until = self.stale_until()
        if not self._keys or until is None or now > until:
            if self._keys and self._fetched_at is not None:  # a cached set ran out
                if self.stale_since is None:  # ran out unseen: the outage is on from now
                    self.stale_since = now  # (retried per retry_after; /ready: expired)
                    log.warning(
                        "TARA's key set could not be fetched (%s) and the cached keys, "
                        "fetched %d s ago, are past KROONIKA_TARA_JWKS_STALE_IF_ERROR_S: "
                        "logins fail until it can; the fetch is tried again every %d s",
                        self._failure,
                        now - self._fetched_at,
                        self._retry_after,
                    )
                await self._report("expired", now)
            raise IdpUnavailable(
                f"{self._failure}, and no cached key set is within its TTL and the "
                "stale-if-error window (KROONIKA_TARA_JWKS_STALE_IF_ERROR_S)"
            )
        if self.stale_since is None:
            self.stale_since = now
            log.warning(
                "TARA's key set could not be fetched (%s): ID tokens under a cached kid "
                "are verified with the cached keys, fetched %d s ago, for at most %d s "
                "more (KROONIKA_TARA_JWKS_STALE_IF_ERROR_S); the fetch is tried again "
                "every %d s",
                self._failure,
                now - (self._fetched_at or now),
                until - now,
                self._retry_after,
            )
        await self._report("stale", now)
        return self._keys

    async def _report(self, state: Literal["stale", "expired"], now: float) -> None:
        """Tell ``on_change`` that the cached set became ``state``, unless it was told."""
        if self._reported == state:
            return
        fetched_at = self._fetched_at or now
        kids = tuple(sorted(self._keys))
        if self._outage is None:
            self._outage = (now, fetched_at, kids)
        change = KeySetChange(
            state, int(now - fetched_at), kids, int(self._stale_if_error), self._failure
        )
        await self._tell(state, change)

    async def _recovered(self) -> None:
        """Tell ``on_change`` that a fresh set ended the outage it was told of."""
        now = self._clock()
        began, old_fetched_at, old_kids = self._outage or (now, now, ())
        kids = tuple(sorted(self._keys))
        change = KeySetChange(
            "recovered",
            int((self._fetched_at or now) - old_fetched_at),
            kids,
            int(self._stale_if_error),
            outage_s=int(now - began),
            withdrawn=tuple(k for k in old_kids if k not in self._keys),
        )
        outage, self._outage = self._outage, None
        try:
            await self._tell("fresh", change)
        except BaseException:
            self._outage = outage
            raise

    async def _tell(
        self, state: Literal["fresh", "stale", "expired"], change: KeySetChange
    ) -> None:
        """Mark ``state`` told before awaiting (concurrent callers do not tell it again);
        if telling fails, unmark it so that the next caller tells it."""
        told, self._reported = self._reported, state
        if self._on_change is None:
            return
        try:
            await self._on_change(change)
        except BaseException:
            if self._reported == state:
                self._reported = told
            raise

    async def refetch_for(self, kid: str) -> bool:
        """Refetch because ``kid`` was unknown; False if the bound refused it (after any
        refetch then running has finished)."""
        now = self._clock()
        while self._refetches and now - self._refetches[0] >= self._window:
            self._refetches.popleft()
        last = self._misses.get(kid)
        if (last is not None and now - last < self._cooldown) or len(
            self._refetches
        ) >= self._burst:
            async with self._lock:  # a refetch under way: its keys, not the old set
                return False
        self._misses[kid] = now
        self._refetches.append(now)
        if len(self._misses) > 1000:
            self._misses.clear()
        await self._refresh(seen=self._attempts)
        return True

    async def _refresh(self, *, seen: int) -> None:
        """Fetch the set, unless another caller tried while this one waited for the lock
        (``seen`` is the attempt count when this caller found the set wanting): one
        attempt per stampede, successful or not."""
        async with self._lock:
            if self._attempts != seen:
                return
            try:
                keys = parse_jwks(await self._fetch())
            finally:  # counted once over: callers that found the set wanting meanwhile
                self._attempts += 1  # (and saw the old count) wait for it, not their own
            self.fetches += 1
            self._keys = keys
            self._fetched_at = self._clock()
            if self.stale_since is not None:
                log.info(
                    "TARA's key set answers again: fresh keys after %d s on cached ones",
                    self._fetched_at - self.stale_since,
                )
                self.stale_since = None


def parse_jwks(doc: object) -> dict[str, RSAPublicKey]:
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise IdpUnavailable("the JWKS document has no keys")
    out: dict[str, RSAPublicKey] = {}
    for jwk in doc["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") != "RSA" or not jwk.get("kid"):
            continue
        if jwk.get("use", "sig") != "sig" or jwk.get("alg", "RS256") != "RS256":
            continue
        try:
            key = RSAAlgorithm.from_jwk(json.dumps(jwk))
        except (ValueError, KeyError, TypeError, InvalidKeyError):
            continue
        if isinstance(key, RSAPublicKey):
            out[str(jwk["kid"])] = key
    return out


MAX_RESPONSE_BYTES = 1 << 20


def _json_body(resp: httpx.Response) -> Any:
    """The body as JSON, or None when it is not JSON (or nested too deep to parse)."""
    try:
        return resp.json()
    except (ValueError, RecursionError):
        return None


_ERROR_CODE = re.compile(r"[a-z_]{1,64}")
_CLIENT_ERRORS = frozenset({"invalid_client", "unauthorized_client"})
_REQUEST_ERRORS = frozenset(
    {"invalid_request", "unsupported_grant_type", "invalid_scope", "unsupported_response_type"}
)


def _token_error(resp: httpx.Response) -> TaraError:
    """What a token endpoint's answer other than 200 means (RFC 6749 section 5.2): TARA
    unavailable (5xx, 429), the code refused (``invalid_grant``), our client or request
    refused, or an answer that is no OAuth error at all (a proxy's page, a redirect)."""
    status = resp.status_code
    if status >= 500 or status == 429:
        return IdpUnavailable(f"the token endpoint answered {status}")
    body = _json_body(resp)
    raw = body.get("error") if isinstance(body, dict) else None
    error = raw if isinstance(raw, str) and _ERROR_CODE.fullmatch(raw) else None
    said = f"the token endpoint answered {status} {error}"
    if status in (400, 401) and error in _CLIENT_ERRORS:
        return ClientRejected(said, error=error, status=status)
    if status == 400 and error == "invalid_grant":
        return CodeExchangeFailed(said, error=error, status=status)
    if status == 400 and error in _REQUEST_ERRORS:
        return RequestRejected(said, error=error, status=status)
    return IdpBadResponse(
        f"the token endpoint answered {status} "
        + ("with " + error if error else "without an OAuth error")
    )


def _origin(url: str) -> tuple[str, str, int | None] | None:
    """``url``'s origin (scheme, host, port with the scheme's default left out), None
    for what is no absolute URL."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return None
    if not parsed.is_absolute_url or not parsed.host:
        return None
    return (parsed.scheme, parsed.host, parsed.port)


def _check_origins(disc: Discovery) -> None:
    """The endpoints must be on the issuer's origin, as TARA publishes them (TARA.md:
    ``/oidc/authorize``, ``/oidc/token`` and ``/oidc/jwks`` under the issuer): a
    discovery answer that sends the client secret or the key fetch elsewhere, or the
    citizen to another site, is refused (a tampered or mistaken document), never used."""
    issuer = _origin(disc.issuer)
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        url: str = getattr(disc, name)
        if issuer is None or _origin(url) != issuer:
            raise DiscoveryError(
                f"the discovery document names {name} {url[:200]!r} on another origin "
                f"than the issuer {disc.issuer!r}; TARA publishes its endpoints under its issuer",
                cause="foreign_endpoint",
            )


class TaraClient:
    """TARA's relying party: authorization URLs, code exchange and ID-token verification."""

    def __init__(
        self,
        config: TaraClientConfig,
        http: httpx.AsyncClient,
        *,
        clock: Clock = time.time,
        on_keys_change: KeySetListener | None = None,
    ) -> None:
        self.config = config
        self._http = http
        self._clock = clock
        self._discovery: Discovery | None = None
        self.jwks = JwksCache(
            self._fetch_jwks,
            ttl=config.jwks_ttl_s,
            cooldown=config.unknown_kid_cooldown_s,
            clock=clock,
            stale_if_error=config.jwks_stale_if_error_s,
            on_change=on_keys_change,
        )

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request to TARA, cut off at ``timeout_s`` in all: httpx's timeout applies to
        each read, so a TARA that trickles its answer would otherwise hold the login. The
        answer is read up to :data:`MAX_RESPONSE_BYTES` (TARA's are a few kB): a larger
        one is TARA being unavailable, not a reason to hold it all in memory."""
        try:
            async with (
                asyncio.timeout(self.config.timeout_s),
                self._http.stream(method, url, timeout=self.config.timeout_s, **kwargs) as resp,
            ):
                body = bytearray()
                async for chunk in resp.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise IdpUnavailable(
                            f"{method} {url} answered more than {MAX_RESPONSE_BYTES} bytes"
                        )
                # decoded already: the copy must not claim an encoding or a length
                headers = [
                    (k, v)
                    for k, v in resp.headers.multi_items()
                    if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
                ]
                return httpx.Response(
                    resp.status_code, headers=headers, content=bytes(body), request=resp.request
                )
        except TimeoutError:
            raise IdpUnavailable(f"{method} {url} took longer than the timeout") from None
        except httpx.HTTPError as exc:
            raise IdpUnavailable(f"{method} {url} failed: {type(exc).__name__}") from None

    async def _get_json(self, url: str) -> Any:
        resp = await self._send("GET", url)
        if resp.status_code != 200:
            raise IdpUnavailable(f"GET {url} answered {resp.status_code}")
        body = _json_body(resp)
        if body is None:
            raise IdpUnavailable(f"GET {url} did not answer JSON")
        return body

    async def discovery(self) -> Discovery:
        """The discovery document the logins use: fetched and checked once, then kept."""
        if self._discovery is not None:
            return self._discovery
        disc = await self._fetch_discovery()
        self._discovery = disc
        return disc

    async def _fetch_discovery(self) -> Discovery:
        """The discovery document as TARA answers it now, checked against the configuration."""
        doc = await self._get_json(self.config.issuer + "/.well-known/openid-configuration")
        try:
            disc = Discovery(
                issuer=str(doc["issuer"]),
                authorization_endpoint=str(doc["authorization_endpoint"]),
                token_endpoint=str(doc["token_endpoint"]),
                jwks_uri=str(doc["jwks_uri"]),
            )
        except (KeyError, TypeError):
            raise DiscoveryError(
                "the discovery document lacks endpoints", cause="endpoints"
            ) from None
        if disc.issuer != self.config.issuer:
            raise DiscoveryError(
                f"discovery issuer {disc.issuer!r} differs from the configured issuer"
            )
        _check_origins(disc)
        return disc

    async def check(self) -> Discovery:
        """Fetch and check the discovery document now, as TARA answers it (start-up and
        readiness; the first good one is the one the logins keep: a later answer is
        only looked at), and the key set (the cached one within its TTL, see
        :class:`JwksCache`): :class:`DiscoveryError` for a document that does not fit
        the configuration (issuer differs, endpoints or signing keys missing, an
        endpoint on another origin), :class:`IdpUnavailable` when TARA cannot be reached."""
        disc = await self._fetch_discovery()
        if self._discovery is None:
            self._discovery = disc
        if not await self.jwks.keys():
            raise DiscoveryError(
                f"the key set at {disc.jwks_uri} has no RS256 signing key", cause="keys"
            )
        return disc

    async def _fetch_jwks(self) -> Any:
        disc = await self.discovery()
        return await self._get_json(disc.jwks_uri)

    def scopes_for(self, methods: Sequence[str]) -> list[str]:
        """The configured scopes with the method scopes replaced by ``methods`` (if any)."""
        base = [s for s in self.config.scopes if s not in _METHOD_SCOPES]
        return base + [m for m in methods if m in _METHOD_SCOPES]

    async def authorization_url(
        self,
        *,
        state: str,
        nonce: str,
        acr: Acr | None,
        methods: Sequence[str],
        ui_locales: str | None,
    ) -> str:
        disc = await self.discovery()
        params = {
            "client_id": self.config.client_id,
            "redirect_uri": self.config.redirect_uri,
            "response_type": "code",
            "scope": " ".join(self.scopes_for(methods)),
            "state": state,
            "nonce": nonce,
        }
        if acr is not None:
            params["acr_values"] = acr
        if ui_locales:
            params["ui_locales"] = ui_locales
        sep = "&" if "?" in disc.authorization_endpoint else "?"
        return f"{disc.authorization_endpoint}{sep}{urlencode(params, quote_via=quote)}"

    async def exchange_code(self, code: str) -> TokenResponse:
        """``POST /oidc/token`` with ``client_secret_basic`` (id and secret form-urlencoded
        first, RFC 6749 section 2.3.1)."""
        disc = await self.discovery()
        creds = f"{quote(self.config.client_id, safe='')}:" + quote(
            self.config.client_secret.get_secret_value(), safe=""
        )
        auth = "Basic " + base64.b64encode(creds.encode()).decode()
        resp = await self._send(
            "POST",
            disc.token_endpoint,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.config.redirect_uri,
            },
            headers={"Authorization": auth, "Accept": "application/json"},
        )
        if resp.status_code != 200:
            raise _token_error(resp)
        body = _json_body(resp)
        if not isinstance(body, dict):
            raise IdpBadResponse("the token endpoint answered 200 without a JSON object")
        id_token = body.get("id_token")
        if not isinstance(id_token, str):
            raise IdpBadResponse("the token response has no id_token")
        access = body.get("access_token")
        scope = body.get("scope")
        return TokenResponse(
            id_token=id_token,
            access_token=access if isinstance(access, str) else None,
            scope=scope if isinstance(scope, str) else None,
        )

    async def verify(
        self,
        id_token: str,
        *,
        nonce_digest: str,
        acr_minimum: Acr,
        methods: Sequence[str],
        state: str | None,
    ) -> VerifiedIdToken:
        """Every check of TARA.md; on an unknown ``kid`` the key set is refetched once."""
        disc = await self.discovery()
        expect = Expectations(
            issuer=disc.issuer,
            client_id=self.config.client_id,
            nonce_digest=nonce_digest,
            acr_minimum=acr_minimum,
            methods=tuple(methods),
            state=state,
            leeway=self.config.leeway_s,
        )
        keys = await self.jwks.keys()
        try:
            return verify_id_token(id_token, keys, expect, now=int(self._clock()))
        except IdTokenInvalid as exc:
            if exc.check != "unknown_kid" or exc.actual is None:
                raise
            # refused by the bound, it still waited for a refetch under way: try its keys
            await self.jwks.refetch_for(str(exc.actual))
        keys = await self.jwks.keys()
        return verify_id_token(id_token, keys, expect, now=int(self._clock()))
