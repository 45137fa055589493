"""Admin API edges over real HTTP: unmatched paths and methods under /admin and /audit are
audited as admin.request, and a busy job answers 409 job_busy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from admin_harness import AdminStack, admin_stack

from kroonika.jobs import Leases


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[AdminStack]:
    with admin_stack(tmp_path) as s:
        yield s


def _requests(stack: AdminStack, request_id: str) -> list[dict]:
    return stack.events(types=("admin.request",), correlation=request_id)


@pytest.mark.parametrize(
    ("method", "path", "role", "status", "route", "auth"),
    [
        ("GET", "/admin/no-such-thing", "admin", 404, "/admin/{unmatched}", "api_key"),
        ("GET", "/admin/people/38001085718", None, 404, "/admin/{unmatched}", "none"),
        ("POST", "/audit/nothing/here", "auditor", 404, "/audit/{unmatched}", "api_key"),
        ("DELETE", "/admin/jobs", "admin", 405, "/admin/jobs", "api_key"),
        ("PUT", "/audit/checkpoints", None, 405, "/audit/checkpoints", "none"),
    ],
)
def test_unmatched_calls_are_audited(
    stack: AdminStack, method: str, path: str, role: str | None, status: int, route: str, auth: str
) -> None:
    """One admin.request with the status, the route template (never the raw path), and the
    caller if the credentials were good."""
    r = stack.call(method, path, role=role)
    assert r.status_code == status
    (event,) = _requests(stack, r.headers["x-request-id"])
    assert event["details"]["status"] == status
    assert event["details"]["route"] == route
    assert event["details"]["method"] == method
    assert event["details"]["auth"] == auth
    assert event["outcome"] == "failure"
    assert event["reason"] == f"http_{status}"
    assert "38001085718" not in str(event)


def test_paths_beside_the_prefixes_are_not_admin_calls(stack: AdminStack) -> None:
    """/adminx and /auditing are not under /admin or /audit: 404 without admin.request."""
    for path in ("/adminx", "/auditing/x"):
        r = stack.call("GET", path)
        assert r.status_code == 404
        assert _requests(stack, r.headers["x-request-id"]) == []


def test_a_route_that_ran_is_recorded_once(stack: AdminStack) -> None:
    """A 404 answered by an admin route itself (unknown list entry) is not recorded twice."""
    r = stack.call("DELETE", "/admin/lists/al_none")
    assert r.status_code == 404
    assert len(_requests(stack, r.headers["x-request-id"])) == 1


def test_a_busy_job_answers_409_job_busy(stack: AdminStack) -> None:
    """While another instance holds the job's lease, a manual run is refused as job_busy
    (not as a role-change refusal) and the refusal is audited."""
    services = stack.stack.services
    other = Leases(services.engine, owner="other-instance", lease_s=600)
    lease = other.acquire("sessions", now=int(services.clock()), trigger="test", slot=None)
    assert lease is not None
    r = stack.call("POST", "/admin/jobs/sessions/run")
    assert r.status_code == 409
    assert r.json()["error"] == "job_busy"
    (event,) = _requests(stack, r.headers["x-request-id"])
    assert event["details"]["status"] == 409
    assert (
        stack.events(types=("security.policy_violation",), correlation=r.headers["x-request-id"])
        == []
    )
    other.release(lease, now=int(services.clock()), outcome="success", counts={}, error=None)
    assert stack.call("POST", "/admin/jobs/sessions/run").status_code == 200
