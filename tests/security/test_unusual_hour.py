"""The unusual-hour detector over profiles the profile store built: a person's usual
hours are hours of their own day in Estonia (Europe/Tallinn), whatever the season."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, update

from kroonika.db import make_engine, metadata
from kroonika.db import security as security_tables
from kroonika.security import DetectorConfig, LoginObservation, Profile, ProfileStore, unusual_hour

TALLINN = ZoneInfo("Europe/Tallinn")
PERSON = "p1:" + "a" * 24


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'kroonika.db'}")
    metadata.create_all(engine, tables=[security_tables.security_profile])
    return engine


@pytest.fixture
def profiles(engine: Engine) -> ProfileStore:
    return ProfileStore(engine)


def local(year: int, month: int, day: int, hour: int, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=TALLINN).timestamp()


def login(at: float) -> LoginObservation:
    return LoginObservation(at=at, success=True, person=PERSON, network="192.0.2.0/24")


def history(profiles: ProfileStore, hour: int, *, month: int = 7, days: int = 12) -> Profile:
    for day in range(1, days + 1):
        profiles.record_login(login(local(2026, month, day, hour, 15)))
    found = profiles.get(PERSON)
    assert found is not None
    return found


def test_the_same_local_hours_are_usual_across_a_dst_change(profiles: ProfileStore) -> None:
    """Twelve summer logins at 09:15 Tallinn time (06:15 UTC); in winter the person
    logs in at 10:15 Tallinn time, next to their usual hour, but 08:15 UTC, two hours
    from the summer's UTC hour. A 03:15 login in winter is still unusual."""
    p = history(profiles, 9)
    config = DetectorConfig()
    assert unusual_hour(p, login(local(2026, 12, 1, 10, 15)), config) is None
    finding = unusual_hour(p, login(local(2026, 12, 1, 3, 15)), config)
    assert finding is not None
    assert (finding.evidence["hour"], finding.evidence["usual_hours"]) == (3, "9")


def test_late_evening_and_just_after_midnight_are_neighbours(profiles: ProfileStore) -> None:
    """A person who logs in at 23:15 logs in at 00:15 without it being unusual."""
    p = history(profiles, 23)
    assert unusual_hour(p, login(local(2026, 7, 20, 0, 15))) is None
    assert unusual_hour(p, login(local(2026, 7, 20, 1, 15))) is not None


def test_hours_recorded_in_utc_before_are_read_as_local_hours(
    engine: Engine, profiles: ProfileStore
) -> None:
    """Profiles whose hours were counted in UTC (before decision 0029) are read in local
    time, so the upgrade itself raises no unusual hour for a person's usual logins."""
    history(profiles, 9)  # July: 06 UTC
    utc = [0] * 24
    utc[6] = 12
    t = security_tables.security_profile
    with engine.begin() as conn:  # the row as an older version wrote it
        conn.execute(update(t).where(t.c.person == PERSON).values(hours=json.dumps(utc)))
    p = profiles.get(PERSON)
    assert p is not None
    assert p.hours[9] == 12
    assert unusual_hour(p, login(local(2026, 7, 20, 9, 15))) is None
    profiles.record_login(login(local(2026, 7, 21, 9, 30)))
    again = profiles.get(PERSON)
    assert again is not None
    assert (again.hours[9], again.login_count) == (13, 13)
