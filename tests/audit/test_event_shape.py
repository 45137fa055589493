"""Every part of an event is checked, not only ``details``: wrong types, odd text and
outside data (enrichers) are refused in tests and dropped and counted in production,
and one event the sealer cannot take fails only its own caller."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from audit_kit import TrailKit

from kroonika.audit import (
    Actor,
    ActorType,
    AuditEvent,
    AuditUnavailable,
    Correlation,
    EventRejected,
    PersonalData,
    Pipeline,
    Query,
    Source,
    Target,
    ThreatMatch,
    events,
    run_query,
    verify_store,
)

PERSONAL_CODE = "EE38001085718"


def _login(**kw: Any) -> AuditEvent:
    return events.auth_login(method="idcard", **kw)


def _match(**kw: Any) -> ThreatMatch:
    return dataclasses.replace(ThreatMatch("feed", "192.0.2.0/24", "botnet", 80), **kw)


# Each case: an event with one ill-formed part. Strict trails refuse it; production
# trails store the event without that part and count what they dropped.
ILL_FORMED: dict[str, Callable[[], AuditEvent]] = {
    "port beyond 65535": lambda: _login(source=Source(ip="192.0.2.1", port=2**60)),
    "port a float": lambda: _login(source=Source(ip="192.0.2.1", port=1.5)),  # type: ignore[arg-type]
    "port a string": lambda: _login(source=Source(ip="192.0.2.1", port="443\r\nx")),  # type: ignore[arg-type]
    "prefix a string": lambda: _login(source=Source(ip="192.0.2.0", ip_prefix="24")),  # type: ignore[arg-type]
    "prefix on a host address": lambda: _login(source=Source(ip="192.0.2.1", ip_prefix=24)),
    "prefix on forged text": lambda: _login(
        source=Source(ip="192.0.2.0\r\n2026-01-01 forged", ip_prefix=24)
    ),
    "personal code as pseudonym": lambda: _login(
        actor=Actor(ActorType.USER, pseudonym=PERSONAL_CODE)
    ),
    "escape codes as pseudonym": lambda: _login(
        actor=Actor(ActorType.USER, pseudonym="p1:\x1b]0;owned\x07\x1b[2J")
    ),
    "roles a bare string": lambda: _login(actor=Actor(ActorType.ADMIN, roles="auditor")),  # type: ignore[arg-type]
    "100 roles": lambda: _login(
        actor=Actor(ActorType.ADMIN, roles=tuple(f"r{i}" for i in range(100)))
    ),
    "reason an int": lambda: _login(reason=123),
    "client id an int": lambda: _login(actor=Actor(ActorType.CLIENT, client_id=1)),  # type: ignore[arg-type]
    "subject an int": lambda: _login(actor=Actor(ActorType.USER, subject=38001085718)),  # type: ignore[arg-type]
    "target type an int": lambda: _login(target=Target(1)),  # type: ignore[arg-type]
    "target id an int": lambda: _login(target=Target("client", 1)),  # type: ignore[arg-type]
    "request id an int": lambda: _login(correlation=Correlation(request_id=1)),  # type: ignore[arg-type]
    "personal email an int": lambda: _login(personal=PersonalData(email=1)),  # type: ignore[arg-type]
    "outcome not an outcome": lambda: _login(outcome="maybe"),
    "severity a number": lambda: _login(severity=5),
    "actor type not a type": lambda: _login(actor=Actor("robot")),  # type: ignore[arg-type]
    "geo values nested": lambda: _login(
        source=Source(ip="192.0.2.1", geo={"city": {"a": {"b": "c"}}})  # type: ignore[dict-item]
    ),
    "as number beyond 2**53": lambda: _login(source=Source(ip="192.0.2.1", asn={"number": 2**60})),
    "proxy a string": lambda: _login(source=Source(ip="192.0.2.1", proxy="yes")),  # type: ignore[arg-type]
    "threat confidence 500": lambda: _login(threat=[_match(confidence=500)]),
    "threat 100 matches": lambda: _login(threat=[_match() for _ in range(100)]),
    "threat not matches": lambda: _login(threat=["botnet"]),
}


@pytest.mark.parametrize("case", sorted(ILL_FORMED))
def test_strict_trails_refuse_ill_formed_parts(
    kit_factory: Callable[..., TrailKit], case: str
) -> None:
    kit = kit_factory(strict=True)
    with pytest.raises(EventRejected):
        kit.trail.emit_sync(ILL_FORMED[case]())


@pytest.mark.parametrize("case", sorted(ILL_FORMED))
def test_production_trails_store_the_event_and_count_the_drop(
    kit_factory: Callable[..., TrailKit], case: str
) -> None:
    kit = kit_factory(strict=False)
    sealed = kit.trail.emit_sync(ILL_FORMED[case]())
    assert sealed is not None
    body = sealed.canonical
    assert PERSONAL_CODE.encode() not in body
    text = body.decode()
    assert text.isprintable(), text  # no control, escape or separator character
    assert "\\r" not in text
    assert "\\n" not in text
    assert "\\u001b" not in text
    assert kit.counters.get("validate.dropped_field") >= 1
    assert verify_store(kit.store, kit.keyring.public_keys()).intact


def test_enum_values_given_as_strings_are_taken(kit_factory: Callable[..., TrailKit]) -> None:
    kit = kit_factory(strict=True)
    sealed = kit.trail.emit_sync(_login(outcome="failure", severity="warning"))
    assert sealed is not None
    doc = orjson.loads(sealed.canonical)
    assert (doc["outcome"], doc["severity"]) == ("failure", "warning")
    assert kit.counters.get("validate.dropped_field") == 0


def test_well_formed_parts_pass_unchanged(kit_factory: Callable[..., TrailKit]) -> None:
    """The checks take nothing from a correct event (a stored record re-emitted by
    the security monitor looks like this)."""
    kit = kit_factory(strict=True)
    pseudonym = kit.fingerprinter.pseudonym(PERSONAL_CODE)
    sealed = kit.trail.emit_sync(
        _login(
            actor=Actor(ActorType.ADMIN, pseudonym=pseudonym, roles=("admin", "auditor")),
            source=Source(
                ip="2001:db8::",
                ip_prefix=48,
                port=443,
                geo={"country": "EE", "city": "Tõrva"},
                asn={"number": 3249, "org": "Telia Eesti"},
                proxy=False,
            ),
            threat=[_match()],
        )
    )
    assert sealed is not None
    doc = orjson.loads(sealed.canonical)
    assert doc["actor"] == {"type": "admin", "pseudonym": pseudonym, "roles": ["admin", "auditor"]}
    assert doc["source"] == {
        "ip": "2001:db8::",
        "ip_prefix": 48,
        "port": 443,
        "geo": {"country": "EE", "city": "Tõrva"},
        "as": {"number": 3249, "org": "Telia Eesti"},
        "proxy": False,
    }
    assert doc["threat"] == [
        {"feed": "feed", "indicator": "192.0.2.0/24", "category": "botnet", "confidence": 80}
    ]


def test_huge_values_are_bounded(kit_factory: Callable[..., TrailKit]) -> None:
    """A megabyte in any field gives a record of a few kilobytes, encrypted part
    included."""
    kit = kit_factory(strict=False)
    for event in (
        _login(actor=Actor(ActorType.USER, subject="z" * 1_000_000)),
        _login(source=Source(ip="1" * 1_000_000)),
        _login(actor=Actor(ActorType.USER, pseudonym="p" * 1_000_000)),
        _login(source=Source(ip="192.0.2.1", user_agent="u" * 1_000_000)),
        _login(threat=[_match(category="c" * 1_000_000)] * 1000),
    ):
        sealed = kit.trail.emit_sync(event)
        assert sealed is not None
        assert len(sealed.canonical) < 8_000


class _Enricher:
    """Stands in for a feed or geo database holding hostile text."""

    def __init__(self, geo: dict[str, Any], category: str) -> None:
        self.geo, self.category = geo, category

    def __call__(self, event: AuditEvent) -> None:
        assert event.source is not None
        event.source.geo = dict(self.geo)
        event.threat.append(_match(category=self.category))


def _enriched_kit(kit: TrailKit, enricher: _Enricher) -> TrailKit:
    kit.trail.pipeline = Pipeline.standard(
        fingerprinter=kit.fingerprinter,
        subject_keys=kit.keys,
        counters=kit.counters,
        strict=True,
        enrichers=[enricher],
    )
    return kit


def test_enrichment_text_is_neutralised(kit_factory: Callable[..., TrailKit]) -> None:
    hostile = "botnet\u2028FORGED\x85LINE\u202egnp.exe\u200e\x9b31m"
    kit = _enriched_kit(
        kit_factory(),
        _Enricher({"city": "Tallinn\x85\u202eevil\ufeff", "country": "EE\u2028X"}, hostile),
    )
    sealed = kit.trail.emit_sync(_login(source=Source(ip="8.8.8.8")))
    assert sealed is not None
    text = sealed.canonical.decode()
    assert text.isprintable(), text
    doc = orjson.loads(sealed.canonical)
    assert doc["source"]["geo"]["city"].startswith("Tallinn")
    assert doc["threat"][0]["category"].startswith("botnet")
    assert len(sealed.canonical.splitlines()) == 1


def test_ill_formed_enrichment_is_dropped_and_counted(
    kit_factory: Callable[..., TrailKit],
) -> None:
    kit = _enriched_kit(
        kit_factory(), _Enricher({"Bad Key": "x", "lat": [1], "city": "Tartu"}, "c")
    )
    sealed = kit.trail.emit_sync(_login(source=Source(ip="8.8.8.8")))
    assert sealed is not None
    assert orjson.loads(sealed.canonical)["source"]["geo"] == {"city": "Tartu"}
    assert kit.counters.get("enrich.dropped_field") == 2


class _Poison:
    """A processor that lets one value through that the sealer cannot serialise:
    what would happen if validate ever missed something."""

    def __call__(self, event: AuditEvent) -> AuditEvent:
        if event.reason == "poison":
            event.details["n"] = 2**60
        return event


def _poisoned(kit: TrailKit) -> TrailKit:
    pipeline = Pipeline.standard(
        fingerprinter=kit.fingerprinter, subject_keys=kit.keys, counters=kit.counters, strict=True
    )
    kit.trail.pipeline = Pipeline([*pipeline.processors, _Poison()])
    return kit


@pytest.mark.asyncio
async def test_one_bad_record_fails_only_its_own_caller(
    kit_factory: Callable[..., TrailKit],
) -> None:
    kit = _poisoned(kit_factory())
    await kit.trail.start()
    batch = [
        _login(actor=Actor(ActorType.USER, subject=PERSONAL_CODE), reason=r)
        for r in ("ok-1", "ok-2", "poison", "ok-3", "ok-4")
    ]
    results = await asyncio.gather(*(kit.trail.emit(e) for e in batch), return_exceptions=True)
    await kit.trail.stop()
    kinds = [type(r).__name__ for r in results]
    assert kinds == ["SealedEvent"] * 2 + ["AuditUnavailable"] + ["SealedEvent"] * 2
    assert "Integer" in str(results[2])
    assert PERSONAL_CODE not in str(results[2])
    assert kit.counters.get("writer.rejected_events") == 1
    stored = [orjson.loads(b)["reason"] for b in run_query(kit.store, Query(types=("auth.login",)))]
    assert sorted(stored) == ["ok-1", "ok-2", "ok-3", "ok-4"]
    assert verify_store(kit.store, kit.keyring.public_keys()).intact


def test_a_record_the_sealer_cannot_take_fails_closed_in_emit_sync(
    kit_factory: Callable[..., TrailKit],
) -> None:
    kit = _poisoned(kit_factory())
    with pytest.raises(AuditUnavailable):
        kit.trail.emit_sync(_login(reason="poison"))
    assert kit.counters.get("writer.rejected_events") == 1
    assert kit.trail.emit_sync(_login(reason="fine")) is not None  # the stream goes on
    assert verify_store(kit.store, kit.keyring.public_keys()).intact


@pytest.mark.asyncio
async def test_a_failing_commit_listener_does_not_commit_twice(kit: TrailKit) -> None:
    def listener(_sealed: object) -> None:
        raise RuntimeError("listener bug")

    kit.trail.on_commit = listener
    await kit.trail.start()
    results = await asyncio.gather(*(kit.trail.emit(_login(reason=f"r{i}")) for i in range(20)))
    await kit.trail.stop()
    assert all(r is not None for r in results)
    reasons = [
        orjson.loads(b)["reason"] for b in run_query(kit.store, Query(types=("auth.login",)))
    ]
    assert sorted(reasons) == sorted(f"r{i}" for i in range(20))  # each exactly once
    assert kit.counters.get("writer.listener_errors") >= 1
