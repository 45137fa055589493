"""Shared helpers for the SIEM renderers: value neutralisation, time and severity scales.

Every renderer turns user-controlled strings into *display text* with :func:`clean` before it
escapes them for its own wire syntax. :func:`clean` removes ANSI / ECMA-48 escape sequences
(CSI ``ESC [ ... final``, OSC ``ESC ] ... BEL|ST``, two-byte ``ESC x`` and the 8-bit CSI
``U+009B``), turns line-like controls (TAB, LF, VT, FF, CR, NEL, U+2028, U+2029) into one space
and drops every other C0 control, DEL, C1 control and the Unicode bidi overrides (so a value can
neither forge a new record nor re-order how a line is shown). Estonian letters, emoji and
zero-width joiners are kept: they are printable.

The common case costs one ``str.isprintable()`` call: only values that contain something
non-printable take the regex and ``str.translate`` path.
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

_ANSI: Final = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"  # CSI
    r"|\x1b\][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC ... BEL / ST
    r"|\x1b[P^_X][^\x1b\x9c]*(?:\x1b\\|\x9c)?"  # DCS, PM, APC, SOS ... ST
    r"|\x1b[ -/]*[0-~]"  # two-byte / nF escape sequences
    r"|\x9b[0-?]*[ -/]*[@-~]?"  # 8-bit CSI
)

#: Characters that end or break a line somewhere (syslog receivers, splitlines, JS).
LINE_BREAKS: Final = "\t\n\x0b\x0c\r\x85\u2028\u2029"

_DROP: Final = (
    [c for c in range(0x20) if chr(c) not in LINE_BREAKS]
    + list(range(0x7F, 0xA0))
    + list(range(0x202A, 0x202F))
    + list(range(0x2066, 0x206A))
)


def _table(keep: str = "") -> dict[int, str | None]:
    table: dict[int, str | None] = {c: None for c in _DROP if chr(c) not in keep}
    table.update({ord(c): " " for c in LINE_BREAKS if c not in keep})
    return table


#: ``str.translate`` table used by :func:`clean`.
CLEAN_TABLE: Final = _table()
#: Like :data:`CLEAN_TABLE` but keeps CR and LF, for formats that escape them (CEF).
CLEAN_KEEP_CRLF_TABLE: Final = _table("\r\n")


def clean(value: str) -> str:
    """Return ``value`` as one line of display text (see the module docstring)."""
    if value.isprintable():
        return value
    return _ANSI.sub("", value).translate(CLEAN_TABLE)


def clean_keep_crlf(value: str) -> str:
    """Like :func:`clean` but keep CR and LF so that the caller can escape them."""
    if value.isprintable():
        return value
    return _ANSI.sub("", value).translate(CLEAN_KEEP_CRLF_TABLE)


def clean_obj(value: Any) -> Any:
    """Apply :func:`clean` to every string (keys included) inside a JSON-like value."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, Mapping):
        return {clean(str(k)): clean_obj(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_obj(v) for v in value]
    return value


def text(value: Any) -> str:
    """Render a scalar (or a small list / object) as cleaned text for a key=value format."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ",".join(text(v) for v in value)
    return clean(dumps(value))


_JSON_UNSAFE: Final = re.compile("[\x7f-\x9f\u2028\u2029]")


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _default(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"cannot render {type(obj).__name__} in an audit event")


def dumps(value: Any) -> str:
    """Compact JSON with sorted keys and nothing that a line-oriented reader could trip over.

    orjson already escapes C0 controls; DEL, C1 controls, U+2028 and U+2029 (valid raw JSON but
    line breaks or terminal controls elsewhere) are escaped as ``\\uXXXX`` too. They can only
    occur inside JSON strings, so the rewrite keeps the document equal.
    """
    out = orjson.dumps(value, default=_default, option=orjson.OPT_SORT_KEYS).decode()
    if out.isascii():
        return out.replace("\x7f", "\\u007f") if "\x7f" in out else out
    return _JSON_UNSAFE.sub(_json_escape, out)


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)


def epoch_ms(value: Any) -> int | None:
    """RFC 3339 time string to integer milliseconds since the epoch (``None`` if unusable)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MS


def parse_time(value: Any) -> datetime | None:
    """RFC 3339 time string to an aware UTC datetime (``None`` if unusable)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


_EMPTY: Final[Mapping[str, Any]] = {}


def part(event: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """The sub-object ``event[key]`` or an empty mapping."""
    value = event.get(key)
    return value if isinstance(value, Mapping) else _EMPTY


#: RFC 5424 section 6.2.1 severity codes for our severity names.
SYSLOG_SEVERITY: Final[Mapping[str, int]] = {
    "emergency": 0,
    "alert": 1,
    "critical": 2,
    "error": 3,
    "warning": 4,
    "notice": 5,
    "info": 6,
    "debug": 7,
}
#: Used when an event has no or an unknown severity.
DEFAULT_SEVERITY: Final = "info"

#: RFC 5424 severity name -> 0..10 scale used by CEF (ArcSight: 0-3 low, 4-6 medium, 7-8 high,
#: 9-10 very high).
CEF_SEVERITY: Final[Mapping[str, int]] = {
    "debug": 0,
    "info": 2,
    "notice": 3,
    "warning": 5,
    "error": 7,
    "critical": 9,
    "alert": 10,
    "emergency": 10,
}


@functools.cache
def product_version() -> str:
    """The installed Kroonika version, looked up once (``"0"`` when not installed)."""
    try:
        return importlib.metadata.version("kroonika")
    except importlib.metadata.PackageNotFoundError:
        return "0"
