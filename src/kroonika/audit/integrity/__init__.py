"""Integrity primitives of the audit library: RFC 8785 canonical JSON and RFC 9162 Merkle
trees. Pure, synchronous, no I/O.

Errors::

    IntegrityError(Exception)
    ├── ProofError                        .expected / .actual roots on a mismatch
    └── CanonicalisationError(ValueError)
"""

from kroonika.audit.integrity._errors import CanonicalisationError, IntegrityError, ProofError
from kroonika.audit.integrity.rfc8785 import canonical
from kroonika.audit.integrity.rfc9162 import (
    EMPTY_ROOT,
    HASH_SIZE,
    CompactRange,
    LeafSource,
    aligned_subtrees,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CanonicalisationError",
    "CompactRange",
    "IntegrityError",
    "LeafSource",
    "ProofError",
    "aligned_subtrees",
    "canonical",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]
