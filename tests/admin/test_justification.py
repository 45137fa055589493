"""The mandatory justification of mutating admin calls: length, plain text, ticket pattern."""

from __future__ import annotations

import threading

import pytest

from kroonika.admin import (
    JustificationMissing,
    PersonalCodeInText,
    check_justification,
    refuse_personal_code,
)
from kroonika.settings import Settings


def test_a_long_enough_justification_is_returned_stripped() -> None:
    """Surrounding white space is removed; the text itself is kept."""
    assert check_justification("  INC-1 rotating keys  ", minimum=10, pattern=None) == (
        "INC-1 rotating keys"
    )


@pytest.mark.parametrize("text", [None, "", "   ", "too short", " 123456789 "])
def test_missing_or_short_justifications_are_refused(text: str | None) -> None:
    """Nothing, white space, or fewer than the minimum characters after stripping."""
    with pytest.raises(JustificationMissing) as err:
        check_justification(text, minimum=10, pattern=None)
    assert err.value.code == "justification_required"
    assert err.value.status == 400


def test_exactly_the_minimum_is_enough() -> None:
    """The minimum is inclusive."""
    assert check_justification("x" * 10, minimum=10, pattern=None) == "x" * 10


@pytest.mark.parametrize(
    "text",
    [
        "line one\x00 hidden",
        "bell \x07 in the text",
        "x" * 2001,
        "x" * 1_000_000,
        "INC-1 forged\r\nsecond line",
        "INC-1 8-bit CSI \x9b31m red",
        "INC-1 approved \u202edesrever",
        "INC-1 isolate \u2066hidden\u2069",
        "INC-1 zero\u200bwidth",
        "INC-1 line\u2028separator",
        "INC-1 tag \U000e0041 character",
    ],
)
def test_control_characters_and_huge_texts_are_refused(text: str) -> None:
    """A justification is plain text of at most 2000 characters: no NUL, CR, terminal codes
    (7- or 8-bit), bidi controls, invisible or line-separator characters."""
    with pytest.raises(JustificationMissing):
        check_justification(text, minimum=10, pattern=None)


def test_estonian_letters_and_other_scripts_are_plain_text() -> None:
    """Printable text in any script is kept as written."""
    text = "INC-7 õigustatud päring, žürii šokk, Привет"
    assert check_justification(text, minimum=10, pattern=None) == text


def test_new_lines_and_tabs_are_plain_text() -> None:
    """Line breaks and tabs are allowed (people paste ticket text)."""
    text = "INC-7 revoking\n\tafter the phishing report"
    assert check_justification(text, minimum=10, pattern=None) == text


def test_a_ticket_pattern_must_match_somewhere() -> None:
    """With a pattern, the text must contain a match; the refusal says ticket_required."""
    pattern = r"\b(INC|CHG)-\d+\b"
    assert check_justification("per CHG-42 approved change", minimum=10, pattern=pattern)
    with pytest.raises(JustificationMissing) as err:
        check_justification("no ticket named here", minimum=10, pattern=pattern)
    assert err.value.code == "ticket_required"


def test_a_ticket_pattern_cannot_stall_the_service() -> None:
    """Patterns are matched in time linear in the justification: one that a backtracking
    engine takes exponential time on (here about 2**1990 steps) answers at once. The
    thread's 60 s allowance is not a speed measurement: without the linear engine this
    would not finish in the age of the universe."""
    pattern = r"^(a+)+$"
    text = "a" * 1990 + "!"
    outcome: list[str] = []

    def check() -> None:
        try:
            check_justification(text, minimum=10, pattern=pattern)
        except JustificationMissing as exc:
            outcome.append(exc.code)

    worker = threading.Thread(target=check, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert outcome == ["ticket_required"]


def test_settings_refuse_a_ticket_pattern_the_engine_cannot_take() -> None:
    """A look-around pattern in the settings is a clear error at start, not at the first
    justification."""
    with pytest.raises(ValueError, match="RE2"):
        Settings(admin_ticket_pattern=r"(?=INC)INC-\d+")


@pytest.mark.parametrize(
    "text",
    [
        "INC-7 called 38001085718 about the refund",
        "INC-7 person EE38001085718",
        "INC-7 person PNOEE-60001019906",
        "INC-7 ４７１０１０１００３３",
        "INC-7\nisikukood:37101010021",
    ],
)
def test_a_personal_code_in_a_justification_is_refused_without_echo(text: str) -> None:
    """A valid personal code, with or without its prefix: 400 personal_code_in_text,
    a message that names the pseudonym instead, and no digit of the code in it."""
    with pytest.raises(PersonalCodeInText) as err:
        check_justification(text, minimum=10, pattern=None)
    assert (err.value.status, err.value.code) == (400, "personal_code_in_text")
    message = str(err.value)
    assert "pseudonym (subject_ref)" in message
    assert not any(c.isdigit() for c in message)


@pytest.mark.parametrize(
    "text",
    [
        "INC-7 mistyped 38001085719",  # wrong check digit
        "INC-7 order 138001085718",  # twelve digits
        "INC-7 request 00000000-0000-0000-0000-0008db5e45b6",
        "INC-7 about p1:nPqtCXKCN3IXemrliWETLodi",
    ],
)
def test_numbers_that_are_no_personal_code_are_kept(text: str) -> None:
    """Only a valid code is refused: the same text with no valid code passes as it is."""
    assert check_justification(text, minimum=10, pattern=None) == text


def test_free_text_of_any_field_is_checked_with_its_name() -> None:
    """``refuse_personal_code`` names the field, never the value; None and clean text pass."""
    refuse_personal_code(None, "reason")
    refuse_personal_code("phishing report INC-7", "reason")
    with pytest.raises(PersonalCodeInText, match=r"^the reason holds a personal code"):
        refuse_personal_code("asked by 38001085718", "reason")
