"""The operational log: one line per record, whatever a client puts in the message."""

from __future__ import annotations

import logging
import sys

from kroonika.cli_service import OneLineFormatter

FORMAT = OneLineFormatter("%(levelname)s %(name)s %(message)s")


def _record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    info = sys.exc_info() if exc else None
    return logging.LogRecord("kroonika.web.access", logging.INFO, __file__, 1, msg, args, info)


def test_control_characters_from_a_client_are_shown_escaped_on_one_line() -> None:
    path = "/a\r\nINFO kroonika.web.access GET /admin 200\x1b[2J\x00\x85"
    line = FORMAT.format(_record("GET %s 404", path))
    for raw in ("\n", "\r", "\x1b", "\x00", "\x85"):
        assert raw not in line
    assert line == (
        "INFO kroonika.web.access GET /a\\x0d\\x0aINFO kroonika.web.access GET /admin 200"
        "\\x1b[2J\\x00\\x85 404"
    )


def test_line_separators_and_bidi_controls_are_escaped_and_letters_kept() -> None:
    line = FORMAT.format(_record("name=%s", "Jüri\u2028Õun\u202e\u2066Жанна"))
    assert line.endswith("name=Jüri\\u2028Õun\\u202e\\u2066Жанна")


def test_a_traceback_keeps_its_lines_after_the_escaped_message() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        text = FORMAT.format(_record("failed for %s", "x\ny", exc=True))
    first, *rest = text.splitlines()
    assert first == "INFO kroonika.web.access failed for x\\x0ay"
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "ValueError: boom"
