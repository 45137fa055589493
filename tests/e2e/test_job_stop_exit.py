"""A stop of ``kroonika serve`` is bounded with a job stuck in a worker thread (decision
0010, 2026-11-28 (2)). The service runs as a real process on PostgreSQL; the test holds
an exclusive lock on ``login_flow``, so the ``login_flows`` job's first query waits in
its worker thread for as long as the lock is held (as on a database that does not
answer; the jobs' lock and statement timeouts are set far out of the way for that). On
SIGTERM the scheduler gives the run up, records it (``job.run`` failure ``stopped``, its
``job_run`` row ``interrupted``, its lease free), the trail stops, and the process exits
with status 1 and says why, where Python used to join the stuck thread at exit for ever."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from test_two_instances import Instance, free_port

from kroonika.audit import Query, SqlAuditStore, run_query
from kroonika.db import make_engine
from kroonika.db.migrate import upgrade

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

OTHER_JOBS = [
    "sessions",
    "token_metadata",
    "access_lists",
    "token_keys",
    "security_profiles",
    "audit_retention",
]


@pytest.fixture
def locked_flows(fresh_postgres_url: str) -> Iterator[str]:
    """A migrated database whose ``login_flow`` table the test holds locked."""
    engine = make_engine(fresh_postgres_url)
    upgrade(engine)
    engine.dispose()
    with psycopg.connect(fresh_postgres_url) as conn:
        conn.execute("LOCK TABLE login_flow IN ACCESS EXCLUSIVE MODE")
        yield fresh_postgres_url
        conn.rollback()


def _waiting_on_lock(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query ILIKE '%login_flow%'"
        ).fetchone()
    return bool(row and row[0])


def _job_state(url: str) -> tuple[Any, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        run = conn.execute("SELECT outcome FROM job_run WHERE job = 'login_flows'").fetchone()
        lease = conn.execute(
            "SELECT lease_until FROM job_state WHERE job = 'login_flows'"
        ).fetchone()
    return (run[0] if run else None), (lease[0] if lease else None)


def _events(url: str, kind: str) -> list[dict[str, Any]]:
    store = SqlAuditStore(url, read_only=True)
    try:
        return [orjson.loads(raw) for raw in run_query(store, Query(types=(kind,)))]
    finally:
        store.close()


def test_a_job_stuck_in_a_thread_does_not_hold_the_exit(tmp_path: Path, locked_flows: str) -> None:
    url = locked_flows
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KROONIKA_", "SSLKEYLOG"))},
        "KROONIKA_VAR_DIR": str(tmp_path / "var"),
        "KROONIKA_DATABASE_URL": url,
        "KROONIKA_AUDIT_STORE_URL": url,
        "KROONIKA_TARA_ISSUER": "http://127.0.0.1:9",  # development starts without TARA
        "KROONIKA_TARA_CLIENT_SECRET": "job-stop-test-secret-0123456789",
        "KROONIKA_COOKIE_SECURE": "false",
        "KROONIKA_JOBS_DISABLED": json.dumps(OTHER_JOBS),
        # The lock stands in for a database that does not answer, which no server-side
        # timeout ends: the jobs' own bounds (5 s by default) are lifted out of the way.
        "KROONIKA_JOBS_LOCK_TIMEOUT_S": "3600",
        "KROONIKA_JOBS_STATEMENT_TIMEOUT_S": "3600",
    }
    service = Instance("serve", free_port(), env, tmp_path / "serve.log")
    try:
        service.wait_ready()
        deadline = time.monotonic() + 60
        while not _waiting_on_lock(url):  # the job's query waits in its worker thread
            assert time.monotonic() < deadline, "the login_flows job never reached the lock"
            time.sleep(0.1)
        service.proc.send_signal(signal.SIGTERM)
        try:
            code = service.proc.wait(90)  # a guard against a hang, not a timing assertion
        except subprocess.TimeoutExpired:
            pytest.fail("kroonika serve did not exit with a job stuck in a worker thread")
    finally:
        if service.proc.poll() is None:
            service.proc.kill()
            service.proc.wait(10)
        service.log.close()
    output = (tmp_path / "serve.log").read_text(errors="replace")
    assert code == 1, output[-2000:]
    assert "worker thread(s) still running" in output
    [run] = [r for r in _events(url, "job.run") if r["details"]["job"] == "login_flows"]
    assert run["outcome"] == "failure"
    assert run["reason"] == "stopped"
    assert _job_state(url) == ("interrupted", None)
    assert [s["reason"] for s in _events(url, "audit.log.stop")] == ["shutdown"]
