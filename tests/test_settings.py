"""Settings refused at start-up say which setting is wrong, never what was given."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kroonika.settings import Settings

SECRET = "s3cr3t-value-0123456789"


@pytest.mark.parametrize(
    "values",
    [
        {"metrics_token": [SECRET]},
        {"tara_client_secret": {"value": SECRET}},
        {"audit_sinks": [{"name": "hook", "kind": "webhook", "secret": [SECRET]}]},
        {"session_idle_s": SECRET},
    ],
    ids=["metrics_token", "tara_client_secret", "sink secret", "a number"],
)
def test_a_refused_value_is_not_echoed(values: dict[str, object]) -> None:
    """The validation error names the field but does not quote the value."""
    with pytest.raises(ValidationError) as caught:
        Settings(**values)  # type: ignore[arg-type]
    message = str(caught.value)
    assert next(iter(values)) in message
    assert SECRET not in message
