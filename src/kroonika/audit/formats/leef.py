"""IBM QRadar Log Event Extended Format (LEEF) version 2.0 records.

Follows the IBM QRadar DSM Guide "Log Event Extended Format (LEEF)", LEEF 2.0:
``LEEF:2.0|Vendor|Product|Version|EventID|DelimiterCharacter|`` followed by ``key=value``
attributes separated by the declared delimiter (tab by default, declared as ``x09``; a printable
delimiter is declared as itself).

The delimiter is one ASCII character and is checked when the renderer is built: letters, digits,
space, ``=``, ``|`` and ``\\`` are refused, and so are ``-``, ``+``, ``:`` and ``.``, which occur
in values written as they are (``devTime``, ``devTimeFormat``, negative numbers) or that a
delimiter would mangle (IPv4 and IPv6 addresses), as well as NUL and the controls that end a
line somewhere (LF, VT, FF, CR and FS, GS, RS, which :meth:`str.splitlines` splits at) or start
an escape sequence (ESC).

LEEF has no escape syntax for attribute values, so values are cleaned
(:func:`kroonika.audit.formats._text.clean`: ANSI sequences and every other non-printable
character removed, TAB, CR, LF, other line breaks and non-ASCII spaces turned into a space) and
any occurrence of the declared delimiter is replaced by a space. ``=`` may stay in values (a
value runs to the next delimiter). In header fields ``\\`` and ``|`` are escaped as in CEF
(``\\\\``, ``\\|``).

Attributes: ``devTime`` with ``devTimeFormat`` (``yyyy-MM-dd HH:mm:ss.SSS Z``, UTC),
``cat`` (category), ``sev`` (1..10), ``src``, ``srcPort``, ``usrName`` (pseudonym), ``role``,
``identSrc`` (source IP of an authentication event with a subject), ``userAgent``, ``url``
(admin route), ``resource`` (target), then Kroonika attributes (``outcome``, ``reason``,
``eventUid``, ``stream``, ``seq``, ``requestId``, ``traceId``, ``flowId``, ``sessionRef``,
``threatIndicators``, ``details`` as compact JSON).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Final

from kroonika.audit.formats._text import (
    DEFAULT_SEVERITY,
    clean,
    clean_obj,
    dumps,
    parse_time,
    part,
    product_version,
)

__all__ = ["LeefRenderer", "render_leef"]

_LEEF_SEVERITY: Final[Mapping[str, int]] = {
    "debug": 1,
    "info": 2,
    "notice": 4,
    "warning": 5,
    "error": 7,
    "critical": 9,
    "alert": 10,
    "emergency": 10,
}
_HEADER_ESCAPES: Final = str.maketrans({"\\": "\\\\", "|": "\\|"})
_IDENTITY_CATEGORIES: Final = frozenset({"authentication", "session"})
DEV_TIME_FORMAT: Final = "yyyy-MM-dd HH:mm:ss.SSS Z"
#: Delimiters refused besides letters and digits: LEEF syntax, characters of the values written
#: unescaped (devTime ``2026-11-27 09:34:14.495 +0000``, devTimeFormat, ``-`` of a negative
#: number) or of IP addresses, and controls that break the line or start an escape sequence.
_REFUSED_DELIMITERS: Final = frozenset("=|\\ " + "-+:." + "\x00\n\x0b\x0c\r\x1c\x1d\x1e\x1b")


def _header(value: str) -> str:
    value = clean(value)
    if "\\" in value or "|" in value:
        return value.translate(_HEADER_ESCAPES)
    return value


class LeefRenderer:
    """Render events as LEEF:2.0 records with one configured attribute delimiter.

    The delimiter must be a single ASCII character that is not a letter, a digit, a space,
    ``=``, ``|``, ``\\``, ``-``, ``+``, ``:``, ``.``, NUL, a line break or ESC (see the
    module docstring); it is checked here, when the renderer is built (``ValueError``).
    """

    __slots__ = ("_delimiter", "_prefix", "_prefix_end")

    def __init__(self, *, delimiter: str = "\t", product_version: str | None = None) -> None:
        if len(delimiter) != 1 or not delimiter.isascii():
            raise ValueError(f"LEEF delimiter must be one ASCII character, got {delimiter!r}")
        if delimiter in _REFUSED_DELIMITERS or delimiter.isalnum():
            raise ValueError(
                f"unusable LEEF delimiter {delimiter!r}: it is LEEF syntax, a line break or "
                "escape, or occurs in attribute values (devTime, devTimeFormat, numbers, IP "
                "addresses); use TAB (the default), '^', ';' or another punctuation character"
            )
        code = ord(delimiter)
        declared = delimiter if delimiter.isprintable() else f"x{code:02x}"
        version = product_version if product_version is not None else product_version_default()
        self._delimiter = delimiter
        self._prefix = f"LEEF:2.0|Kroonika|Kroonika|{_header(version)}|"
        self._prefix_end = f"|{declared}|"

    @property
    def delimiter(self) -> str:
        """The attribute delimiter."""
        return self._delimiter

    def _value(self, value: Any) -> str:
        if isinstance(value, str):
            text = clean(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        else:
            text = clean(dumps(clean_obj(value)))
        if self._delimiter in text:
            return text.replace(self._delimiter, " ")
        return text

    def __call__(self, event: Mapping[str, Any]) -> str:
        pairs: list[str] = []
        add = pairs.append
        val = self._value
        moment = parse_time(event.get("time"))
        if moment is not None:
            stamp = moment.strftime("%Y-%m-%d %H:%M:%S")
            add(f"devTime={stamp}.{moment.microsecond // 1000:03d} +0000")
            add(f"devTimeFormat={DEV_TIME_FORMAT}")
        category = event.get("category")
        if isinstance(category, str):
            add(f"cat={val(category)}")
        severity = event.get("severity")
        sev = _LEEF_SEVERITY.get(severity if isinstance(severity, str) else DEFAULT_SEVERITY, 2)
        add(f"sev={sev}")

        source = part(event, "source")
        ip = source.get("ip")
        if isinstance(ip, str):
            add(f"src={val(ip)}")
        if isinstance(port := source.get("port"), int):
            add(f"srcPort={val(port)}")
        actor = part(event, "actor")
        pseudonym = actor.get("pseudonym")
        if isinstance(pseudonym, str):
            add(f"usrName={val(pseudonym)}")
            if isinstance(ip, str) and category in _IDENTITY_CATEGORIES:
                add(f"identSrc={val(ip)}")
        roles = actor.get("roles")
        if isinstance(roles, list | tuple) and roles:
            add(f"role={val(','.join(str(r) for r in roles))}")
        if isinstance(ua := source.get("user_agent"), str):
            add(f"userAgent={val(ua)}")
        details = part(event, "details")
        if isinstance(route := details.get("route"), str):
            add(f"url={val(route)}")
        target = part(event, "target")
        if target:
            resource = f"{target.get('type', '')}:{target.get('id', '')}"
            add(f"resource={val(resource)}")

        for key, value in (
            ("outcome", event.get("outcome")),
            ("reason", event.get("reason")),
            ("eventUid", event.get("id")),
            ("stream", event.get("stream")),
            ("seq", event.get("seq")),
        ):
            if value is not None:
                add(f"{key}={val(value)}")
        correlation = part(event, "correlation")
        for key, name in (
            ("request_id", "requestId"),
            ("trace_id", "traceId"),
            ("flow_id", "flowId"),
            ("session_ref", "sessionRef"),
        ):
            if (value := correlation.get(key)) is not None:
                add(f"{name}={val(value)}")
        threat = event.get("threat")
        if isinstance(threat, list | tuple) and threat:
            indicators = ",".join(
                str(m.get("indicator", "")) for m in threat if isinstance(m, Mapping)
            )
            add(f"threatIndicators={val(indicators)}")
        if details:
            add(f"details={val(details)}")

        etype = event.get("type")
        event_id = _header(etype) if isinstance(etype, str) else "unknown"
        return f"{self._prefix}{event_id}{self._prefix_end}{self._delimiter.join(pairs)}"


def product_version_default() -> str:
    """The product version used when none is configured: the installed Kroonika version."""
    return product_version()


@functools.cache
def _default_renderer() -> LeefRenderer:
    return LeefRenderer()


def render_leef(event: Mapping[str, Any]) -> str:
    """Render ``event`` as one tab-delimited LEEF:2.0 record."""
    return _default_renderer()(event)
