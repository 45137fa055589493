"""Tables of the per-person security profile (``kroonika.security`` owns the logic).

A profile is keyed by the person's pseudonym (the keyed HMAC the audit trail uses),
never by the personal code, and remembers networks only in their anonymised form
(``/24``, ``/48``). Times are integer seconds since the epoch; coordinates are
decimal strings as in the trail.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from kroonika.db import metadata

security_profile = Table(
    "security_profile",
    metadata,
    Column("person", String(128), primary_key=True),
    Column("login_count", BigInteger, nullable=False),
    Column("first_seen", BigInteger, nullable=False),
    Column("last_at", BigInteger, nullable=True),
    Column("last_country", String(8), nullable=True),
    Column("last_city", String(128), nullable=True),
    Column("last_lat", String(16), nullable=True),
    Column("last_lon", String(16), nullable=True),
    Column("last_accuracy_km", Integer, nullable=True),
    # JSON text: {"EE": 12, ...}, {"193.40.12.0/24": 1780000000, ...}, [24 counts]
    Column("countries", Text, nullable=False),
    Column("networks", Text, nullable=False),
    Column("hours", Text, nullable=False),
    Column("updated_at", BigInteger, nullable=False),  # the newest login folded in
    Index("ix_security_profile_updated_at", "updated_at"),  # retention deletes
)
