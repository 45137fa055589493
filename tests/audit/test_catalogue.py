"""The catalogue and its constructors: one per type, deny by default."""

from __future__ import annotations

import pytest

from kroonika.audit import (
    CATALOGUE,
    Actor,
    ActorType,
    Category,
    Counters,
    Outcome,
    Severity,
    Source,
    Target,
    UndeclaredField,
    events,
)
from kroonika.audit.processors.validate import Validate

DESIGN_TYPES = {
    "auth.flow.transition", "auth.login", "auth.logout", "session.create", "session.extend",
    "session.terminate", "token.issue", "token.validate", "token.introspect", "token.extend",
    "token.refresh", "token.revoke", "token.expire", "access_list.add", "access_list.remove",
    "access_list.update", "admin.request", "config.change", "admin.bulk", "admin.text.redact",
    "job.run",
    "key.rotate", "security.rate_limit", "security.policy_violation", "security.anomaly",
    "security.threat_match", "audit.log.start", "audit.log.stop", "audit.access",
    "audit.checkpoint", "audit.retention", "audit.erasure", "audit.sink", "alert.raise",
    "alert.acknowledge", "response.action",
}  # fmt: skip


def test_every_design_type_is_catalogued() -> None:
    """Every event type DESIGN.md lists has a catalogue entry."""
    assert set(CATALOGUE) >= DESIGN_TYPES


@pytest.mark.parametrize("event_type", sorted(CATALOGUE))
def test_each_type_has_its_constructor(event_type: str) -> None:
    """events.<area_object_action> builds an event of that type and category."""
    make = getattr(events, event_type.replace(".", "_"))
    event = make()
    spec = CATALOGUE[event_type]
    assert event.type == event_type
    assert event.category == spec.category
    assert spec.pci.startswith("10.2.1.")
    assert spec.ocsf_class > 0


@pytest.mark.parametrize(
    "category", [Category.SECURITY, Category.ADMIN, Category.AUDIT, Category.CONFIG]
)
def test_security_admin_audit_types_are_never_filterable(category: Category) -> None:
    """The catalogue marks every security, admin, config and audit type unfilterable."""
    specs = [s for s in CATALOGUE.values() if s.category == category]
    assert specs
    assert not any(s.filterable for s in specs)


def test_idp_keys_declares_what_an_outage_of_the_key_set_records() -> None:
    """idp.keys (stale, expired, recovered) is a security type, never filtered, whose
    details are the set's age, kids, window, error, outage and withdrawn kids only."""
    spec = CATALOGUE["idp.keys"]
    assert spec.category == Category.SECURITY
    assert not spec.filterable
    assert set(spec.details) == {
        "state", "age_s", "kids", "window_s", "error", "outage_s", "withdrawn"
    }  # fmt: skip
    event = events.idp_keys(
        outcome=Outcome.FAILURE, state="stale", kids=["k1"], age_s=3700, key="secret"
    )
    with pytest.raises(UndeclaredField, match="key"):
        Validate(strict=True, counters=Counters())(event)


def test_a_failed_job_run_may_record_its_backoff() -> None:
    """job.run declares the pause before the next attempt and the failures in a row."""
    details = CATALOGUE["job.run"].details
    assert details["backoff_delay_s"].kind == "int"
    assert details["backoff_failures"].kind == "int"


def test_failure_raises_default_severity() -> None:
    """A failed login is at least notice; a successful one keeps info."""
    assert events.auth_login(outcome=Outcome.FAILURE).severity == Severity.NOTICE
    assert events.auth_login().severity == Severity.INFO


def test_undeclared_field_raises_in_strict_mode() -> None:
    """Strict validation refuses a details field the catalogue does not declare."""
    event = events.auth_login(method="idcard", password="hunter2")
    with pytest.raises(UndeclaredField, match="password"):
        Validate(strict=True, counters=Counters())(event)


def test_undeclared_field_is_dropped_and_counted_in_production() -> None:
    """Production validation drops the field, keeps the event and counts the drop."""
    counters = Counters()
    event = Validate(strict=False, counters=counters)(
        events.auth_login(method="idcard", password="hunter2", acr=5)  # type: ignore[arg-type]
    )
    assert event.details == {"method": "idcard"}
    assert counters.get("validate.dropped_field") == 2


@pytest.mark.parametrize(
    ("raw", "forbidden"),
    [
        ("evil\r\nFAKE auth.login success", "\n"),
        ("evil\x1b[31mred\x1b[0m", "\x1b"),
        ("bidi\u202eoverride", "\u202e"),
        ("line\u2028separator", "\u2028"),
        ("nul\x00byte", "\x00"),
    ],
)
def test_control_characters_are_neutralised(raw: str, forbidden: str) -> None:
    """CR/LF, ANSI escapes, bidi and separators never survive in any string."""
    event = events.auth_login(
        reason=raw,
        actor=Actor(ActorType.CLIENT, client_id=raw, roles=(raw,)),
        source=Source(ip="192.0.2.1", user_agent=raw),
        target=Target("session", raw),
        method=raw,
    )
    Validate(strict=True, counters=Counters())(event)
    values = [event.reason, event.actor.client_id, *event.actor.roles, event.target.id,
              event.source.user_agent, event.details["method"]]  # type: ignore[union-attr]  # fmt: skip
    for value in values:
        assert isinstance(value, str)
        assert forbidden not in value
        assert "\ufffd" in value


def test_strings_are_length_bounded() -> None:
    """An oversized value is cut to the catalogue's bound."""
    event = Validate(strict=True, counters=Counters())(
        events.auth_login(method="x" * 10_000, source=Source(user_agent="u" * 10_000))
    )
    assert len(event.details["method"]) == 256  # type: ignore[arg-type]
    assert event.source is not None
    assert len(event.source.user_agent or "") == 512


def test_estonian_letters_and_emoji_pass_unchanged() -> None:
    """Printable unicode is kept as is."""
    text = "JÕEORG O’CONNEŽ-ŠUSLIK 🙂"
    event = Validate(strict=True, counters=Counters())(events.auth_login(method=text))
    assert event.details["method"] == text


def test_personal_data_outside_the_catalogue_is_refused() -> None:
    """A token event may not carry a person's name; a login event may."""
    from kroonika.audit import EventRejected, PersonalData

    with pytest.raises(EventRejected, match="given_name"):
        Validate(strict=True, counters=Counters())(
            events.token_issue(personal=PersonalData(given_name="MARI-LIIS"))
        )
    counters = Counters()
    event = Validate(strict=False, counters=counters)(
        events.token_issue(personal=PersonalData(given_name="MARI-LIIS", ip="192.0.2.1"))
    )
    assert event.personal is not None
    assert event.personal.given_name is None
    assert event.personal.ip == "192.0.2.1"
    assert counters.get("validate.dropped_personal") == 1
    login = Validate(strict=True, counters=Counters())(
        events.auth_login(personal=PersonalData(given_name="MARI-LIIS"))
    )
    assert login.personal is not None
    assert login.personal.given_name == "MARI-LIIS"
