"""Per-person security profiles in the business database.

What a person's logins looked like so far: how many, since when, from which
countries and (anonymised) networks, at which hours, and the place and time of the
last login whose location was known (a login from an address without coordinates
must not reset impossible travel). The detectors compare a new login with it;
:meth:`ProfileStore.record_login` then folds the login in. Only successful logins
change a profile.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from kroonika.db.security import security_profile
from kroonika.security.detectors import USUAL_HOURS_ZONE, LoginObservation, Place, Profile

MAX_NETWORKS = 32
MAX_COUNTRIES = 64


def _zone_name(tz: tzinfo) -> str:
    return str(getattr(tz, "key", None) or tz)


def _offset_h(tz: tzinfo, at: float) -> float:
    offset = datetime.fromtimestamp(at, tz).utcoffset()
    return offset.total_seconds() / 3600 if offset is not None else 0.0


def _read_hours(raw: str, tz: tzinfo, at: float) -> list[int]:
    """A stored histogram of login hours as hours of ``tz``. Until decision 0029 the
    hours were counted in UTC and stored as a bare list; those (and hours of any other
    zone) move by the difference of the zones' offsets at ``at``, the profile's last
    update: an hour counted on the other side of a DST change is then off by one,
    which the detector's neighbouring hours absorb."""
    data: Any = json.loads(raw)
    zone, hours = ("UTC", data) if isinstance(data, list) else (data["zone"], data["hours"])
    counts = [int(h) for h in hours]
    if zone == _zone_name(tz):
        return counts
    try:
        source = ZoneInfo(zone)
    except (ValueError, ZoneInfoNotFoundError):  # pragma: no cover  (written by this module)
        return counts
    shift = round(_offset_h(tz, at) - _offset_h(source, at))
    moved = [0] * 24
    for hour, n in enumerate(counts):
        moved[(hour + shift) % 24] += n
    return moved


def _coord(value: float | None) -> str | None:
    return None if value is None else f"{value:.4f}".rstrip("0").rstrip(".")


class ProfileStore:
    """Profiles on a SQLAlchemy engine (SQLite or PostgreSQL). ``timezone`` is the
    zone in which "usual hours" are counted (the detectors must use the same); the
    stored histogram names it."""

    def __init__(self, engine: Engine, *, timezone: tzinfo = USUAL_HOURS_ZONE) -> None:
        self._engine = engine
        self._tz = timezone

    def get(self, person: str) -> Profile | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(security_profile).where(security_profile.c.person == person)
            ).first()
        if row is None:
            return None
        m = row._mapping
        last_place = None
        if m["last_country"] is not None or m["last_lat"] is not None:
            last_place = Place(
                m["last_country"],
                m["last_city"],
                float(m["last_lat"]) if m["last_lat"] is not None else None,
                float(m["last_lon"]) if m["last_lon"] is not None else None,
                m["last_accuracy_km"],
            )
        hours = _read_hours(m["hours"], self._tz, float(m["updated_at"]))
        return Profile(
            person=person,
            login_count=int(m["login_count"]),
            first_seen=float(m["first_seen"]),
            countries={str(k): int(v) for k, v in json.loads(m["countries"]).items()},
            networks={str(k): float(v) for k, v in json.loads(m["networks"]).items()},
            hours=tuple(hours),
            last_at=float(m["last_at"]) if m["last_at"] is not None else None,
            last_place=last_place,
        )

    def adopt(self, person: str, former: Collection[str]) -> bool:
        """Give ``person`` the profile it had under one of its ``former`` pseudonyms (the
        same person under retired pseudonymisation keys), unless it has one already: a
        rotation of the key must not restart anyone's baseline (decision 0022). The most
        recently updated one moves; whether one did."""
        t = security_profile
        if not former:
            return False
        try:
            with self._engine.begin() as conn:
                if conn.execute(select(t.c.person).where(t.c.person == person)).first():
                    return False
                found = conn.execute(
                    select(t.c.person)
                    .where(t.c.person.in_(sorted(former)))
                    .order_by(t.c.updated_at.desc())
                    .limit(1)
                ).first()
                if found is None:
                    return False
                conn.execute(update(t).where(t.c.person == found.person).values(person=person))
        except IntegrityError:  # a login of the same person made one meanwhile
            return False
        return True

    def record_login(self, obs: LoginObservation) -> None:
        """Fold one successful login into its person's profile (read-modify-write in
        one transaction, row locked on PostgreSQL; a racing first insert retries)."""
        if not obs.success or obs.person is None:
            return
        for _attempt in range(3):
            try:
                self._record(obs, obs.person)
                return
            except IntegrityError:
                continue
        raise RuntimeError("could not record login in the security profile")

    def _record(self, obs: LoginObservation, person: str) -> None:
        t = security_profile
        at = int(obs.at)
        hour = datetime.fromtimestamp(obs.at, self._tz).hour
        place = obs.place
        with self._engine.begin() as conn:
            row = conn.execute(select(t).where(t.c.person == person).with_for_update()).first()
            if row is None:
                countries: dict[str, int] = {}
                networks: dict[str, int] = {}
                hours = [0] * 24
                count, first, updated = 0, at, at
                latest = True
            else:
                m = row._mapping
                countries = json.loads(m["countries"])
                networks = json.loads(m["networks"])
                hours = _read_hours(m["hours"], self._tz, float(m["updated_at"]))
                count, first = int(m["login_count"]), int(m["first_seen"])
                updated = max(at, int(m["updated_at"]))  # the newest login (retention)
                # an older login folded in late counts, but is not the last login
                latest = m["last_at"] is None or at >= int(m["last_at"])
            if place is not None and place.country is not None:
                countries[place.country] = countries.get(place.country, 0) + 1
                if len(countries) > MAX_COUNTRIES:
                    rarest = min(countries, key=lambda c: countries[c])
                    del countries[rarest]
            if obs.network is not None:
                networks[obs.network] = max(at, int(networks.get(obs.network, at)))
                if len(networks) > MAX_NETWORKS:
                    oldest = min(networks, key=lambda n: networks[n])
                    del networks[oldest]
            hours[hour] += 1
            values: dict[str, object] = {
                "login_count": count + 1,
                "first_seen": min(first, at),
                "countries": json.dumps(countries, sort_keys=True),
                "networks": json.dumps(networks, sort_keys=True),
                "hours": json.dumps({"zone": _zone_name(self._tz), "hours": hours}),
                "updated_at": updated,
            }
            located = place is not None and place.lat is not None and place.lon is not None
            if latest and located and place is not None:
                values |= {
                    "last_at": at,
                    "last_country": place.country,
                    "last_city": place.city[:128] if place.city else None,
                    "last_lat": _coord(place.lat),
                    "last_lon": _coord(place.lon),
                    "last_accuracy_km": place.accuracy_km,
                }
            if row is None:
                conn.execute(insert(t).values(person=person, **values))
            else:
                conn.execute(update(t).where(t.c.person == person).values(**values))
