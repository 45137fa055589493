"""The checkpoint key ring's staged rotation: a key signs only once activated, and only a
key that never could have signed can be discarded."""

from __future__ import annotations

from pathlib import Path

import pytest

from kroonika.audit import AuditKeyError, KeyRing


def test_a_staged_key_signs_nothing_until_activated(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path / "keys", create=True)
    old = ring.active_kid
    new = ring.stage()
    assert ring.active_kid == old
    assert ring.public_keys().verify(old, ring.sign(b"head"), b"head")
    assert new in ring.public_keys().kids()  # exportable before it signs
    ring.activate(new)
    assert ring.public_keys().verify(new, ring.sign(b"head"), b"head")
    reopened = KeyRing.open(tmp_path / "keys")
    assert reopened.active_kid == new


def test_discard_removes_a_staged_key_and_nothing_else(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    ring = KeyRing.open(directory, create=True)
    files = sorted(p.name for p in directory.iterdir())
    staged = ring.stage()
    ring.discard(staged)
    assert sorted(p.name for p in directory.iterdir()) == files
    assert staged not in ring.public_keys().kids()
    with pytest.raises(AuditKeyError):
        ring.discard(ring.active_kid)  # it signed: never removed
    old = ring.active_kid
    _, new = ring.rotate()
    with pytest.raises(AuditKeyError):
        ring.discard(old)  # superseded, but its heads still need it
    with pytest.raises(AuditKeyError):
        ring.discard(new)
    assert sorted(KeyRing.open(directory).public_keys().kids()) == sorted([old, new])
