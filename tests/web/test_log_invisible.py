"""The operational log shows every non-printable character escaped, invisible ones included."""

from __future__ import annotations

import logging
import random
import sys

import pytest

from kroonika.cli_service import OneLineFormatter

FORMAT = OneLineFormatter("%(levelname)s %(name)s %(message)s")

#: Zero-width and other invisible format characters, bidi marks, tag characters, the soft
#: hyphen, non-ASCII spaces, private use and unassigned code points, and what was escaped before.
UNPRINTABLE = [
    *"\u200b\u200c\u200d\ufeff\u2060\u2061\u2062\u2063\u2064\u180e\u00ad\u200e\u200f\u061c",
    "\U000e0001",
    "\U000e0041",
    "\U000e007f",
    *"\u00a0\u3000\ue000\u0378\uffff",
    *"\r\n\t\x1b\x00\x7f\x85\x9b\u2028\u2029\u202e\u2066",
]


def _random_unprintable(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    found: list[str] = []
    while len(found) < count:
        ch = chr(rng.randrange(sys.maxunicode + 1))
        if not ch.isprintable():
            found.append(ch)
    return found


def _line(path: str) -> str:
    record = logging.LogRecord(
        "kroonika.web.access", logging.INFO, __file__, 1, "GET %s 404", (path,), None
    )
    return FORMAT.format(record)


def _escaped(ch: str) -> str:
    cp = ord(ch)
    if cp < 0x100:
        return f"\\x{cp:02x}"
    return f"\\u{cp:04x}" if cp < 0x10000 else f"\\U{cp:08x}"


@pytest.mark.parametrize(
    "ch", UNPRINTABLE + _random_unprintable(6), ids=lambda c: f"U+{ord(c):04X}"
)
def test_an_unprintable_character_in_a_path_is_shown_escaped(ch: str) -> None:
    """The character is absent, its escape is there, and the record is one printable line."""
    line = _line(f"/admin{ch}/users")
    assert ch not in line
    assert line == f"INFO kroonika.web.access GET /admin{_escaped(ch)}/users 404"
    assert line.isprintable()


def test_a_disguised_admin_path_is_visible() -> None:
    """A zero-width space and a word joiner that hide in a decoded path are shown."""
    line = _line("/ad\u200bmin/\u2060keys")
    assert line.endswith("GET /ad\\u200bmin/\\u2060keys 404")


def test_letters_and_emoji_are_kept_and_only_the_joiner_escaped() -> None:
    """Estonian, Cyrillic, CJK and emoji pass; an emoji sequence shows its joiner escaped."""
    line = _line("/Tõnu/Жанна/漢字/🇪🇪👍🏽/👩\u200d💻")
    assert line.endswith("GET /Tõnu/Жанна/漢字/🇪🇪👍🏽/👩\\u200d💻 404")
