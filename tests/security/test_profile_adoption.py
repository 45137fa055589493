"""A person's security profile survives a rotation of the pseudonymisation key: at their
first login under the new pseudonym it moves over from the old one (decision 0022)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kroonika.db import make_engine, metadata
from kroonika.db import security as security_tables
from kroonika.security import ProfileStore
from kroonika.security.detectors import LoginObservation

OLD, OLDER, NEW = "p2:" + "a" * 24, "p1:" + "b" * 24, "p3:" + "c" * 24


@pytest.fixture
def profiles(tmp_path: Path) -> ProfileStore:
    engine = make_engine(f"sqlite:///{tmp_path / 'kroonika.db'}")
    metadata.create_all(engine, tables=[security_tables.security_profile])
    return ProfileStore(engine)


def _logins(profiles: ProfileStore, person: str, times: list[float]) -> None:
    for at in times:
        profiles.record_login(
            LoginObservation(at=at, success=True, person=person, network="192.0.2.0/24")
        )


def test_the_most_recent_former_profile_moves_to_the_new_pseudonym(
    profiles: ProfileStore,
) -> None:
    """Of two former pseudonyms the one updated last moves, whole; the other stays."""
    _logins(profiles, OLDER, [1_000.0])
    _logins(profiles, OLD, [2_000.0, 3_000.0])
    assert profiles.adopt(NEW, {OLD, OLDER})
    moved = profiles.get(NEW)
    assert moved is not None
    assert (moved.login_count, moved.first_seen) == (2, 2_000.0)
    assert profiles.get(OLD) is None
    assert profiles.get(OLDER) is not None


def test_a_profile_under_the_new_pseudonym_is_kept(profiles: ProfileStore) -> None:
    """Once the person has a profile under the new pseudonym nothing moves."""
    _logins(profiles, OLD, [1_000.0])
    _logins(profiles, NEW, [2_000.0])
    assert not profiles.adopt(NEW, {OLD})
    kept = profiles.get(NEW)
    assert kept is not None
    assert kept.first_seen == 2_000.0
    assert profiles.get(OLD) is not None


def test_nothing_to_adopt(profiles: ProfileStore) -> None:
    """No former profile, or no former pseudonym: nothing happens."""
    assert not profiles.adopt(NEW, {OLD})
    assert not profiles.adopt(NEW, set())
    assert profiles.get(NEW) is None
