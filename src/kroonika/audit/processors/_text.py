"""Neutralising user-controlled text so that no value can forge a line in any output."""

from __future__ import annotations

import re
from typing import Final

_ANSI: Final = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_REPLACEMENT: Final = "\ufffd"


def neutralise(value: str, max_len: int) -> str:
    """Remove ANSI escape sequences, replace every other non-printable character
    (C0/C1 controls, CR, LF, TAB, DEL, line/paragraph separators, bidi controls, zero-width
    and other invisible format characters, non-ASCII spaces) with U+FFFD, and bound the
    length. Printable text, Estonian letters and single emoji pass; in an emoji sequence the
    zero-width joiner (U+200D) and tag characters are replaced too (``"👩\\u200d💻"``
    becomes ``"👩\\ufffd💻"``), on purpose: an invisible character could disguise text in
    an audit record."""
    if not value.isprintable():
        value = _ANSI.sub(_REPLACEMENT, value)
        if not value.isprintable():
            value = "".join(ch if ch.isprintable() else _REPLACEMENT for ch in value)
    if len(value) > max_len:
        value = value[: max_len - 1] + "…"
    return value
