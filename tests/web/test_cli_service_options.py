"""Options of the service commands (`serve`, `dev`, `mock-tara`) are checked before
anything starts: a bad port is a usage error, not a traceback from the socket layer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kroonika.cli import app


@pytest.fixture(autouse=True)
def _var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("KROONIKA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("KROONIKA_VAR_DIR", str(tmp_path / "var"))


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--port", "99999"],
        ["serve", "--port", "-1"],
        ["dev", "--port", "70000"],
        ["dev", "--mock-port", "0"],
        ["mock-tara", "--clients", "clients.toml", "--port", "65536"],
    ],
)
def test_a_port_outside_1_to_65535_is_a_usage_error(args: list[str]) -> None:
    """Exit 2 with a one-line message naming the option; no traceback, nothing started."""
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 2, done.output
    assert "port" in done.output
    assert "Traceback" not in done.output
    assert done.exception is None or isinstance(done.exception, SystemExit)
