"""Querying the trail: filters over the stored canonical records, streamed.

Blocks are pruned by their indexed time range and stream. Within a block, a record
is parsed only if its canonical bytes contain what the filters need (the actor's
pseudonym, the correlation id, the type...), and then filtered. Nothing is held in
memory beyond one block.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

import orjson

from kroonika.audit._errors import QueryInvalid
from kroonika.audit._model import Category, Outcome
from kroonika.audit.catalogue import CATALOGUE, TYPE_FILTERS, type_matches
from kroonika.audit.formats._text import escape_unprintable
from kroonika.audit.store._types import AuditStore

_RFC3339: Final = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[Tt ](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d+))?"
    r"(?P<offset>[Zz]|[+-]\d{2}:\d{2}))?",
    re.ASCII,
)
_MICRO: Final = timedelta(microseconds=1)
_TYPE_EXPECTED: Final = (
    "an event type of the catalogue or a prefix of one (such as auth.login or auth; areas: "
    + ", ".join(sorted({t.split(".", 1)[0] for t in CATALOGUE}))
    + ")"
)
_CATEGORIES: Final = frozenset(c.value for c in Category)
_OUTCOMES: Final = frozenset(o.value for o in Outcome)
_SHOWN_MAX: Final = 40


def time_bound(value: str, *, end: bool = False) -> str:
    """An RFC 3339 time bound in the stored form, so that comparing strings compares times.

    Stored times are UTC with six fraction digits and ``Z`` (``2026-11-27T10:01:53.123456Z``).
    ``value`` is an RFC 3339 ``date-time`` (section 5.6: any offset, ``Z`` or ``+02:00``, an
    optional fraction of any length) or a ``full-date`` alone, which means its midnight UTC.
    A fraction finer than a microsecond is rounded inwards: up for a start bound, down for an
    ``end`` bound. A leap second (``:60``) is the instant after ``:59.999999``. Raises
    ``ValueError`` naming what is wrong.
    """
    m = _RFC3339.fullmatch(value)
    if m is None:
        raise ValueError(
            "not an RFC 3339 time (a time of day needs Z or an offset): use "
            "2026-11-27T10:01:53Z, 2026-11-27T12:01:53.5+02:00 or a date alone, 2026-11-27"
        )
    try:
        if m["time"] is None:
            moment = datetime.fromisoformat(m["date"]).replace(tzinfo=UTC)
        else:
            hh, mm, ss = (int(x) for x in m["time"].split(":"))
            offset = m["offset"].upper()
            tz = UTC
            if offset != "Z":
                oh, om = int(offset[1:3]), int(offset[4:6])
                if oh > 23 or om > 59:
                    raise ValueError(f"offset {offset} is out of range")
                sign = -1 if offset[0] == "-" else 1
                tz = timezone(sign * timedelta(hours=oh, minutes=om))
            leap = ss == 60
            moment = datetime.fromisoformat(m["date"]).replace(
                hour=hh, minute=mm, second=59 if leap else ss, tzinfo=tz
            )
            frac = m["frac"] or ""
            if leap:
                moment += timedelta(seconds=1) - (_MICRO if end else timedelta(0))
            else:
                moment += int(frac[:6].ljust(6, "0")) * _MICRO
                if not end and frac[6:].strip("0"):
                    moment += _MICRO
            moment = moment.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"not a valid time: {exc}") from None
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}Z"
    )


@dataclass(frozen=True, slots=True)
class Query:
    from_time: str | None = None
    to_time: str | None = None
    types: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    outcome: str | None = None
    #: actor pseudonyms, any of which matches: one person under each pseudonymisation
    #: key they were named with (a rotation gives them a new pseudonym, decision 0028)
    actors: tuple[str, ...] = ()
    correlation: str | None = None
    ip_prefix: str | None = None
    stream: str | None = None
    after: tuple[str, int] | None = None  # cursor: (stream, seq) of the last record seen

    def __post_init__(self) -> None:
        # `auth.` is `auth`, as in a sink's and an alert rule's types (decision 0034);
        # anything else stays as given, for check() to refuse as given
        types = tuple(
            t[:-1] if t.endswith(".") and t[:-1] in TYPE_FILTERS else t for t in self.types
        )
        object.__setattr__(self, "types", types)

    def describe(self) -> str:
        """The query as text for the ``audit.access`` event (no personal data)."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value not in (None, ()):
                parts.append(f"{f.name}={value}")
        return " ".join(parts) or "all"

    def check(self) -> None:
        """Raise :class:`QueryInvalid` naming the filter if ``types``, ``categories`` or
        ``outcome`` asks for a value no event can have (it would read the whole trail to
        find nothing). Free-text filters (actor, correlation, stream) are not checked."""
        outcomes = () if self.outcome is None else (self.outcome,)
        for param, values, allowed, expected in (
            ("type", self.types, TYPE_FILTERS, _TYPE_EXPECTED),
            ("category", self.categories, _CATEGORIES, _one_of(_CATEGORIES)),
            ("outcome", outcomes, _OUTCOMES, _one_of(_OUTCOMES)),
        ):
            for position, value in enumerate(values, 1):
                if value not in allowed:
                    raise QueryInvalid(param, _shown(value), expected, position)

    def needles(self) -> list[tuple[bytes, ...]]:
        """Byte strings that a matching record's canonical JSON must contain: one of
        each tuple. The canonical form has no spaces and escapes strings exactly as
        ``orjson.dumps`` does, so a record without them cannot match and need not be
        parsed. A hit is only a candidate: :meth:`matches` decides."""
        out: list[tuple[bytes, ...]] = []
        if self.types:
            # no closing quote: "auth" must also find "auth.login"
            out.append(tuple(b'"type":' + orjson.dumps(t)[:-1] for t in self.types))
        if self.categories:
            out.append(tuple(b'"category":' + orjson.dumps(c) for c in self.categories))
        if self.outcome is not None:
            out.append((b'"outcome":' + orjson.dumps(self.outcome),))
        if self.actors:
            out.append(tuple(b'"pseudonym":' + orjson.dumps(a) for a in self.actors))
        if self.correlation is not None:
            out.append((orjson.dumps(self.correlation),))
        return out

    def matches(self, doc: dict[str, Any]) -> bool:
        t = doc.get("time", "")
        if self.from_time is not None and t < self.from_time:
            return False
        if self.to_time is not None and t > self.to_time:
            return False
        if self.types and not type_matches(str(doc.get("type", "")), self.types):
            return False
        if self.categories and doc.get("category") not in self.categories:
            return False
        if self.outcome is not None and doc.get("outcome") != self.outcome:
            return False
        if self.actors and doc.get("actor", {}).get("pseudonym") not in self.actors:
            return False
        if (
            self.correlation is not None
            and self.correlation not in doc.get("correlation", {}).values()
        ):
            return False
        if self.ip_prefix is not None:
            ip = doc.get("source", {}).get("ip")
            if ip is None:
                return False
            try:
                if ipaddress.ip_address(ip) not in ipaddress.ip_network(
                    self.ip_prefix, strict=False
                ):
                    return False
            except ValueError:
                return False
        return True


def _one_of(values: frozenset[str]) -> str:
    return "one of " + ", ".join(sorted(values))


def _shown(value: str) -> str:
    """A refused value for a message: quoted, cut short, controls escaped."""
    cut = value[:_SHOWN_MAX]
    more = f"… ({len(value)} characters)" if len(value) > _SHOWN_MAX else ""
    return "'" + escape_unprintable(cut, lambda ch: ascii(ch)[1:-1]) + "'" + more


def run_query(store: AuditStore, query: Query, *, limit: int | None = None) -> Iterator[bytes]:
    """Yield the canonical bytes of matching records in storage order."""
    n = 0
    after_stream, after_seq = query.after if query.after else (None, 0)
    passed_cursor = query.after is None
    needles = query.needles()
    for block in store.blocks(query.stream, from_time=query.from_time, to_time=query.to_time):
        if not passed_cursor and block.stream == after_stream and block.last_seq < after_seq:
            continue
        sift = bool(needles) and passed_cursor
        if sift and not _has_all(block.data, needles):
            continue  # no record of this block can match: skip parsing it
        for body in block.records():
            if sift and not _has_all(body, needles):
                continue
            doc = orjson.loads(body)
            if not passed_cursor:
                if doc.get("stream") == after_stream and doc.get("seq") == after_seq:
                    passed_cursor = True
                continue
            if query.matches(doc):
                yield body
                n += 1
                if limit is not None and n >= limit:
                    return


def _has_all(data: bytes, needles: list[tuple[bytes, ...]]) -> bool:
    return all(any(n in data for n in group) for group in needles)


def find_event(store: AuditStore, event_id: str) -> bytes | None:
    """The record with this id (a full scan; ids are UUIDv7 so recent ones are late)."""
    return find_events(store, [event_id]).get(event_id)


def find_events(
    store: AuditStore, ids: Iterable[str] = (), positions: Iterable[tuple[str, int]] = ()
) -> dict[str | tuple[str, int], bytes]:
    """The records with these ids and at these ``(stream, seq)`` positions, in one pass
    over the store (stopping once all are found). Keys are the id or the position asked
    for; what is not in the store is missing from the answer."""
    wanted_ids = set(ids)
    wanted_pos = set(positions)
    found: dict[str | tuple[str, int], bytes] = {}
    needles = {i: f'"id":"{i}"'.encode() for i in wanted_ids}
    for block in store.blocks():
        pos_here = [
            p
            for p in wanted_pos
            if p[0] == block.stream and block.first_seq <= p[1] <= block.last_seq
        ]
        ids_here = [i for i, n in needles.items() if n in block.data]
        if not pos_here and not ids_here:
            continue
        for body in block.records():
            doc = orjson.loads(body)
            if doc.get("id") in ids_here:
                found[doc["id"]] = body
                needles.pop(doc["id"], None)
            key = (doc.get("stream"), doc.get("seq"))
            if key in wanted_pos:
                found[(block.stream, doc["seq"])] = body
                wanted_pos.discard((block.stream, doc["seq"]))
        if not needles and not wanted_pos:
            break
    return found


def flow_ids_of(store: AuditStore, pseudonyms: Iterable[str], *, after_id: int = 0) -> set[str]:
    """The login flows (``correlation.flow_id``) of the events whose actor is one of
    ``pseudonyms``, in one pass over the store's blocks with a row id above ``after_id``
    (all of them by default); a record is parsed only if its bytes hold one of the
    pseudonyms and a flow id. Erasure uses it to reach the steps of the person's logins
    made before TARA named them (decision 0023), and a second time with ``after_id`` for
    the logins made since its first pass."""
    names = set(pseudonyms)
    needles = [tuple(b'"pseudonym":' + orjson.dumps(p) for p in sorted(names)), (b'"flow_id":',)]
    flows: set[str] = set()
    if not names:
        return flows
    for block in store.blocks(after_id=after_id):
        if not _has_all(block.data, needles):
            continue
        for body in block.records():
            if not _has_all(body, needles):
                continue
            doc = orjson.loads(body)
            flow = doc.get("correlation", {}).get("flow_id")
            if isinstance(flow, str) and doc.get("actor", {}).get("pseudonym") in names:
                flows.add(flow)
    return flows
