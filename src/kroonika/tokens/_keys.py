"""The signing key ring: ES256 by default (RS256 configurable), one ``kid`` per key.

Rotation with overlap:

- a new key is *published* (in the JWKS) when it is created and *used* for signing
  only from ``activates_at`` = creation + ``publish_lead_s``, so relying services
  that cache the JWKS know it before the first token signed with it arrives;
- when a newer key takes over, the old key is *superseded* but stays published and
  valid for verification until the last token it signed has expired; only then is
  it *retired* (unpublished, and tokens naming it are ``unknown_key``).

Of the keys whose activation time has come, the one activating last signs. Times are
whole seconds, so keys activating in the same second (a first key and an emergency
rotation right after it) are ordered by ``activation_seq``, a counter given to a key
when its activation time is set (at creation, or by :meth:`SigningKeyRing.activate`):
the key activated later signs, on every instance (:func:`signing_order`). Two
rotations racing each other may draw the same number; the kid then decides, the same
way everywhere.

A rotation that must be recorded first is *staged*: the key is published but its
activation time is :data:`STAGED` (it never comes), so nothing signs with it until
:meth:`SigningKeyRing.activate`; if the rotation cannot be recorded,
:meth:`SigningKeyRing.discard` removes it again (only a key that never signed can be
discarded). A process that dies in between leaves an inert key, never an unrecorded
signing one; :meth:`SigningKeyRing.discard_abandoned` (the ``token_keys`` job) removes
such a key once it has been staged for the publish lead plus :data:`ABANDONED_AFTER_S`.

Private keys are stored encrypted: AES-256-GCM under a key derived (HKDF-SHA256)
from the master key, with the kid as associated data, so a row cannot be moved to
another kid.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from kroonika.db.tokens import signing_keys, tokens
from kroonika.tokens._clock import Clock
from kroonika.tokens._errors import KeyRingError

Alg = Literal["ES256", "RS256"]
SUPPORTED_ALGS: tuple[Alg, ...] = ("ES256", "RS256")
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
# ``activates_at`` of a staged key: published, signs nothing until activated.
STAGED = 2**62
#: How long past the publish lead a staged key waits for its rotation to be recorded
#: before it counts as abandoned: a rotation in progress takes seconds.
ABANDONED_AFTER_S = 3600


@dataclass(frozen=True, slots=True)
class PublishedKey:
    """A key as verifiers see it."""

    kid: str
    alg: Alg
    public: PublicKey
    jwk: dict[str, Any]
    created_at: int
    activates_at: int
    superseded_at: int | None
    activation_seq: int = 0  # 0: a key made before migration k0005


def signing_order(key: PublishedKey) -> tuple[int, int, int, str]:
    """The order in which keys take over signing: the greatest active key signs."""
    return (key.activates_at, key.activation_seq, key.created_at, key.kid)


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    alg: Alg
    private: PrivateKey


def _wrapping_key(master_key: bytes) -> AESGCM:
    if len(master_key) < 32:
        raise KeyRingError("the master key must be at least 32 bytes")
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"kroonika.tokens.signing-keys/1"
    ).derive(master_key)
    return AESGCM(derived)


def _aad(kid: str) -> bytes:
    return b"kroonika.token-signing-key:" + kid.encode()


def _generate(alg: Alg, rsa_bits: int) -> PrivateKey:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)


def _next_activation(conn: Connection) -> int:
    """The next ``activation_seq``, read in the transaction that sets it."""
    last = conn.execute(select(func.max(signing_keys.c.activation_seq))).scalar_one_or_none()
    return (last or 0) + 1


def _public_jwk(kid: str, alg: Alg, public: PublicKey) -> dict[str, Any]:
    if isinstance(public, ec.EllipticCurvePublicKey):
        jwk: dict[str, Any] = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return jwk


class SigningKeyRing:
    """Signing keys in the business database, cached in memory.

    The in-memory view is reloaded every ``reload_s`` seconds and at once when a
    token names a kid this instance does not know (at most once per second), so
    a rotation done by another instance or the CLI is seen promptly.
    """

    def __init__(
        self,
        engine: Engine,
        master_key: bytes,
        *,
        clock: Clock,
        alg: Alg = "ES256",
        rsa_bits: int = 3072,
        publish_lead_s: int = 600,
        rotation_interval_s: int = 0,
        max_token_lifetime_s: int = 86_400,
        reload_s: float = 10.0,
    ) -> None:
        if alg not in SUPPORTED_ALGS:
            raise KeyRingError(f"unsupported signing algorithm {alg!r}")
        if rsa_bits < 2048:
            raise KeyRingError("RSA keys must have at least 2048 bits")
        self._engine = engine
        self._wrap = _wrapping_key(master_key)
        self._clock = clock
        self.alg: Alg = alg
        self._rsa_bits = rsa_bits
        self.publish_lead_s = publish_lead_s
        self.rotation_interval_s = rotation_interval_s
        self.max_token_lifetime_s = max_token_lifetime_s
        self._reload_s = reload_s
        self._lock = threading.Lock()
        self._published: dict[str, PublishedKey] = {}
        self._private: dict[str, SigningKey] = {}
        self._loaded_at = -1.0e18
        self._last_miss_reload = -1.0e18

    # --- reading ----------------------------------------------------------------------

    def _load(self) -> None:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(
                    signing_keys.c.kid,
                    signing_keys.c.alg,
                    signing_keys.c.public_jwk,
                    signing_keys.c.created_at,
                    signing_keys.c.activates_at,
                    signing_keys.c.superseded_at,
                    signing_keys.c.activation_seq,
                ).where(signing_keys.c.retired_at.is_(None))
            ).all()
        published: dict[str, PublishedKey] = {}
        for kid, alg, jwk_text, created, activates, superseded, seq in rows:
            jwk = orjson.loads(jwk_text)
            public: PublicKey
            if alg == "ES256":
                pk = ECAlgorithm.from_jwk(jwk)
                if not isinstance(pk, ec.EllipticCurvePublicKey):
                    raise KeyRingError(f"key {kid} is not an EC public key")
                public = pk
            else:
                rk = RSAAlgorithm.from_jwk(jwk)
                if not isinstance(rk, rsa.RSAPublicKey):
                    raise KeyRingError(f"key {kid} is not an RSA public key")
                public = rk
            published[kid] = PublishedKey(
                kid, alg, public, jwk, created, activates, superseded, seq or 0
            )
        with self._lock:
            self._published = published
            self._loaded_at = time.monotonic()

    def _view(self) -> dict[str, PublishedKey]:
        if time.monotonic() - self._loaded_at > self._reload_s:
            self._load()
        return self._published

    def refresh(self) -> None:
        """Reload the keys from the database now."""
        self._load()

    def published(self) -> list[PublishedKey]:
        """Every key a verifier must know (pending, active and superseded ones)."""
        return sorted(self._view().values(), key=lambda k: (k.created_at, k.kid))

    def public_key(self, kid: str) -> PublishedKey | None:
        """The published key ``kid``, or ``None`` (unknown or retired)."""
        key = self._view().get(kid)
        if key is None and time.monotonic() - self._last_miss_reload > 1.0:
            self._last_miss_reload = time.monotonic()
            self._load()
            key = self._published.get(kid)
        return key

    def jwks(self) -> dict[str, Any]:
        """The RFC 7517 JWK set of every published key."""
        return {"keys": [k.jwk for k in self.published()]}

    def current(self) -> SigningKey:
        """The key to sign with now: the newest key whose activation time has come."""
        now = self._clock.now()
        candidates = [k for k in self._view().values() if k.activates_at <= now]
        if not candidates:
            self._load()
            candidates = [k for k in self._published.values() if k.activates_at <= now]
        if not candidates:
            raise KeyRingError("no active signing key; run `kroonika keys rotate`")
        return self._signing_key(max(candidates, key=signing_order).kid)

    def _signing_key(self, kid: str) -> SigningKey:
        cached = self._private.get(kid)
        if cached is not None:
            return cached
        with self._engine.connect() as conn:
            row = conn.execute(
                select(signing_keys.c.alg, signing_keys.c.private_enc).where(
                    signing_keys.c.kid == kid
                )
            ).one_or_none()
        if row is None:
            raise KeyRingError(f"signing key {kid} vanished")
        alg, blob = row
        try:
            pem = self._wrap.decrypt(bytes(blob[:12]), bytes(blob[12:]), _aad(kid))
        except Exception as exc:
            raise KeyRingError(f"cannot decrypt signing key {kid}: wrong master key?") from exc
        private = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(private, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise KeyRingError(f"signing key {kid} has an unsupported type")
        key = SigningKey(kid, alg, private)
        with self._lock:
            self._private[kid] = key
        return key

    # --- changing ---------------------------------------------------------------------

    def ensure(self) -> str | None:
        """Create a first key, active at once, if the ring has none. Returns its kid."""
        self._load()
        if self._published:
            return None
        return self._create(immediate=True)

    def rotate(self, *, immediate: bool = False, staged: bool = False) -> tuple[str | None, str]:
        """Create a new key. It is published now and signs from ``now + publish_lead_s``
        (or at once with ``immediate``, which only a first key or an emergency
        should use). Returns ``(current kid or None, new kid)``.

        With ``staged`` it signs nothing until :meth:`activate` (``immediate`` is then
        the caller's to pass there): record the rotation first, then activate it, or
        :meth:`discard` it when it cannot be recorded."""
        try:
            old: str | None = self.current().kid
        except KeyRingError:
            old = None
        new = self._create(immediate=immediate or old is None, staged=staged)
        return old, new

    def rotate_if_due(self, *, staged: bool = False) -> tuple[str | None, str] | None:
        """Scheduled rotation: rotate when the newest key is older than the interval
        (``staged`` as for :meth:`rotate`)."""
        if self.rotation_interval_s <= 0:
            return None
        keys = self.published()
        if keys and keys[-1].created_at + self.rotation_interval_s > self._clock.now():
            return None
        return self.rotate(staged=staged)

    def activate(self, kid: str, *, immediate: bool = False) -> None:
        """Let the staged key ``kid`` sign: at once with ``immediate``, otherwise once
        the publish lead since its creation (when it was published) has passed."""
        now = self._clock.now()
        with self._engine.begin() as conn:
            created = conn.execute(
                select(signing_keys.c.created_at).where(
                    signing_keys.c.kid == kid,
                    signing_keys.c.activates_at == STAGED,
                    signing_keys.c.retired_at.is_(None),
                )
            ).scalar_one_or_none()
            if created is None:
                raise KeyRingError(f"signing key {kid} is not staged")
            at = now if immediate else max(now, created + self.publish_lead_s)
            conn.execute(
                update(signing_keys)
                .where(signing_keys.c.kid == kid, signing_keys.c.activates_at == STAGED)
                .values(activates_at=at, activation_seq=_next_activation(conn))
            )
        self._load()

    def discard(self, kid: str) -> None:
        """Remove a key that has never been able to sign (staged, or still within its
        publish lead): the undo of a rotation that could not be recorded. A key that
        may have signed tokens is refused (it is retired, never discarded)."""
        now = self._clock.now()
        with self._engine.begin() as conn:
            gone = conn.execute(
                delete(signing_keys).where(
                    signing_keys.c.kid == kid, signing_keys.c.activates_at > now
                )
            ).rowcount
            if not gone:
                exists = conn.execute(
                    select(signing_keys.c.kid).where(signing_keys.c.kid == kid)
                ).first()
                if exists is not None:
                    raise KeyRingError(f"signing key {kid} may have signed tokens")
        with self._lock:
            self._private.pop(kid, None)
        self._load()

    def discard_abandoned(self) -> list[str]:
        """Discard the staged keys of rotations that were never recorded nor undone (the
        process died between :meth:`rotate` and :meth:`activate` or :meth:`discard`):
        those staged for longer than the publish lead plus :data:`ABANDONED_AFTER_S`,
        so a rotation in progress is never touched. Each is deleted only while still
        staged (an activation that wins the race keeps its key). Returns their kids."""
        cutoff = self._clock.now() - self.publish_lead_s - ABANDONED_AFTER_S
        staged = (signing_keys.c.activates_at == STAGED) & (signing_keys.c.created_at < cutoff)
        discarded: list[str] = []
        with self._engine.begin() as conn:
            for kid in conn.execute(select(signing_keys.c.kid).where(staged)).scalars().all():
                gone = conn.execute(
                    delete(signing_keys).where(signing_keys.c.kid == kid, staged)
                ).rowcount
                if gone:
                    discarded.append(kid)
        if discarded:
            with self._lock:
                for kid in discarded:
                    self._private.pop(kid, None)
            self._load()
        return discarded

    def _create(self, *, immediate: bool, staged: bool = False) -> str:
        now = self._clock.now()
        kid = (
            f"{self.alg.lower()}-{time.strftime('%Y%m%d', time.gmtime(now))}-{secrets.token_hex(4)}"
        )
        private = _generate(self.alg, self._rsa_bits)
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        nonce = os.urandom(12)
        blob = nonce + self._wrap.encrypt(nonce, pem, _aad(kid))
        jwk = _public_jwk(kid, self.alg, private.public_key())
        with self._engine.begin() as conn:
            conn.execute(
                insert(signing_keys).values(
                    kid=kid,
                    alg=self.alg,
                    created_at=now,
                    activates_at=(
                        STAGED if staged else now if immediate else now + self.publish_lead_s
                    ),
                    activation_seq=None if staged else _next_activation(conn),
                    superseded_at=None,
                    retired_at=None,
                    public_jwk=orjson.dumps(jwk).decode(),
                    private_enc=blob,
                )
            )
        self._load()
        return kid

    def retire_expired(self) -> list[str]:
        """Retire superseded keys whose last token has expired. A key is superseded
        once a newer key is active; it stays published until no token it signed can
        still be valid (its latest ``exp``, and at least the maximum token lifetime
        after it stopped signing). Returns the retired kids."""
        now = self._clock.now()
        keys = self.published()
        active = [k for k in keys if k.activates_at <= now]
        if not active:
            return []
        current = max(active, key=signing_order)
        retired: list[str] = []
        with self._engine.begin() as conn:
            for key in active:
                if key.kid == current.kid:
                    continue
                superseded = key.superseded_at
                if superseded is None:
                    successors = [
                        k.activates_at for k in active if signing_order(k) > signing_order(key)
                    ]
                    superseded = min(successors) if successors else now
                    conn.execute(
                        update(signing_keys)
                        .where(signing_keys.c.kid == key.kid)
                        .values(superseded_at=superseded)
                    )
                last_exp = conn.execute(
                    select(func.max(tokens.c.exp)).where(tokens.c.kid == key.kid)
                ).scalar_one_or_none()
                keep_until = max(last_exp or 0, superseded + self.max_token_lifetime_s)
                if keep_until < now:
                    conn.execute(
                        update(signing_keys)
                        .where(signing_keys.c.kid == key.kid)
                        .values(retired_at=now)
                    )
                    retired.append(key.kid)
        self._load()
        return retired
