"""KROONIKA_JOBS_CRON and KROONIKA_JOBS_DISABLED name jobs that exist: a misspelt name
would leave the job on its default schedule (a retention the operator meant to stop would
go on purging) without a word, so the service refuses to start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kroonika.settings import Settings, SettingsError
from kroonika.web import create_app


@pytest.mark.parametrize(
    ("field", "value", "variable"),
    [
        ("jobs_disabled", ["audit_retenion"], "KROONIKA_JOBS_DISABLED"),
        ("jobs_cron", {"audit_retenion": "0 4 * * *"}, "KROONIKA_JOBS_CRON"),
    ],
)
def test_an_unknown_job_name_refuses_to_start(
    tmp_path: Path, field: str, value: Any, variable: str
) -> None:
    """The refusal names the variable, the unknown job and the jobs there are."""
    settings = Settings(var_dir=tmp_path, **{field: value})
    with pytest.raises(SettingsError, match=variable) as refused:
        create_app(settings)
    assert "'audit_retenion'" in str(refused.value)
    assert "audit_retention" in str(refused.value)


def test_known_job_names_are_taken(tmp_path: Path) -> None:
    """The operator guide's examples start."""
    settings = Settings(
        var_dir=tmp_path,
        jobs_cron={"audit_retention": "23 3 * * *", "sessions": "* * * * *"},
        jobs_disabled=["audit_retention"],
    )
    assert create_app(settings) is not None
