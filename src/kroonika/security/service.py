"""Builds the security parts of the service from its settings: the geo and threat
enrichers for the audit pipeline, and the live monitor. Checked at build time."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from kroonika.audit import AuditTrail
from kroonika.audit.enrich import (
    FeedAction,
    FeedSpec,
    GeoDatabaseError,
    GeoEnricher,
    ThreatIntel,
    default_geo_db_path,
)
from kroonika.audit.processors.enrich import Enricher
from kroonika.security.detectors import DetectorConfig
from kroonika.security.monitor import SecurityMonitor
from kroonika.security.profiles import ProfileStore
from kroonika.security.windows import RedisWindows
from kroonika.settings import Settings, SettingsError


@dataclass
class Enrichment:
    geo: GeoEnricher | None = None
    threat: ThreatIntel | None = None
    enrichers: tuple[Enricher, ...] = field(default_factory=tuple)


def feed_specs(settings: Settings) -> list[FeedSpec]:
    """``KROONIKA_THREAT_FEEDS`` as JSON: ``[{"name": ..., "path": ..., "action":
    "log|deny_login|deny_token", "format": "auto|list|stix", "category": ...,
    "confidence": 0..100}]``."""
    specs = []
    for raw in settings.threat_feeds:
        try:
            specs.append(
                FeedSpec(
                    name=str(raw["name"]),
                    path=Path(str(raw["path"])),
                    format=str(raw.get("format", "auto")),  # type: ignore[arg-type]
                    action=FeedAction(str(raw.get("action", "log"))),
                    category=str(raw.get("category", "malicious-activity")),
                    confidence=int(raw.get("confidence", 80)),
                )
            )
        except (KeyError, ValueError) as exc:
            raise SettingsError(f"KROONIKA_THREAT_FEEDS entry {raw!r}: {exc}") from None
        if specs[-1].format not in ("auto", "list", "stix"):
            raise SettingsError(f"KROONIKA_THREAT_FEEDS: unknown format {specs[-1].format!r}")
    return specs


def build_enrichment(settings: Settings) -> Enrichment:
    """Geo (configured path, else the packaged DB-IP City Lite if installed) and
    threat intelligence (configured feeds). A configured but unusable geo database
    is an error; a missing default one only disables geo."""
    geo = None
    if settings.geo_enabled:
        path = settings.geo_db_path or default_geo_db_path()
        if path is not None:
            try:
                geo = GeoEnricher(path)
            except GeoDatabaseError as exc:
                raise SettingsError(f"KROONIKA_GEO_DB_PATH: {exc}") from None
    specs = feed_specs(settings)
    threat = ThreatIntel(specs, check_interval=settings.threat_check_interval_s) if specs else None
    enrichers: list[Enricher] = [e for e in (geo, threat) if e is not None]
    return Enrichment(geo, threat, tuple(enrichers))


def detector_config(settings: Settings) -> DetectorConfig:
    return DetectorConfig(
        travel_max_kmh=float(settings.security_travel_max_kmh),
        travel_max_accuracy_km=settings.security_travel_max_accuracy_km,
        unusual_hour_min_logins=settings.security_unusual_hour_min_logins,
        unusual_hour_min_days=settings.security_unusual_hour_min_days,
        brute_force_failures=settings.security_brute_force_failures,
        brute_force_window_s=float(settings.security_brute_force_window_s),
        stuffing_people=settings.security_stuffing_people,
        stuffing_attempts=settings.security_stuffing_attempts,
        stuffing_window_s=float(settings.security_stuffing_window_s),
    )


def build_monitor(
    settings: Settings, trail: AuditTrail, engine: Engine, *, threat: ThreatIntel | None
) -> SecurityMonitor:
    """The monitor; with Redis configured its brute-force and stuffing windows are
    shared by every instance (decision 0007)."""
    return SecurityMonitor(
        trail,
        ProfileStore(engine),
        config=detector_config(settings),
        threat=threat,
        windows=RedisWindows(settings.redis_url) if settings.redis_url else None,
    )
