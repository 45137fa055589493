"""The audit event and its parts (DESIGN.md section 3).

An :class:`AuditEvent` is what application code hands to ``emit()``. It is mutable
while the pipeline's processors work on it; the writer turns it into the canonical
JSON record and seals it (:class:`SealedEvent`), after which nothing can change it.

Personal data rides in :attr:`AuditEvent.personal` and the transient fields of
:class:`Actor` and :class:`Source`; none of them is ever serialised in clear: the
processors move them into the encrypted ``pii`` block or drop them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, NamedTuple

from kroonika.audit._random import RandomPool

SCHEMA: Final = "kroonika.audit/1"

DetailValue = str | int | bool | None | list[str] | list[int]


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    UNKNOWN = "unknown"


class Severity(StrEnum):
    """Syslog severities (RFC 5424 table 2), by name."""

    DEBUG = "debug"
    INFO = "info"
    NOTICE = "notice"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"
    ALERT = "alert"
    EMERGENCY = "emergency"

    @property
    def number(self) -> int:
        return _SEVERITY_NUMBERS[self]


_SEVERITY_NUMBERS: Final = {
    Severity.EMERGENCY: 0,
    Severity.ALERT: 1,
    Severity.CRITICAL: 2,
    Severity.ERROR: 3,
    Severity.WARNING: 4,
    Severity.NOTICE: 5,
    Severity.INFO: 6,
    Severity.DEBUG: 7,
}


class Category(StrEnum):
    AUTHENTICATION = "authentication"
    SESSION = "session"
    TOKEN = "token"  # noqa: S105  (a category name, not a secret)
    ACCESS_LIST = "access_list"
    ADMIN = "admin"
    CONFIG = "config"
    JOB = "job"
    SECURITY = "security"
    AUDIT = "audit"
    ALERT = "alert"


class ActorType(StrEnum):
    USER = "user"
    ADMIN = "admin"
    CLIENT = "client"
    SYSTEM = "system"
    ANONYMOUS = "anonymous"


@dataclass(slots=True)
class Actor:
    """Who acted. ``subject`` is the clear identifier (e.g. ``EE38001085718``): it is
    replaced by ``pseudonym`` and moved into the encrypted block, never stored."""

    type: ActorType = ActorType.ANONYMOUS
    subject: str | None = None
    pseudonym: str | None = None
    roles: tuple[str, ...] = ()
    client_id: str | None = None


@dataclass(slots=True)
class Source:
    """Where the request came from. ``ip`` is the full address until the
    ``anonymise_ip`` processor keeps only its network; ``raw_ip`` then holds the
    full address for enrichers and is never serialised."""

    ip: str | None = None
    port: int | None = None
    user_agent: str | None = None
    geo: dict[str, str] | None = None
    asn: dict[str, str | int] | None = None
    proxy: bool | None = None
    ip_prefix: int | None = None
    raw_ip: str | None = None


@dataclass(slots=True)
class Target:
    type: str
    id: str | None = None


@dataclass(slots=True)
class Correlation:
    request_id: str | None = None
    trace_id: str | None = None
    flow_id: str | None = None
    session_ref: str | None = None


@dataclass(slots=True)
class PersonalData:
    """Personal data about the subject; stored only encrypted in ``pii``."""

    personal_code: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    email: str | None = None
    phone: str | None = None
    ip: str | None = None

    def as_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.personal_code is not None:
            out["personal_code"] = self.personal_code
        if self.given_name is not None:
            out["given_name"] = self.given_name
        if self.family_name is not None:
            out["family_name"] = self.family_name
        if self.email is not None:
            out["email"] = self.email
        if self.phone is not None:
            out["phone"] = self.phone
        if self.ip is not None:
            out["ip"] = self.ip
        return out


@dataclass(slots=True)
class ThreatMatch:
    feed: str
    indicator: str
    category: str
    confidence: int


@dataclass(slots=True)
class AuditEvent:
    type: str
    category: Category
    severity: Severity
    outcome: Outcome = Outcome.SUCCESS
    reason: str | None = None
    actor: Actor = field(default_factory=Actor)
    source: Source | None = None
    target: Target | None = None
    correlation: Correlation | None = None
    details: dict[str, DetailValue] = field(default_factory=dict)
    personal: PersonalData | None = None
    threat: list[ThreatMatch] = field(default_factory=list)
    pii: dict[str, str] | None = None
    id: str | None = None
    time: str | None = None

    def to_record(self) -> dict[str, Any]:
        """The JSON object of this event without ``stream``, ``seq`` and ``integrity``
        (the writer adds those when it seals). Transient clear fields are left out."""
        # ``_value_`` is a plain attribute; the enum ``.value`` descriptor is slow on
        # this hot path. The record holds only plain JSON types.
        rec: dict[str, Any] = {
            "schema": SCHEMA,
            "id": self.id,
            "time": self.time,
            "type": self.type,
            "category": self.category._value_,
            "outcome": self.outcome._value_,
            "severity": self.severity._value_,
        }
        if self.reason is not None:
            rec["reason"] = self.reason
        a = self.actor
        actor: dict[str, Any] = {"type": a.type._value_}
        if a.pseudonym is not None:
            actor["pseudonym"] = a.pseudonym
        if a.roles:
            actor["roles"] = list(a.roles)
        if a.client_id is not None:
            actor["client_id"] = a.client_id
        rec["actor"] = actor
        s = self.source
        if s is not None:
            src: dict[str, Any] = {}
            if s.ip is not None:
                src["ip"] = s.ip
            if s.ip_prefix is not None:
                src["ip_prefix"] = s.ip_prefix
            if s.port is not None:
                src["port"] = s.port
            if s.user_agent is not None:
                src["user_agent"] = s.user_agent
            if s.geo:
                src["geo"] = s.geo
            if s.asn:
                src["as"] = s.asn
            if s.proxy is not None:
                src["proxy"] = s.proxy
            if src:
                rec["source"] = src
        t = self.target
        if t is not None:
            rec["target"] = {"type": t.type, "id": t.id} if t.id is not None else {"type": t.type}
        c = self.correlation
        if c is not None:
            corr: dict[str, str] = {}
            if c.request_id is not None:
                corr["request_id"] = c.request_id
            if c.trace_id is not None:
                corr["trace_id"] = c.trace_id
            if c.flow_id is not None:
                corr["flow_id"] = c.flow_id
            if c.session_ref is not None:
                corr["session_ref"] = c.session_ref
            if corr:
                rec["correlation"] = corr
        details = self.details
        if details:
            # validate has already left out the None values; this is for pipelines
            # built without it
            rec["details"] = (
                details
                if None not in details.values()
                else {k: v for k, v in details.items() if v is not None}
            )
        if self.threat:
            rec["threat"] = [
                {
                    "feed": m.feed,
                    "indicator": m.indicator,
                    "category": m.category,
                    "confidence": m.confidence,
                }
                for m in self.threat
            ]
        if self.pii is not None:
            rec["pii"] = self.pii
        return rec


class SealedEvent(NamedTuple):
    """An event after sealing: its canonical bytes are what was hashed and stored.
    Immutable (a tuple), and cheap to make on the hot path."""

    stream: str
    seq: int
    id: str
    time: str
    type: str
    category: str
    outcome: str
    severity: str
    canonical: bytes
    leaf_hash: bytes


# --- identifiers and time -------------------------------------------------------------


def _uuid7_tails(data: bytes, size: int) -> list[str]:
    """The random part of UUIDv7s, ``"7xxx-Vxxx-xxxxxxxxxxxx"``, one per ``size`` (10)
    bytes: version 7 in the high nibble of the first byte, variant 0b10 in the top bits
    of the third (both set for all pieces at once by ``translate``)."""
    raw = bytearray(data)
    raw[0::size] = raw[0::size].translate(_VERSION_7)
    raw[2::size] = raw[2::size].translate(_VARIANT_10)
    h = raw.hex()
    return [f"{h[i : i + 4]}-{h[i + 4 : i + 8]}-{h[i + 8 : i + 20]}" for i in range(0, len(h), 20)]


_VERSION_7: Final = bytes(0x70 | (b & 0x0F) for b in range(256))
_VARIANT_10: Final = bytes(0x80 | (b & 0x3F) for b in range(256))
_UUID7_TAILS: Final = RandomPool(10, _uuid7_tails)
# (milliseconds, "tttttttt-tttt-"): events of one millisecond share their id's prefix.
# One tuple, replaced whole, so that a thread never pairs one value with another's text.
_ms_prefix: tuple[int, str] = (-1, "")


def uuid7(now_ns: int | None = None) -> str:
    """A UUIDv7 (RFC 9562 section 5.7): 48-bit Unix milliseconds, version 7, 12 random
    bits, variant 0b10, 62 random bits (from the kernel's CSPRNG, read in batches)."""
    global _ms_prefix
    ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    cached = _ms_prefix
    if cached[0] != ms:
        h = ms.to_bytes(6, "big").hex()  # OverflowError outside 48 bits, as RFC 9562
        cached = _ms_prefix = (ms, f"{h[:8]}-{h[8:]}-")
    return cached[1] + _UUID7_TAILS.take()


# (second, "YYYY-MM-DDTHH:MM:SS."), replaced whole like the prefix above.
_second_prefix: tuple[int, str] = (-1, "")


def rfc3339_micro(now_ns: int) -> str:
    """UTC time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; the second prefix is cached."""
    global _second_prefix
    sec, rem = divmod(now_ns, 1_000_000_000)
    cached = _second_prefix
    if cached[0] != sec:
        cached = _second_prefix = (
            sec,
            time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec)),
        )
    return f"{cached[1]}{rem // 1000:06d}Z"
