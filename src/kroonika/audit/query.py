"""Querying the trail: filters over the stored canonical records, streamed.

Blocks are pruned by their indexed time range and stream. Within a block, a record
is parsed only if its canonical bytes contain what the filters need (the actor's
pseudonym, the correlation id, the type...), and then filtered. Nothing is held in
memory beyond one block.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

import orjson

from kroonika.audit.store._types import AuditStore


@dataclass(frozen=True, slots=True)
class Query:
    from_time: str | None = None
    to_time: str | None = None
    types: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    outcome: str | None = None
    actor: str | None = None
    correlation: str | None = None
    ip_prefix: str | None = None
    stream: str | None = None
    after: tuple[str, int] | None = None  # cursor: (stream, seq) of the last record seen

    def describe(self) -> str:
        """The query as text for the ``audit.access`` event (no personal data)."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value not in (None, ()):
                parts.append(f"{f.name}={value}")
        return " ".join(parts) or "all"

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
        if self.actor is not None:
            out.append((b'"pseudonym":' + orjson.dumps(self.actor),))
        if self.correlation is not None:
            out.append((orjson.dumps(self.correlation),))
        return out

    def matches(self, doc: dict[str, Any]) -> bool:
        t = doc.get("time", "")
        if self.from_time is not None and t < self.from_time:
            return False
        if self.to_time is not None and t > self.to_time:
            return False
        if self.types and not any(
            doc.get("type") == x or str(doc.get("type", "")).startswith(x + ".") for x in self.types
        ):
            return False
        if self.categories and doc.get("category") not in self.categories:
            return False
        if self.outcome is not None and doc.get("outcome") != self.outcome:
            return False
        if self.actor is not None and doc.get("actor", {}).get("pseudonym") != self.actor:
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
    needle = f'"id":"{event_id}"'.encode()
    for block in store.blocks():
        if needle in block.data:
            for body in block.records():
                if orjson.loads(body).get("id") == event_id:
                    return body
    return None
