"""The ``admin.request`` record names the body's fields only if the route read the body;
Starlette keeps a read body in a private attribute, pinned here (decision 0034,
2026-11-28)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from kroonika.admin._auth import body_read


def _request(body: bytes) -> Request:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/admin/x", "headers": []}
    return Request(scope, receive)


@pytest.mark.asyncio
async def test_a_body_the_route_read_is_the_one_recorded() -> None:
    """After ``await request.body()`` (what FastAPI does for a body parameter) the
    record gets those bytes, without reading the stream again."""
    request = _request(b'{"subject": "x"}')
    assert await request.body() == b'{"subject": "x"}'
    assert body_read(request) == b'{"subject": "x"}'


def test_a_body_nobody_read_is_not_read_for_the_record() -> None:
    """A call refused before its body was read: nothing (and the stream is left)."""
    assert body_read(_request(b'{"subject": "x"}')) is None
