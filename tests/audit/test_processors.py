"""The privacy and safety processors."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kroonika.audit import (
    Actor,
    ActorType,
    Category,
    Correlation,
    Counters,
    EventFiltered,
    Fingerprinter,
    MemorySubjectKeys,
    PersonalData,
    Severity,
    Source,
    events,
)
from kroonika.audit.privacy import anon_subject, flow_subject, reveal
from kroonika.audit.processors.anonymise_ip import AnonymiseIp
from kroonika.audit.processors.filter import Filter
from kroonika.audit.processors.protect_pii import ProtectPersonalData
from kroonika.audit.processors.pseudonymise import Pseudonymise
from kroonika.audit.processors.redact import (
    _MAYBE_SECRET,
    _MIN_LEN,
    _SECRET_MIN,
    _SECRET_SHAPES,
    Redact,
    ascii_digits,
)

JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJFRTM4MDAxMDg1NzE4In0.c2lnbmF0dXJlLWJ5dGVz"
RANDOM_SECRET = "Zx8Kq2LmN4pR7tVw9yB3cD5fG6hJ1kM0nQ"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (f"token was {JWT}", "jwt"),
        ("Authorization: Bearer abcdefghijklmnop", "authorization"),
        ("callback?code=SplxlOBeZQQYbYS6WxSbIA", "assignment"),
        ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----", "private_key"),
        (f"cookie value {RANDOM_SECRET}", "secret"),
    ],
)
def test_redact_removes_secret_shapes_and_counts(text: str, kind: str) -> None:
    """Each secret shape is replaced and counted under its kind."""
    counters = Counters()
    event = Redact(counters)(events.auth_login(reason=text, idp_error=text))
    assert event.reason is not None
    assert f"[REDACTED:{kind}]" in event.reason
    assert counters.get(f"redact.{kind}") == 2


@pytest.mark.parametrize(
    "text",
    [
        "id_token.nonce_mismatch",
        "0192f3c1-7d2e-7abc-8def-0123456789ab",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0",
    ],
)
def test_redact_keeps_ordinary_values(text: str) -> None:
    """Reason codes, UUIDs, hex digests and user agents are not secrets."""
    counters = Counters()
    event = Redact(counters)(events.auth_login(reason=text))
    assert event.reason == text
    assert counters.snapshot() == {}


def test_pseudonym_is_keyed_and_stable() -> None:
    """The same subject gets the same pseudonym; another key gives another one."""
    a = Fingerprinter(b"a" * 32, "k1")
    b = Fingerprinter(b"b" * 32, "k2")
    assert a.pseudonym("EE38001085718") == a.pseudonym("EE38001085718")
    assert a.pseudonym("EE38001085718") != a.pseudonym("EE60001019906")
    assert a.pseudonym("EE38001085718").startswith("k1:")
    assert a.pseudonym("EE38001085718")[3:] != b.pseudonym("EE38001085718")[3:]
    assert "38001085718" not in a.pseudonym("EE38001085718")


def _protected(keys: MemorySubjectKeys) -> tuple[object, dict[str, str]]:
    event = events.auth_login(
        actor=Actor(ActorType.USER, subject="EE38001085718"),
        source=Source(ip="198.51.100.77"),
        personal=PersonalData(given_name="JAAK-KRISTJAN", family_name="JÕEORG"),
    )
    event.id, event.time = "0192f3c1-7d2e-7abc-8def-0123456789ab", "2026-11-27T00:00:00.000000Z"
    event = Pseudonymise(Fingerprinter(b"k" * 32, "p1"))(event)
    event = ProtectPersonalData(keys)(event)
    event = AnonymiseIp()(event)
    return event, event.to_record()


def test_personal_data_is_encrypted_and_readable_with_the_key() -> None:
    """Personal code, names and full IP leave the record in clear and come back
    with the subject's key."""
    keys = MemorySubjectKeys()
    _, record = _protected(keys)
    text = str(record)
    for clear in ("38001085718", "JAAK", "JÕEORG", "198.51.100.77"):
        assert clear not in text
    assert record["source"]["ip"] == "198.51.100.0"
    assert record["source"]["ip_prefix"] == 24
    revealed = reveal(record["pii"], record["id"], keys)
    assert revealed == {
        "personal_code": "EE38001085718",
        "given_name": "JAAK-KRISTJAN",
        "family_name": "JÕEORG",
        "ip": "198.51.100.77",
    }


def test_erasure_makes_personal_data_unreadable() -> None:
    """After the subject's key is erased the pii block cannot be read."""
    keys = MemorySubjectKeys()
    _, record = _protected(keys)
    assert keys.erase(record["actor"]["pseudonym"]) == 1
    assert reveal(record["pii"], record["id"], keys) is None


FLOW = "7f0c2a9e-1b4d-4e8a-9c3f-5d6e7f809a1b"


def _step(actor: Actor, flow_id: str | None, keys: MemorySubjectKeys | None = None) -> Any:
    """A login step from 198.51.100.77 through the privacy processors, as recorded."""
    event = events.auth_flow_transition(
        actor=actor,
        source=Source(ip="198.51.100.77"),
        correlation=Correlation(flow_id=flow_id),
        from_state="none",
        to_state="started",
    )
    event.id, event.time = "0192f3c1-7d2e-7abc-8def-0123456789ac", "2026-11-27T00:00:00.000000Z"
    event = Pseudonymise(Fingerprinter(b"k" * 32, "p1"))(event)
    return ProtectPersonalData(keys or MemorySubjectKeys())(event).to_record()


def test_a_login_step_that_names_nobody_is_encrypted_under_its_flows_key() -> None:
    """No person yet, a flow id: the full address is under the flow's key (erased with the
    person the flow names later), not the month's; the key id does not show the flow id."""
    keys = MemorySubjectKeys()
    record = _step(Actor(ActorType.ANONYMOUS), FLOW, keys)
    assert record["pii"]["kid"].startswith(flow_subject(FLOW) + "/")
    assert FLOW not in record["pii"]["kid"]
    assert reveal(record["pii"], record["id"], keys) == {"ip": "198.51.100.77"}
    assert keys.erase(flow_subject(FLOW)) == 1
    assert reveal(record["pii"], record["id"], keys) is None


def test_each_flow_has_its_own_subject_and_a_person_keeps_theirs() -> None:
    """Two flows never share a key subject; a step with no flow falls back to the month's
    subject; a step that names the person is under the person's key, flow or not."""
    assert flow_subject(FLOW) != flow_subject(FLOW[:-1] + "c")
    assert _step(Actor(ActorType.ANONYMOUS), None)["pii"]["kid"].startswith(
        anon_subject("2026-11-27") + "/"
    )
    person = _step(Actor(ActorType.USER, subject="EE38001085718"), FLOW)
    assert person["pii"]["kid"].startswith(person["actor"]["pseudonym"] + "/")


def test_ciphertext_is_bound_to_its_event() -> None:
    """Moving a pii block to another event id fails authentication."""
    from cryptography.exceptions import InvalidTag

    keys = MemorySubjectKeys()
    _, record = _protected(keys)
    with pytest.raises(InvalidTag):
        reveal(record["pii"], "another-event-id", keys)


@pytest.mark.parametrize(
    ("ip", "expected", "prefix"),
    [
        ("192.0.2.201", "192.0.2.0", 24),
        ("2001:db8:abcd:12:1::7", "2001:db8:abcd::", 48),
        ("::ffff:203.0.113.9", "203.0.113.0", 24),
        ("not-an-ip", "invalid", 0),
    ],
)
def test_ip_is_anonymised(ip: str, expected: str, prefix: int) -> None:
    """IPv4 keeps /24, IPv6 /48, mapped IPv4 is unwrapped, junk is marked invalid."""
    event = AnonymiseIp()(events.auth_login(source=Source(ip=ip)))
    assert event.source is not None
    assert (event.source.ip, event.source.ip_prefix) == (expected, prefix)
    assert event.source.raw_ip == ip
    assert "raw_ip" not in str(event.to_record())


def test_filter_drops_below_level_but_never_security() -> None:
    """A warning-level filter drops flow transitions but keeps every security event."""
    counters = Counters()
    f = Filter(counters=counters, min_severity=Severity.WARNING)
    with pytest.raises(EventFiltered):
        f(events.auth_flow_transition())
    kept = f(events.security_policy_violation(severity=Severity.DEBUG, policy="csrf"))
    assert kept.category == Category.SECURITY
    assert f(events.admin_request(severity=Severity.DEBUG)).type == "admin.request"
    assert counters.get("filter.dropped") == 1


def test_filter_refuses_unknown_types() -> None:
    """A filter configured with a misspelt type fails when built, not silently."""
    with pytest.raises(ValueError, match=r"auth\.logn"):
        Filter(counters=Counters(), drop_types=["auth.logn"])


_SHAPED = st.sampled_from(
    [
        "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
        "-----BEGIN PRIVATE KEY-----",
        "Bearer abcdefgh12345678",
        "basic\tQWxhZGRpbjpvcGVu",
        "token=abcd1234",
        "state: xyzw",
        "38001085718",
        "EE49403136526",
        "٣٨٠٠١٠٨٥٧١٨",  # eleven Arabic-Indic digits: still \\d to the pattern
        "Bearer\ufffdAbCd1234",
        "DB_PASSWORD=abcd",
        '{"pwd":"abcd"}',
        "x-api-key: abcd",
        "redis://:pw@h",
        "ee38001085718_",
        "Ab+/Cd09Ef+/Gh12Ij+/Kl34Mn+/Op56==",
    ]
)


@given(
    st.one_of(
        st.text(max_size=40),
        st.tuples(st.text(max_size=12), _SHAPED, st.text(max_size=12)).map("".join),
    )
)
@settings(max_examples=600, deadline=None)
def test_the_quick_pre_check_never_lets_a_secret_shape_past(text: str) -> None:
    """redact skips the full pattern for short strings without any of the cheap signs;
    whatever the full pattern would find, the pre-check must not skip."""
    digits = ascii_digits(text)  # as scrub searches it: every decimal digit as ASCII
    full = Redact(Counters())._redact(text, _SECRET_SHAPES.search(digits), digits)
    if full != text:
        assert len(text) >= _SECRET_MIN or _MAYBE_SECRET.search(text) is not None
    assert Redact(Counters()).scrub(text) == full or len(text) < _MIN_LEN


def test_a_request_id_passes_redact_untouched_and_uncached() -> None:
    redact = Redact(Counters())
    assert redact.scrub("req-000000001a") == "req-000000001a"
    assert "req-000000001a" not in redact._clean
    assert redact.scrub("req-38001085718") == "req-[REDACTED:personal_code]"
