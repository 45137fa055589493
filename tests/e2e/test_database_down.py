"""The business database going away under a running service: 503 ``database_unavailable``
with the request id, the refusal audited, and everything works again once it is back,
without a restart."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from admin_harness import ADMIN, admin_stack
from login_harness import refusing_connections


def _assert_unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.json() == {"error": "database_unavailable", "request_id": r.headers["x-request-id"]}


@pytest.mark.postgres
def test_database_gone_is_503_and_recovers(tmp_path: Path, fresh_postgres_url: str) -> None:
    """A citizen's session call and an admin call answer 503 while the database refuses
    connections, the admin call's ``admin.request`` records the 503, and both work again
    when it is back."""
    with admin_stack(tmp_path, database_url=fresh_postgres_url) as stack:
        with stack.stack.browser(autologin=ADMIN) as b:
            assert b.get(stack.url + "/auth/login").status_code == 200
            assert b.get(stack.url + "/auth/session").status_code == 200
            with refusing_connections(fresh_postgres_url):
                session = b.get(stack.url + "/auth/session")
                admin = stack.call("GET", "/admin/sessions")
            _assert_unavailable(session)
            _assert_unavailable(admin)
            assert ADMIN not in session.text + admin.text
            assert b.get(stack.url + "/auth/session").status_code == 200
            assert stack.call("GET", "/admin/sessions").status_code == 200
        (req,) = stack.events(types=("admin.request",), correlation=admin.headers["x-request-id"])
        assert (req["details"]["status"], req["reason"]) == (503, "http_503")
