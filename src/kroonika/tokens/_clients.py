"""Registered clients (relying services) and their authentication.

A client has an id, a secret stored only as an scrypt hash, the audiences it may
put in tokens, the custom claims it may set, its maximum TTL and its own rate limit
(checked and stored here, :func:`check_rate_limit`; enforced by the rate limiter on
every token route the client calls).

scrypt is deliberately slow, which a service answering thousands of
introspections per second cannot pay on every request; so a successful check is
remembered for ``cache_s`` seconds as an HMAC of the presented secret under a
per-process random key (never the secret itself), compared in constant time.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from limits import parse as parse_limit
from sqlalchemy import Engine, delete, insert, select, update

from kroonika.db.tokens import clients
from kroonika.tokens._clock import Clock
from kroonika.tokens._errors import ClientError, InvalidClient

_SCRYPT_R = 8
_SCRYPT_P = 1
_MAXMEM = 256 * 1024 * 1024
#: a claim name a client may be allowed and may set (also checked at minting); used with
#: ``fullmatch``: ``^...$`` with ``match`` let a final line break through
CLAIM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")
# A client id is visible ASCII (no space, no control character, no NUL, which
# PostgreSQL text cannot hold): generated ids are ``kc_`` + URL-safe base64.
CLIENT_ID = re.compile(r"[\x21-\x7e]{1,64}")
# An audience becomes a JWT ``aud`` value: visible ASCII as well.
_AUDIENCE = re.compile(r"[\x21-\x7e]{1,200}")
MAX_TTL_S = 2**31 - 1
RATE_LIMIT_SYNTAX = (
    "a rate limit is one '<count>/<period>' with a count of at least 1, e.g. '100/minute' "
    "or '10 per second' (periods: second, minute, hour, day, month, year)"
)


def check_rate_limit(text: str) -> str:
    """A client's own rate limit in the rate limiter's syntax (the ``limits`` library's,
    as in ``KROONIKA_RATELIMIT_LIMITS``), stripped; :class:`ClientError` otherwise. One
    window only (the limiter would silently apply just the first of ``a;b``) and a count
    of at least 1 (to stop a client, disable it)."""
    value = text.strip()
    if not value or len(value) > 64 or not value.isprintable() or any(c in value for c in ";,|"):
        raise ClientError(RATE_LIMIT_SYNTAX)
    try:
        item = parse_limit(value)
    except ValueError:
        raise ClientError(RATE_LIMIT_SYNTAX) from None
    if item.amount < 1:
        raise ClientError(RATE_LIMIT_SYNTAX)
    return value


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


def _check(
    name: str,
    audiences: Sequence[str],
    claims: Sequence[str],
    max_ttl_s: int,
    rate_limit: str | None,
) -> str:
    """The stripped name, or :class:`ClientError` for a field a client cannot have (the
    rules of registration and of every later change alike)."""
    name = name.strip()
    if not name or len(name) > 200:
        raise ClientError("a client needs a name of 1..200 characters")
    if not name.isprintable():
        raise ClientError("a client name cannot hold control or line-break characters")
    if isinstance(max_ttl_s, bool) or not 0 < max_ttl_s <= MAX_TTL_S:
        raise ClientError(f"max_ttl_s must be 1..{MAX_TTL_S}")
    for claim in claims:
        if not CLAIM_NAME.fullmatch(claim):
            raise ClientError(f"invalid claim name {claim!r}")
    for aud in audiences:
        if not _AUDIENCE.fullmatch(aud):
            raise ClientError(
                f"invalid audience {aud[:64]!r}: 1..200 visible ASCII characters, no spaces"
            )
    if rate_limit is not None:
        check_rate_limit(rate_limit)
    return name


#: the fields of a client that can change after registration (:meth:`ClientRegistry.change`)
FIELDS = ("name", "allowed_audiences", "allowed_claims", "max_ttl_s", "rate_limit", "disabled")
_LISTS = ("allowed_audiences", "allowed_claims")  # stored as JSON lists


def _column(field: str) -> str:
    if field not in FIELDS:
        raise ClientError(f"a client has no field {field[:64]!r}")
    return field


def _stored(field: str, value: Any) -> Any:
    """``value`` of ``field`` as the table holds it (lists as JSON text)."""
    return orjson.dumps(list(value)).decode() if field in _LISTS else value


def _value(field: str, value: Any) -> Any:
    """``value`` of ``field``, given or as stored, in one form to compare (lists as
    lists, the flag as a bool)."""
    if field in _LISTS:
        return list(orjson.loads(value) if isinstance(value, str) else value)
    return bool(value) if field == "disabled" else value


#: every write of a client bumps its row version (decision 0026)
_NEXT_VERSION = {"version": clients.c.version + 1}


def _as_read(stored: Mapping[str, Any], fields: Iterable[str]) -> list[Any]:
    """A WHERE clause: each of ``fields`` still holds exactly what was read into
    ``stored`` (a missing limit as ``IS NULL``), so one statement checks and writes."""
    out = []
    for k in fields:
        column = clients.c[k]
        out.append(column.is_(None) if stored[k] is None else column == stored[k])
    return out


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
        self._verified: dict[str, tuple[bytes, float, str]] = {}
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
        name = _check(name, allowed_audiences, allowed_claims, max_ttl_s, rate_limit)
        if rate_limit is not None:
            rate_limit = check_rate_limit(rate_limit)
        if client_id is not None and not CLIENT_ID.fullmatch(client_id):
            raise ClientError("a client id is 1..64 visible ASCII characters")
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
                    version=1,
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

    def set_disabled(self, client_id: str, disabled: bool) -> int | None:
        """Set the flag, whatever it held: the version this write produced (what an undo
        of it is conditional on, :meth:`undo`), or None when the client is gone."""
        with self._engine.begin() as conn:
            version = conn.execute(
                update(clients)
                .where(clients.c.client_id == client_id)
                .values(disabled=disabled, **_NEXT_VERSION)
                .returning(clients.c.version)
            ).scalar_one_or_none()
        self.forget(client_id)
        return None if version is None else int(version)

    def swap_secret_hash(
        self, client_id: str, new_hash: str, *, expected: str | None = None
    ) -> str | None:
        """Store ``new_hash`` as the client's secret hash, in place of exactly the hash
        read (one UPDATE conditional on it): the hash replaced, or None (nothing written)
        when the client is gone, when another rotation landed between the read and the
        write, or when the hash read is not ``expected`` (an undo puts the old hash back
        only over the one it wrote, never over a newer rotation). The cached
        verification goes either way."""
        with self._engine.connect() as conn:
            old = conn.execute(
                select(clients.c.secret_hash).where(clients.c.client_id == client_id)
            ).scalar_one_or_none()
        written = 0
        if old is not None and (expected is None or old == expected):
            with self._engine.begin() as conn:
                written = conn.execute(
                    update(clients)
                    .where(clients.c.client_id == client_id, clients.c.secret_hash == old)
                    .values(secret_hash=new_hash, **_NEXT_VERSION)
                ).rowcount
        self.forget(client_id)
        return str(old) if written == 1 else None

    def forget(self, client_id: str) -> None:
        """Drop the cached verification of ``client_id`` (its secret changed)."""
        with self._lock:
            self._verified.pop(client_id, None)

    def remove(self, client_id: str) -> None:
        """Delete a registration (undoing one whose audit record could not be written)."""
        with self._engine.begin() as conn:
            conn.execute(delete(clients).where(clients.c.client_id == client_id))
        with self._lock:
            self._verified.pop(client_id, None)

    @staticmethod
    def revised(current: Client, changes: Mapping[str, Any]) -> Client:
        """``current`` with the fields in ``changes`` (field: value, :data:`FIELDS`) set
        under the rules of :meth:`register` (:class:`ClientError` otherwise). A field
        given is set: ``rate_limit`` None removes the client's own limit; None for any
        other field is refused. Nothing is stored: :meth:`change` stores it."""
        unknown = sorted(set(changes) - set(FIELDS))
        if unknown:
            raise ClientError(f"a client has no field {unknown[0][:64]!r}")
        empty = sorted(k for k, v in changes.items() if v is None and k != "rate_limit")
        if empty:
            raise ClientError(f"{empty[0]} cannot be removed (only rate_limit can)")
        audiences = changes.get("allowed_audiences", current.allowed_audiences)
        claims = changes.get("allowed_claims", current.allowed_claims)
        if not isinstance(audiences, list | tuple) or not isinstance(claims, list | tuple):
            raise ClientError("allowed_audiences and allowed_claims are lists")
        name = changes.get("name", current.name)
        max_ttl_s = changes.get("max_ttl_s", current.max_ttl_s)
        limit = changes.get("rate_limit", current.rate_limit)
        disabled = changes.get("disabled", current.disabled)
        if not isinstance(name, str) or not isinstance(disabled, bool):
            raise ClientError("name is text and disabled is true or false")
        return dataclasses.replace(
            current,
            name=_check(name, audiences, claims, max_ttl_s, limit),
            allowed_audiences=tuple(audiences),
            allowed_claims=tuple(claims),
            max_ttl_s=max_ttl_s,
            rate_limit=None if limit is None else check_rate_limit(limit),
            disabled=disabled,
        )

    def _read(self, client_id: str, fields: Iterable[str]) -> Mapping[str, Any] | None:
        """The client's version and ``fields`` as stored, or None when it is gone."""
        names = sorted({_column(k) for k in fields})
        with self._engine.connect() as conn:
            row = conn.execute(
                select(clients.c.version, *(clients.c[n] for n in names)).where(
                    clients.c.client_id == client_id
                )
            ).first()
        return None if row is None else dict(row._mapping)

    def change(
        self, client_id: str, expected: Mapping[str, Any], values: Mapping[str, Any]
    ) -> int | None:
        """Store ``values`` (field: value, checked by :meth:`revised`) on the client if
        each field of ``expected`` still holds the value given there. The fields are
        read and compared as values (a list is the same list however its JSON is
        spaced), then written by one UPDATE conditional on each of them still holding
        exactly what was read: a change that landed in between (a client disabled while
        its TTL cap was being changed) is never overwritten, neither by fields this
        change does not touch nor by a value read before it. The version this write
        produced (with nothing to write, the one read), what an undo of it is
        conditional on (:meth:`undo`); None (nothing written) when a field moved on or
        the client is gone. The cached verification goes either way."""
        stored = self._read(client_id, (*expected, *values))
        version = None
        if stored is not None and all(
            _value(k, stored[k]) == _value(k, v) for k, v in expected.items()
        ):
            version = stored["version"]
            if values:
                with self._engine.begin() as conn:
                    version = conn.execute(
                        update(clients)
                        .where(clients.c.client_id == client_id, *_as_read(stored, expected))
                        .values({**{k: _stored(k, v) for k, v in values.items()}, **_NEXT_VERSION})
                        .returning(clients.c.version)
                    ).scalar_one_or_none()
        self.forget(client_id)
        return None if version is None else int(version)

    def undo(
        self,
        client_id: str,
        version: int,
        wrote: Mapping[str, Any],
        before: Mapping[str, Any],
    ) -> tuple[str, ...]:
        """Undo the change that produced ``version`` by writing ``wrote`` (its record was
        refused): each field gets its value in ``before`` back, but only while the
        client is still at ``version``. Any newer write moved the version on, even one
        of the same value (a second disable), so it is never overwritten; which fields
        that write set is not known, so then none is put back. A field that no longer
        holds what the change wrote (moved by a writer that does not bump the version,
        an instance still on the code before migration k0004) keeps its value too. One
        UPDATE conditional on the version and on each field put back as read; it is a
        write, so it bumps the version. The fields left as they are, sorted (none when
        everything was put back)."""
        stored = self._read(client_id, (*wrote, *before))
        back: list[str] = []
        if stored is not None and stored["version"] == version:
            back = [k for k in wrote if _value(k, stored[k]) == _value(k, wrote[k])]
            if back:
                with self._engine.begin() as conn:
                    written = conn.execute(
                        update(clients)
                        .where(
                            clients.c.client_id == client_id,
                            clients.c.version == version,
                            *_as_read(stored, back),
                        )
                        .values({**{k: _stored(k, before[k]) for k in back}, **_NEXT_VERSION})
                    ).rowcount
                back = back if written == 1 else []
        self.forget(client_id)
        return tuple(sorted(set(wrote) - set(back)))

    def authenticate(self, client_id: str, secret: str) -> Client:
        """The client, or :class:`InvalidClient`. Unknown ids cost as much as known ones.

        The row is read on every call, cached or not: a client disabled, or given a new
        secret, by another instance (or the CLI) is refused at once, not when this
        instance's cache entry runs out; the cache only saves the scrypt computation,
        and only for the secret hash it was computed against."""
        if (
            not client_id
            or not secret
            or len(secret) > 512
            or not CLIENT_ID.fullmatch(client_id)
            or not secret.isprintable()
        ):
            raise InvalidClient("client authentication failed")
        mac = hmac.new(self._cache_key, secret.encode(), hashlib.sha256).digest()
        row = self._row(client_id)
        with self._lock:
            hit = self._verified.get(client_id)
        if (
            row is not None
            and not row[0].disabled
            and hit is not None
            and hit[1] > time.monotonic()
            and hmac.compare_digest(hit[2], row[1])
            and hmac.compare_digest(hit[0], mac)
        ):
            return row[0]
        encoded = row[1] if row is not None else self._dummy
        ok = verify_secret(secret, encoded)
        if row is None or not ok or row[0].disabled:
            raise InvalidClient("client authentication failed")
        with self._lock:
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[client_id] = (mac, time.monotonic() + self._cache_s, row[1])
        return row[0]
