"""Properties: no user-controlled string can forge a record, and escaped values parse back."""

from __future__ import annotations

import copy
import re
from typing import Any

import orjson
from format_samples import HOSTILE, TYPICAL
from hypothesis import given, settings
from hypothesis import strategies as st

from kroonika.audit.formats import (
    RENDERERS,
    CefRenderer,
    LeefRenderer,
    Rfc5424Renderer,
    render_json,
)
from kroonika.audit.formats._text import clean, clean_keep_crlf

_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_FORBIDDEN_LEEF = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")  # tab delimits
_HOSTILE_ALPHABET = st.sampled_from(
    [*'\r\n\t\x1b[]|=\\"õäöüšž👍\x00\x7f\x9b\u2028\u202e a1;m', "\x1b[31m", "\x1b]0;x\x07"]
)
hostile_text = st.one_of(st.text(), st.lists(_HOSTILE_ALPHABET).map("".join))

_PATHS: list[tuple[str, ...]] = [
    ("id",),
    ("stream",),
    ("type",),
    ("reason",),
    ("actor", "pseudonym"),
    ("actor", "client_id"),
    ("source", "ip"),
    ("source", "user_agent"),
    ("source", "geo", "city"),
    ("source", "as", "org"),
    ("target", "id"),
    ("correlation", "request_id"),
    ("correlation", "flow_id"),
    ("correlation", "trace_id"),
    ("details", "justification"),
]


def _with(values: list[str]) -> dict[str, Any]:
    event = copy.deepcopy(TYPICAL)
    for path, value in zip(_PATHS, values, strict=True):
        node = event
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return event


events = st.lists(hostile_text, min_size=len(_PATHS), max_size=len(_PATHS)).map(_with)


def _split_header(record: str, count: int) -> tuple[list[str], str]:
    """Split a CEF/LEEF record into its ``count`` header fields (unescaped) and the rest."""
    fields: list[str] = []
    current: list[str] = []
    i = 0
    while len(fields) < count:
        ch = record[i]
        if ch == "\\":
            current.append(record[i + 1])
            i += 2
            continue
        if ch == "|":
            fields.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    return fields, record[i:]


_KEY = re.compile(r"[A-Za-z0-9_]+")


def parse_cef_extension(ext: str) -> dict[str, str]:
    """Parse ``k=v k2=v2``: a value runs to the space before the next unescaped ``key=``."""
    tokens: list[tuple[str, bool]] = []  # (char, escaped)
    i = 0
    unescape = {"\\": "\\", "=": "=", "r": "\r", "n": "\n"}
    while i < len(ext):
        if ext[i] == "\\" and i + 1 < len(ext) and ext[i + 1] in unescape:
            tokens.append((unescape[ext[i + 1]], True))
            i += 2
        else:
            assert ext[i] != "\\", "lone backslash in a CEF extension"
            tokens.append((ext[i], False))
            i += 1
    # positions of unescaped '=' mark keys; the key is the word before it.
    result: dict[str, str] = {}
    key: str | None = None
    start = 0
    eqs = [n for n, (c, esc) in enumerate(tokens) if c == "=" and not esc]
    for n, eq in enumerate(eqs):
        word_start = eq
        while word_start > 0 and not (
            tokens[word_start - 1][0] == " " and not tokens[word_start - 1][1]
        ):
            word_start -= 1
        name = "".join(c for c, _ in tokens[word_start:eq])
        assert _KEY.fullmatch(name), name
        if key is not None:
            result[key] = "".join(c for c, _ in tokens[start : word_start - 1])
        key, start = name, eq + 1
        if n == len(eqs) - 1:
            result[key] = "".join(c for c, _ in tokens[start:])
    return result


def parse_sd_params(record: str, sd_id: str) -> dict[str, str]:
    """Parse the PARAM-VALUEs of the SD-ELEMENT ``sd_id`` (RFC 5424 section 6.3.3)."""
    start = record.index(f"[{sd_id} ") + len(sd_id) + 2
    params: dict[str, str] = {}
    i = start
    while True:
        eq = record.index("=", i)
        name = record[i:eq]
        assert record[eq + 1] == '"'
        j = eq + 2
        value: list[str] = []
        while record[j] != '"':
            if record[j] == "\\" and record[j + 1] in '"\\]':
                value.append(record[j + 1])
                j += 2
            else:
                assert record[j] != "]", "unescaped ] inside a PARAM-VALUE"
                value.append(record[j])
                j += 1
        params[name] = "".join(value)
        if record[j + 1] == "]":
            return params
        assert record[j + 1] == " "
        i = j + 2


@settings(max_examples=200)
@given(events)
def test_no_renderer_emits_a_line_break_or_control(event: dict[str, Any]) -> None:
    """For any strings in user-controlled fields, no record contains CR, LF, ESC or controls."""
    for fmt, renderer in RENDERERS.items():
        out = renderer(event)
        pattern = _FORBIDDEN_LEEF if fmt == "leef" else _FORBIDDEN
        assert not pattern.search(out), fmt
        assert len(out.splitlines()) == 1, fmt
    for body in ("json", "cef"):
        out = Rfc5424Renderer(hostname="h", body=body)(event)  # type: ignore[arg-type]
        assert not _FORBIDDEN.search(out)


@settings(max_examples=200)
@given(events)
def test_json_formats_stay_valid_json_and_native_keeps_values(event: dict[str, Any]) -> None:
    """JSON records decode, and the native one decodes back to the very same event."""
    assert orjson.loads(render_json(event)) == event
    for fmt in ("ecs", "ocsf"):
        orjson.loads(RENDERERS[fmt](event))


@settings(max_examples=300)
@given(events)
def test_cef_header_has_seven_unescaped_pipes_and_extension_parses_back(
    event: dict[str, Any],
) -> None:
    """The CEF header has exactly 7 unescaped pipes; every extension value parses back."""
    out = CefRenderer(product_version="1|0")(event)
    header, ext = _split_header(out, 7)
    assert header[0] == "CEF:0"
    assert header[3] == "1|0"
    assert header[4] == clean(event["type"])
    parsed = parse_cef_extension(ext)
    assert parsed["externalId"] == clean_keep_crlf(event["id"])
    assert parsed["act"] == clean_keep_crlf(event["type"])
    assert parsed["reason"] == clean_keep_crlf(event["reason"])
    assert parsed["suser"] == clean_keep_crlf(event["actor"]["pseudonym"])
    assert parsed["src"] == clean_keep_crlf(event["source"]["ip"])
    assert parsed["requestClientApplication"] == clean_keep_crlf(event["source"]["user_agent"])
    assert parsed["cs1"] == clean_keep_crlf(event["stream"])
    assert parsed["cs2"] == clean_keep_crlf(event["correlation"]["request_id"])
    assert parsed["cs3"] == clean_keep_crlf(event["correlation"]["flow_id"])
    assert parsed["cs4"] == clean_keep_crlf(f"session:{event['target']['id']}")
    assert parsed["cn1"] == "42"
    assert parsed["cs1Label"] == "stream"


@settings(max_examples=300)
@given(events)
def test_rfc5424_sd_params_parse_back(event: dict[str, Any]) -> None:
    """Every SD PARAM-VALUE parses back to the cleaned original."""
    renderer = Rfc5424Renderer(hostname="h", enterprise_id=99999)
    params = parse_sd_params(renderer(event), renderer.sd_id)
    assert params["id"] == clean(event["id"])
    assert params["stream"] == clean(event["stream"])
    assert params["type"] == clean(event["type"])
    assert params["reason"] == clean(event["reason"])
    assert params["actor"] == clean(event["actor"]["pseudonym"])
    assert params["src"] == clean(event["source"]["ip"])
    assert params["requestId"] == clean(event["correlation"]["request_id"])
    assert params["seq"] == "42"


@settings(max_examples=200)
@given(events, st.sampled_from(["\t", "^", "\x01", ";"]))
def test_leef_values_never_contain_the_delimiter(event: dict[str, Any], delimiter: str) -> None:
    """Each LEEF attribute is one key=value: values never contain the declared delimiter."""
    out = LeefRenderer(delimiter=delimiter, product_version="1")(event)
    header, attributes = _split_header(out, 6)
    assert header[4] == clean(event["type"])
    assert header[5] == (delimiter if delimiter.isprintable() else f"x{ord(delimiter):02x}")
    for pair in attributes.split(delimiter):
        key, _, _ = pair.partition("=")
        assert re.fullmatch(r"[A-Za-z]+", key), pair


def test_hostile_sample_keeps_estonian_letters_and_emoji() -> None:
    """Cleaning removes controls but keeps õäöüšž and emoji in every text format."""
    for fmt in ("cef", "leef"):
        out = RENDERERS[fmt](HOSTILE)
        assert "õäöüšž" in out
        assert "👍🏽" in out
        assert "\x1b" not in out
        assert "[31m" not in out


def test_clean_strips_ansi_sequences_and_controls() -> None:
    """clean() drops CSI/OSC sequences and controls, and turns line breaks into spaces."""
    assert clean("a\x1b[1;31mb\x1b[0m\x1b]0;title\x07c\r\nd\x00\x7f\x9b2Je") == "abc  de"
    # the zero-width joiner goes: invisible characters can disguise text
    assert clean("Tõnu 🇪🇪 👨\u200d👩\u200d👧") == "Tõnu 🇪🇪 👨👩👧"
