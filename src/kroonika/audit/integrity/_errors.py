"""The error tree of :mod:`kroonika.audit.integrity`.

::

    IntegrityError(Exception)
    ├── ProofError                      a Merkle proof or root does not verify
    └── CanonicalisationError(ValueError)  a value has no RFC 8785 form we accept

Misuse that is a caller's bug rather than a fact about the data (a leaf hash that is not 32
bytes, an index outside the tree when *building* a proof, a malformed serialised frontier)
raises plain ``ValueError`` / ``TypeError``.
"""

from __future__ import annotations

__all__ = ["CanonicalisationError", "IntegrityError", "ProofError"]


class IntegrityError(Exception):
    """Base class of every integrity failure in the audit library."""


class ProofError(IntegrityError):
    """A Merkle inclusion or consistency proof does not verify.

    When the proof is well formed but leads to a different root (transparency-dev/merkle's
    ``RootMismatchError``), ``expected`` is the trusted root the caller supplied and ``actual``
    the root computed from the proof; both appear in the message in hex. For structural
    failures (wrong proof length, index outside the tree) both are ``None``.
    """

    expected: bytes | None
    actual: bytes | None

    def __init__(
        self, message: str, *, expected: bytes | None = None, actual: bytes | None = None
    ) -> None:
        if expected is not None and actual is not None:
            message = f"{message}: expected {expected.hex()}, calculated {actual.hex()}"
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class CanonicalisationError(IntegrityError, ValueError):
    """A value cannot be canonicalised: a float, an unsafe integer, a non-str key, a lone
    surrogate, an unsupported type, or nesting that is too deep."""
