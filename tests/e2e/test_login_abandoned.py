"""Abandoned login flows over real HTTP: the login_flows job ends each flow whose browser never
came back with exactly one ``auth.login`` (``flow_abandoned``), and nothing else gets one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
from admin_harness import admin_stack
from login_harness import SUCCESS_STEPS


def _start(a: Any) -> str:
    """Start a login without following the redirect to TARA; the flow's id."""
    with a.stack.browser() as b:
        r = b.get(a.url + "/auth/login", follow_redirects=False)
    assert r.status_code == 302
    request_id = r.headers["x-request-id"]
    (started,) = a.events(types=("auth.flow.transition",), correlation=request_id)[:1]
    return str(started["correlation"]["flow_id"])


def _transitions(a: Any, flow_id: str) -> list[tuple[str, str]]:
    return [
        (e["details"]["from_state"], e["details"]["to_state"])
        for e in a.events(types=("auth.flow.transition",), correlation=flow_id)
    ]


def test_every_started_login_ends_with_exactly_one_auth_login(tmp_path: Path) -> None:
    """Two abandoned flows get flow_abandoned and a transition to failed; a completed login,
    a cancelled one and one whose late callback found it expired get nothing more."""
    with admin_stack(tmp_path) as a:
        ttl = a.stack.settings.login_flow_ttl_s
        abandoned = [_start(a), _start(a)]
        with a.stack.browser() as b:
            ok = b.get(a.url + "/auth/login")
            assert ok.status_code == 200
        completed = a.events(types=("auth.login",), outcome="success")[0]["correlation"]["flow_id"]
        with a.stack.browser(autologin="cancel") as b:
            b.get(a.url + "/auth/login")
        cancelled = a.events(types=("auth.login",), outcome="failure")[0]["correlation"]["flow_id"]
        with a.stack.browser(autologin=None) as late:
            start = late.get(a.url + "/auth/login", follow_redirects=False)
            authorize = httpx.URL(start.headers["location"]).copy_merge_params(
                {"autologin": "38001085718"}
            )
            back = httpx.get(str(authorize), timeout=10)
            a.stack.clock.advance(ttl + 5)
            r = late.get(back.headers["location"])
            assert r.json()["reason"] == "state_expired"
        expired = r.headers["x-request-id"]
        expired_flow = a.events(types=("auth.login",), correlation=expired)[0]["correlation"][
            "flow_id"
        ]

        run = a.call("POST", "/admin/jobs/login_flows/run")
        assert run.status_code == 200, run.text
        assert run.json()["counts"] == {"login_flows_abandoned": 2}
        again = a.call("POST", "/admin/jobs/login_flows/run")
        assert again.json()["counts"] == {}

        for flow_id in abandoned:
            (login,) = a.events(types=("auth.login",), correlation=flow_id)
            assert login["outcome"] == "failure"
            assert login["reason"] == "flow_abandoned"
            assert login["actor"]["type"] == "anonymous"
            assert _transitions(a, flow_id) == [
                ("none", "started"),
                ("started", "redirected"),
                ("redirected", "failed"),
            ]
        for flow_id in (completed, cancelled, expired_flow):
            assert len(a.events(types=("auth.login",), correlation=flow_id)) == 1
        assert _transitions(a, completed) == SUCCESS_STEPS
        reasons = sorted(e.get("reason", "-") for e in a.events(types=("auth.login",)))
        assert reasons == ["-", "flow_abandoned", "flow_abandoned", "state_expired", "user_cancel"]
        (job,) = [
            e
            for e in a.events(types=("job.run",))
            if orjson.loads(e["details"]["counts"]).get("login_flows_abandoned")
        ]
        assert job["details"]["job"] == "login_flows"


def test_abandoned_flows_are_deleted_only_after_they_were_concluded(tmp_path: Path) -> None:
    """Past the retention an abandoned flow is concluded and deleted in the same run: its
    auth.login is stored before the row goes, and a second run finds nothing."""
    with admin_stack(tmp_path, overrides={"jobs_flow_retention_s": 0}) as a:
        flow_id = _start(a)
        a.stack.clock.advance(a.stack.settings.login_flow_ttl_s + 1)
        run = a.call("POST", "/admin/jobs/login_flows/run").json()
        assert run["counts"] == {"login_flows_abandoned": 1, "login_flows_deleted": 1}
        (login,) = a.events(types=("auth.login",), correlation=flow_id)
        assert login["reason"] == "flow_abandoned"
        assert a.call("POST", "/admin/jobs/login_flows/run").json()["counts"] == {}
