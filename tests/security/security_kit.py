"""A real audit trail (SQLite store, real keys, geo from a fixture database) whose
clock the test moves, plus the monitor on a real profile database."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from kroonika.audit import (
    AuditTrail,
    Counters,
    Fingerprinter,
    KeyRing,
    Pipeline,
    SealedEvent,
    SqlAuditStore,
    SqlSubjectKeys,
)
from kroonika.audit.enrich import GeoEnricher, ThreatIntel
from kroonika.audit.processors.anonymise_ip import AnonymiseIp
from kroonika.db import make_engine, metadata
from kroonika.db import security as _security_tables
from kroonika.security import DetectorConfig, ProfileStore, SecurityMonitor
from kroonika.security.windows import FailureWindows, RedisWindows

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "audit" / "enrich"))
from geo_fixture import build_city_db

T0_NS = 1_780_000_000 * 1_000_000_000


@dataclass
class Clock:
    now_ns: int = T0_NS

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, seconds: float) -> None:
        self.now_ns += int(seconds * 1_000_000_000)


@dataclass
class Kit:
    trail: AuditTrail
    store: SqlAuditStore
    monitor: SecurityMonitor
    profiles: ProfileStore
    clock: Clock
    fingerprinter: Fingerprinter
    committed: list[dict[str, Any]] = field(default_factory=list)

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [r for r in self.committed if r["type"] == event_type]

    def anomalies(self) -> list[tuple[str, dict[str, Any]]]:
        return [(r["details"]["kind"], r) for r in self.of_type("security.anomaly")]


def make_kit(
    tmp: Path,
    *,
    config: DetectorConfig | None = None,
    threat: ThreatIntel | None = None,
    windows: FailureWindows | None = None,
    anonymise_ip: AnonymiseIp | None = None,
) -> Kit:
    clock = Clock()
    store = SqlAuditStore(f"sqlite:///{tmp / 'audit.db'}")
    store.upgrade()
    keyring = KeyRing.open(tmp / "keys", create=True)
    counters = Counters()
    keys = SqlSubjectKeys(store, b"m" * 32)
    fingerprinter = Fingerprinter(b"k" * 32, "p1")
    geo = GeoEnricher(build_city_db(tmp / "city.mmdb"))
    enrichers: list[Any] = [geo] + ([threat] if threat is not None else [])
    pipeline = Pipeline.standard(
        fingerprinter=fingerprinter,
        subject_keys=keys,
        counters=counters,
        strict=True,
        enrichers=enrichers,
        anonymise_ip=anonymise_ip,
    )
    committed: list[dict[str, Any]] = []

    def capture(sealed: list[SealedEvent]) -> None:
        committed.extend(orjson.loads(s.canonical) for s in sealed)

    trail = AuditTrail(
        pipeline,
        store,
        keyring,
        stream="security-test",
        counters=counters,
        subject_keys=keys,
        checkpoint_interval=3600,
        clock=clock,
        on_commit=capture,
    )
    engine = make_engine(f"sqlite:///{tmp / 'kroonika.db'}")
    metadata.create_all(engine, tables=[_security_tables.security_profile])
    profiles = ProfileStore(engine)
    monitor = SecurityMonitor(trail, profiles, config=config, threat=threat, windows=windows)
    return Kit(trail, store, monitor, profiles, clock, fingerprinter, committed)


def redis_windows(url: str, prefix: str) -> RedisWindows:
    """Windows in the real Redis under a prefix of the test's own."""
    return RedisWindows(url, prefix=prefix)


def drop_redis_keys(url: str, prefix: str) -> None:
    import redis

    r = redis.Redis.from_url(url)
    try:
        keys = list(r.scan_iter(match=prefix + ":*"))
        if keys:
            r.delete(*keys)
    finally:
        r.close()
