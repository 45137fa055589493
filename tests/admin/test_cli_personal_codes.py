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
        ["admins", "add", "-", "-j", WHY],
        ["audit", "erase", "--personal-code-file", "-", "-j", WHY],
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
    done = CliRunner().invoke(app, args, input=SUBJECT + "\n")
    assert done.exit_code == 2, done.output
    output = " ".join(re.sub("[│╭╮╰╯─]", " ", done.output).split())  # rich draws a box
    assert "personal code" in output
    assert "pseudonym" in output
    assert TYPED not in done.output
    assert TYPED.encode() not in _written(var)


def test_a_clean_justification_with_a_mistyped_code_is_accepted(var: Path) -> None:
    """Only a valid code is refused: eleven digits with a wrong check digit pass the edge
    (the audit trail's redact still removes them, decision 0033)."""
    done = CliRunner().invoke(
        app, ["admins", "add", "-", "-j", "INC-7 typo 49403136527"], input=SUBJECT + "\n"
    )
    assert done.exit_code == 0, done.output


@pytest.mark.parametrize("env", ["development", "production"])
@pytest.mark.parametrize(
    "args",
    [
        ["admins", "add", SUBJECT, "--role", "admin", "-j", "INC-7 bootstrap"],
        ["admins", "show", SUBJECT],
        ["admins", "show", f"EE{SUBJECT}"],
        ["audit", "erase", "--personal-code", SUBJECT, "-j", "INC-7 erasure request"],
        ["audit", "erase", "-j", "INC-7 erasure request", f"--personal-code={SUBJECT}"],
    ],
    ids=["admins-add", "admins-show", "admins-show-prefixed", "erase", "erase-equals"],
)
def test_a_code_given_as_an_argument_is_refused_in_every_mode(
    var: Path, monkeypatch: pytest.MonkeyPatch, env: str, args: list[str]
) -> None:
    """argv is seen in ps by every user of the host and kept in shell history: every
    command that names a person refuses a code there, in development as in production
    (decision 0034, 2026-11-28), with exit 2 and the forms to use instead, before
    anything is opened or recorded, never repeating the code."""
    monkeypatch.setenv("KROONIKA_ENV", env)
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 2, done.output
    assert "--personal-code-file -" in done.stderr
    assert "ps" in done.stderr
    assert SUBJECT not in done.output
    assert not var.exists() or SUBJECT.encode() not in _written(var)
    assert not (var / "audit.db").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["admins", "add", "-", "-j", "INC-7 bootstrap"],
        ["admins", "show", "-"],
        ["admins", "show", "--personal-code-file", "-"],
        ["audit", "pseudonyms", "-j", "INC-7 look-up"],
        ["audit", "erase", "--personal-code-file", "-", "-j", "INC-7 erasure request"],
    ],
    ids=["admins-add", "admins-show", "admins-show-file", "pseudonyms", "erase"],
)
def test_every_command_that_names_a_person_reads_the_code_off_the_command_line(
    var: Path, args: list[str]
) -> None:
    """Standard input (or a file, the same option) works for each of them, without a
    warning and without the code in what they print."""
    done = CliRunner().invoke(app, args, input=SUBJECT + "\n")
    assert done.exit_code == 0, done.output
    assert "warning" not in done.stderr
    assert SUBJECT not in done.output
