"""Cleanup jobs over real HTTP: thousands of lapsed sessions and expired flows cleaned in
batches while logins go on; exact counts in job.run; two instances on one PostgreSQL run a
scheduled slot exactly once."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from admin_harness import admin_stack
from sqlalchemy import insert

from kroonika.db.sessions import login_flow, session

IDLE, EXPIRED, FLOWS = 1200, 800, 1500


def _seed(engine: Any, now: int) -> None:
    rows = []
    for i in range(IDLE + EXPIRED):
        idle = i < IDLE
        rows.append(
            {
                "ref": f"seed{i:08d}",
                "secret_digest": f"{i:064x}",
                "subject": f"EE4900212{i % 100:04d}",  # not the people logging in
                "method": "idcard",
                "acr": "high",
                "created_at": now - 5000,
                "last_seen_at": now - 4000,
                "idle_expires_at": now - 100,
                "absolute_expires_at": now + 1000 if idle else now - 10,
            }
        )
    flows = [
        {
            "flow_id": f"00000000-0000-0000-0000-{i:012d}",
            "state_digest": f"s{i:063d}",
            "nonce_digest": "n" * 64,
            "acr_requested": "high",
            "methods": "",
            "ui_locales": "et",
            "return_to": "/",
            "status": "redirected",
            "created_at": now - 99_000,
            "expires_at": now - 90_000,
        }
        for i in range(FLOWS)
    ]
    with engine.begin() as conn:
        conn.execute(insert(session), rows)
        conn.execute(insert(login_flow), flows)


def test_cleanup_with_thousands_of_rows_while_logins_go_on(tmp_path: Path) -> None:
    """Both cleanup runs and every concurrent login complete; job.run counts are exact and
    every ended session has its session.terminate (reason idle/expired)."""
    with admin_stack(tmp_path, overrides={"jobs_batch_size": 200}) as a:
        clock = a.stack.clock
        clock.advance(time.time() - clock())
        _seed(a.stack.services.engine, int(clock()))
        logins: list[int] = []
        results: dict[str, Any] = {}

        def login() -> None:
            with a.stack.browser() as b:
                for _ in range(5):
                    logins.append(b.get(a.url + "/auth/login").status_code)

        def run(job: str) -> None:
            results[job] = a.call("POST", f"/admin/jobs/{job}/run")

        threads = [threading.Thread(target=run, args=(j,)) for j in ("sessions", "login_flows")]
        threads += [threading.Thread(target=login) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=240)
        assert logins == [200] * 15
        counts = results["sessions"].json()["counts"]
        # A login that supersedes its browser's session races the job to revoke that
        # session's token (the job revokes the active tokens of every ended session):
        # whichever comes first revokes it, once.
        raced = counts.pop("tokens_revoked", 0)
        assert raced <= 3 * 4
        assert counts == {"sessions_expired": EXPIRED, "sessions_idle": IDLE}
        flow_counts = {"login_flows_abandoned": FLOWS, "login_flows_deleted": FLOWS}
        assert results["login_flows"].json()["counts"] == flow_counts
        runs = {e["details"]["job"]: e for e in a.events(types=("job.run",))}
        run_counts = orjson.loads(runs["sessions"]["details"]["counts"])
        assert run_counts.pop("tokens_revoked", 0) == raced
        assert run_counts == {"sessions_expired": EXPIRED, "sessions_idle": IDLE}
        assert orjson.loads(runs["login_flows"]["details"]["counts"]) == flow_counts
        abandoned = a.events(types=("auth.login",), outcome="failure")
        assert sum(e["reason"] == "flow_abandoned" for e in abandoned) == FLOWS
        assert runs["sessions"]["details"]["trigger"].startswith("api-key/")
        terminated = a.events(types=("session.terminate",))
        ended = [e for e in terminated if e["reason"] in ("idle", "expired")]
        assert len(ended) == IDLE + EXPIRED
        assert {e["details"]["ended_by"] for e in ended} == {"system"}
        # Each browser's 2nd..5th login supersedes its previous session.
        assert sum(e["reason"] == "superseded" for e in terminated) == 3 * 4
        history = a.call("GET", "/admin/jobs/sessions/runs").json()["runs"]
        assert history[0]["outcome"] == "success"


@pytest.mark.postgres
def test_two_instances_run_a_scheduled_job_once(tmp_path: Path, fresh_postgres_url: str) -> None:
    """Two services on one PostgreSQL, both ticking every 0.1 s with the same clock: each
    job's slot runs exactly once across both."""
    common = {
        "jobs_enabled": True,
        "jobs_tick_s": 0.1,
        "audit_store_url": fresh_postgres_url,
    }
    # One start for both clocks, just past a minute: b's scheduler ticks as soon as b is
    # up, and a clock of its own read then could already be in the next minute's slot.
    start = float(int(time.time()) // 60 * 60 + 1)
    with (
        admin_stack(
            tmp_path / "a",
            overrides={**common, "audit_stream": "inst-a"},
            database_url=fresh_postgres_url,
            clock_start=start,
        ) as a,
        admin_stack(
            tmp_path / "b",
            overrides={**common, "audit_stream": "inst-b"},
            database_url=fresh_postgres_url,
            clock_start=start,
        ) as b,
    ):
        b.stack.clock.advance(a.stack.clock() - b.stack.clock())  # both at the same instant
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            jobs = a.call("GET", "/admin/jobs").json()["jobs"]
            if all(j["last_outcome"] == "success" for j in jobs):
                break
            time.sleep(0.2)
        # many more ticks on both instances: a wait for what must NOT happen (a second
        # run of a slot), which load can only make less likely to show, never fail
        time.sleep(1.0)
        jobs = (
            "login_flows",
            "sessions",
            "token_metadata",
            "access_lists",
            "token_keys",
            "audit_retention",
            "security_profiles",
        )
        for job in jobs:
            runs = a.call("GET", f"/admin/jobs/{job}/runs").json()["runs"]
            assert len(runs) == 1, (job, runs)
        events = a.events(types=("job.run",))
        assert sorted(e["details"]["job"] for e in events) == sorted(jobs)
