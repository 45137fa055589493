"""Fixtures of the administration tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A var directory of its own, named by ``KROONIKA_VAR_DIR``, with every other
    ``KROONIKA_*`` variable of the environment removed (commands configure from it)."""
    for name in list(os.environ):
        if name.startswith("KROONIKA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("KROONIKA_VAR_DIR", str(tmp_path / "var"))
    return tmp_path / "var"
