"""Estonian personal identification code (isikukood), standard EVS 585:2007.

Format ``GYYMMDDSSSC``: ``G`` encodes sex and century (1/2 1800s, 3/4 1900s, 5/6 2000s; odd is
male), ``YYMMDD`` the birth date, ``SSS`` a serial number and ``C`` the check digit.

Check digit: weights 1 2 3 4 5 6 7 8 9 1 over the first ten digits, sum mod 11; if that is 10,
weights 3 4 5 6 7 8 9 1 2 3, sum mod 11, and 10 becomes 0. It is computed by
:mod:`kroonika.audit.personal_codes`, which also finds codes typed into free text: the code
TARA accepts and the code a justification may not hold are the same (decision 0033).

TARA puts the code in ``sub`` prefixed with the issuing country (``EE38001085718``);
:func:`split_subject` takes such a subject apart.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Literal

from kroonika.audit import personal_codes

__all__ = ["InvalidPersonalCode", "PersonalCode", "check_digit", "split_subject", "validate"]

Sex = Literal["male", "female"]

_CENTURY = {"1": 1800, "2": 1800, "3": 1900, "4": 1900, "5": 2000, "6": 2000}
_SUBJECT = re.compile(r"([A-Z]{2})([A-Za-z0-9:+\-./_]{1,64})")


class InvalidPersonalCode(ValueError):
    """The string is not a valid Estonian personal code; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PersonalCode:
    """A personal code that passed :func:`validate`."""

    code: str
    sex: Sex
    birth_date: datetime.date


def check_digit(first_ten: str) -> int:
    """Return the check digit for the first ten digits of a personal code."""
    if len(first_ten) != 10 or not first_ten.isascii() or not first_ten.isdigit():
        raise InvalidPersonalCode("the check digit is computed over exactly ten digits")
    return personal_codes.check_digit(first_ten)


def validate(code: str) -> PersonalCode:
    """Check ``code`` and return what it encodes, or raise :class:`InvalidPersonalCode`."""
    if len(code) != 11:
        raise InvalidPersonalCode(f"a personal code has 11 digits, got {len(code)} characters")
    if not code.isascii() or not code.isdigit():
        raise InvalidPersonalCode("a personal code consists of digits only")
    century = _CENTURY.get(code[0])
    if century is None:
        raise InvalidPersonalCode(f"the first digit must be 1-6, got {code[0]}")
    try:
        birth_date = datetime.date(century + int(code[1:3]), int(code[3:5]), int(code[5:7]))
    except ValueError:
        raise InvalidPersonalCode(f"digits 2-7 are not a valid date: {code[1:7]}") from None
    expected = check_digit(code[:10])
    if int(code[10]) != expected:
        raise InvalidPersonalCode(f"wrong check digit: expected {expected}, got {code[10]}")
    sex: Sex = "male" if int(code[0]) % 2 == 1 else "female"
    return PersonalCode(code=code, sex=sex, birth_date=birth_date)


def split_subject(subject: str) -> tuple[str, str]:
    """Split a TARA ``sub`` such as ``EE38001085718`` into ``("EE", "38001085718")``.

    Only the form is checked (two upper-case letters, then an identifier); validate an Estonian
    code with :func:`validate` separately, foreign (eIDAS) identifiers have other formats.
    """
    match = _SUBJECT.fullmatch(subject)
    if match is None:
        raise ValueError("a TARA subject is a two-letter country code followed by an identifier")
    return match.group(1), match.group(2)
