"""No renderer lets an invisible or otherwise non-printable character through, and a LEEF
delimiter either is refused or leaves every attribute a key=value pair."""

from __future__ import annotations

import copy
import random
import re
import sys
import unicodedata
from typing import Any

import orjson
import pytest
from format_samples import ADMIN_REQUEST, TYPICAL
from hypothesis import given
from hypothesis import strategies as st

from kroonika.audit.formats import RENDERERS, LeefRenderer, Rfc5424Renderer, render_json
from kroonika.audit.formats._text import LINE_BREAKS, clean, clean_keep_crlf, dumps

#: Invisible characters that once passed clean(): zero-width, BOM, word joiner and invisible
#: operators, Mongolian vowel separator, soft hyphen, the joiner, bidi marks, tag characters.
INVISIBLE = [
    "\u200b",
    "\u200c",
    "\u200d",
    "\ufeff",
    *map(chr, range(0x2060, 0x2065)),
    "\u180e",
    "\u00ad",
    "\u200e",
    "\u200f",
    "\u061c",
    "\U000e0001",
    "\U000e0020",
    "\U000e0041",
    "\U000e007f",
]
#: Non-ASCII spaces (shown as a space), private use, unassigned, and what was handled before.
OTHER = [
    "\u00a0",
    "\u3000",
    "\ue000",
    "\U0010fffd",
    "\u0378",
    "\uffff",
    "\r",
    "\n",
    "\x1b",
    "\x00",
    "\x7f",
    "\x85",
    "\x9b",
    "\u2028",
    "\u2029",
    "\u202e",
    "\u2066",
]


def _random_unprintable(count: int, stop: int, seed: int = 5424) -> list[str]:
    """``count`` code points below ``stop`` for which ``str.isprintable()`` is False (no lone
    surrogates: orjson cannot encode them, so a decoded record never holds one)."""
    rng = random.Random(seed)
    found: list[str] = []
    while len(found) < count:
        ch = chr(rng.randrange(stop))
        if not ch.isprintable() and not 0xD800 <= ord(ch) <= 0xDFFF and ch not in found:
            found.append(ch)
    return found


UNPRINTABLE = [
    *INVISIBLE,
    *OTHER,
    *_random_unprintable(4, 0x10000),
    *_random_unprintable(4, sys.maxunicode + 1),
]
IDS = [f"U+{ord(ch):04X}" for ch in UNPRINTABLE]

_PATHS: list[tuple[str | int, ...]] = [
    ("id",),
    ("type",),
    ("reason",),
    ("stream",),
    ("actor", "pseudonym"),
    ("actor", "roles", 0),
    ("source", "ip"),
    ("source", "user_agent"),
    ("source", "geo", "city"),
    ("target", "id"),
    ("correlation", "request_id"),
    ("correlation", "trace_id"),
    ("details", "method"),
]


def _hostile(ch: str) -> dict[str, Any]:
    """TYPICAL with ``ch`` inside every user-controlled string (and as a details key)."""
    event = copy.deepcopy(TYPICAL)
    for path in _PATHS:
        node: Any = event
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = f"a{ch}b{node[path[-1]]}{ch}"
    event["details"][f"k{ch}"] = f"v{ch}"
    return event


def _renderers() -> dict[str, Any]:
    return {
        **RENDERERS,
        "leef^": LeefRenderer(delimiter="^", product_version="1"),
        "rfc5424-json": Rfc5424Renderer(hostname="h", body="json"),
        "rfc5424-cef": Rfc5424Renderer(hostname="h", body="cef"),
    }


@pytest.mark.parametrize("ch", UNPRINTABLE, ids=IDS)
def test_clean_removes_or_spaces_every_unprintable_character(ch: str) -> None:
    """clean() leaves no non-printable character: it is dropped or becomes one space."""
    out = clean(f"a{ch}õ")  # õ cannot end an escape sequence
    assert out in ("aõ", "a õ")
    assert out.isprintable()


@pytest.mark.parametrize("ch", UNPRINTABLE, ids=IDS)
def test_clean_keep_crlf_keeps_only_cr_and_lf(ch: str) -> None:
    """clean_keep_crlf() drops every non-printable character except CR and LF."""
    out = clean_keep_crlf(f"a{ch}õ")
    if ch in "\r\n":
        assert out == f"a{ch}õ"
    else:
        assert out in ("aõ", "a õ")


def _reference_clean(value: str, keep: str = "") -> str:
    """Slow reference: character by character, by ``str.isprintable()`` and the category."""
    out = []
    for ch in value:
        if ch.isprintable() or ch in keep:
            out.append(ch)
        elif ch in LINE_BREAKS or unicodedata.category(ch)[0] == "Z":
            out.append(" ")
    return "".join(out)


#: Any text but ESC and the 8-bit CSI (so no ANSI sequence is removed as a whole) and lone
#: surrogates (orjson cannot encode them, so a decoded record never holds one).
_NO_ANSI = st.text(st.characters(exclude_characters="\x1b\x9b", exclude_categories=["Cs"]))


@given(_NO_ANSI)
def test_clean_agrees_with_the_slow_reference(value: str) -> None:
    """clean() and clean_keep_crlf() equal a per-character reference on any text."""
    assert clean(value) == _reference_clean(value)
    assert clean_keep_crlf(value) == _reference_clean(value, "\r\n")


@given(st.recursive(_NO_ANSI, lambda inner: st.dictionaries(_NO_ANSI, inner, max_size=3)))
def test_dumps_escapes_every_unprintable_character_and_keeps_the_value(value: Any) -> None:
    """dumps() output is printable and decodes to the same value."""
    out = dumps(value)
    assert out.isprintable()
    assert orjson.loads(out) == value


@pytest.mark.parametrize(
    "text",
    [
        "Tõnu Õun, Jüri Šõšõ Žürii äöü ÕÄÖÜŠŽ",
        "Жанна Кузнецова",
        "漢字かなカナ 한국어",
        "مرحبا",
        "🇪🇪 👍🏽 🎉",
        "plain ASCII !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
    ],
)
def test_clean_keeps_printable_text(text: str) -> None:
    """Estonian letters, other scripts and emoji are unchanged."""
    assert clean(text) == text
    assert clean(text + "\u200b") == text


def test_clean_splits_emoji_sequences_at_the_joiner() -> None:
    """An emoji ZWJ sequence keeps its emoji and loses only the invisible joiner."""
    assert clean("👩\u200d💻 Tõnu") == "👩💻 Tõnu"
    assert clean("\U0001f3f4\U000e0067\U000e0062\U000e007f") == "\U0001f3f4"


def test_clean_turns_non_ascii_spaces_into_a_space() -> None:
    """NO-BREAK SPACE and other separators become an ASCII space, not nothing."""
    assert clean("Jüri\u00a0Õun\u2003Tallinn\u3000EE") == "Jüri Õun Tallinn EE"


@pytest.mark.parametrize("name", sorted(_renderers()))
@pytest.mark.parametrize("ch", UNPRINTABLE, ids=IDS)
def test_no_renderer_emits_an_unprintable_character(ch: str, name: str) -> None:
    """Every record is one line without the character (LEEF's TAB delimiter aside)."""
    out = _renderers()[name](_hostile(ch))
    assert ch not in out
    assert len(out.splitlines()) == 1
    assert (out.replace("\t", "") if name == "leef" else out).isprintable()


@pytest.mark.parametrize("ch", UNPRINTABLE, ids=IDS)
def test_native_json_escapes_and_keeps_every_value(ch: str) -> None:
    """The record of truth escapes the character as ``\\uXXXX`` and decodes to the same event."""
    event = _hostile(ch)
    assert orjson.loads(render_json(event)) == event


_KEY = re.compile(r"[A-Za-z]+")


def _attributes(record: str, delimiter: str) -> dict[str, str]:
    """The key=value attributes of a LEEF:2.0 record (its header has 6 ``|``-ended fields)."""
    body = record.split("|", 6)[6]
    pairs: dict[str, str] = {}
    for pair in body.split(delimiter):
        key, eq, value = pair.partition("=")
        assert eq, f"attribute without a key: {pair!r}"
        assert _KEY.fullmatch(key), f"bad attribute key {key!r} in {pair!r}"
        assert key not in pairs
        pairs[key] = value
    return pairs


_NEGATIVE = {**TYPICAL, "seq": -1}


@pytest.mark.parametrize(
    "delimiter",
    [chr(c) for c in range(0x80) if not chr(c).isalnum()],
    ids=lambda d: f"x{ord(d):02x}",
)
@pytest.mark.parametrize(
    "event", [TYPICAL, ADMIN_REQUEST, _NEGATIVE], ids=["typical", "admin", "negative"]
)
def test_leef_delimiter_is_refused_or_every_attribute_parses(
    delimiter: str, event: dict[str, Any]
) -> None:
    """A delimiter is refused when built, or the record splits into the expected pairs."""
    try:
        renderer = LeefRenderer(delimiter=delimiter, product_version="1")
    except ValueError:
        with pytest.raises(ValueError, match=r"^(unusable )?LEEF delimiter"):
            LeefRenderer(delimiter=delimiter, product_version="1")
        return
    record = renderer(event)
    assert len(record.splitlines()) == 1
    expected = _attributes(LeefRenderer(product_version="1")(event), "\t")
    parsed = _attributes(record, delimiter)
    assert parsed == {key: value.replace(delimiter, " ") for key, value in expected.items()}
    assert parsed["devTime"] == expected["devTime"]
    assert parsed["devTimeFormat"] == "yyyy-MM-dd HH:mm:ss.SSS Z"


@pytest.mark.parametrize("delimiter", [":", "-", ".", "+"])
def test_leef_delimiters_found_in_fixed_values_are_refused(delimiter: str) -> None:
    """``:``, ``-``, ``.`` and ``+`` occur in devTime, numbers and addresses: refused at build."""
    with pytest.raises(ValueError, match="devTime"):
        LeefRenderer(delimiter=delimiter)


@pytest.mark.parametrize("delimiter", ["\n", "\r", "\x0b", "\x0c", "\x1c", "\x1e", "\x1b", "\x00"])
def test_leef_line_breaking_or_escaping_delimiters_are_refused(delimiter: str) -> None:
    """A delimiter that ends a line or starts a terminal escape is refused at build."""
    with pytest.raises(ValueError, match="delimiter"):
        LeefRenderer(delimiter=delimiter)


@pytest.mark.parametrize("delimiter", ["\xa7", "\xa0", "\x85"])
def test_leef_non_ascii_delimiters_are_refused(delimiter: str) -> None:
    """A non-ASCII delimiter is two bytes in UTF-8, not the declared one: refused at build."""
    with pytest.raises(ValueError, match="one ASCII character"):
        LeefRenderer(delimiter=delimiter)


@pytest.mark.parametrize("delimiter", ["\t", "^", ";", "~", "\x01"])
def test_leef_usual_delimiters_are_accepted(delimiter: str) -> None:
    """TAB (the default), ``^``, ``;``, ``~`` and a C0 control such as SOH still work."""
    record = LeefRenderer(delimiter=delimiter, product_version="1")(TYPICAL)
    assert _attributes(record, delimiter)["src"] == "192.0.2.0"
