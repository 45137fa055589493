"""Small City databases built with mmdb-writer for the enrichment tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmdb_writer import MMDBWriter
from netaddr import IPSet

# network -> (country, country name, city, lat, lon, accuracy radius km or None)
PLACES: dict[str, tuple[str, str, str, float, float, int | None]] = {
    "193.40.0.0/16": ("EE", "Estonia", "Tartu", 58.3806, 26.7237, 20),
    "194.126.96.0/19": ("EE", "Estonia", "Tallinn", 59.437, 24.7536, 10),
    "81.2.69.0/24": ("GB", "United Kingdom", "London", 51.5143, -0.0912244, 50),
    "1.1.1.0/24": ("AU", "Australia", "Sydney", -33.8688, 151.209, 100),
    "2001:67c:1bc::/48": ("FI", "Finland", "Helsinki", 60.1699, 24.9384, None),
    "66.249.64.0/24": ("US", "United States", "Chicago", 41.85, -87.65, 1000),
}


def record(country: str, name: str, city: str, lat: float, lon: float, acc: int | None) -> Any:
    location: dict[str, Any] = {"latitude": lat, "longitude": lon}
    if acc is not None:
        location["accuracy_radius"] = acc
    return {
        "country": {"iso_code": country, "names": {"en": name}},
        "city": {"names": {"en": city}},
        "location": location,
    }


def build_city_db(path: Path, places: dict[str, tuple[Any, ...]] | None = None) -> Path:
    writer = MMDBWriter(ip_version=6, database_type="DBIP-City-Lite", ipv4_compatible=True)
    for net, place in (places or PLACES).items():
        writer.insert_network(IPSet([net]), record(*place))
    writer.to_db_file(str(path))
    return path


def build_asn_db(path: Path) -> Path:
    writer = MMDBWriter(ip_version=6, database_type="GeoLite2-ASN", ipv4_compatible=True)
    writer.insert_network(IPSet(["193.40.0.0/16"]), {"autonomous_system_number": 3221})
    writer.to_db_file(str(path))
    return path
