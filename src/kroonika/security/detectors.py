"""Detectors of unusual access: small pure functions over a login and its context.

Each takes what it needs (the person's profile, a window of recent observations,
thresholds) and returns a :class:`Finding` or nothing. They keep no state and read
no clock, so the later rule engine can reuse them over any window of events.

Identities here are already privacy-safe: a person is their pseudonym and an
address is its anonymised network (``/24`` or ``/48``) as the trail records it, an
IPv6 one never narrower than its ``/64`` (decision 0029), so detector state never
holds a personal code or a full IP address.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo

EARTH_RADIUS_KM = 6371.0088

#: The zone of a person's day, in which their usual hours are counted: the people
#: logging in live in Estonia, and their day does not move by an hour twice a year
#: as its UTC hours do (decision 0029). Profiles and the detector use the same.
USUAL_HOURS_ZONE: tzinfo = ZoneInfo("Europe/Tallinn")

AnomalyKind = Literal[
    "new_country",
    "impossible_travel",
    "unusual_hour",
    "brute_force",
    "credential_stuffing",
    "forged_id_token",
]

#: ID-token checks whose failure can mean that someone answers in the identity
#: provider's place (a proxy on the back channel, a wrong issuer URL pointing at a
#: look-alike), with the confidence of that reading: a bad signature or a downgraded
#: algorithm is hard to explain otherwise; a key id still unknown after the key set
#: was fetched again can also be the provider's own key rotation going wrong.
FORGERY_SIGNS: Mapping[str, int] = {
    "id_token.bad_signature": 90,
    "id_token.alg": 90,
    "id_token.unknown_kid": 60,
}


def _number(value: object) -> float | None:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True, slots=True)
class Place:
    """Where a login came from, as the geo enrichment put it in ``source.geo``."""

    country: str | None = None
    city: str | None = None
    lat: float | None = None
    lon: float | None = None
    accuracy_km: int | None = None

    @classmethod
    def from_geo(cls, geo: Mapping[str, str] | None) -> Place | None:
        """The place of a recorded ``source.geo``; coordinates that are not a point on
        Earth (unparsable, not finite, out of range) and a negative or unparsable
        accuracy are left out rather than trusted."""
        if not geo:
            return None
        lat, lon = _number(geo.get("lat")), _number(geo.get("lon"))
        if lat is None or lon is None or abs(lat) > 90 or abs(lon) > 180:
            lat = lon = None
        acc = _number(geo.get("accuracy_km"))
        accuracy = int(acc) if acc is not None and 0 <= acc < 1e6 else None
        return cls(geo.get("country"), geo.get("city"), lat, lon, accuracy)

    def label(self) -> str:
        return "/".join(p for p in (self.country, self.city) if p) or "unknown"


@dataclass(frozen=True, slots=True)
class LoginObservation:
    """One ``auth.login`` event reduced to what the detectors use."""

    at: float  # Unix seconds
    success: bool
    person: str | None = None  # pseudonym
    network: str | None = None  # anonymised source network
    place: Place | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    """A person's history, as :mod:`kroonika.security.profiles` keeps it."""

    person: str
    login_count: int = 0
    first_seen: float | None = None
    countries: Mapping[str, int] = field(default_factory=dict)
    networks: Mapping[str, float] = field(default_factory=dict)
    hours: tuple[int, ...] = (0,) * 24
    last_at: float | None = None
    last_place: Place | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """An anomaly: its kind, what it is about, the evidence and a confidence 0..100."""

    kind: AnomalyKind
    key_kind: Literal["person", "ip", "idp"]
    key: str
    evidence: Mapping[str, str | int]
    confidence: int


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    travel_max_kmh: float = 1000.0
    travel_max_accuracy_km: int = 500
    travel_min_km: float = 100.0
    travel_unknown_accuracy_km: int = 100  # a place whose geo database gives no radius
    unusual_hour_min_logins: int = 10
    unusual_hour_min_days: int = 14
    #: logins a person needs at least for their days of history to count
    unusual_hour_min_logins_over_days: int = 3
    unusual_hour_timezone: tzinfo = USUAL_HOURS_ZONE
    brute_force_failures: int = 8
    brute_force_window_s: float = 120.0
    stuffing_people: int = 15
    stuffing_attempts: int = 25
    stuffing_window_s: float = 600.0


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


# --- per-login detectors (a successful login against the person's profile) -----------


def new_country(profile: Profile | None, obs: LoginObservation) -> Finding | None:
    """A successful login from a country this person has never logged in from.
    The first login ever, or the first with a known country, has nothing to compare
    with and is not a finding."""
    if not obs.success or obs.person is None or profile is None or not profile.countries:
        return None
    country = obs.place.country if obs.place else None
    if country is None or country in profile.countries:
        return None
    seen = sorted(profile.countries, key=lambda c: -profile.countries[c])
    confidence = 70 if profile.login_count >= 5 else 50
    return Finding(
        "new_country",
        "person",
        obs.person,
        {"country": country, "seen": ",".join(seen[:10]), "logins": profile.login_count},
        confidence,
    )


def impossible_travel(
    profile: Profile | None, obs: LoginObservation, config: DetectorConfig = DetectorConfig()
) -> Finding | None:
    """The distance from the previous login's place over the time since it needs a
    speed above ``travel_max_kmh``. Places whose accuracy radius is larger than
    ``travel_max_accuracy_km`` are ignored, and the radii are subtracted from the
    distance so database imprecision cannot make a finding. A place without a radius
    (DB-IP Lite gives none) has ``travel_unknown_accuracy_km``, not an exact point."""
    if not obs.success or obs.person is None or profile is None:
        return None
    a, b = profile.last_place, obs.place
    if a is None or b is None or profile.last_at is None:
        return None
    if a.lat is None or a.lon is None or b.lat is None or b.lon is None:
        return None
    unknown = config.travel_unknown_accuracy_km
    ra = a.accuracy_km if a.accuracy_km is not None else unknown
    rb = b.accuracy_km if b.accuracy_km is not None else unknown
    if ra > config.travel_max_accuracy_km or rb > config.travel_max_accuracy_km:
        return None
    distance = haversine_km(a.lat, a.lon, b.lat, b.lon)
    effective = distance - ra - rb
    if effective < config.travel_min_km:
        return None
    # A login can be examined after a later one (several instances share the
    # profiles): the travel is between the two times, whichever came first.
    elapsed = abs(obs.at - profile.last_at)
    hours = max(elapsed, 60.0) / 3600.0
    speed = effective / hours
    if speed <= config.travel_max_kmh:
        return None
    if obs.at < profile.last_at:
        a, b = b, a
    confidence = 90 if speed > 3 * config.travel_max_kmh else 75
    return Finding(
        "impossible_travel",
        "person",
        obs.person,
        {
            "from": a.label(),
            "to": b.label(),
            "km": round(distance),
            "minutes": round(elapsed / 60),
            "kmh": round(speed),
            "max_kmh": round(config.travel_max_kmh),
        },
        confidence,
    )


def _hour(at: float, tz: tzinfo) -> int:
    return datetime.fromtimestamp(at, tz).hour


def unusual_hour(
    profile: Profile | None, obs: LoginObservation, config: DetectorConfig = DetectorConfig()
) -> Finding | None:
    """A login at an hour (with its neighbours, 23 and 0 among them) of the person's
    local day (``unusual_hour_timezone``) when this person never logs in, once the
    person has enough history: ``unusual_hour_min_logins`` logins, or
    ``unusual_hour_min_days`` days since the first one with at least
    ``unusual_hour_min_logins_over_days`` logins (one old login is no pattern)."""
    if not obs.success or obs.person is None or profile is None or profile.first_seen is None:
        return None
    count = profile.login_count
    enough = count >= config.unusual_hour_min_logins or (
        count >= config.unusual_hour_min_logins_over_days
        and obs.at - profile.first_seen >= config.unusual_hour_min_days * 86400
    )
    if not enough or sum(profile.hours) == 0:
        return None
    hour = _hour(obs.at, config.unusual_hour_timezone)
    near = sum(profile.hours[(hour + d) % 24] for d in (-1, 0, 1))
    if near > 0:
        return None
    usual = [h for h in range(24) if profile.hours[h] > 0]
    confidence = 70 if profile.login_count >= 3 * config.unusual_hour_min_logins else 55
    return Finding(
        "unusual_hour",
        "person",
        obs.person,
        {"hour": hour, "usual_hours": ",".join(map(str, usual)), "logins": profile.login_count},
        confidence,
    )


# --- window detectors (failures in a window of recent observations) -----------------


def _failures(
    window: Sequence[LoginObservation], now: float, span: float
) -> list[LoginObservation]:
    start = now - span
    return [o for o in window if not o.success and start <= o.at <= now]


def brute_force(
    window: Sequence[LoginObservation], now: float, config: DetectorConfig = DetectorConfig()
) -> list[Finding]:
    """At least ``brute_force_failures`` failed logins for one person or from one
    network within ``brute_force_window_s`` seconds before ``now``."""
    fails = _failures(window, now, config.brute_force_window_s)
    out: list[Finding] = []
    for key_kind in ("person", "ip"):
        counts: dict[str, int] = {}
        for o in fails:
            key = o.person if key_kind == "person" else o.network
            if key is not None:
                counts[key] = counts.get(key, 0) + 1
        for key, n in sorted(counts.items()):
            if n >= config.brute_force_failures:
                out.append(
                    Finding(
                        "brute_force",
                        key_kind,
                        key,
                        {
                            "failures": n,
                            "window_s": round(config.brute_force_window_s),
                            "threshold": config.brute_force_failures,
                        },
                        90 if n >= 2 * config.brute_force_failures else 75,
                    )
                )
    return out


def credential_stuffing(
    window: Sequence[LoginObservation], now: float, config: DetectorConfig = DetectorConfig()
) -> list[Finding]:
    """One network failing for many different people within ``stuffing_window_s``:
    at least ``stuffing_people`` distinct people, or ``stuffing_attempts`` failures
    spread over at least two people (one person only is brute force, not stuffing)."""
    fails = _failures(window, now, config.stuffing_window_s)
    by_net: dict[str, list[LoginObservation]] = {}
    for o in fails:
        if o.network is not None:
            by_net.setdefault(o.network, []).append(o)
    out: list[Finding] = []
    for net, obs in sorted(by_net.items()):
        people = {o.person for o in obs if o.person is not None}
        if len(people) >= config.stuffing_people or (
            len(obs) >= config.stuffing_attempts and len(people) >= 2
        ):
            out.append(
                Finding(
                    "credential_stuffing",
                    "ip",
                    net,
                    {
                        "people": len(people),
                        "attempts": len(obs),
                        "window_s": round(config.stuffing_window_s),
                    },
                    90 if len(people) >= config.stuffing_people else 70,
                )
            )
    return out


def login_findings(
    profile: Profile | None, obs: LoginObservation, config: DetectorConfig = DetectorConfig()
) -> list[Finding]:
    """All per-login detectors for one successful login."""
    found = [
        new_country(profile, obs),
        impossible_travel(profile, obs, config),
        unusual_hour(profile, obs, config),
    ]
    return [f for f in found if f is not None]


def forged_id_token(reason: str | None, idp: str | None) -> Finding | None:
    """A login that failed because the provider's ID token was not signed as it must
    be (:data:`FORGERY_SIGNS`): about the provider, not the person or their network."""
    confidence = FORGERY_SIGNS.get(reason or "")
    if confidence is None:
        return None
    name = idp or "unknown"
    return Finding(
        "forged_id_token", "idp", name, {"reason": reason or "", "idp": name}, confidence
    )
