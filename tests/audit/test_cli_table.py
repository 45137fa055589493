"""The table of `kroonika audit query` and `tail`: one display line per record, whatever it
holds."""

from __future__ import annotations

import copy
import random
import sys
from typing import Any

import pytest

from kroonika.cli import _table_row

RECORD: dict[str, Any] = {
    "time": "2026-11-27T05:23:23.123456Z",
    "stream": "web-1",
    "seq": 42,
    "type": "auth.login",
    "outcome": "failure",
    "actor": {"type": "user", "pseudonym": "p1:3q2-7wXyZ"},
    "source": {"ip": "192.0.2.0"},
    "reason": "id_token.nonce_mismatch",
}

#: Invisible characters, controls, line and paragraph separators, bidi controls, a non-ASCII
#: space, private use and unassigned code points (the last two drawn at random).
UNPRINTABLE = [
    *"\u200b\u200c\u200d\ufeff\u2060\u2061\u2062\u2063\u2064\u180e\u00ad\u200e\u200f\u061c",
    "\U000e0001",
    "\U000e0041",
    "\U000e007f",
    *"\r\n\t\x0b\x0c\x1b\x00\x07\x7f\x85\x9b\u2028\u2029\u202e\u2066\u00a0\ue000\u0378",
    *(ch for ch in map(chr, (0x5FFFE, 0x10FFFF)) if not ch.isprintable()),
]
_FIELDS: list[tuple[str, ...]] = [
    ("time",),
    ("stream",),
    ("type",),
    ("outcome",),
    ("actor", "pseudonym"),
    ("source", "ip"),
    ("reason",),
]


def _with(path: tuple[str, ...], value: str) -> dict[str, Any]:
    doc = copy.deepcopy(RECORD)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def test_a_plain_record_keeps_the_column_layout() -> None:
    """Time, stream#seq, type padded to 26, outcome padded to 7, actor, source, reason."""
    assert _table_row(RECORD) == (
        "2026-11-27T05:23:23.123456  web-1#42  auth.login                  failure"
        "  p1:3q2-7wXyZ  192.0.2.0  id_token.nonce_mismatch"
    )


@pytest.mark.parametrize("path", _FIELDS, ids=lambda p: ".".join(p))
@pytest.mark.parametrize("ch", UNPRINTABLE, ids=lambda c: f"U+{ord(c):04X}")
def test_no_value_puts_an_unprintable_character_in_the_row(ch: str, path: tuple[str, ...]) -> None:
    """Whatever field holds the character, the row is one printable line without it."""
    row = _table_row(_with(path, f"x{ch}õ{ch}"))
    assert ch not in row
    assert row.isprintable()
    assert len(row.splitlines()) == 1


def test_a_value_cannot_forge_a_row() -> None:
    """A CR/LF and a fake row in a source address stay inside one line."""
    forged = "192.0.2.0\r\n2026-01-01T00:00:00.000000  forged#1  auth.login  success  p1:admin"
    row = _table_row(_with(("source", "ip"), forged))
    assert len(row.splitlines()) == 1
    assert "192.0.2.0  2026-01-01T00:00:00.000000  forged#1" in row


def test_a_value_cannot_send_terminal_escapes() -> None:
    """An OSC title change, BEL and a clear-screen CSI are removed, the text around kept."""
    row = _table_row(_with(("actor", "pseudonym"), "EE38001085718\x1b]0;owned\x07\x1b[2J"))
    assert "\x1b" not in row
    assert "\x07" not in row
    assert "owned" not in row
    assert "  EE38001085718  192.0.2.0  " in row


def test_random_unprintable_code_points_are_dropped() -> None:
    """Every character in a random sample of non-printable code points is dropped."""
    rng = random.Random(1)
    sample = [chr(c) for c in rng.sample(range(sys.maxunicode + 1), 4000)]
    hidden = "".join(ch for ch in sample if not ch.isprintable())
    row = _table_row(_with(("reason",), f"r{hidden}r"))
    assert row.endswith("  rr")
