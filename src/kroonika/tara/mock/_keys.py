"""The mock's two RS256 signing keys, their JWKS (RFC 7517) and rotation.

Both keys are always published; one signs. Rotating switches the signer to the other key,
optionally replacing that key by a fresh one first, so a relying party sees a ``kid`` it has
not cached and must re-fetch the set (TARA.md, "Keys rotate").
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kroonika.tara.mock.config import InvalidMockConfig

KEY_FILES = ("tara-mock-key-1.pem", "tara-mock-key-2.pem")


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def public_jwk(key: rsa.RSAPrivateKey) -> dict[str, str]:
    """The public JWK of ``key`` with its RFC 7638 thumbprint as ``kid``."""
    numbers = key.public_key().public_numbers()
    e, n = _b64url_uint(numbers.e), _b64url_uint(numbers.n)
    canonical = json.dumps({"e": e, "kty": "RSA", "n": n}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode("ascii")).digest()
    kid = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "e": e, "n": n}


def generate_key() -> rsa.RSAPrivateKey:
    """A fresh 2048-bit RSA key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def load_or_generate(key_dir: Path) -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    """Load the two PKCS #8 PEM keys from ``key_dir``, generating (mode 0600) any missing one."""
    key_dir.mkdir(parents=True, exist_ok=True)
    loaded: list[rsa.RSAPrivateKey] = []
    for name in KEY_FILES:
        path = key_dir / name
        if path.exists():
            try:
                key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            except (ValueError, TypeError) as exc:
                raise InvalidMockConfig(f"{path} is not an unencrypted PEM key: {exc}") from None
            if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
                raise InvalidMockConfig(f"{path} must hold an RSA key of at least 2048 bits")
        else:
            key = generate_key()
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
        loaded.append(key)
    return loaded[0], loaded[1]


class KeyRing:
    """Two published signing keys, one of which signs."""

    def __init__(self, keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey], signing: int) -> None:
        if signing not in (0, 1):
            raise InvalidMockConfig("the signing key index is 0 or 1")
        self._lock = threading.Lock()
        self._keys = list(keys)
        self._jwks = [public_jwk(k) for k in self._keys]
        if self._jwks[0]["kid"] == self._jwks[1]["kid"]:
            raise InvalidMockConfig("the two signing keys must differ")
        self._signing = signing

    @property
    def signing_kid(self) -> str:
        """The ``kid`` of the key that signs now."""
        with self._lock:
            return self._jwks[self._signing]["kid"]

    @property
    def kids(self) -> tuple[str, ...]:
        """The ``kid`` of both published keys."""
        with self._lock:
            return tuple(j["kid"] for j in self._jwks)

    def signer(self) -> tuple[str, rsa.RSAPrivateKey]:
        """The ``kid`` and private key to sign with."""
        with self._lock:
            return self._jwks[self._signing]["kid"], self._keys[self._signing]

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWK set published at ``/oidc/jwks``."""
        with self._lock:
            return {"keys": [dict(j) for j in self._jwks]}

    def rotate(self, new_key: rsa.RSAPrivateKey | None = None) -> str:
        """Sign with the other key from now on, first replacing it by ``new_key`` if given."""
        with self._lock:
            other = 1 - self._signing
            if new_key is not None:
                jwk = public_jwk(new_key)
                if jwk["kid"] in (j["kid"] for j in self._jwks):
                    raise ValueError("the new key is already published")
                self._keys[other], self._jwks[other] = new_key, jwk
            self._signing = other
            return self._jwks[other]["kid"]
