"""Which requests to the login routes get the failure page and which the JSON
(decision 0015, 2026-11-28): the page only for a browser's navigation."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from kroonika.web._login_page import again_link, wants_page

CHROMIUM = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def _request(*headers: tuple[str, str]) -> Request:
    raw = [(k.encode(), v.encode()) for k, v in headers]
    return Request({"type": "http", "method": "GET", "path": "/auth/callback", "headers": raw})


@pytest.mark.parametrize(
    ("headers", "page"),
    [
        ((("accept", CHROMIUM), ("sec-fetch-mode", "navigate")), True),
        ((("accept", FIREFOX),), True),
        ((("accept", "text/html"),), True),
        ((("accept", "text/*"),), True),
        ((("accept", "*/*"), ("sec-fetch-mode", "navigate")), True),
        ((("sec-fetch-mode", "navigate"),), True),
        ((("accept", "text/html;q=0.9"), ("accept", "application/json;q=0.1")), True),
        ((), False),
        ((("accept", "*/*"),), False),
        ((("accept", "application/json"),), False),
        ((("accept", "application/json"), ("sec-fetch-mode", "navigate")), False),
        ((("accept", "text/html, application/json"),), False),
        ((("accept", "text/html;q=0.5, application/json"),), False),
        ((("accept", "text/html;q=0"),), False),
        ((("accept", "text/html;q=2"),), False),
        ((("accept", "text/html;q=nan"),), False),
        ((("accept", "*/*"), ("sec-fetch-mode", "cors")), False),
        ((("accept", "TEXT/HTML"),), True),
    ],
)
def test_only_a_navigation_gets_the_page(headers: tuple[tuple[str, str], ...], page: bool) -> None:
    """Accept decides when it ranks the two; Sec-Fetch-Mode: navigate decides a tie;
    without either, JSON."""
    assert wants_page(_request(*headers)) is page


def test_start_again_encodes_what_it_carries() -> None:
    """The link's query is URL-encoded; without a target or acr it is a plain login."""
    assert again_link() == "/auth/login"
    assert again_link("/a?b=1&c=<d>", "high") == (
        "/auth/login?return_to=%2Fa%3Fb%3D1%26c%3D%3Cd%3E&acr=high"
    )
