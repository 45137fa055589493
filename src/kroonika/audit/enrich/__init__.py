"""Enrichers for the pipeline's ``enrich`` step: geo location and threat intelligence.

Each is a callable ``(AuditEvent) -> None`` given to ``Pipeline.standard(enrichers=...)``.
They run after ``anonymise_ip`` and read the full address from ``source.raw_ip``
(never serialised), so they see the address before only its network is kept.
"""

from kroonika.audit.enrich.geo import (
    GeoDatabaseError,
    GeoEnricher,
    GeoLocation,
    default_geo_db_path,
    parse_record,
)
from kroonika.audit.enrich.threat import (
    FeedAction,
    FeedError,
    FeedSpec,
    Match,
    ThreatIntel,
    parse_ip_list,
    parse_stix_bundle,
)

__all__ = [
    "FeedAction",
    "FeedError",
    "FeedSpec",
    "GeoDatabaseError",
    "GeoEnricher",
    "GeoLocation",
    "Match",
    "ThreatIntel",
    "default_geo_db_path",
    "parse_ip_list",
    "parse_record",
    "parse_stix_bundle",
]
