"""Estonian personal codes (isikukood, EVS 585:2007) in free text.

Format ``GYYMMDDSSSC``: ``G`` the century and sex (1-6), ``YYMMDD`` the birth date, ``SSS``
a serial number and ``C`` the check digit: weights 1 2 3 4 5 6 7 8 9 1 over the first ten
digits, sum mod 11; if that is 10, weights 3 4 5 6 7 8 9 1 2 3, sum mod 11, and 10
becomes 0.

The admin API and CLI refuse a justification, reason or name in which
:func:`contains_personal_code` finds a valid code (decision 0033): a person is named by
their pseudonym there. ``kroonika.tara.isikukood`` computes its check digit here, so that
the code TARA accepts and the code free text may not hold are the same. The audit
pipeline's ``redact`` step has a cheaper and wider net of its own (any eleven digits that
read as a century digit and a date). :func:`redact_personal_codes` removes what the edge
would have refused from text stored before it did (decision 0038).
"""

from __future__ import annotations

import datetime
import re
from typing import Final

from kroonika.audit.processors.redact import ascii_digits, with_country_prefix

__all__ = [
    "MARKER",
    "check_digit",
    "contains_personal_code",
    "is_personal_code",
    "redact_personal_codes",
]

#: What a personal code (with its prefix) becomes: the marker of redact's safety net.
MARKER: Final = "[REDACTED:personal_code]"

_FIRST_WEIGHTS: Final = (1, 2, 3, 4, 5, 6, 7, 8, 9, 1)
_SECOND_WEIGHTS: Final = (3, 4, 5, 6, 7, 8, 9, 1, 2, 3)
_CENTURY: Final = {"1": 1800, "2": 1800, "3": 1900, "4": 1900, "5": 2000, "6": 2000}
# Eleven ASCII digits that start with a century digit, not part of a longer number (in
# any script: "\d" is every decimal digit). Any prefix (EE, PNOEE-, isikukood:) is text
# before it and changes nothing.
_CANDIDATE: Final = re.compile(r"(?<!\d)[1-6][0-9]{10}(?!\d)")


def check_digit(first_ten: str) -> int:
    """The check digit of a personal code's first ten ASCII digits."""
    if len(first_ten) != 10 or not first_ten.isascii() or not first_ten.isdigit():
        raise ValueError("the check digit is computed over exactly ten ASCII digits")
    digits = [int(c) for c in first_ten]
    total = sum(d * w for d, w in zip(digits, _FIRST_WEIGHTS, strict=True)) % 11
    if total == 10:
        total = sum(d * w for d, w in zip(digits, _SECOND_WEIGHTS, strict=True)) % 11 % 10
    return total


def is_personal_code(code: str) -> bool:
    """Whether ``code`` is exactly a valid personal code: eleven ASCII digits, a century
    digit 1-6, a real birth date and the right check digit."""
    if len(code) != 11 or not code.isascii() or not code.isdigit():
        return False
    century = _CENTURY.get(code[0])
    if century is None:
        return False
    try:
        datetime.date(century + int(code[1:3]), int(code[3:5]), int(code[5:7]))
    except ValueError:
        return False
    return check_digit(code[:10]) == int(code[10])


def contains_personal_code(text: str) -> bool:
    """Whether ``text`` holds a valid personal code that is not part of a longer number,
    with or without a prefix (``EE38001085718``, ``PNOEE-38001085718``). Full-width and
    other decimal digits count as the digits they stand for."""
    if not text.isascii():
        text = ascii_digits(text)
    return any(is_personal_code(m.group()) for m in _CANDIDATE.finditer(text))


def _spans(text: str) -> list[tuple[int, int, str]]:
    """Where in ``text`` the valid personal codes are (start and end in ``text``) and
    each as ASCII digits (decimal digits of other scripts read as theirs)."""
    normal = text if text.isascii() else ascii_digits(text)
    return [
        (m.start(), m.end(), m.group())
        for m in _CANDIDATE.finditer(normal)
        if is_personal_code(m.group())
    ]


def redact_personal_codes(text: str) -> tuple[str, tuple[str, ...]]:
    """``text`` with each valid personal code that :func:`contains_personal_code` finds
    replaced, with its country or ETSI prefix as redact takes it (``EE``, ``PNOEE-``),
    by :data:`MARKER`; and the codes removed, in order, as ASCII digits. Everything
    else is kept as it was (numbers that are no valid code included)."""
    spans = _spans(text)
    if not spans:
        return text, ()
    parts: list[str] = []
    done = 0
    for start, end, _ in spans:
        parts.append(text[done : with_country_prefix(text, start, done)])
        parts.append(MARKER)
        done = end
    parts.append(text[done:])
    return "".join(parts), tuple(code for _, _, code in spans)
