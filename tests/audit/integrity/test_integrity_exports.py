"""The public API of kroonika.audit.integrity does not drift."""

from __future__ import annotations

import kroonika.audit.integrity as integrity


def test_exported_names() -> None:
    """__all__ lists exactly the public names, and each one resolves."""
    assert integrity.__all__ == [
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
    for name in integrity.__all__:
        assert getattr(integrity, name) is not None


def test_error_tree() -> None:
    """ProofError and CanonicalisationError are IntegrityErrors; the latter a ValueError."""
    assert issubclass(integrity.ProofError, integrity.IntegrityError)
    assert issubclass(integrity.CanonicalisationError, integrity.IntegrityError)
    assert issubclass(integrity.CanonicalisationError, ValueError)
    assert not issubclass(integrity.ProofError, ValueError)
