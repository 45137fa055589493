"""Shape checks for the parts of an event outside ``details``: the enrichment
objects (``source.geo``, ``source.as``, ``threat``), which enrichers fill after
``validate`` has run and which application code may also pass in.

Each function returns the cleaned value and how many pieces it had to drop, so
that the caller decides between raising (strict) and counting (production).
Strings are neutralised and bounded like every other string of an event: a feed
or a geo database is outside data too.
"""

from __future__ import annotations

import re
from typing import Any, Final

from kroonika.audit._model import ThreatMatch
from kroonika.audit.processors._text import neutralise

MAX_ENTRIES: Final = 16  # keys of geo / as, matches in threat
MAX_TEXT: Final = 128
_KEY: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")
_SAFE_INT: Final = 2**53


def _text(value: str) -> str:
    if value.isprintable() and len(value) <= MAX_TEXT:
        return value
    return neutralise(value, MAX_TEXT)


def clean_object(value: object, *, ints: bool) -> tuple[dict[str, Any] | None, int]:
    """A flat object of short lower-case keys to strings (and, with ``ints``,
    integers in the JSON-safe range). Anything else is dropped and counted."""
    if value is None:
        return None, 0
    if type(value) is not dict:
        return None, 1
    out: dict[str, Any] = {}
    dropped = 0
    for key, v in value.items():
        if len(out) >= MAX_ENTRIES or type(key) is not str or _KEY.fullmatch(key) is None:
            dropped += 1
        elif type(v) is str:
            out[key] = _text(v)
        elif ints and type(v) is int and -_SAFE_INT < v < _SAFE_INT:
            out[key] = v
        else:
            dropped += 1
    return out or None, dropped


def clean_threat(value: object) -> tuple[list[ThreatMatch], int]:
    """At most :data:`MAX_ENTRIES` well-formed matches, their text neutralised and
    their confidence within 0..100."""
    if not isinstance(value, list | tuple):
        return [], 1
    out: list[ThreatMatch] = []
    dropped = 0
    for m in value:
        if (
            len(out) >= MAX_ENTRIES
            or type(m) is not ThreatMatch
            or type(m.feed) is not str
            or type(m.indicator) is not str
            or type(m.category) is not str
            or type(m.confidence) is not int
            or not 0 <= m.confidence <= 100
        ):
            dropped += 1
            continue
        feed, indicator, category = _text(m.feed), _text(m.indicator), _text(m.category)
        if (feed, indicator, category) != (m.feed, m.indicator, m.category):
            m = ThreatMatch(feed, indicator, category, m.confidence)
        out.append(m)
    return out, dropped
