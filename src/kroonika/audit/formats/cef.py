"""ArcSight Common Event Format (CEF) version 0 records.

Follows "Implementing ArcSight Common Event Format (CEF)", revision 25 (Micro Focus, 2017):

* Header ``CEF:0|Kroonika|Kroonika|<version>|<signature id>|<name>|<severity>|``: in header
  fields ``\\`` becomes ``\\\\`` and ``|`` becomes ``\\|``; CR and LF (not allowed there) become
  a space. Signature id is the event type; name is ``<type> <outcome>[: <reason>]``; severity is
  0..10 (debug 0, info 2, notice 3, warning 5, error 7, critical 9, alert 10).
* Extension ``key=value`` pairs separated by one space: in values ``\\`` becomes ``\\\\``, ``=``
  becomes ``\\=``, CR becomes ``\\r`` and LF becomes ``\\n``. Keys are fixed ASCII names.

Before escaping, values pass :func:`kroonika.audit.formats._text.clean` (CR and LF kept for the
extension): ANSI sequences, other C0 controls, DEL and C1 controls are removed.

Extension keys: ``rt`` (epoch ms), ``externalId`` (event id), ``act`` (type), ``cat``
(category), ``outcome``, ``reason``, ``suser`` (pseudonym), ``spriv`` (roles), ``src``, ``spt``,
``slat``/``slong``, ``requestClientApplication`` (user agent), ``request`` (admin route),
``cn1`` seq, ``cs1`` stream, ``cs2`` request id, ``cs3`` flow id, ``cs4`` target
(``type:id``), ``cs5`` trace id, ``cs6`` details (compact JSON), ``flexString1`` threat
indicators, each custom field with its ``…Label``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Final

from kroonika.audit.formats._text import (
    CEF_SEVERITY,
    DEFAULT_SEVERITY,
    clean,
    clean_keep_crlf,
    clean_obj,
    dumps,
    epoch_ms,
    part,
    product_version,
)

__all__ = ["CefRenderer", "escape_extension", "escape_header", "render_cef"]

_HEADER_ESCAPES: Final = str.maketrans({"\\": "\\\\", "|": "\\|"})
_EXT_ESCAPES: Final = str.maketrans({"\\": "\\\\", "=": "\\=", "\r": "\\r", "\n": "\\n"})


def escape_header(value: str) -> str:
    """Clean ``value`` and escape it for a CEF header field."""
    value = clean(value)
    if "\\" in value or "|" in value:
        return value.translate(_HEADER_ESCAPES)
    return value


def escape_extension(value: str) -> str:
    """Clean ``value`` (keeping CR/LF) and escape it for a CEF extension value."""
    if value.isprintable():
        if "\\" in value or "=" in value:
            return value.replace("\\", "\\\\").replace("=", "\\=")
        return value
    return clean_keep_crlf(value).translate(_EXT_ESCAPES)


def _scalar(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


class CefRenderer:
    """Render events as CEF:0 records for one product version."""

    __slots__ = ("_prefix",)

    def __init__(self, *, product_version: str | None = None) -> None:
        version = product_version if product_version is not None else _default_version()
        self._prefix = f"CEF:0|Kroonika|Kroonika|{escape_header(version)}|"

    def __call__(self, event: Mapping[str, Any]) -> str:
        etype = event.get("type")
        etype_s = etype if isinstance(etype, str) else "unknown"
        outcome = event.get("outcome")
        outcome_s = outcome if isinstance(outcome, str) else "unknown"
        reason = event.get("reason")
        name = f"{etype_s} {outcome_s}"
        if isinstance(reason, str):
            name = f"{name}: {reason}"
        severity = event.get("severity")
        sev = CEF_SEVERITY.get(severity if isinstance(severity, str) else DEFAULT_SEVERITY, 2)

        ext: list[str] = []
        add = ext.append
        if (rt := epoch_ms(event.get("time"))) is not None:
            add(f"rt={rt}")
        if (eid := _scalar(event.get("id"))) is not None:
            add(f"externalId={escape_extension(eid)}")
        add(f"act={escape_extension(etype_s)}")
        if (category := _scalar(event.get("category"))) is not None:
            add(f"cat={escape_extension(category)}")
        add(f"outcome={escape_extension(outcome_s)}")
        if isinstance(reason, str):
            add(f"reason={escape_extension(reason)}")

        actor = part(event, "actor")
        if (pseudonym := _scalar(actor.get("pseudonym"))) is not None:
            add(f"suser={escape_extension(pseudonym)}")
        roles = actor.get("roles")
        if isinstance(roles, list | tuple) and roles:
            add(f"spriv={escape_extension(','.join(str(r) for r in roles))}")

        source = part(event, "source")
        if (ip := _scalar(source.get("ip"))) is not None:
            add(f"src={escape_extension(ip)}")
        if (port := _scalar(source.get("port"))) is not None:
            add(f"spt={escape_extension(port)}")
        geo = part(source, "geo")
        if (lat := _scalar(geo.get("lat"))) is not None:
            add(f"slat={escape_extension(lat)}")
        if (lon := _scalar(geo.get("lon"))) is not None:
            add(f"slong={escape_extension(lon)}")
        if (ua := _scalar(source.get("user_agent"))) is not None:
            add(f"requestClientApplication={escape_extension(ua)}")

        details = part(event, "details")
        if (route := _scalar(details.get("route"))) is not None:
            add(f"request={escape_extension(route)}")

        if (seq := _scalar(event.get("seq"))) is not None:
            add(f"cn1={escape_extension(seq)}")
            add("cn1Label=seq")
        if (stream := _scalar(event.get("stream"))) is not None:
            add(f"cs1={escape_extension(stream)}")
            add("cs1Label=stream")
        correlation = part(event, "correlation")
        if (request_id := _scalar(correlation.get("request_id"))) is not None:
            add(f"cs2={escape_extension(request_id)}")
            add("cs2Label=requestId")
        if (flow_id := _scalar(correlation.get("flow_id"))) is not None:
            add(f"cs3={escape_extension(flow_id)}")
            add("cs3Label=flowId")
        target = part(event, "target")
        if target:
            ttype = _scalar(target.get("type")) or ""
            tid = _scalar(target.get("id")) or ""
            add(f"cs4={escape_extension(f'{ttype}:{tid}')}")
            add("cs4Label=target")
        if (trace_id := _scalar(correlation.get("trace_id"))) is not None:
            add(f"cs5={escape_extension(trace_id)}")
            add("cs5Label=traceId")
        if details:
            add(f"cs6={escape_extension(dumps(clean_obj(details)))}")
            add("cs6Label=details")
        threat = event.get("threat")
        if isinstance(threat, list | tuple) and threat:
            indicators = ",".join(
                str(m.get("indicator", "")) for m in threat if isinstance(m, Mapping)
            )
            add(f"flexString1={escape_extension(indicators)}")
            add("flexString1Label=threatIndicators")

        return f"{self._prefix}{escape_header(etype_s)}|{escape_header(name)}|{sev}|{' '.join(ext)}"


def _default_version() -> str:
    return product_version()


@functools.cache
def _default_renderer() -> CefRenderer:
    return CefRenderer()


def render_cef(event: Mapping[str, Any]) -> str:
    """Render ``event`` as one CEF:0 record, with the installed Kroonika version."""
    return _default_renderer()(event)
