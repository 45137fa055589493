"""The public API of kroonika.audit.formats does not drift."""

from __future__ import annotations

import pytest
from format_samples import TYPICAL

import kroonika.audit.formats as formats
from kroonika.audit.formats import (
    RENDERERS,
    LeefRenderer,
    Rfc5424Renderer,
    UnknownFormat,
    frame_octet_counted,
    render,
)


def test_exported_names_do_not_drift() -> None:
    """__all__ lists exactly the documented names (its order is ruff RUF022's isort-style)."""
    assert len(formats.__all__) == len(set(formats.__all__))
    assert set(formats.__all__) == {
        "CefRenderer", "ECS_VERSION", "LeefRenderer", "OCSF_VERSION", "RENDERERS", "Renderer",
        "Rfc5424Renderer", "UnknownFormat", "ecs_document", "frame_octet_counted", "ocsf_event",
        "render", "render_cef", "render_ecs", "render_json", "render_leef", "render_ocsf",
        "render_rfc5424",
    }  # fmt: skip


def test_registry_names() -> None:
    """RENDERERS offers json, ecs, ocsf, cef and leef."""
    assert sorted(RENDERERS) == ["cef", "ecs", "json", "leef", "ocsf"]


def test_render_unknown_format() -> None:
    """An unknown format name raises UnknownFormat, a ValueError."""
    with pytest.raises(UnknownFormat) as info:
        render("xml", TYPICAL)
    assert isinstance(info.value, ValueError)
    assert info.value.name == "xml"


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_one_record_without_trailing_newline(fmt: str) -> None:
    """Each renderer returns one line with no trailing newline."""
    out = render(fmt, TYPICAL)
    assert "\n" not in out
    assert out == out.strip()


def test_empty_event_renders() -> None:
    """Renderers cope with an event that has none of the optional keys."""
    for renderer in RENDERERS.values():
        assert renderer({})
    assert Rfc5424Renderer(hostname="h")({}).startswith("<190>1 - h kroonika - - [kroonika@32473]")


def test_octet_counting_frame() -> None:
    """RFC 6587 3.4.1: MSG-LEN SP SYSLOG-MSG, length in octets."""
    assert frame_octet_counted("<14>1 - - - - - - õ".encode()) == b"20 <14>1 - - - - - - \xc3\xb5"


def test_rfc5424_priority_and_header() -> None:
    """auth.login warning is authpriv (10) * 8 + warning (4) = 84, MSGID is the type."""
    out = Rfc5424Renderer(hostname="kroonika-1", procid="12")(TYPICAL)
    assert out.startswith("<84>1 2026-11-27T05:23:23.123456Z kroonika-1 kroonika 12 auth.login [")
    assert "\ufeff" not in out


def test_rfc5424_msgid_is_cut_to_32_printable_ascii() -> None:
    """MSGID keeps only PRINTUSASCII and at most 32 characters."""
    out = Rfc5424Renderer(hostname="h")({"type": "a.b c" + "x" * 40})
    assert out.split(" ")[5] == ("a.bc" + "x" * 40)[:32]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hostname": ""},
        {"hostname": "has space"},
        {"hostname": "h", "app_name": "x" * 49},
        {"hostname": "h", "enterprise_id": 0},
        {"hostname": "h", "body": "xml"},
    ],
)
def test_rfc5424_bad_configuration_is_refused(kwargs: dict[str, object]) -> None:
    """Bad header fields, PEN or body are refused when the renderer is built."""
    with pytest.raises(ValueError, match=r"."):
        Rfc5424Renderer(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("delimiter", ["", "=", "|", "a", "\t\t", "€"])
def test_leef_bad_delimiter_is_refused(delimiter: str) -> None:
    """Unusable LEEF delimiters are refused when the renderer is built."""
    with pytest.raises(ValueError, match="delimiter"):
        LeefRenderer(delimiter=delimiter)
