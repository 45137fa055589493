"""Registered clients (relying services) and their authentication.

A client has an id, a secret stored only as an scrypt hash, the audiences it may
put in tokens, the custom claims it may set, its maximum TTL and its rate limit
(stored here; enforced by the rate limiter).

scrypt is deliberately slow, which a service answering thousands of
introspections per second cannot pay on every request; so a successful check is
remembered for ``cache_s`` seconds as an HMAC of the presented secret under a
per-process random key (never the secret itself), compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from sqlalchemy import Engine, insert, select, update

from kroonika.db.tokens import clients
from kroonika.tokens._clock import Clock
from kroonika.tokens._errors import ClientError, InvalidClient

_SCRYPT_R = 8
_SCRYPT_P = 1
_MAXMEM = 256 * 1024 * 1024
_CLAIM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_secret(secret: str, *, n: int = 2**14) -> str:
    """``scrypt$n$r$p$salt$hash`` (RFC 7914 scrypt, 16-byte salt, 32-byte output)."""
    salt = secrets.token_bytes(16)
    dk = hashlib.scrypt(
        secret.encode(), salt=salt, n=n, r=_SCRYPT_R, p=_SCRYPT_P, maxmem=_MAXMEM, dklen=32
    )
    return f"scrypt${n}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(dk)}"


def verify_secret(secret: str, encoded: str) -> bool:
    """Recompute the hash with the stored parameters and compare in constant time."""
    try:
        scheme, n, r, p, salt, want = encoded.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            secret.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_MAXMEM,
            dklen=32,
        )
    except ValueError:
        return False
    return hmac.compare_digest(got, _unb64(want))


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    name: str
    allowed_audiences: tuple[str, ...]
    allowed_claims: tuple[str, ...]
    max_ttl_s: int
    rate_limit: str | None
    created_at: int
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class NewClient:
    """A registration's result: the secret is shown once and never stored."""

    client: Client
    secret: str


class ClientRegistry:
    def __init__(
        self, engine: Engine, *, clock: Clock, scrypt_n: int = 2**14, cache_s: float = 60.0
    ) -> None:
        if scrypt_n < 2**10 or scrypt_n & (scrypt_n - 1):
            raise ClientError("scrypt n must be a power of two of at least 1024")
        self._engine = engine
        self._clock = clock
        self._n = scrypt_n
        self._cache_s = cache_s
        self._cache_key = secrets.token_bytes(32)
        self._verified: dict[str, tuple[bytes, float, Client]] = {}
        self._lock = threading.Lock()
        self._dummy = hash_secret(secrets.token_urlsafe(32), n=scrypt_n)

    def register(
        self,
        name: str,
        *,
        allowed_audiences: Sequence[str] = (),
        allowed_claims: Sequence[str] = (),
        max_ttl_s: int = 3600,
        rate_limit: str | None = None,
        client_id: str | None = None,
    ) -> NewClient:
        """Register a client; the returned secret is the only copy."""
        name = name.strip()
        if not name or len(name) > 200:
            raise ClientError("a client needs a name of 1..200 characters")
        if max_ttl_s <= 0:
            raise ClientError("max_ttl_s must be positive")
        for claim in allowed_claims:
            if not _CLAIM_NAME.match(claim):
                raise ClientError(f"invalid claim name {claim!r}")
        for aud in allowed_audiences:
            if not aud or len(aud) > 200:
                raise ClientError("audiences must be 1..200 characters")
        cid = client_id or f"kc_{secrets.token_urlsafe(12)}"
        secret = secrets.token_urlsafe(32)
        client = Client(
            cid,
            name,
            tuple(allowed_audiences),
            tuple(allowed_claims),
            max_ttl_s,
            rate_limit,
            self._clock.now(),
        )
        with self._engine.begin() as conn:
            conn.execute(
                insert(clients).values(
                    client_id=cid,
                    name=name,
                    secret_hash=hash_secret(secret, n=self._n),
                    allowed_audiences=orjson.dumps(list(allowed_audiences)).decode(),
                    allowed_claims=orjson.dumps(list(allowed_claims)).decode(),
                    max_ttl_s=max_ttl_s,
                    rate_limit=rate_limit,
                    created_at=client.created_at,
                    disabled=False,
                )
            )
        return NewClient(client, secret)

    def get(self, client_id: str) -> Client | None:
        row = self._row(client_id)
        return None if row is None else row[0]

    def _row(self, client_id: str) -> tuple[Client, str] | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(clients).where(clients.c.client_id == client_id)).first()
        if row is None:
            return None
        m = row._mapping
        client = Client(
            m["client_id"],
            m["name"],
            tuple(orjson.loads(m["allowed_audiences"])),
            tuple(orjson.loads(m["allowed_claims"])),
            m["max_ttl_s"],
            m["rate_limit"],
            m["created_at"],
            bool(m["disabled"]),
        )
        return client, m["secret_hash"]

    def list(self) -> list[Client]:
        with self._engine.connect() as conn:
            ids = conn.execute(select(clients.c.client_id).order_by(clients.c.client_id)).all()
        out = [self.get(cid) for (cid,) in ids]
        return [c for c in out if c is not None]

    def set_disabled(self, client_id: str, disabled: bool) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(clients).where(clients.c.client_id == client_id).values(disabled=disabled)
            )
        with self._lock:
            self._verified.pop(client_id, None)

    def authenticate(self, client_id: str, secret: str) -> Client:
        """The client, or :class:`InvalidClient`. Unknown ids cost as much as known ones."""
        if not client_id or not secret or len(client_id) > 64 or len(secret) > 512:
            raise InvalidClient("client authentication failed")
        mac = hmac.new(self._cache_key, secret.encode(), hashlib.sha256).digest()
        with self._lock:
            hit = self._verified.get(client_id)
        if hit is not None and hit[1] > time.monotonic() and hmac.compare_digest(hit[0], mac):
            return hit[2]
        row = self._row(client_id)
        encoded = row[1] if row is not None else self._dummy
        ok = verify_secret(secret, encoded)
        if row is None or not ok or row[0].disabled:
            raise InvalidClient("client authentication failed")
        with self._lock:
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[client_id] = (mac, time.monotonic() + self._cache_s, row[0])
        return row[0]
