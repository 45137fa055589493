"""Ed25519 signing keys for tree heads and checkpoints.

Keys live in a directory outside the audit database (``var/keys/audit`` in
development): ``<kid>.key`` (PKCS#8 PEM, mode 0600), ``<kid>.pub`` (raw public key,
base64) and ``active`` (the kid that signs). The kid is the first 16 hex digits of
SHA-256 of the raw public key, so a key names itself. Rotation adds a key and makes
it active; old public keys stay so older heads still verify.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from kroonika.audit._errors import AuditKeyError


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class PublicKeys:
    """The public half of a key ring: what a verifier needs."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey]) -> None:
        self._keys = dict(keys)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def kids(self) -> list[str]:
        return sorted(self._keys)

    def verify(self, kid: str, signature: bytes, data: bytes) -> bool:
        key = self._keys.get(kid)
        if key is None:
            return False
        try:
            key.verify(signature, data)
        except InvalidSignature:
            return False
        return True

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "keys": [
                    {
                        "kid": kid,
                        "alg": "Ed25519",
                        "public_key": base64.b64encode(
                            k.public_bytes(
                                serialization.Encoding.Raw, serialization.PublicFormat.Raw
                            )
                        ).decode(),
                    }
                    for kid, k in sorted(self._keys.items())
                ]
            },
            option=orjson.OPT_INDENT_2,
        )

    @classmethod
    def from_json(cls, data: bytes) -> PublicKeys:
        try:
            doc = orjson.loads(data)
            keys = {}
            for entry in doc["keys"]:
                pub = Ed25519PublicKey.from_public_bytes(base64.b64decode(entry["public_key"]))
                if key_id(pub) != entry["kid"]:
                    raise AuditKeyError(f"key {entry['kid']} does not match its public key")
                keys[entry["kid"]] = pub
        except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
            raise AuditKeyError(f"not a public key file: {exc}") from exc
        return cls(keys)

    @classmethod
    def from_directory(cls, path: Path) -> PublicKeys:
        keys = {}
        if path.is_dir():
            for pub_file in sorted(path.glob("*.pub")):
                pub = Ed25519PublicKey.from_public_bytes(base64.b64decode(pub_file.read_text()))
                keys[key_id(pub)] = pub
        return cls(keys)


class KeyRing:
    """Signing keys in a directory; ``sign`` uses the active one."""

    def __init__(self, directory: Path, private: Mapping[str, Ed25519PrivateKey], active: str):
        if active not in private:
            raise AuditKeyError(f"active key {active} has no private key")
        self.directory = directory
        self._private = dict(private)
        self.active_kid = active
        self._active = self._private[active]
        self._staged: set[str] = set()

    @classmethod
    def open(cls, directory: Path, *, create: bool = False) -> KeyRing:
        """Load the ring; with ``create=True`` make the directory and a first key."""
        private: dict[str, Ed25519PrivateKey] = {}
        if directory.is_dir():
            for key_file in sorted(directory.glob("*.key")):
                key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
                if not isinstance(key, Ed25519PrivateKey):
                    raise AuditKeyError(f"{key_file} is not an Ed25519 key")
                private[key_id(key.public_key())] = key
        active_file = directory / "active"
        if not private:
            if not create:
                raise AuditKeyError(f"no audit signing keys in {directory}")
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            ring = cls.__new__(cls)
            ring.directory = directory
            ring._private = {}
            ring._staged = set()
            kid = ring._add()
            active_file.write_text(kid)
            ring.active_kid = kid
            ring._active = ring._private[kid]
            return ring
        active = active_file.read_text().strip() if active_file.exists() else max(private)
        return cls(directory, private, active)

    def _add(self) -> str:
        key = Ed25519PrivateKey.generate()
        kid = key_id(key.public_key())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path = self.directory / f"{kid}.key"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        (self.directory / f"{kid}.pub").write_text(base64.b64encode(raw).decode())
        self._private[kid] = key
        return kid

    def rotate(self) -> tuple[str, str]:
        """Add a key and make it active; returns (old kid, new kid). Where the rotation
        must be recorded first, :meth:`stage`, record, then :meth:`activate`."""
        old = self.active_kid
        new = self.stage()
        self.activate(new)
        return old, new

    def stage(self) -> str:
        """Add a key that signs nothing until :meth:`activate`: record its ``key.rotate``
        first (signed by the current key), and :meth:`discard` it if that fails, so no
        head is ever signed by a key whose rotation was not recorded."""
        kid = self._add()
        self._staged.add(kid)
        return kid

    def activate(self, kid: str) -> None:
        """Make ``kid`` (a key of this ring) the one that signs from now on."""
        if kid not in self._private:
            raise AuditKeyError(f"no key {kid} in the ring")
        (self.directory / "active").write_text(kid)
        self.active_kid = kid
        self._active = self._private[kid]
        self._staged.discard(kid)

    def discard(self, kid: str) -> None:
        """Remove a key staged by this ring and never activated (it has signed nothing).
        Any other key may have signed heads, and is refused: removing it would leave
        them unverifiable."""
        if kid not in self._staged:
            raise AuditKeyError(f"key {kid} was not staged here, so it may have signed")
        self._staged.discard(kid)
        self._private.pop(kid, None)
        for suffix in (".key", ".pub"):
            (self.directory / f"{kid}{suffix}").unlink(missing_ok=True)

    def sign(self, data: bytes) -> bytes:
        return self._active.sign(data)

    def public_keys(self) -> PublicKeys:
        return PublicKeys({kid: k.public_key() for kid, k in self._private.items()})
