"""A 429 is answered by the route's own page where the route answers with pages: the
rate limiter's answers come from the page routes themselves, not from a second copy of
their paths (decision 0037, 2026-11-28 review crosssite2)."""

from __future__ import annotations

from pathlib import Path

from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import SecretStr

from kroonika.ratelimit import RateLimitMiddleware
from kroonika.settings import Settings
from kroonika.web import create_app
from kroonika.web.routes_dashboard import PageRoute


def test_each_page_route_answers_its_429_with_its_own_page(tmp_path: Path) -> None:
    """The limiter's answer for the path of every ``PageRoute`` of the app is that
    route's own ``rate_limited`` (the one its refusals inside the route use too)."""
    settings = Settings(
        var_dir=tmp_path / "var",
        tara_issuer="http://127.0.0.1:9",
        tara_client_id="kroonika-pages",
        tara_client_secret=SecretStr("pages-test-secret-0123456789"),
        cookie_secure=False,
        jobs_enabled=False,
    )
    app = create_app(settings)
    (limiting,) = [m for m in app.user_middleware if m.cls is RateLimitMiddleware]
    pages = limiting.kwargs["pages"]
    routes = [
        (c.path, c.original_route)
        for c in iter_route_contexts(list(app.routes))
        if isinstance(c.original_route, APIRoute)
    ]
    page_routes = [(path, r) for path, r in routes if isinstance(r, PageRoute)]
    assert page_routes
    for path, route in page_routes:
        assert pages[path] == route.rate_limited, path
