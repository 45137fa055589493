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


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "unix:///run/r.sock"])
def test_a_redis_url_must_be_redis(url: str) -> None:
    """A Redis URL both Redis clients can use is checked at start, with a clear message."""
    with pytest.raises(ValidationError, match="redis_url must be a redis:// or rediss:// URL"):
        Settings(redis_url=url)


def test_redis_urls_are_accepted() -> None:
    """Plain and TLS Redis URLs, with a password, are accepted."""
    for url in ("redis://127.0.0.1:6379/0", "rediss://:pw@cache.internal:6380/1"):
        assert Settings(redis_url=url).redis_url == url
