"""Estonian personal code validation: public TARA test identities, bad codes, cross-check."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from stdnum.ee import ik

from kroonika.tara.isikukood import (
    InvalidPersonalCode,
    PersonalCode,
    check_digit,
    split_subject,
    validate,
)

PUBLIC_TEST_IDENTITIES = {
    "38001085718": ("male", datetime.date(1980, 1, 8)),
    "60001019906": ("female", datetime.date(2000, 1, 1)),
    "60001017716": ("female", datetime.date(2000, 1, 1)),
    "40404040009": ("female", datetime.date(1904, 4, 4)),
    "47101010033": ("female", datetime.date(1971, 1, 1)),
    "37101010021": ("male", datetime.date(1971, 1, 1)),
}


@pytest.mark.parametrize("code", sorted(PUBLIC_TEST_IDENTITIES))
def test_public_test_identities_are_valid(code: str) -> None:
    """Every public TARA test identity passes and decodes to its sex and birth date."""
    sex, birth_date = PUBLIC_TEST_IDENTITIES[code]
    assert validate(code) == PersonalCode(code=code, sex=sex, birth_date=birth_date)


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("38001085719", "wrong check digit: expected 8, got 9"),
        ("3800108571", "11 digits"),
        ("380010857180", "11 digits"),
        ("3800108571a", "digits only"),
        ("３８００１０８５７１８", "digits only"),
        ("78001085718", "first digit must be 1-6"),
        ("70001010004", "first digit must be 1-6"),
        ("08001085718", "first digit must be 1-6"),
        ("38013085718", "not a valid date"),
        ("38002305718", "not a valid date"),
        ("", "11 digits"),
    ],
)
def test_bad_codes_are_rejected_with_a_reason(code: str, reason: str) -> None:
    """A bad code raises InvalidPersonalCode whose reason names the problem."""
    with pytest.raises(InvalidPersonalCode, match=reason) as excinfo:
        validate(code)
    assert isinstance(excinfo.value, ValueError)
    assert reason in excinfo.value.reason


def test_second_weight_round_is_used_when_the_first_gives_ten() -> None:
    """When the first sum mod 11 is 10, the second weights decide."""
    # 3800108007: first round 10, second round 9.
    assert check_digit("3800108007") == 9
    assert validate("38001080079").code == "38001080079"


def test_ten_in_the_second_round_becomes_zero() -> None:
    """When both rounds give 10, the check digit is 0."""
    assert check_digit("3800108135") == 0
    assert validate("38001081350").birth_date == datetime.date(1980, 1, 8)


def test_leap_day_is_a_valid_birth_date() -> None:
    """29 February is accepted in a leap year and refused otherwise."""
    code = "6000229000" + str(check_digit("6000229000"))
    assert validate(code).birth_date == datetime.date(2000, 2, 29)
    bad = "60102290000"
    with pytest.raises(InvalidPersonalCode, match="not a valid date"):
        validate(bad[:10] + str(check_digit(bad[:10])))


@given(st.from_regex(r"[1-6][0-9]{2}(0[1-9]|1[0-2])(0[1-9]|1[0-9]|2[0-8])[0-9]{3}", fullmatch=True))
def test_check_digit_agrees_with_python_stdnum(first_ten: str) -> None:
    """Our check digit equals python-stdnum's for any ten leading digits with a valid date."""
    assert str(check_digit(first_ten)) == ik.calc_check_digit(first_ten + "0")
    code = first_ten + str(check_digit(first_ten))
    assert validate(code).code == code
    assert ik.is_valid(code)


@example("80403080080")  # valid for python-stdnum (born 2104), not for TARA
@example("38001085718")
@given(st.text(alphabet="0123456789", min_size=11, max_size=11))
def test_validate_agrees_with_python_stdnum_on_any_eleven_digits(code: str) -> None:
    """validate accepts exactly what python-stdnum accepts, except the 2100s (7, 8) it allows."""
    try:
        validate(code)
    except InvalidPersonalCode:
        accepted = False
    else:
        accepted = True
    if code[0] in "78":
        assert not accepted  # TARA.md: G is 1-6; python-stdnum already reads 7/8 as 2100s
    else:
        assert accepted == ik.is_valid(code)


def test_split_subject() -> None:
    """A TARA subject splits into its country code and identifier."""
    assert split_subject("EE38001085718") == ("EE", "38001085718")
    assert split_subject("CA12345") == ("CA", "12345")


@pytest.mark.parametrize("subject", ["", "EE", "ee38001085718", "E38001085718", "EE 3800", "38001"])
def test_split_subject_rejects_malformed(subject: str) -> None:
    """A subject without a two-letter country prefix and an identifier is refused."""
    with pytest.raises(ValueError, match="two-letter country code"):
        split_subject(subject)
