"""Personal codes typed into free text (decision 0033): the audit library's finder, and
redact's safety net that keeps them out of the stored bytes of every user-controlled
string (justifications, reasons, details)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from audit_kit import TrailKit
from hypothesis import example, given, settings
from hypothesis import strategies as st
from stdnum.ee import ik

from kroonika.audit import Actor, ActorType, Counters, Target, events
from kroonika.audit.personal_codes import (
    check_digit,
    contains_personal_code,
    is_personal_code,
    redact_personal_codes,
)
from kroonika.audit.processors.redact import Redact
from kroonika.tara import isikukood

#: public TARA test identities (valid check digits)
CODES = ["38001085718", "60001019906", "40404040009", "47101010033", "37101010021"]
#: eleven date-shaped digits whose check digit is wrong (38001085718 with its last digit off)
WRONG_CHECK = "38001085719"


def _valid_codes() -> st.SearchStrategy[str]:
    """Any valid personal code: a century digit, a real date, a serial, its check digit."""
    first_ten = st.from_regex(
        r"[1-6][0-9]{2}(0[1-9]|1[0-2])(0[1-9]|1[0-9]|2[0-8])[0-9]{3}", fullmatch=True
    )
    return first_ten.map(lambda ten: ten + str(check_digit(ten)))


# --- the finder -------------------------------------------------------------------


@pytest.mark.parametrize("code", CODES)
def test_public_test_identities_are_personal_codes(code: str) -> None:
    """The check digit of each public test identity is its last digit."""
    assert is_personal_code(code)
    assert check_digit(code[:10]) == int(code[10])


@pytest.mark.parametrize(
    "digits",
    [WRONG_CHECK, "38013085718", "38002305718", "78001085718", "3800108571", "380010857180",
     "３８００１０８５７１８"],
)  # fmt: skip
def test_what_is_no_personal_code(digits: str) -> None:
    """A wrong check digit, no date, no century digit, a wrong length, non-ASCII digits."""
    assert not is_personal_code(digits)


@example("38001085718")
@example("80403080080")  # python-stdnum reads 7 and 8 as the 2100s; TARA has no such codes
@given(st.text(alphabet="0123456789", min_size=11, max_size=11))
def test_the_audit_library_and_tara_agree_on_any_eleven_digits(digits: str) -> None:
    """kroonika.audit's check and TARA's validate accept exactly the same codes, and both
    agree with python-stdnum except for its 2100s."""
    try:
        isikukood.validate(digits)
    except isikukood.InvalidPersonalCode:
        valid = False
    else:
        valid = True
    assert is_personal_code(digits) == valid
    assert valid == (ik.is_valid(digits) and digits[0] not in "78")


@pytest.mark.parametrize(
    "text",
    [
        "INC-7 called 38001085718 about the refund",
        "INC-7 person EE38001085718",
        "INC-7 person ee38001085718.",
        "INC-7 person PNOEE-38001085718",
        "INC-7 isikukood:38001085718",
        "INC-7 user60001019906failed",
        "38001085718",
        "INC-7 ３８００１０８５７１８ (full-width digits)",
    ],
)
def test_a_valid_code_is_found_in_any_text(text: str) -> None:
    """Bounded by non-digits, with or without its EE or PNOEE- prefix, in any script."""
    assert contains_personal_code(text)


@pytest.mark.parametrize(
    "text",
    [
        f"INC-7 mistyped {WRONG_CHECK}",
        "INC-7 order 138001085718",  # twelve digits: a longer number
        "INC-7 order 380010857180",
        f"INC-7 request {uuid.UUID(int=38001085718)}",
        "INC-7 at 1736332496789 ms",
        "INC-7 subject_ref p1:nPqtCXKCN3IXemrliWETLodi",
        "CHG-88 load test tonight",
    ],
)
def test_numbers_that_are_no_valid_code_are_not_found(text: str) -> None:
    """A wrong check digit, a longer number, a uuid, a timestamp, a pseudonym."""
    assert not contains_personal_code(text)


@given(
    code=_valid_codes(),
    before=st.text(max_size=40),
    after=st.text(max_size=40),
    prefix=st.sampled_from(["", "EE", "ee", "PNOEE-", "isikukood "]),
)
# NFKC turned "¼" into "1⁄4" and "¹" into "1": the code looked glued to a longer number
@example(code="10001010002", before="", after="¼", prefix="")
@example(code="38001085718", before="¹", after="", prefix="")
def test_the_finder_finds_every_valid_code_bounded_by_non_digits(
    code: str, before: str, after: str, prefix: str
) -> None:
    """Whatever surrounds it, a valid code not glued to other digits is found."""
    left = before + prefix
    text = f"{left}{' ' if left[-1:].isdigit() else ''}{code}{' ' if after[:1].isdigit() else ''}"
    assert contains_personal_code(text + after)


# --- the safety net in the pipeline ------------------------------------------------

#: a character that joins neither a number nor a hex run (a digest is kept whole)
_SEPARATOR = st.characters(
    blacklist_categories=("Nd", "Cs"), blacklist_characters="0123456789abcdefABCDEF"
)


@given(
    code=_valid_codes(),
    before=st.text(max_size=40),
    left=_SEPARATOR,
    prefix=st.sampled_from(["", "EE", "ee", "PNOEE-", "isikukood "]),
    right=_SEPARATOR,
    after=st.text(max_size=40),
)
@settings(max_examples=500, deadline=None)
def test_redact_removes_every_valid_code_in_random_text(
    code: str, before: str, left: str, prefix: str, right: str, after: str
) -> None:
    """A valid code embedded in any text never comes out of redact in clear (nor the
    same digits with its EE prefix). Only a code glued into a run of 16+ hex
    characters stays: the run is a digest and kept whole (decision 0033)."""
    text = f"{before}{left}{prefix}{code}{right}{after}"
    out = Redact(Counters()).scrub(text)
    assert code not in out
    assert not contains_personal_code(out)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("INC-7 called PNOEE-38001085718 back", "INC-7 called [REDACTED:personal_code] back"),
        ("cert serialNumber=PNOEE-38001085718", "cert serialNumber=[REDACTED:personal_code]"),
        ("pnolv-38001085718", "[REDACTED:personal_code]"),
        ("XPNOEE-38001085718", "XPNOEE-[REDACTED:personal_code]"),
    ],
)
def test_redact_removes_the_etsi_pnoee_prefix_with_the_code(text: str, expected: str) -> None:
    """The ETSI form of a personal code (PNOEE-, as in certificates) goes whole."""
    counters = Counters()
    assert Redact(counters).scrub(text) == expected
    assert counters.snapshot() == {"redact.personal_code": 1}


@pytest.mark.parametrize(
    "text",
    [
        "INC-7 order 138001085718 shipped",
        f"INC-7 request {uuid.UUID(int=38001085718)}",
        "INC-7 rotating key k-20261127",
    ],
)
def test_redact_leaves_numbers_that_are_no_personal_code(text: str) -> None:
    """A twelve-digit number, a uuid, a hex digest: kept, nothing counted."""
    counters = Counters()
    assert Redact(counters).scrub(text) == text
    assert counters.snapshot() == {}


def test_a_digest_is_kept_whole_even_with_a_code_shaped_run_in_it() -> None:
    """Hex of 16+ characters (digests, trace and object ids, UUIDs) is never
    changed: eleven of its digits read as a code about once in 10,000 (decision 0033;
    the admin API and CLI refuse such text before it gets here)."""
    digest = "5c0e3b57a1d38001085718f2e9b6a0cafe"
    counters = Counters()
    assert Redact(counters).scrub(f"INC-7 digest {digest}") == f"INC-7 digest {digest}"
    assert counters.snapshot() == {}
    assert contains_personal_code(digest)


def test_redact_also_removes_a_mistyped_code() -> None:
    """Eleven digits that read as a century digit and a date go even with a wrong check
    digit: a mistyped code still points at a person (decision 0033)."""
    counters = Counters()
    assert Redact(counters).scrub(f"INC-7 mistyped {WRONG_CHECK}") == (
        "INC-7 mistyped [REDACTED:personal_code]"
    )
    assert counters.snapshot() == {"redact.personal_code": 1}


def test_codes_in_a_justification_and_a_detail_are_not_in_the_stored_bytes(
    kit_factory: Callable[..., TrailKit], tmp_path: Path
) -> None:
    """A config.change whose justification and before/after name people by code is
    stored with the marker in their place; each removal is counted."""
    kit = kit_factory()
    kit.trail.emit_many_sync(
        [
            events.config_change(
                actor=Actor(ActorType.USER, subject="EE" + CODES[1]),
                target=Target("config", "admin.ticket_pattern"),
                key="admin.ticket_pattern",
                before="INC-\\d+",
                after="asked by PNOEE-" + CODES[2],
                justification=f"INC-7 as EE{CODES[0]} asked\non behalf of {CODES[3]}",
            ),
            events.security_policy_violation(
                actor=Actor(ActorType.USER, subject="EE" + CODES[1]),
                reason=f"typed {CODES[4]}",
                policy="justification_missing",
                attempted=f"POST /admin/lists for {CODES[4]}",
            ),
        ]
    )
    kit.store.close()
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("audit.db*"))
    assert b"config.change" in blob
    assert b"[REDACTED:personal_code]" in blob
    for code in CODES:
        assert code.encode() not in blob, code
    assert kit.counters.snapshot()["redact.personal_code"] == 5


# --- stored text: where the codes are, and the text without them (decision 0038) -----


@pytest.mark.parametrize(
    ("text", "expected", "codes"),
    [
        ("INC-7 called EE38001085718 back", "INC-7 called [REDACTED:personal_code] back", 1),
        ("PNOEE-38001085718", "[REDACTED:personal_code]", 1),
        (
            "38001085718 and 60001019906.",
            "[REDACTED:personal_code] and [REDACTED:personal_code].",
            2,
        ),
        ("INC-7 ３８００１０８５７１８ (wide)", "INC-7 [REDACTED:personal_code] (wide)", 1),
        (
            f"mistyped {WRONG_CHECK}, order 138001085718",
            f"mistyped {WRONG_CHECK}, order 138001085718",
            0,
        ),
    ],
)
def test_redact_personal_codes_replaces_each_valid_code_and_keeps_the_rest(
    text: str, expected: str, codes: int
) -> None:
    """Each valid code, with its prefix, becomes redact's marker; the text around it and
    numbers that are no valid code stay as they were."""
    out, found = redact_personal_codes(text)
    assert out == expected
    assert len(found) == codes
    assert all(is_personal_code(c) for c in found)


def test_redact_personal_codes_names_the_codes_it_removed_in_ascii() -> None:
    """The codes come back as eleven ASCII digits (full-width ones normalised), in order."""
    _, found = redact_personal_codes("a ６０００１０１９９０６ b EE38001085718")
    assert found == ("60001019906", "38001085718")


@given(text=st.text(max_size=60), code=_valid_codes(), at=st.integers(0, 60))
@settings(max_examples=300, deadline=None)
def test_redact_personal_codes_agrees_with_the_edge_check(text: str, code: str, at: int) -> None:
    """What the edge refuses (contains_personal_code) is exactly what is found and
    removed: nothing found means nothing refused, and no valid code survives."""
    for sample in (text, f"{text[:at]} {code} {text[at:]}"):
        out, found = redact_personal_codes(sample)
        assert bool(found) == contains_personal_code(sample)
        assert not contains_personal_code(out)
        if not found:
            assert out == sample


def test_decimal_digits_of_any_script_read_as_their_digits_and_keep_positions() -> None:
    """Full-width and Arabic-Indic digits are the digits they stand for; what is no
    decimal digit (a fraction, a superscript) does not join a number."""
    full_width = "".join(chr(0xFF10 + int(d)) for d in "38001085718")
    arabic = "".join(chr(0x0660 + int(d)) for d in "38001085718")
    for text in (f"kood {full_width}.", f"kood {arabic}.", "x38001085718¼", "¹38001085718"):
        assert contains_personal_code(text), text
        redacted, codes = redact_personal_codes(text)
        assert codes == ("38001085718",)
        assert "[REDACTED:personal_code]" in redacted
        assert redacted.startswith(text[:1])
    assert not contains_personal_code("38001085718" + chr(0xFF18))  # 12 digits in all
