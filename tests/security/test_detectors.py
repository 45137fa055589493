"""The detectors as pure functions over scripted login sequences."""

from __future__ import annotations

from datetime import UTC

from kroonika.security import (
    DetectorConfig,
    LoginObservation,
    Place,
    Profile,
    brute_force,
    credential_stuffing,
    haversine_km,
    impossible_travel,
    new_country,
    unusual_hour,
)

T0 = 1_780_000_000.0  # 2026-05-28T20:26:40Z
TARTU = Place("EE", "Tartu", 58.3806, 26.7237, 20)
TALLINN = Place("EE", "Tallinn", 59.437, 24.7536, 10)
LONDON = Place("GB", "London", 51.5143, -0.0912, 50)
SYDNEY = Place("AU", "Sydney", -33.8688, 151.209, 100)
VAGUE = Place("US", None, 37.751, -97.822, 1000)


def profile(**kw: object) -> Profile:
    base: dict[str, object] = {
        "person": "p1:alice",
        "login_count": 5,
        "first_seen": T0 - 86400,
        "countries": {"EE": 5},
        "last_at": T0,
        "last_place": TARTU,
    }
    base.update(kw)
    return Profile(**base)  # type: ignore[arg-type]


def ok(at: float, place: Place | None = TARTU, person: str = "p1:alice") -> LoginObservation:
    return LoginObservation(at, True, person, "193.40.12.0/24", place)


def fail(at: float, person: str | None, network: str = "45.133.1.0/24") -> LoginObservation:
    return LoginObservation(at, False, person, network, None)


def test_haversine_tartu_sydney() -> None:
    """Tartu to Sydney is about 15 000 km."""
    d = haversine_km(TARTU.lat, TARTU.lon, SYDNEY.lat, SYDNEY.lon)  # type: ignore[arg-type]
    assert 14_500 < d < 15_500


def test_new_country_found() -> None:
    """A login from a country the person never used is a finding."""
    f = new_country(profile(), ok(T0 + 3600, LONDON))
    assert f is not None
    assert (f.kind, f.evidence["country"], f.evidence["seen"]) == ("new_country", "GB", "EE")


def test_new_country_not_for_a_known_country_or_a_first_login() -> None:
    """A known country, and the very first login, are not findings."""
    assert new_country(profile(), ok(T0 + 3600, TALLINN)) is None
    assert new_country(None, ok(T0, LONDON)) is None


def test_new_country_not_when_no_country_was_known() -> None:
    """Earlier logins without a country (unknown or private addresses) give nothing to
    compare with: the first login with a country is not a new country."""
    assert new_country(profile(countries={}), ok(T0 + 3600, TALLINN)) is None


def test_impossible_travel_found() -> None:
    """Tartu then Sydney half an hour later is impossible travel."""
    f = impossible_travel(profile(), ok(T0 + 1800, SYDNEY))
    assert f is not None
    assert f.evidence["from"] == "EE/Tartu"
    assert f.evidence["to"] == "AU/Sydney"
    assert int(f.evidence["kmh"]) > 20_000


def test_travel_that_a_plane_can_make_is_not_a_finding() -> None:
    """Tartu then Sydney a day later, and Tartu then Tallinn in an hour, are normal."""
    assert impossible_travel(profile(), ok(T0 + 86400, SYDNEY)) is None
    assert impossible_travel(profile(), ok(T0 + 3600, TALLINN)) is None


def test_a_login_seen_after_a_later_one_is_measured_over_the_real_time() -> None:
    """A login examined after a later one (another instance, a lagging monitor) is
    compared over the time between the two, not as if a minute apart."""
    later = profile(last_place=LONDON)
    assert impossible_travel(later, ok(T0 - 3 * 3600, TALLINN)) is None
    f = impossible_travel(later, ok(T0 - 1800, SYDNEY))
    assert f is not None
    assert f.evidence["minutes"] == 30


def test_a_place_without_accuracy_is_not_taken_as_exact() -> None:
    """DB-IP Lite gives no accuracy radius: Tartu broadband and a mobile address placed
    in Tallinn minutes apart are not impossible travel, Tartu and London still are."""
    tartu, tallinn = Place("EE", "Tartu", 58.3806, 26.7237), Place("EE", "Tallinn", 59.437, 24.7536)
    london = Place("GB", "London", 51.5143, -0.0912)
    assert impossible_travel(profile(last_place=tartu), ok(T0 + 300, tallinn)) is None
    assert impossible_travel(profile(last_place=tartu), ok(T0 + 300, london)) is not None


def test_low_accuracy_locations_are_ignored() -> None:
    """A location with a 1000 km accuracy radius never makes impossible travel."""
    assert impossible_travel(profile(), ok(T0 + 600, VAGUE)) is None


def test_speed_limit_is_configurable() -> None:
    """With a 100 000 km/h limit, Tartu to Sydney in 30 minutes passes."""
    cfg = DetectorConfig(travel_max_kmh=100_000)
    assert impossible_travel(profile(), ok(T0 + 1800, SYDNEY), cfg) is None


#: The hours of these profiles are UTC hours (the service counts Tallinn's).
UTC_HOURS = DetectorConfig(unusual_hour_timezone=UTC)


def hours_at(*hs: int, n: int = 4) -> tuple[int, ...]:
    out = [0] * 24
    for h in hs:
        out[h] = n
    return tuple(out)


def at_hour(h: int) -> float:
    day = T0 - T0 % 86400 + 86400
    return day + h * 3600 + 60


def test_unusual_hour_found_with_enough_history() -> None:
    """Twelve logins at 9-11 UTC make a 03:00 login unusual."""
    p = profile(login_count=12, hours=hours_at(9, 10, 11))
    f = unusual_hour(p, ok(at_hour(3)), UTC_HOURS)
    assert f is not None
    assert (f.evidence["hour"], f.evidence["usual_hours"]) == (3, "9,10,11")


def test_usual_and_neighbouring_hours_are_not_findings() -> None:
    """A login at a usual hour or next to one is normal."""
    p = profile(login_count=12, hours=hours_at(9, 10, 11))
    assert unusual_hour(p, ok(at_hour(10)), UTC_HOURS) is None
    assert unusual_hour(p, ok(at_hour(12)), UTC_HOURS) is None


def test_unusual_hour_needs_ten_logins_or_fourteen_days() -> None:
    """Three logins in two days are too little history; three over twenty days are enough."""
    young = profile(login_count=3, hours=hours_at(10, n=3), first_seen=at_hour(3) - 2 * 86400)
    old = profile(login_count=3, hours=hours_at(10, n=3), first_seen=at_hour(3) - 20 * 86400)
    assert unusual_hour(young, ok(at_hour(3)), UTC_HOURS) is None
    assert unusual_hour(old, ok(at_hour(3)), UTC_HOURS) is not None


def test_one_or_two_logins_are_no_usual_hours_however_old() -> None:
    """Fourteen days since a first and only login (or two) say nothing about the
    person's hours: a login at another hour is no finding until three logins."""
    for n in (1, 2):
        thin = profile(login_count=n, hours=hours_at(10, n=n), first_seen=at_hour(3) - 20 * 86400)
        assert unusual_hour(thin, ok(at_hour(3)), UTC_HOURS) is None
    three = profile(login_count=3, hours=hours_at(10, n=3), first_seen=at_hour(3) - 20 * 86400)
    assert unusual_hour(three, ok(at_hour(3)), UTC_HOURS) is not None


def test_brute_force_eight_failures_for_one_person_in_two_minutes() -> None:
    """Eight failures for one person within 120 s is brute force (per person and per IP)."""
    window = [fail(T0 + i * 10, "p1:alice") for i in range(8)]
    found = brute_force(window, T0 + 70)
    assert {(f.key_kind, f.key) for f in found} == {
        ("person", "p1:alice"),
        ("ip", "45.133.1.0/24"),
    }


def test_seven_failures_or_slow_failures_are_not_brute_force() -> None:
    """Seven failures, or eight spread over ten minutes, are not brute force."""
    assert brute_force([fail(T0 + i, "p1:a") for i in range(7)], T0 + 7) == []
    slow = [fail(T0 + i * 75, "p1:a") for i in range(8)]
    assert brute_force(slow, T0 + 7 * 75) == []


def test_credential_stuffing_fifteen_people_from_one_network() -> None:
    """One network failing for fifteen different people is credential stuffing."""
    window = [fail(T0 + i, f"p1:user{i}") for i in range(15)]
    (f,) = credential_stuffing(window, T0 + 15)
    assert (f.key, f.evidence["people"]) == ("45.133.1.0/24", 15)


def test_credential_stuffing_twenty_five_attempts_over_several_people() -> None:
    """Twenty-five failures over a few people from one network is credential stuffing."""
    window = [fail(T0 + i, f"p1:user{i % 3}") for i in range(25)]
    assert [f.kind for f in credential_stuffing(window, T0 + 25)] == ["credential_stuffing"]


def test_normal_failures_are_not_credential_stuffing() -> None:
    """Fourteen people failing from fourteen networks, or from one, stay below the limit."""
    spread = [fail(T0 + i, f"p1:user{i}", f"10.{i}.0.0/24") for i in range(20)]
    few = [fail(T0 + i, f"p1:user{i}") for i in range(14)]
    assert credential_stuffing(spread, T0 + 20) == []
    assert credential_stuffing(few, T0 + 14) == []
