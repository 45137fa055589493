"""Running ``kroonika`` as a subprocess on a var dir of its own, for the CLI tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from kroonika.audit import Query, SqlAuditStore, run_query

KROONIKA = str(Path(sys.executable).parent / "kroonika")


class Cli:
    def __init__(self, var: Path) -> None:
        self.var = var
        self.env = {**os.environ, "KROONIKA_VAR_DIR": str(var), "KROONIKA_AUDIT_STRICT": "1"}
        self.env.pop("KROONIKA_DEBUG", None)

    def __call__(
        self, *args: str, ok: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [KROONIKA, *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            check=False,
        )
        if ok:
            assert done.returncode == 0, done.stderr
        return done

    def usage_error(self, *args: str, env: dict[str, str] | None = None) -> str:
        """Run a command that must fail with exit 2 and one clean line; return the line."""
        done = self(*args, ok=False, env=env)
        assert done.returncode == 2, (args, done.returncode, done.stderr)
        assert_one_line(done.stderr)
        return done.stderr

    def access_events(self) -> list[dict[str, object]]:
        store = SqlAuditStore(str(self.var / "audit.db"), read_only=True)
        try:
            return [orjson.loads(b) for b in run_query(store, Query(types=("audit.access",)))]
        finally:
            store.close()

    def last_access(self) -> dict[str, object]:
        details = self.access_events()[-1]["details"]
        assert isinstance(details, dict)
        return details


def assert_one_line(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert stderr.startswith("error: "), stderr
    assert stderr.count("\n") == 1, stderr
    assert stderr.endswith("\n"), stderr
    assert "\x1b" not in stderr, stderr


def generated_var(factory: pytest.TempPathFactory, count: int) -> Path:
    """A var dir holding ``count`` generated events (made once per module)."""
    var = factory.mktemp("var")
    Cli(var)("audit", "generate", "--count", str(count))
    return var


def copied_cli(generated: Path, tmp_path: Path) -> Cli:
    """A ``Cli`` on this test's own copy of ``generated`` (the test may change it)."""
    var = tmp_path / "var"
    shutil.copytree(generated, var)
    return Cli(var)
