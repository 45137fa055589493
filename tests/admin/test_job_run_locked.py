"""A manual job run blocked on a lock another session holds, over real HTTP on
PostgreSQL: not a server bug (no 500) but 503 ``job_locked`` with ``Retry-After`` (the
scheduler's backoff), the run's record, and its ``job.run`` in the trail; the OpenAPI
document says so (decision 0010, 2026-11-28 (review jobs))."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
from admin_harness import AdminStack, admin_stack
from lock_kit import add_stale_profile, profile_locked

pytestmark = pytest.mark.postgres

RUN = "/admin/jobs/security_profiles/run"


@pytest.fixture
def stack(tmp_path: Path, fresh_postgres_url: str) -> Iterator[AdminStack]:
    url = fresh_postgres_url
    overrides = {"audit_store_url": url, "jobs_lock_timeout_s": 1.0}
    with admin_stack(tmp_path, database_url=url, overrides=overrides) as s:
        add_stale_profile(s.stack.services.engine)
        yield s


@pytest.fixture
def holder(fresh_postgres_url: str, stack: AdminStack) -> Iterator[psycopg.Connection[Any]]:
    """Another session, holding the stale profile's row lock until the test lets go."""
    with profile_locked(fresh_postgres_url) as conn:
        yield conn


def test_a_manual_run_blocked_on_a_lock_answers_503_with_retry_after(
    stack: AdminStack, holder: psycopg.Connection[Any]
) -> None:
    """503 ``job_locked``, ``Retry-After`` the backoff's pause, the run's record; the
    attempt is one failed ``job.run`` and the call one ``admin.request`` with 503."""
    r = stack.call("POST", RUN)
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "15"
    body = r.json()
    assert body["error"] == "job_locked"
    assert body["retry_after"] == 15
    assert (body["run"]["outcome"], body["run"]["error"]) == ("failure", "lock_timeout")
    for text in ("Traceback", "DELETE FROM", "canceling statement", "lock timeout"):
        assert text not in r.text  # no stack trace, no SQL, no server message
    [run] = stack.events(types=("job.run",))
    assert (run["outcome"], run["reason"]) == ("failure", "lock_timeout")
    assert run["details"]["run_id"] == body["run"]["run_id"]
    calls = stack.events(types=("admin.request",))
    [call] = [e for e in calls if e["details"]["route"] == "/admin/jobs/{job}/run"]
    assert call["details"]["status"] == 503

    [status] = [j for j in stack.call("GET", "/admin/jobs").json()["jobs"] if j["job"] in RUN]
    assert status["backoff"]["failures"] == 1
    assert status["backoff"]["error"] == "lock_timeout"

    holder.rollback()  # the lock is gone: the next manual run succeeds
    assert stack.call("POST", RUN).status_code == 200


def test_the_openapi_document_declares_the_503_and_its_retry_after(stack: AdminStack) -> None:
    """The job run's 503 names ``job_locked`` and declares ``Retry-After``; its 500 is
    a run that failed otherwise."""
    doc = stack.call("GET", "/openapi.json").json()
    answers = doc["paths"]["/admin/jobs/{job}/run"]["post"]["responses"]
    assert "job_locked" in answers["503"]["description"]
    assert "Retry-After" in answers["503"]["headers"]
    assert "job_locked" not in answers["500"]["description"]
    assert answers["503"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    error = doc["components"]["schemas"]["Error"]["properties"]
    assert error["retry_after"]["type"] == "integer"
    assert error["run"]["type"] == "object"
