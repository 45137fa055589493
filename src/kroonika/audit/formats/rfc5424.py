"""Syslog messages per RFC 5424 (The Syslog Protocol), framed per RFC 6587 section 3.4.1.

``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD-ELEMENT] MSG`` (RFC 5424 section 6):

* PRI = facility * 8 + severity (section 6.2.1). Facility by category: ``authentication`` and
  ``session`` -> 10 authpriv (they concern a person, even pseudonymised); ``security`` -> 4 auth;
  ``token`` local0 (16), ``access_list`` local1 (17), ``admin`` local2 (18), ``config`` local3
  (19), ``job`` local4 (20), ``audit`` local5 (21), ``alert`` local6 (22), anything else local7
  (23). Severity: emergency 0, alert 1, critical 2, error 3, warning 4, notice 5, info 6, debug 7.
* TIMESTAMP is the event time (RFC 3339, microseconds, UTC) when it is made of the characters
  section 6.2.3 allows, else ``-``. HOSTNAME (255), APP-NAME (48), PROCID (128) are checked
  when the renderer is built; MSGID is the event type reduced to PRINTUSASCII and cut to 32.
* One SD-ELEMENT ``[kroonika@<PEN> id=".." seq=".." stream=".." type=".." category=".."
  outcome=".." reason=".." actor=".." src=".." requestId=".."]``; in PARAM-VALUEs ``"``, ``\\``
  and ``]`` are escaped with a backslash (section 6.3.3) after cleaning (controls and ANSI
  sequences removed, line breaks turned into a space). The PEN defaults to 32473, the example
  number of RFC 5612; configure your organisation's own.
* MSG is the native JSON event (``body="json"``) or the CEF record (``body="cef"``), sent as
  MSG-ANY **without** a UTF-8 BOM: the body is UTF-8 all the same, and a BOM in front of JSON
  breaks JSON parsers in receivers (rsyslog mmjsonparse, Logstash) that do not strip it.

No raw CR or LF can occur anywhere in a message, so it is also safe with non-transparent
(newline) framing; use :func:`frame_octet_counted` for octet counting over TCP/TLS (RFC 5425).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

from kroonika.audit.formats._text import (
    DEFAULT_SEVERITY,
    SYSLOG_SEVERITY,
    clean,
    part,
)
from kroonika.audit.formats.cef import CefRenderer
from kroonika.audit.formats.native import render_json

__all__ = [
    "EXAMPLE_ENTERPRISE_ID",
    "FACILITY_BY_CATEGORY",
    "Rfc5424Renderer",
    "escape_param_value",
    "frame_octet_counted",
    "render_rfc5424",
]

#: RFC 5612 example Private Enterprise Number; replace with your own.
EXAMPLE_ENTERPRISE_ID: Final = 32473

#: Category -> syslog facility code (RFC 5424 table 1).
FACILITY_BY_CATEGORY: Final[Mapping[str, int]] = {
    "authentication": 10,
    "session": 10,
    "security": 4,
    "token": 16,
    "access_list": 17,
    "admin": 18,
    "config": 19,
    "job": 20,
    "audit": 21,
    "alert": 22,
}
_OTHER_FACILITY: Final = 23

# PRINTUSASCII (%d33-126); everything else is dropped from header fields.
_PRINTUSASCII: Final = frozenset(chr(c) for c in range(33, 127))
_SD_ESCAPES: Final = str.maketrans({"\\": "\\\\", '"': '\\"', "]": "\\]"})
_TIME_CHARS: Final = frozenset("0123456789-:.TZ+")


def escape_param_value(value: str) -> str:
    """Clean ``value`` and escape it as an RFC 5424 PARAM-VALUE (section 6.3.3)."""
    value = clean(value)
    if "\\" in value or '"' in value or "]" in value:
        return value.translate(_SD_ESCAPES)
    return value


def _header_field(value: str, limit: int) -> str:
    if not (value.isascii() and value.isprintable() and " " not in value):
        value = "".join(c for c in value if c in _PRINTUSASCII)
    return value[:limit] or "-"


def _check_field(name: str, value: str, limit: int) -> str:
    if not value or len(value) > limit or not set(value) <= _PRINTUSASCII:
        raise ValueError(f"RFC 5424 {name} must be 1..{limit} printable US-ASCII, got {value!r}")
    return value


class Rfc5424Renderer:
    """Render events as RFC 5424 messages for one host, app and structured-data id."""

    __slots__ = ("_body", "_head", "_sd_id")

    def __init__(
        self,
        *,
        hostname: str,
        app_name: str = "kroonika",
        procid: str = "-",
        body: Literal["json", "cef"] = "json",
        enterprise_id: int = EXAMPLE_ENTERPRISE_ID,
        product_version: str | None = None,
    ) -> None:
        host = _check_field("HOSTNAME", hostname, 255)
        app = _check_field("APP-NAME", app_name, 48)
        proc = _check_field("PROCID", procid, 128)
        if isinstance(enterprise_id, bool) or not isinstance(enterprise_id, int):
            raise TypeError("enterprise_id must be an int")
        if enterprise_id < 1:
            raise ValueError(f"enterprise_id must be a positive PEN, got {enterprise_id}")
        self._sd_id = f"kroonika@{enterprise_id}"
        self._head = f" {host} {app} {proc} "
        if body == "json":
            self._body: Callable[[Mapping[str, Any]], str] = render_json
        elif body == "cef":
            self._body = CefRenderer(product_version=product_version)
        else:
            raise ValueError(f"body must be 'json' or 'cef', got {body!r}")

    @property
    def sd_id(self) -> str:
        """The SD-ID of the structured-data element (``kroonika@<PEN>``)."""
        return self._sd_id

    def structured_data(self, event: Mapping[str, Any]) -> str:
        """The SD-ELEMENT for ``event``."""
        params: list[str] = [self._sd_id]
        add = params.append
        for name, value in (
            ("id", event.get("id")),
            ("seq", event.get("seq")),
            ("stream", event.get("stream")),
            ("type", event.get("type")),
            ("category", event.get("category")),
            ("outcome", event.get("outcome")),
            ("reason", event.get("reason")),
            ("actor", part(event, "actor").get("pseudonym")),
            ("src", part(event, "source").get("ip")),
            ("requestId", part(event, "correlation").get("request_id")),
        ):
            if isinstance(value, str):
                add(f'{name}="{escape_param_value(value)}"')
            elif isinstance(value, int) and not isinstance(value, bool):
                add(f'{name}="{value}"')
        return f"[{' '.join(params)}]"

    def __call__(self, event: Mapping[str, Any]) -> str:
        category = event.get("category")
        facility = (
            FACILITY_BY_CATEGORY.get(category, _OTHER_FACILITY)
            if isinstance(category, str)
            else _OTHER_FACILITY
        )
        severity_name = event.get("severity")
        severity = SYSLOG_SEVERITY.get(
            severity_name if isinstance(severity_name, str) else DEFAULT_SEVERITY,
            SYSLOG_SEVERITY[DEFAULT_SEVERITY],
        )
        time = event.get("time")
        timestamp = time if isinstance(time, str) and time and set(time) <= _TIME_CHARS else "-"
        etype = event.get("type")
        msgid = _header_field(clean(etype), 32) if isinstance(etype, str) else "-"
        return (
            f"<{facility * 8 + severity}>1 {timestamp}{self._head}{msgid} "
            f"{self.structured_data(event)} {self._body(event)}"
        )


def render_rfc5424(
    event: Mapping[str, Any],
    *,
    hostname: str,
    app_name: str = "kroonika",
    procid: str = "-",
    body: Literal["json", "cef"] = "json",
    enterprise_id: int = EXAMPLE_ENTERPRISE_ID,
) -> str:
    """Render one event; sinks should build one :class:`Rfc5424Renderer` and reuse it."""
    renderer = Rfc5424Renderer(
        hostname=hostname, app_name=app_name, procid=procid, body=body, enterprise_id=enterprise_id
    )
    return renderer(event)


def frame_octet_counted(msg: bytes) -> bytes:
    """Frame one message for TCP by octet counting: ``MSG-LEN SP SYSLOG-MSG`` (RFC 6587 3.4.1)."""
    return b"%d %b" % (len(msg), msg)
