"""The native Kroonika audit record: the event as compact JSON (RFC 8259) with sorted keys.

This is the record of truth (``kroonika.audit/1``), so values are *not* rewritten: JSON string
escaping (RFC 8259 section 7) already keeps CR, LF, ESC and every other C0 control out of the
output, and :func:`kroonika.audit.formats._text.dumps` additionally escapes every other
non-printable character (DEL, the C1 controls, U+2028 and U+2029, bidi and invisible format
characters) as ``\\uXXXX``, so one event is always exactly one visible line. Escape
sequences therefore survive *as data* (``\\u001b``), to be neutralised by whoever displays
them. The result is compact JSON
with sorted keys but is not the RFC 8785 canonical form (use ``kroonika.audit.integrity`` for that).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kroonika.audit.formats._text import dumps

__all__ = ["render_json"]


def render_json(event: Mapping[str, Any]) -> str:
    """Render ``event`` as one line of compact, key-sorted JSON."""
    return dumps(event)
