"""One setting named twice in the environment, in two cases: pydantic-settings reads
either name (in any case) and takes whichever ``os.environ`` lists last, so which value
the service runs with would depend on the environment's order. The commands refuse it
as they refuse any setting, in one line naming both variables, never their values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

KROONIKA = str(Path(sys.executable).parent / "kroonika")
FIRST, SECOND = "s3cr3t-first-0123456789", "s3cr3t-second-9876543210"


def _proof(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    """``kroonika audit proof`` (it reads the settings first) with ``variables`` set."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("KROONIKA_")}
    env |= {"KROONIKA_VAR_DIR": str(tmp_path / "var"), **variables}
    return subprocess.run(
        [KROONIKA, "audit", "proof", "--seq", "1", "--stream", "main"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_setting_set_in_two_cases_refuses_to_start_naming_both(tmp_path: Path) -> None:
    """``KROONIKA_METRICS_TOKEN`` and ``kroonika_metrics_token`` both set: one line with
    both names and neither value, no traceback, the exit code of a refused setting."""
    done = _proof(tmp_path, KROONIKA_METRICS_TOKEN=FIRST, kroonika_metrics_token=SECOND)
    refused = _proof(tmp_path, KROONIKA_SESSION_IDLE_S="not a number")
    assert refused.returncode == 2, refused.stderr
    assert done.returncode == refused.returncode, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: ")
    assert "KROONIKA_METRICS_TOKEN" in line
    assert "kroonika_metrics_token" in line
    assert FIRST not in line
    assert SECOND not in line
    assert FIRST not in done.stdout
    assert SECOND not in done.stdout


def test_a_setting_named_once_in_either_case_is_not_refused_for_its_case(
    tmp_path: Path,
) -> None:
    """One name per setting, in any case, is not a conflict: the command gets past its
    settings (here to the empty store it then has nothing to prove in)."""
    for name in ("KROONIKA_SESSION_IDLE_S", "kroonika_session_idle_s"):
        done = _proof(tmp_path, **{name: "600"})
        assert "same setting" not in done.stderr, done.stderr
        assert "session_idle_s" not in done.stderr.lower(), done.stderr
