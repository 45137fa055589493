"""Privacy: pseudonyms, keyed fingerprints, per-subject data keys (DESIGN.md section 5).

- :class:`Fingerprinter` makes ``actor.pseudonym`` and the keyed fingerprints that
  let investigators match a session or token they hold without the trail holding
  it: ``HMAC-SHA256(key, kind || 0x00 || value)`` shown as ``<kid>:<base64url>``.
- :class:`SubjectKeys` hands out one AES-256-GCM data key per subject; the keys are
  stored wrapped (AES-GCM) under a master key. Erasure (GDPR art. 17) deletes the
  subject's key: its events stay, verifiable, and unreadable.
- Events that name no person have a subject of their own: :func:`flow_subject` for the
  steps of one login flow (erased with the person the login named, decision 0023),
  :func:`anon_subject` for the rest (one per month). Retention shreds both kinds
  (:data:`KEYLESS_PREFIXES`) once every event that can use their keys has expired.
"""

from __future__ import annotations

import base64
import hmac
import os
import threading
from collections import OrderedDict
from hashlib import sha256
from typing import Any, Final, Protocol

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kroonika.audit._errors import AuditKeyError
from kroonika.audit.store._types import NewKey


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


#: Subjects that are no person: a month of anonymous events, one login flow.
ANON_PREFIX: Final = "anon:"
FLOW_PREFIX: Final = "flow:"
KEYLESS_PREFIXES: Final = (ANON_PREFIX, FLOW_PREFIX)


def anon_subject(time: str) -> str:
    """The subject of events with no person and no flow: their month (``anon:YYYY-MM``)."""
    return ANON_PREFIX + time[:7]


def flow_subject(flow_id: str) -> str:
    """The subject of a login flow's events that name no person yet (``flow:`` and a
    SHA-256 of the flow id). The flow id is a random UUID that the trail shows in clear,
    so the hash hides nothing: it bounds the length and the alphabet of what lands in the
    key table, whatever a caller put in ``correlation.flow_id``."""
    return FLOW_PREFIX + _b64(sha256(flow_id.encode()).digest()[:18])


class Fingerprinter:
    """Keyed pseudonyms and fingerprints; the key id is part of every value."""

    def __init__(self, key: bytes, kid: str, *, cache_size: int = 100_000) -> None:
        if len(key) < 32:
            raise AuditKeyError("pseudonymisation key must be at least 32 bytes")
        if not kid or ":" in kid:
            raise AuditKeyError("pseudonymisation key id must be non-empty without ':'")
        self.kid = kid
        self._key = key
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._cache_size = cache_size

    def fingerprint(self, kind: str, value: str) -> str:
        mac = hmac.new(self._key, kind.encode() + b"\x00" + value.encode(), sha256).digest()
        return f"{self.kid}:{_b64(mac[:18])}"

    def pseudonym(self, subject: str) -> str:
        cached = self._cache.get(subject)
        if cached is not None:
            return cached
        value = self.fingerprint("subject", subject)
        self._cache[subject] = value
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return value


class SubjectKeys(Protocol):
    """Where per-subject data keys live. Implementations: :class:`MemorySubjectKeys`,
    :class:`kroonika.audit.store.sql.SqlSubjectKeys`.

    ``get_or_create(subject)`` returns ``(key_id, aead)``; new keys wait in
    ``take_pending()`` until the writer stores them with the block that uses them.
    """

    def get_or_create(self, subject: str) -> tuple[str, AESGCM]: ...

    def get(self, key_id: str) -> AESGCM | None: ...

    def erase(self, subject: str) -> int: ...

    def count(self, subject: str) -> int: ...

    def take_pending(self) -> list[NewKey]: ...

    def restore_pending(self, keys: list[NewKey]) -> None: ...


class KeyWrapper:
    """Wraps data keys under the master key (AES-256-GCM, AAD = key id)."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise AuditKeyError("master key must be 32 bytes")
        self._aead = AESGCM(master_key)

    def wrap(self, key_id: str, data_key: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, data_key, key_id.encode())

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        return self._aead.decrypt(wrapped[:12], wrapped[12:], key_id.encode())


class MemorySubjectKeys:
    """In-memory subject keys for tests and throwaway trails (nothing pending)."""

    def __init__(self) -> None:
        self._keys: dict[str, AESGCM] = {}
        self._lock = threading.Lock()

    def get_or_create(self, subject: str) -> tuple[str, AESGCM]:
        key_id = f"{subject}/mem"
        with self._lock:
            aead = self._keys.get(key_id)
            if aead is None:
                aead = self._keys[key_id] = AESGCM(AESGCM.generate_key(256))
            return key_id, aead

    def get(self, key_id: str) -> AESGCM | None:
        return self._keys.get(key_id)

    def erase(self, subject: str) -> int:
        with self._lock:
            return 1 if self._keys.pop(f"{subject}/mem", None) is not None else 0

    def count(self, subject: str) -> int:
        return 1 if f"{subject}/mem" in self._keys else 0

    def take_pending(self) -> list[NewKey]:
        return []

    def restore_pending(self, keys: list[NewKey]) -> None:
        return None


def reveal(pii: dict[str, str], event_id: str, keys: SubjectKeys) -> dict[str, Any] | None:
    """Decrypt an event's ``pii`` block; ``None`` when the subject was erased (its key is
    no longer stored). Callers must audit this first (``audit.access`` with action
    ``re-identify``) and answer nothing if the record fails."""
    aead = keys.get(pii["kid"])
    if aead is None:
        return None
    raw = base64.b64decode(pii["ct"])
    data: dict[str, Any] = orjson.loads(aead.decrypt(raw[:12], raw[12:], event_id.encode()))
    return data
