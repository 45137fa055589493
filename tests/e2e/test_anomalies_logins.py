"""Unusual access found in scripted sequences of real logins through the TARA mock:
source addresses set with X-Forwarded-For through the trusted loopback proxy, placed by a
fixture City database (mmdb-writer), time moved with the shared clock. Each anomaly
appears for its attack sequence and not for a normal one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from security_harness import LONDON, SYDNEY, TALLINN, TARTU, SecStack, security_stack

from kroonika.tara.isikukood import check_digit

PERSON = "38001085718"
HOUR = 3600
DAY = 86400


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[SecStack]:
    # Rate limits count in real time; these sequences are faster than any person.
    with security_stack(tmp_path, settings_overrides={"ratelimit_enabled": False}) as s:
        yield s


def _people(n: int) -> list[str]:
    bases = [f"3900101{i:03d}" for i in range(1, n + 1)]
    return [b + str(check_digit(b)) for b in bases]


def _anomalies(stack: SecStack) -> list[dict[str, Any]]:
    stack.drain()
    return stack.events(types=("security.anomaly",))


def _kinds(stack: SecStack) -> set[str]:
    return {a["details"]["kind"] for a in _anomalies(stack)}


def _ok(stack: SecStack, ip: str, code: str = PERSON) -> None:
    r = stack.login(ip, code=code)
    assert r.status_code == 302, r.text


def _failed(stack: SecStack, ip: str, code: str = PERSON, *, cancel: bool = False) -> None:
    r = stack.login(ip, code="cancel" if cancel else code)
    assert r.status_code == 400, r.text


# --- places and times ----------------------------------------------------------------------


def test_impossible_travel(stack: SecStack) -> None:
    """Tartu, then London ten minutes later: impossible travel with the evidence."""
    _ok(stack, TARTU)
    stack.offset.advance(10 * 60)
    _ok(stack, LONDON)
    (travel,) = [a for a in _anomalies(stack) if a["details"]["kind"] == "impossible_travel"]
    evidence = travel["details"]["evidence"]
    assert "EE/Tartu" in evidence
    assert "GB/London" in evidence
    assert travel["actor"]["pseudonym"]
    assert PERSON not in str(travel)


def test_no_impossible_travel_for_a_train_ride(stack: SecStack) -> None:
    """Tartu, then Tallinn two hours later (about 90 km/h) is nothing unusual."""
    _ok(stack, TARTU)
    stack.offset.advance(2 * HOUR)
    _ok(stack, TALLINN)
    assert _kinds(stack) == set()


def test_new_country(stack: SecStack) -> None:
    """Logins from Estonia, then one from Australia a day later: new country (and not
    impossible travel: 15,000 km in a day is a flight)."""
    for _ in range(3):
        _ok(stack, TARTU)
        stack.offset.advance(HOUR)
    stack.offset.advance(DAY)
    _ok(stack, SYDNEY)
    assert _kinds(stack) == {"new_country"}
    (found,) = _anomalies(stack)
    assert '"country":"AU"' in found["details"]["evidence"]


def test_no_new_country_at_home(stack: SecStack) -> None:
    """Logins from Tartu and Tallinn only: no anomaly."""
    for ip in (TARTU, TALLINN, TARTU, TALLINN):
        _ok(stack, ip)
        stack.offset.advance(6 * HOUR)
    assert _kinds(stack) == set()


def _daily_history(stack: SecStack, days: int = 10) -> None:
    for _ in range(days):
        _ok(stack, TARTU)
        stack.offset.advance(DAY)


def test_unusual_hour(stack: SecStack) -> None:
    """Ten daily logins at one hour, then one twelve hours off: unusual hour."""
    _daily_history(stack)
    stack.offset.advance(12 * HOUR)
    _ok(stack, TARTU)
    assert _kinds(stack) == {"unusual_hour"}


def test_no_unusual_hour_at_the_usual_time(stack: SecStack) -> None:
    """The same history, then a login at the usual hour: no anomaly."""
    _daily_history(stack)
    _ok(stack, TARTU)
    assert _kinds(stack) == set()


# --- failures ------------------------------------------------------------------------------


def test_brute_force_from_one_address(stack: SecStack) -> None:
    """Eight failed logins from one address within two minutes: brute force keyed by IP."""
    for _ in range(8):
        _failed(stack, LONDON, cancel=True)
    (found,) = _anomalies(stack)
    assert (found["details"]["kind"], found["details"]["key_kind"]) == ("brute_force", "ip")
    assert found["source"]["ip"] == "81.2.69.0"


def test_brute_force_on_one_person(stack: SecStack) -> None:
    """Eight refused logins of one person (too low a level of assurance) from several
    addresses: brute force keyed by the person."""
    stack.mock_switch(low_acr=True)
    try:
        for ip in (LONDON, SYDNEY, TARTU, TALLINN) * 2:
            _failed(stack, ip)
    finally:
        stack.mock_switch(low_acr=False)
    found = [a for a in _anomalies(stack) if a["details"]["kind"] == "brute_force"]
    assert [a["details"]["key_kind"] for a in found] == ["person"]
    assert found[0]["actor"]["pseudonym"]


def test_a_few_failures_are_not_an_attack(stack: SecStack) -> None:
    """Seven failures from one address, and people failing once then succeeding: none."""
    for _ in range(7):
        _failed(stack, LONDON, cancel=True)
    stack.mock_switch(low_acr=True)
    try:
        for code in _people(3):
            _failed(stack, TARTU, code)
    finally:
        stack.mock_switch(low_acr=False)
    for code in _people(3):
        _ok(stack, TARTU, code)
    assert _kinds(stack) == set()


def test_credential_stuffing(stack: SecStack) -> None:
    """Fifteen different people failing from one address: credential stuffing keyed by
    the address (the same failures are also brute force from that address)."""
    stack.mock_switch(low_acr=True)
    try:
        for code in _people(15):
            _failed(stack, SYDNEY, code)
    finally:
        stack.mock_switch(low_acr=False)
    found = {(a["details"]["kind"], a["details"]["key_kind"]) for a in _anomalies(stack)}
    assert ("credential_stuffing", "ip") in found
    (stuffing,) = [a for a in _anomalies(stack) if a["details"]["kind"] == "credential_stuffing"]
    assert '"people":15' in stuffing["details"]["evidence"]
    assert stuffing["source"]["ip"] == "1.1.1.0"
