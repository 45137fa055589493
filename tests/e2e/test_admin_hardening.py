"""The admin API's own security over real HTTP (decision 0014): the deployment's four-eyes
setting cannot be lowered at run time, the security role stays inside its documented
powers, a failed manual job run answers an error, API keys never outgrow their creator,
and refusals made before any route ran still leave their admin.request."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from admin_harness import (
    ADMIN,
    AUDITOR,
    SECOND_ADMIN,
    AdminStack,
    admin_stack,
    as_person,
    holder_key,
    refuse_events,
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminStack]:
    with admin_stack(Path(tmp_path_factory.mktemp("hardening"))) as s:
        yield s


def _violations(stack: AdminStack, rid: str) -> list[dict[str, Any]]:
    return stack.events(types=("security.policy_violation",), correlation=rid)


def _request_status(stack: AdminStack, rid: str) -> list[int]:
    return [e["details"]["status"] for e in stack.events(types=("admin.request",), correlation=rid)]


def _login(stack: AdminStack, code: str) -> None:
    stack.stack.clock.advance(time.time() - stack.stack.clock())  # the mock signs in real time
    with stack.stack.browser(autologin=code) as b:
        assert b.get(stack.url + "/auth/login").status_code == 200


# --- the security role ----------------------------------------------------------------------


def test_security_cannot_ban_through_a_subject_revoke(stack: AdminStack) -> None:
    """A ban is a deny-list entry, which only admin may add: security asking for one gets
    403 and a role_exceeded violation, and nothing happens (no revocation, no entry)."""
    target = "40404040009"
    _login(stack, target)
    for ban in ("permanent", "temporary"):
        body: dict[str, Any] = {"subject": target, "ban": ban, "ban_seconds": 3600}
        r = stack.call("POST", "/admin/subjects/revoke", role="security", json=body)
        assert r.status_code == 403, r.text
        (v,) = _violations(stack, r.headers["x-request-id"])
        assert v["details"]["policy"] == "role_exceeded"
        assert _request_status(stack, r.headers["x-request-id"]) == [403]
    active = stack.call("GET", "/admin/sessions", params={"subject": target}).json()
    assert len(active["sessions"]) == 1
    status = stack.call("GET", "/admin/lists/status", params={"subject": target}).json()
    assert status["allowed"] is True


def test_security_still_revokes_and_ends_without_a_ban(stack: AdminStack) -> None:
    """Revoking a person's tokens and ending their sessions is security's job."""
    target = "37101010021"
    _login(stack, target)
    r = stack.call("POST", "/admin/subjects/revoke", role="security", json={"subject": target})
    assert r.status_code == 200, r.text
    assert (r.json()["sessions_ended"], r.json()["ban"]) == (1, None)


def test_admin_may_still_ban(stack: AdminStack) -> None:
    """The admin role keeps the ban of a subject revoke."""
    r = stack.call(
        "POST",
        "/admin/subjects/revoke",
        json={"subject": "49002124277", "ban": "temporary", "ban_seconds": 600},
    )
    assert r.status_code == 200, r.text
    assert r.json()["ban"]["expires_at"] is not None


# --- four eyes ------------------------------------------------------------------------------


def test_one_admin_cannot_switch_off_the_second_approval(stack: AdminStack) -> None:
    """PATCH admin.second_approval=false while it is on: 409 four_eyes, a
    separation_of_duties violation, the setting unchanged and no config.change."""
    r = stack.call("PATCH", "/admin/config", json={"changes": {"admin.second_approval": False}})
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "four_eyes"
    rid = r.headers["x-request-id"]
    (v,) = _violations(stack, rid)
    assert v["details"]["policy"] == "separation_of_duties"
    assert not stack.events(types=("config.change",), correlation=rid)
    got = stack.call("GET", "/admin/config").json()["config"]["admin.second_approval"]
    assert got["value"] is True


def test_the_second_approval_cannot_be_switched_off_with_other_changes(
    stack: AdminStack,
) -> None:
    """Hiding the switch among other keys does not help: the whole change is refused."""
    before = stack.call("GET", "/admin/config").json()["config"]["session.idle_s"]["value"]
    changes = {"session.idle_s": before + 1, "admin.second_approval": False}
    r = stack.call("PATCH", "/admin/config", json={"changes": changes})
    assert r.status_code == 409, r.text
    after = stack.call("GET", "/admin/config").json()["config"]["session.idle_s"]["value"]
    assert after == before


def test_a_person_cannot_switch_off_the_second_approval_either(stack: AdminStack) -> None:
    """With a TARA session and CSRF token the answer is the same 409."""
    stack.stack.clock.advance(time.time() - stack.stack.clock())
    with stack.stack.browser(autologin=SECOND_ADMIN) as b:
        b.get(stack.url + "/auth/login")
        csrf = b.get(stack.url + "/auth/session").json()["csrf_token"]
        r = b.patch(
            stack.url + "/admin/config",
            json={"changes": {"admin.second_approval": False}},
            headers={"x-justification": "INC-1 turning four eyes off", "x-csrf-token": csrf},
        )
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "four_eyes"


def test_switching_the_second_approval_on_needs_one_admin(tmp_path: Path) -> None:
    """Where the deployment has it off, one administrator may switch it on (stricter);
    switching it off again is not one administrator's call: it waits for a second one
    (decision 0017)."""
    with admin_stack(tmp_path, overrides={"admin_second_approval": False}) as s:
        on = s.call("PATCH", "/admin/config", json={"changes": {"admin.second_approval": True}})
        assert on.status_code == 200, on.text
        (change,) = s.events(types=("config.change",), correlation=on.headers["x-request-id"])
        assert (change["details"]["before"], change["details"]["after"]) == ("false", "true")
        off = s.call("PATCH", "/admin/config", json={"changes": {"admin.second_approval": False}})
        assert off.status_code == 202, off.text
        got = s.call("GET", "/admin/config").json()["config"]["admin.second_approval"]
        assert got["value"] is True


# --- manual job runs ------------------------------------------------------------------------


def test_a_failed_manual_run_answers_500_with_its_run(
    stack: AdminStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job that crashes: 500 job_failed with the run id and outcome failure, the
    error's type but never its message or a traceback; the run is in the history."""
    import kroonika.jobs.cleanup as cleanup

    def crash(*_: Any) -> Any:
        raise RuntimeError("secret-looking detail kra_0000_should_not_leak")

    monkeypatch.setattr(cleanup, "_rows", crash)
    r = stack.call("POST", "/admin/jobs/login_flows/run")
    monkeypatch.undo()
    assert r.status_code == 500, r.text
    body = r.json()
    assert body["error"] == "job_failed"
    assert body["run"]["outcome"] == "failure"
    assert body["run"]["error"] == "RuntimeError"
    assert "should_not_leak" not in r.text
    assert "Traceback" not in r.text
    history = stack.call("GET", "/admin/jobs/login_flows/runs").json()["runs"]
    assert body["run"]["run_id"] in {h["run_id"] for h in history}
    rid = r.headers["x-request-id"]
    (run,) = stack.events(types=("job.run",), correlation=rid)
    assert (run["outcome"], run["details"]["run_id"]) == ("failure", body["run"]["run_id"])
    assert _request_status(stack, rid) == [500]


def test_a_manual_run_failing_on_the_database_answers_503(
    stack: AdminStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that fails because the database is unavailable: 503 job_unavailable, with
    its run id and recorded outcome."""
    from sqlalchemy.exc import OperationalError

    import kroonika.jobs.cleanup as cleanup

    def down(*_: Any) -> Any:
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    monkeypatch.setattr(cleanup, "_rows", down)
    r = stack.call("POST", "/admin/jobs/login_flows/run")
    monkeypatch.undo()
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "job_unavailable"
    assert r.json()["run"]["outcome"] == "failure"
    history = stack.call("GET", "/admin/jobs/login_flows/runs").json()["runs"]
    assert r.json()["run"]["run_id"] in {h["run_id"] for h in history}
    assert "SELECT" not in r.text


def test_a_run_whose_record_cannot_be_written_answers_503_with_its_run(
    stack: AdminStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run ended but its job.run could not be written (the trail went away): 503
    job_unavailable that still names the run (id, outcome) and says it is unrecorded,
    so the operator can find it in the history, instead of a bare 503."""
    from kroonika.audit import AuditUnavailable
    from kroonika.jobs import Scheduler

    async def refused(*_: Any, **__: Any) -> None:
        raise AuditUnavailable("the audit writer stopped")

    monkeypatch.setattr(Scheduler, "_record", refused)
    r = stack.call("POST", "/admin/jobs/access_lists/run")
    monkeypatch.undo()
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["error"] == "job_unavailable"
    assert body["run"]["outcome"] == "success"
    assert body["run"]["recorded"] is False
    history = stack.call("GET", "/admin/jobs/access_lists/runs").json()["runs"]
    assert body["run"]["run_id"] in {h["run_id"] for h in history}


def test_a_successful_manual_run_still_answers_200(stack: AdminStack) -> None:
    """The ordinary case is unchanged."""
    r = stack.call("POST", "/admin/jobs/access_lists/run")
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "success"


# --- API keys never outgrow their creator ---------------------------------------------------


def _as_person(stack: AdminStack, code: str, method: str, path: str, **kw: Any) -> Any:
    """One admin call with a TARA session of ``code`` and its CSRF token."""
    return as_person(
        stack, code, method, path, why="INC-7 automation key for the nightly export", **kw
    )


def _jobs(stack: AdminStack, key: str) -> Any:
    return stack.call("GET", "/admin/jobs", role=None, headers={"authorization": f"Bearer {key}"})


def test_an_api_key_loses_the_roles_its_creator_loses(stack: AdminStack) -> None:
    """A person's admin key works while they are admin; once their admin role is revoked
    the key is refused (403, a role_exceeded violation naming no roles), and the key
    list shows what it may still do."""
    from kroonika.admin import RoleStore

    roles = RoleStore(stack.stack.services.engine, clock=stack.stack.services.clock)
    roles.grant(AUDITOR, "admin", by="test")
    made = _as_person(
        stack, AUDITOR, "POST", "/admin/api-keys", json={"name": "n", "roles": ["admin"]}
    )
    assert made.status_code == 201, made.text
    key = made.json()["api_key"]
    assert _jobs(stack, key).status_code == 200
    roles.revoke(AUDITOR, "admin")  # as an approved revoke request does
    refused = _jobs(stack, key)
    assert refused.status_code == 403, refused.text
    (v,) = _violations(stack, refused.headers["x-request-id"])
    assert v["details"]["policy"] == "role_exceeded"
    assert v["actor"].get("roles", []) == []
    listed = stack.call("GET", "/admin/api-keys").json()["api_keys"]
    (shown,) = [k for k in listed if k["id"] == made.json()["id"]]
    assert (shown["roles"], shown["effective_roles"]) == (["admin"], [])


def test_an_api_key_of_someone_who_holds_no_role_has_none(stack: AdminStack) -> None:
    """A key whose creator is no role holder (or cannot be resolved) may do nothing."""
    from kroonika.admin import ApiKeys

    services = stack.stack.services
    _, key = ApiKeys(services.engine, clock=services.clock).create(
        "orphan", ["admin"], by="admin:nobody-we-know", ttl_s=3600
    )
    assert _jobs(stack, key).status_code == 403


def test_a_key_made_by_a_key_lives_and_acts_within_its_parent(stack: AdminStack) -> None:
    """A key made with an API key expires no later than that key and stops acting when
    it is revoked: automation cannot renew itself forever."""
    parent = holder_key(stack.stack.services, "admin", ADMIN, name="parent")
    auth = {"authorization": f"Bearer {parent}"}
    parent_id = parent.split("_")[1]
    made = stack.call(
        "POST",
        "/admin/api-keys",
        role=None,
        headers=auth,
        json={"name": "child", "roles": ["admin"], "ttl_s": 30 * 86400},
    )
    assert made.status_code == 201, made.text
    keys = {k["id"]: k for k in stack.call("GET", "/admin/api-keys").json()["api_keys"]}
    assert made.json()["expires_at"] <= keys[parent_id]["expires_at"]
    child = made.json()["api_key"]
    assert _jobs(stack, child).status_code == 200
    assert stack.call("DELETE", f"/admin/api-keys/{parent_id}").status_code == 200
    assert _jobs(stack, child).status_code == 403


# --- refusals before any route ran ----------------------------------------------------------

MARKER = "body-marker-that-must-not-be-recorded"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminStack]:
    """Small bodies only (the limiter is off, so no call is refused for its rate)."""
    overrides = {"max_body_bytes": 4096}
    with admin_stack(Path(tmp_path_factory.mktemp("guarded")), overrides=overrides) as s:
        yield s


@pytest.fixture(scope="module")
def limited_ip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminStack]:
    """Three admin calls a minute per address."""
    overrides = {
        "ratelimit_enabled": True,
        "ratelimit_limits": {"admin:ip": "3/minute", "admin:person": "off"},
    }
    with admin_stack(Path(tmp_path_factory.mktemp("limited-ip")), overrides=overrides) as s:
        yield s


def _only_request(stack: AdminStack, rid: str) -> dict[str, Any]:
    (event,) = stack.events(types=("admin.request",), correlation=rid)
    return event


def test_a_too_large_admin_body_is_recorded_without_it(guarded: AdminStack) -> None:
    """413 before any route ran: one failed admin.request with the route template, the
    method and the status; neither the body nor the key nor the query's personal code."""
    body = ("x" * 5000 + MARKER).encode()
    r = guarded.call(
        "POST",
        "/admin/lists/import?format=csv&subject=38001085718",
        content=body,
        headers={"content-type": "text/csv"},
    )
    assert r.status_code == 413, r.text
    event = _only_request(guarded, r.headers["x-request-id"])
    assert event["outcome"] == "failure"
    d = event["details"]
    assert (d["method"], d["route"], d["status"]) == ("POST", "/admin/lists/import", 413)
    raw = str(guarded.stack.raw_events())
    assert MARKER not in raw
    assert "38001085718" not in raw
    assert guarded.keys["admin"].split("_", 2)[2] not in raw


def test_a_too_large_chunked_admin_body_is_recorded_as_413(guarded: AdminStack) -> None:
    """A body without Content-Length that grows past the limit while the route reads it:
    the one admin.request says 413, as the answer does (not 500)."""

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"list,kind,value,reason\n" + b"y" * 1000

    r = guarded.call("POST", "/admin/lists/import?format=csv", content=chunks())
    assert r.status_code == 413, r.text
    assert _only_request(guarded, r.headers["x-request-id"])["details"]["status"] == 413


def test_the_per_address_limit_leaves_an_admin_trail(limited_ip: AdminStack) -> None:
    """Over admin:ip every refused call is still one failed admin.request (anonymous:
    the limit is counted before authentication), on the route it probed or
    /admin/{unmatched}, never with the path's personal code."""
    answers = [limited_ip.call("GET", "/admin/jobs") for _ in range(5)]
    refused = [r for r in answers if r.status_code == 429]
    assert len(refused) >= 2, [r.status_code for r in answers]
    for r in refused:
        event = _only_request(limited_ip, r.headers["x-request-id"])
        assert (event["details"]["route"], event["details"]["status"]) == ("/admin/jobs", 429)
        assert event["details"]["auth"] == "none"
    probe = limited_ip.call("GET", "/admin/people/38001085718")
    assert probe.status_code == 429
    event = _only_request(limited_ip, probe.headers["x-request-id"])
    assert event["details"]["route"] == "/admin/{unmatched}"
    assert "38001085718" not in str(event)


def test_a_refusal_stands_when_the_trail_cannot_record_it(
    guarded: AdminStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trail down: a too-large admin call is still a 413 (not a 500 or a hang); the
    lost record is the operational log's business."""
    refuse_events(monkeypatch, guarded, "admin.request")
    r = guarded.call("POST", "/admin/lists/import", content=b"z" * 5000)
    monkeypatch.undo()
    assert r.status_code == 413, r.text
    assert not guarded.events(types=("admin.request",), correlation=r.headers["x-request-id"])


# --- client changes the trail cannot record are undone --------------------------------------


def _registry(stack: AdminStack) -> Any:
    from kroonika.tokens import ClientRegistry

    services = stack.stack.services
    return ClientRegistry(services.engine, clock=services.clock, scrypt_n=2**10)


def test_a_client_whose_registration_cannot_be_recorded_is_removed(
    stack: AdminStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No credential without its record: 503 and the client is not registered."""
    refuse_events(monkeypatch, stack, "config.change")
    r = stack.call("POST", "/admin/clients", json={"name": "unrecorded-client"})
    monkeypatch.undo()
    assert r.status_code == 503, r.text
    names = [c["name"] for c in stack.call("GET", "/admin/clients").json()["clients"]]
    assert "unrecorded-client" not in names


def test_a_secret_rotation_that_cannot_be_recorded_keeps_the_old_secret(
    stack: AdminStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """503, and the old secret still authenticates (the relying service keeps working)."""
    made = stack.call("POST", "/admin/clients", json={"name": "rotating"}).json()
    client_id, secret = made["client_id"], made["client_secret"]
    refuse_events(monkeypatch, stack, "config.change")
    r = stack.call("POST", f"/admin/clients/{client_id}/rotate-secret")
    monkeypatch.undo()
    assert r.status_code == 503, r.text
    assert _registry(stack).authenticate(client_id, secret).client_id == client_id


def test_a_disable_that_cannot_be_recorded_is_undone(
    stack: AdminStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """503, and the client is enabled as before."""
    client_id = stack.call("POST", "/admin/clients", json={"name": "disabling"}).json()["client_id"]
    refuse_events(monkeypatch, stack, "config.change")
    r = stack.call("POST", f"/admin/clients/{client_id}/disable")
    monkeypatch.undo()
    assert r.status_code == 503, r.text
    (shown,) = [
        c
        for c in stack.call("GET", "/admin/clients").json()["clients"]
        if c["client_id"] == client_id
    ]
    assert shown["disabled"] is False


# --- role requests of someone who is no longer an administrator -----------------------------


def test_a_request_of_someone_no_longer_admin_cannot_be_approved(stack: AdminStack) -> None:
    """A role request outlives its requester's admin role: approving it then is refused
    (409 requester_not_admin, a separation_of_duties violation) and changes nothing;
    rejecting it still works."""
    from kroonika.admin import RoleStore

    roles = RoleStore(stack.stack.services.engine, clock=stack.stack.services.clock)
    roles.grant(AUDITOR, "admin", by="test")
    asked = _as_person(
        stack, AUDITOR, "POST", "/admin/roles", json={"subject": "49002124277", "role": "admin"}
    )
    assert asked.status_code == 202, asked.text
    request_id = asked.json()["request"]["id"]
    roles.revoke(AUDITOR, "admin")
    path = f"/admin/roles/requests/{request_id}"
    approved = _as_person(stack, SECOND_ADMIN, "POST", path, json={"approve": True})
    assert approved.status_code == 409, approved.text
    assert approved.json()["error"] == "requester_not_admin"
    (v,) = _violations(stack, approved.headers["x-request-id"])
    assert v["details"]["policy"] == "separation_of_duties"
    assert "admin" not in roles.roles_of("49002124277")
    rejected = _as_person(stack, SECOND_ADMIN, "POST", path, json={"approve": False})
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["request"]["status"] == "rejected"
