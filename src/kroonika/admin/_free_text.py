"""Free text an administrator types (justifications, reasons, names) is stored in the
business database and recorded in the audit trail as written, so it may not hold a
personal code: people are named there by pseudonym (decision 0033)."""

from __future__ import annotations

from kroonika.admin._errors import PersonalCodeInText
from kroonika.audit.personal_codes import contains_personal_code

#: The fields of an admin request body that are free text (the justification has its
#: own check in ``check_justification``); a field that names a person (``subject``,
#: ``personal_code``, a list entry's ``value``) is no free text and not checked.
FREE_TEXT_FIELDS = frozenset({"reason", "name"})


def refuse_personal_code(text: str | None, field: str) -> None:
    """Raise :class:`PersonalCodeInText` (naming ``field``, not the value) when ``text``
    holds a valid personal code, with or without its prefix."""
    if text and contains_personal_code(text):
        raise PersonalCodeInText(field)
