"""Shared helpers for the SIEM renderers: value neutralisation, time and severity scales.

Every renderer turns user-controlled strings into *display text* with :func:`clean` before it
escapes them for its own wire syntax. :func:`clean` removes ANSI / ECMA-48 escape sequences
(CSI ``ESC [ ... final``, OSC ``ESC ] ... BEL|ST``, two-byte ``ESC x`` and the 8-bit CSI
``U+009B``), turns line-like controls (TAB, LF, VT, FF, CR, NEL, U+2028, U+2029) and the other
space separators (NO-BREAK SPACE, U+2000-U+200A, U+3000, ...) into one space and drops every other
character for which :meth:`str.isprintable` is False: C0 and C1 controls, DEL, the bidi controls,
zero-width and other format characters (U+200B, U+200D, U+FEFF, U+00AD, U+2060-U+2064, tag
characters U+E0000-U+E007F), surrogates, private-use and unassigned code points. So a value can
neither forge a new record, nor re-order how a line is shown, nor hide text in invisible
characters. Estonian letters, other scripts and emoji are kept; an emoji sequence loses its
zero-width joiner (``"👩\\u200d💻"`` is shown as ``👩💻``).

Which characters are non-printable is what :meth:`str.isprintable` says (the running Python's
Unicode database), not a fixed list: the tables for the Basic Multilingual Plane are built from it
once, on first use, and characters beyond it are asked one by one. The common case costs one
``str.isprintable()`` call: only values that contain something non-printable take the regex path.
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
import unicodedata
from collections.abc import Callable, Mapping
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

#: A run of characters outside the Basic Multilingual Plane (emoji, tag characters, ...).
_ASTRAL: Final = re.compile("[\U00010000-\U0010ffff]+")


def _char_class(code_points: list[int]) -> re.Pattern[str]:
    runs: list[list[int]] = []
    for cp in code_points:
        if runs and runs[-1][1] == cp - 1:
            runs[-1][1] = cp
        else:
            runs.append([cp, cp])
    return re.compile("[" + "".join(f"\\u{first:04x}-\\u{last:04x}" for first, last in runs) + "]")


@functools.cache
def _bmp(keep: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """For the Basic Multilingual Plane, built once: a pattern matching one line break or
    other space separator (Zs, Zl, Zp; each becomes one space) and a pattern matching one other
    character for which :meth:`str.isprintable` is False (each is dropped), except ``keep``.

    A character class with ranges above U+FFFF makes ``re`` test each of them for every
    character, so astral characters are left to :func:`_astral` (separators all lie in the
    BMP; one added elsewhere by a later Unicode version would be dropped, which is still safe).
    """
    spaces: list[int] = []
    drop: list[int] = []
    for cp in range(0x10000):
        ch = chr(cp)
        if ch.isprintable() or ch in keep:
            continue
        if ch in LINE_BREAKS or unicodedata.category(ch)[0] == "Z":
            spaces.append(cp)
        else:
            drop.append(cp)
    return _char_class(spaces), _char_class(drop)


def _astral(value: str, replace: Callable[[str], str]) -> str:
    def each(match: re.Match[str]) -> str:
        return "".join(ch if ch.isprintable() else replace(ch) for ch in match.group())

    return _ASTRAL.sub(each, value)


def _drop(ch: str) -> str:
    return ""


def _clean(value: str, keep: str) -> str:
    spaces, drop = _bmp(keep)
    value = drop.sub("", spaces.sub(" ", _ANSI.sub("", value)))
    return value if value.isprintable() else _astral(value, _drop)


def escape_unprintable(value: str, escape: Callable[[str], str]) -> str:
    """``value`` with each character for which :meth:`str.isprintable` is False replaced by
    ``escape(character)``, which must return printable text."""
    if value.isprintable():
        return value
    spaces, drop = _bmp("")
    value = drop.sub(lambda match: escape(match.group()), value)
    value = spaces.sub(lambda match: escape(match.group()), value)
    return value if value.isprintable() else _astral(value, escape)


def clean(value: str) -> str:
    """Return ``value`` as one line of display text (see the module docstring)."""
    if value.isprintable():
        return value
    return _clean(value, "")


def clean_keep_crlf(value: str) -> str:
    """Like :func:`clean` but keep CR and LF so that the caller can escape them."""
    if value.isprintable():
        return value
    return _clean(value, "\r\n")


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


def _json_escape(ch: str) -> str:
    cp = ord(ch)
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    cp -= 0x10000  # RFC 8259 section 7: a UTF-16 surrogate pair
    return f"\\u{0xD800 + (cp >> 10):04x}\\u{0xDC00 + (cp & 0x3FF):04x}"


def _default(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"cannot render {type(obj).__name__} in an audit event")


def dumps(value: Any) -> str:
    """Compact JSON with sorted keys and nothing that a line-oriented reader could trip over.

    orjson already escapes C0 controls; every other character for which :meth:`str.isprintable`
    is False (DEL, C1 controls, U+2028, U+2029, bidi, zero-width and other invisible characters,
    non-ASCII spaces; valid raw JSON but line breaks, terminal controls or hidden text elsewhere)
    is escaped as ``\\uXXXX`` too. They can only occur inside JSON strings, so the rewrite keeps
    the document equal.
    """
    out = orjson.dumps(value, default=_default, option=orjson.OPT_SORT_KEYS).decode()
    return escape_unprintable(out, _json_escape)


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
