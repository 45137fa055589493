"""Personal codes typed into the CLI's free text (decision 0033): a ``--justification``
or a client's name that holds a valid personal code is a usage error (exit 2) with a
clear message, before anything is opened, stored or recorded; nothing echoes the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kroonika.cli import app

#: the person the command is about (given where a command asks for a code)
SUBJECT = "38001085718"
#: a valid code typed into free text by mistake
TYPED = "49403136526"
WHY = f"INC-7 as asked by EE{TYPED}"


def _written(var: Path) -> bytes:
    return b"".join(p.read_bytes() for p in var.rglob("*") if p.is_file()) if var.exists() else b""


@pytest.mark.parametrize(
    "args",
    [
        ["admins", "add", SUBJECT, "-j", WHY],
        ["audit", "erase", "--personal-code", SUBJECT, "-j", WHY],
        ["audit", "reveal", "--event", "00000000-0000-0000-0000-000000000001", "-j", WHY],
        ["audit", "sinks", "replay", "--sink", "hook", "--all", "-j", WHY],
        ["keys", "rotate", "-j", WHY],
        ["clients", "add", f"portal of PNOEE-{TYPED}"],
    ],
    ids=["admins-add", "erase", "reveal", "sink-replay", "token-keys-rotate", "clients-add"],
)
def test_a_code_in_free_text_is_a_usage_error_without_echo(var: Path, args: list[str]) -> None:
    """Exit 2, the message says to name the person by pseudonym, the code is not in
    the output and nothing the command would write holds it."""
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 2, done.output
    output = " ".join(re.sub("[│╭╮╰╯─]", " ", done.output).split())  # rich draws a box
    assert "personal code" in output
    assert "pseudonym" in output
    assert TYPED not in done.output
    assert TYPED.encode() not in _written(var)


def test_a_clean_justification_with_a_mistyped_code_is_accepted(var: Path) -> None:
    """Only a valid code is refused: eleven digits with a wrong check digit pass the edge
    (the audit trail's redact still removes them, decision 0033)."""
    done = CliRunner().invoke(app, ["admins", "add", SUBJECT, "-j", "INC-7 typo 49403136527"])
    assert done.exit_code == 0, done.output
