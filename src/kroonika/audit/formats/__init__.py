"""Renderers that turn one decoded audit event into one SIEM record.

Each renderer is a pure function ``(Mapping[str, Any]) -> str`` returning exactly one record
without a trailing newline, in which no value can forge another record: CR, LF, other C0
controls, DEL, C1 controls and ANSI escape sequences are escaped (JSON) or removed (text
formats). Estonian letters and emoji pass unchanged (UTF-8).

========  ==================================================  ====================
name      format                                              module
========  ==================================================  ====================
json      native ``kroonika.audit/1`` JSON                    :mod:`.native`
ecs       Elastic Common Schema 8.x                           :mod:`.ecs`
ocsf      OCSF 1.3.0                                          :mod:`.ocsf`
cef       ArcSight CEF:0                                      :mod:`.cef`
leef      IBM QRadar LEEF:2.0 (tab-delimited)                 :mod:`.leef`
========  ==================================================  ====================

RFC 5424 syslog (:mod:`.rfc5424`) wraps ``json`` or ``cef`` and needs a hostname, so it is
built with :class:`Rfc5424Renderer` rather than looked up in :data:`RENDERERS`.

Errors::

    ValueError
     └── UnknownFormat      render() was given a name not in RENDERERS
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

from kroonika.audit.formats.cef import CefRenderer, render_cef
from kroonika.audit.formats.ecs import ECS_VERSION, ecs_document, render_ecs
from kroonika.audit.formats.leef import LeefRenderer, render_leef
from kroonika.audit.formats.native import render_json
from kroonika.audit.formats.ocsf import OCSF_VERSION, ocsf_event, render_ocsf
from kroonika.audit.formats.rfc5424 import (
    Rfc5424Renderer,
    frame_octet_counted,
    render_rfc5424,
)

__all__ = [
    "ECS_VERSION",
    "OCSF_VERSION",
    "RENDERERS",
    "CefRenderer",
    "LeefRenderer",
    "Renderer",
    "Rfc5424Renderer",
    "UnknownFormat",
    "ecs_document",
    "frame_octet_counted",
    "ocsf_event",
    "render",
    "render_cef",
    "render_ecs",
    "render_json",
    "render_leef",
    "render_ocsf",
    "render_rfc5424",
]

#: A renderer: one decoded event in, one record out.
Renderer = Callable[[Mapping[str, Any]], str]

#: Format name -> renderer.
RENDERERS: Final[Mapping[str, Renderer]] = MappingProxyType(
    {
        "cef": render_cef,
        "ecs": render_ecs,
        "json": render_json,
        "leef": render_leef,
        "ocsf": render_ocsf,
    }
)


class UnknownFormat(ValueError):
    """The format name is not one of :data:`RENDERERS`."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown audit format {name!r}; known: {', '.join(sorted(RENDERERS))}")
        self.name = name


def render(fmt: str, event: Mapping[str, Any]) -> str:
    """Render ``event`` in format ``fmt`` (a key of :data:`RENDERERS`)."""
    try:
        renderer = RENDERERS[fmt]
    except KeyError:
        raise UnknownFormat(fmt) from None
    return renderer(event)
