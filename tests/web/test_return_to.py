"""Where a login may send the browser back to: ``safe_return_to`` against the allow-list."""

from __future__ import annotations

import pytest

from kroonika.web._auth import safe_return_to

APP = "https://app.example.ee"


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ("/", ["/"]),
        ("/account?tab=1", ["/"]),
        ("/app/x", ["/app/"]),
        (APP, [APP]),
        (APP + "/", [APP]),
        (APP + "/path?q=1#f", [APP]),
        (APP + "/app/x", [APP + "/app/"]),
        ("HTTPS://APP.EXAMPLE.EE/x", [APP]),
    ],
)
def test_allowed_targets_are_kept(value: str, allowed: list[str]) -> None:
    """A same-site path or a URL on an allow-listed origin and path is returned as given."""
    assert safe_return_to(value, allowed) == value


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ("//evil.example/", ["/"]),
        ("/\\evil.example", ["/"]),
        ("/a\r\nb", ["/"]),
        ("https://evil.example/", ["/"]),
        ("/other", ["/app/"]),
        (APP + ".evil.example/", [APP]),
        (APP + "@evil.example/", [APP]),
        (APP + ":8443/", [APP]),
        ("http://app.example.ee/", [APP]),
        (APP + "/other", [APP + "/app/"]),
        ("https://user@app.example.ee/", [APP]),
    ],
)
def test_other_targets_are_refused(value: str, allowed: list[str]) -> None:
    """Another origin (however it is spelled to look like the allowed one) is refused."""
    assert safe_return_to(value, allowed) is None
