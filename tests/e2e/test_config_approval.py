"""Two-person approval of configuration changes that weaken a control, over real HTTP with
the TARA mock (decision 0017): with ``admin.second_approval`` on, such a change waits for
a second administrator, who applies it exactly as asked or rejects it; the requester,
their API keys and keys are no second pair of eyes; a request expires; a change that
cannot be recorded is not made."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from admin_harness import (
    ADMIN,
    REQUESTS,
    SECOND_ADMIN,
    WHY,
    AdminStack,
    admin_stack,
    approve_after,
    as_person,
    config_changes,
    decide,
    holder_key,
    key_label,
    person_label,
    person_session,
    refuse_events,
)

from kroonika.admin import RoleStore

CONFIG = "/admin/config"
ROLES = "/admin/roles"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminStack]:
    """The deployment default: second approval on."""
    with admin_stack(Path(tmp_path_factory.mktemp("approval"))) as s:
        yield s


def _value(stack: AdminStack, key: str) -> Any:
    return stack.call("GET", CONFIG).json()["config"][key]["value"]


def _ask(stack: AdminStack, changes: dict[str, Any]) -> dict[str, Any]:
    """A change asked for with the admin API key (made by ADMIN): 202 and its request."""
    r = stack.call("PATCH", CONFIG, json={"changes": changes})
    assert r.status_code == 202, r.text
    request: dict[str, Any] = r.json()["request"]
    return request


def _violation(stack: AdminStack, rid: str) -> dict[str, Any]:
    (v,) = stack.events(types=("security.policy_violation",), correlation=rid)
    return v


def test_a_weakening_change_waits_and_is_not_applied(stack: AdminStack) -> None:
    """202 with the request's id; the value is unchanged; one config.change per key,
    outcome unknown, state pending, naming the requester and when it expires."""
    before = _value(stack, "session.idle_s")
    r = stack.call("PATCH", CONFIG, json={"changes": {"session.idle_s": before + 60}})
    assert r.status_code == 202, r.text
    req = r.json()["request"]
    assert (req["status"], req["weakening"]) == ("pending", ["session.idle_s"])
    assert req["justification"] == WHY  # what the second administrator judges
    assert req["expires_at"] - req["requested_at"] == 86_400
    assert _value(stack, "session.idle_s") == before
    (event,) = config_changes(stack, r.headers["x-request-id"])
    assert event["outcome"] == "unknown"
    d = event["details"]
    assert (d["state"], d["request_id"], d["requested_by"]) == (
        "pending",
        req["id"],
        key_label(stack),
    )
    assert (d["before"], d["after"], d["weakening"]) == (str(before), str(before + 60), True)
    assert d["expires_at"] == req["expires_at"]
    listed = stack.call("GET", REQUESTS, params={"status": "pending"}).json()["requests"]
    assert req["id"] in {x["id"] for x in listed}


def test_a_change_that_weakens_nothing_applies_at_once(stack: AdminStack) -> None:
    """Tightening (a shorter idle timeout, a longer detection window) needs one
    administrator: 200, applied, config.change without a request."""
    idle, window = _value(stack, "session.idle_s"), _value(stack, "alerts.brute_force_window_s")
    changes = {"session.idle_s": idle - 1, "alerts.brute_force_window_s": window + 10}
    r = stack.call("PATCH", CONFIG, json={"changes": changes})
    assert r.status_code == 200, r.text
    assert sorted(r.json()["changed"]) == ["alerts.brute_force_window_s", "session.idle_s"]
    assert _value(stack, "session.idle_s") == idle - 1
    events = config_changes(stack, r.headers["x-request-id"])
    assert len(events) == 2
    for event in events:
        assert "state" not in event["details"]
        assert "weakening" not in event["details"]


def test_one_weakening_key_holds_back_the_whole_change(stack: AdminStack) -> None:
    """A change is applied as one: with one weakening key among others, none is applied
    until it is approved."""
    idle = _value(stack, "session.idle_s")
    req = _ask(stack, {"ratelimit.limits": {"admin:ip": "off"}, "session.idle_s": idle - 1})
    assert req["weakening"] == ["ratelimit.limits"]
    assert _value(stack, "session.idle_s") == idle
    assert "admin:ip" not in _value(stack, "ratelimit.limits")


def test_the_requester_is_no_second_pair_of_eyes(stack: AdminStack) -> None:
    """The person who asked cannot approve (409 same_admin), nor can their API key (409
    api_key: decisions are made by people); each refusal is a separation_of_duties
    violation and the request stays pending, unapplied."""
    asked = as_person(
        stack, ADMIN, "PATCH", CONFIG, json={"changes": {"jobs.login_flows.enabled": False}}
    )
    assert asked.status_code == 202, asked.text
    request_id = asked.json()["request"]["id"]
    own = decide(stack, ADMIN, request_id)
    assert (own.status_code, own.json()["error"]) == (409, "same_admin"), own.text
    assert _violation(stack, own.headers["x-request-id"])["details"]["policy"] == (
        "separation_of_duties"
    )
    by_key = stack.call("POST", f"{REQUESTS}/{request_id}", json={"approve": True})
    assert (by_key.status_code, by_key.json()["error"]) == (409, "api_key"), by_key.text
    assert _violation(stack, by_key.headers["x-request-id"])["reason"] == "api_key"
    (still,) = [x for x in stack.call("GET", REQUESTS).json()["requests"] if x["id"] == request_id]
    assert still["status"] == "pending"


def test_the_maker_of_the_requesting_key_cannot_approve(stack: AdminStack) -> None:
    """A change asked for with an API key cannot be approved by the person who made the
    key: 409 same_admin."""
    req = _ask(stack, {"alerts.brute_force_failures": 10_000})
    r = decide(stack, ADMIN, req["id"])
    assert (r.status_code, r.json()["error"]) == (409, "same_admin"), r.text
    assert _value(stack, "alerts.brute_force_failures") != 10_000


def test_a_request_of_a_revoked_key_can_only_be_rejected(stack: AdminStack) -> None:
    """The key that asked was revoked: approving is 409 requester_not_admin and applies
    nothing; rejecting still works."""
    key = holder_key(stack.stack.services, "admin", ADMIN, name="asks-then-revoked")
    auth = {"authorization": f"Bearer {key}"}
    asked = stack.call(
        "PATCH",
        CONFIG,
        role=None,
        headers=auth,
        json={"changes": {"jobs.security_profiles.enabled": False}},
    )
    assert asked.status_code == 202, asked.text
    request_id = asked.json()["request"]["id"]
    assert stack.call("DELETE", f"/admin/api-keys/{key.split('_')[1]}").status_code == 200
    approved = decide(stack, SECOND_ADMIN, request_id)
    assert (approved.status_code, approved.json()["error"]) == (409, "requester_not_admin")
    assert _value(stack, "jobs.security_profiles.enabled") is True
    rejected = decide(stack, SECOND_ADMIN, request_id, approve=False)
    assert rejected.status_code == 200, rejected.text


def test_a_second_admin_approves_and_both_are_recorded(stack: AdminStack) -> None:
    """Another person approves: the change is applied exactly as asked; its config.change
    names the requester and the approver (the actor), with before, after and version;
    a second decision is 409 already_decided."""
    before = _value(stack, "alerts.stuffing_people")
    req = _ask(stack, {"alerts.stuffing_people": before * 10})
    r = decide(stack, SECOND_ADMIN, req["id"])
    assert r.status_code == 200, r.text
    assert (r.json()["request"]["status"], r.json()["changed"]) == (
        "approved",
        ["alerts.stuffing_people"],
    )
    assert _value(stack, "alerts.stuffing_people") == before * 10
    (event,) = config_changes(stack, r.headers["x-request-id"])
    d = event["details"]
    second = person_label(stack.stack.services, SECOND_ADMIN)
    assert (event["outcome"], d["state"], d["request_id"]) == ("success", "approved", req["id"])
    assert (d["requested_by"], d["decided_by"]) == (key_label(stack), second)
    assert "admin:" + event["actor"]["pseudonym"] == second
    assert (d["before"], d["after"], d["weakening"]) == (str(before), str(before * 10), True)
    assert d["version"] >= 1
    again = decide(stack, SECOND_ADMIN, req["id"], approve=False)
    assert (again.status_code, again.json()["error"]) == (409, "already_decided"), again.text


def test_a_rejected_change_is_not_applied(stack: AdminStack) -> None:
    """Rejection: 200, status rejected, nothing changed, a failed config.change with state
    rejected naming both; it cannot be approved afterwards."""
    before = _value(stack, "alerts.travel_max_kmh")
    req = _ask(stack, {"alerts.travel_max_kmh": 100_000})
    r = decide(stack, SECOND_ADMIN, req["id"], approve=False)
    assert r.status_code == 200, r.text
    assert r.json()["request"]["status"] == "rejected"
    assert _value(stack, "alerts.travel_max_kmh") == before
    (event,) = config_changes(stack, r.headers["x-request-id"])
    assert (event["outcome"], event["reason"], event["details"]["state"]) == (
        "failure",
        "rejected",
        "rejected",
    )
    assert event["details"]["decided_by"] == person_label(stack.stack.services, SECOND_ADMIN)
    later = decide(stack, SECOND_ADMIN, req["id"])
    assert (later.status_code, later.json()["error"]) == (409, "already_decided")
    assert _value(stack, "alerts.travel_max_kmh") == before


def test_a_change_whose_key_moved_on_is_stale(stack: AdminStack) -> None:
    """The value changed after the request (here: a tightening applied at once): approval
    answers 409 stale, applies nothing and leaves the request pending; it can be rejected."""
    idle = _value(stack, "session.idle_s")
    req = _ask(stack, {"session.idle_s": idle + 60})
    tightened = stack.call("PATCH", CONFIG, json={"changes": {"session.idle_s": idle - 1}})
    assert tightened.status_code == 200, tightened.text
    r = decide(stack, SECOND_ADMIN, req["id"])
    assert (r.status_code, r.json()["error"]) == (409, "stale"), r.text
    assert _value(stack, "session.idle_s") == idle - 1
    assert not config_changes(stack, r.headers["x-request-id"])
    assert decide(stack, SECOND_ADMIN, req["id"], approve=False).status_code == 200


def test_an_approval_the_trail_cannot_record_is_undone(
    stack: AdminStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trail refuses the config.change: 503, the value as before, the request pending
    again; once the trail is back the approval goes through."""
    before = _value(stack, "alerts.stuffing_attempts")
    req = _ask(stack, {"alerts.stuffing_attempts": before + 1000})
    with person_session(stack, SECOND_ADMIN) as (b, csrf):
        headers = {"x-justification": WHY, "x-csrf-token": csrf}
        refuse_events(monkeypatch, stack, "config.change")
        r = b.post(f"{stack.url}{REQUESTS}/{req['id']}", json={"approve": True}, headers=headers)
        monkeypatch.undo()
        assert r.status_code == 503, r.text
        assert _value(stack, "alerts.stuffing_attempts") == before
        listed = stack.call("GET", REQUESTS, params={"status": "pending"}).json()["requests"]
        assert req["id"] in {x["id"] for x in listed}
        ok = b.post(f"{stack.url}{REQUESTS}/{req['id']}", json={"approve": True}, headers=headers)
    assert ok.status_code == 200, ok.text
    assert _value(stack, "alerts.stuffing_attempts") == before + 1000


def test_a_request_the_trail_cannot_record_is_not_kept(
    stack: AdminStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """503 and no pending request: nothing waits for approval that the trail has not seen."""
    known = {x["id"] for x in stack.call("GET", REQUESTS).json()["requests"]}
    refuse_events(monkeypatch, stack, "config.change")
    r = stack.call("PATCH", CONFIG, json={"changes": {"jobs.sessions.enabled": False}})
    monkeypatch.undo()
    assert r.status_code == 503, r.text
    assert {x["id"] for x in stack.call("GET", REQUESTS).json()["requests"]} == known
    assert _value(stack, "jobs.sessions.enabled") is True


def test_a_rejection_the_trail_cannot_record_leaves_the_request_pending(
    stack: AdminStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """503, and the request can still be decided."""
    req = _ask(stack, {"jobs.token_keys.enabled": False})
    with person_session(stack, SECOND_ADMIN) as (b, csrf):
        refuse_events(monkeypatch, stack, "config.change")
        r = b.post(
            f"{stack.url}{REQUESTS}/{req['id']}",
            json={"approve": False},
            headers={"x-justification": WHY, "x-csrf-token": csrf},
        )
        monkeypatch.undo()
    assert r.status_code == 503, r.text
    listed = stack.call("GET", REQUESTS, params={"status": "pending"}).json()["requests"]
    assert req["id"] in {x["id"] for x in listed}


def test_an_unknown_request_is_404(stack: AdminStack) -> None:
    r = decide(stack, SECOND_ADMIN, "cr_0000000000000000")
    assert (r.status_code, r.json()["error"]) == (404, "not_found"), r.text


def test_the_deployment_floor_still_cannot_be_lowered(stack: AdminStack) -> None:
    """With KROONIKA_ADMIN_SECOND_APPROVAL=true no request is even made: 409 four_eyes."""
    known = {x["id"] for x in stack.call("GET", REQUESTS).json()["requests"]}
    r = stack.call("PATCH", CONFIG, json={"changes": {"admin.second_approval": False}})
    assert (r.status_code, r.json()["error"]) == (409, "four_eyes"), r.text
    assert {x["id"] for x in stack.call("GET", REQUESTS).json()["requests"]} == known


# --- role requests are recorded like configuration requests ---------------------------------


def test_a_role_request_is_recorded_when_asked_and_when_decided(stack: AdminStack) -> None:
    """Asked: a config.change of admin.roles, outcome unknown, state pending, naming the
    requester and when it expires (so an undecided one is seen to expire); rejected:
    failure, state rejected; approved: success, naming requester and approver."""
    subject, first, second = (
        "47101010033",
        *(person_label(stack.stack.services, c) for c in (ADMIN, SECOND_ADMIN)),
    )
    asked = as_person(stack, ADMIN, "POST", ROLES, json={"subject": subject, "role": "privacy"})
    assert asked.status_code == 202, asked.text
    req = asked.json()["request"]
    (event,) = config_changes(stack, asked.headers["x-request-id"])
    d = event["details"]
    assert (event["outcome"], d["key"], d["before"], d["after"]) == (
        "unknown",
        "admin.roles",
        "[]",
        '["privacy"]',
    )
    assert (d["state"], d["request_id"], d["requested_by"], d["expires_at"]) == (
        "pending",
        req["id"],
        first,
        req["expires_at"],
    )
    rejected = decide(stack, SECOND_ADMIN, req["id"], approve=False, path=f"{ROLES}/requests")
    assert rejected.status_code == 200, rejected.text
    (event,) = config_changes(stack, rejected.headers["x-request-id"])
    d = event["details"]
    assert (event["outcome"], event["reason"], d["state"]) == ("failure", "rejected", "rejected")
    assert (d["requested_by"], d["decided_by"]) == (first, second)
    again = as_person(stack, ADMIN, "POST", ROLES, json={"subject": subject, "role": "privacy"})
    approved = decide(stack, SECOND_ADMIN, again.json()["request"]["id"], path=f"{ROLES}/requests")
    assert approved.status_code == 200, approved.text
    (event,) = config_changes(stack, approved.headers["x-request-id"])
    d = event["details"]
    assert (event["outcome"], d["state"], d["after"]) == ("success", "approved", '["privacy"]')
    assert (d["requested_by"], d["decided_by"]) == (first, second)
    assert "admin:" + event["actor"]["pseudonym"] == second


def test_a_role_request_the_trail_cannot_record_is_not_kept(
    stack: AdminStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """503 and no pending role request: nothing waits that the trail has not seen."""
    with person_session(stack, ADMIN) as (b, csrf):
        refuse_events(monkeypatch, stack, "config.change")
        r = b.post(
            f"{stack.url}{ROLES}",
            json={"subject": "49002124277", "role": "auditor"},
            headers={"x-justification": WHY, "x-csrf-token": csrf},
        )
        monkeypatch.undo()
    assert r.status_code == 503, r.text
    pending = stack.call("GET", ROLES).json()["pending"]
    assert not [x for x in pending if x["role"] == "auditor"]


# --- expiry and switching four eyes off ------------------------------------------------------


def test_an_expired_request_cannot_be_approved(tmp_path: Path) -> None:
    """After KROONIKA_ADMIN_APPROVAL_TTL_S the request shows expired and approving it is
    409 expired; nothing is applied."""
    with admin_stack(tmp_path, overrides={"admin_approval_ttl_s": 60}) as s:
        before = _value(s, "session.absolute_s")
        req = _ask(s, {"session.absolute_s": before * 2})
        assert req["expires_at"] - req["requested_at"] == 60
        r = approve_after(s, SECOND_ADMIN, req["id"], 61)
        assert (r.status_code, r.json()["error"]) == (409, "expired"), r.text
        assert _value(s, "session.absolute_s") == before
        expired = s.call("GET", REQUESTS, params={"status": "expired"}).json()["requests"]
        assert [x["id"] for x in expired] == [req["id"]]
        assert not s.call("GET", REQUESTS, params={"status": "pending"}).json()["requests"]


def test_an_expired_role_request_cannot_be_approved(tmp_path: Path) -> None:
    """A role request expires after the same KROONIKA_ADMIN_APPROVAL_TTL_S: it is no
    longer listed as pending, approving it is 409 expired (recorded as the refused
    admin.request, like an expired configuration request) and grants nothing."""
    subject = "47101010033"
    with admin_stack(tmp_path, overrides={"admin_approval_ttl_s": 60}) as s:
        asked = as_person(
            s, ADMIN, "POST", "/admin/roles", json={"subject": subject, "role": "privacy"}
        )
        assert asked.status_code == 202, asked.text
        req = asked.json()["request"]
        r = approve_after(s, SECOND_ADMIN, req["id"], 61, path="/admin/roles/requests")
        assert (r.status_code, r.json()["error"]) == (409, "expired"), r.text
        assert "expired" in r.json()["detail"]
        (call,) = s.events(types=("admin.request",), correlation=r.headers["x-request-id"])
        assert (call["outcome"], call["reason"]) == ("failure", "http_409")
        assert not config_changes(s, r.headers["x-request-id"])
        assert "privacy" not in RoleStore(s.stack.services.engine, clock=s.stack.clock).roles_of(
            subject
        )
        assert req["id"] not in {x["id"] for x in s.call("GET", "/admin/roles").json()["pending"]}
        assert req["expires_at"] - req["requested_at"] == 60


def test_four_eyes_switched_on_at_run_time_is_switched_off_by_two(tmp_path: Path) -> None:
    """Where the deployment leaves it off: one administrator switches it on; switching it
    off waits for a second one; once approved, weakening changes apply at once again."""
    with admin_stack(tmp_path, overrides={"admin_second_approval": False}) as s:
        on = s.call("PATCH", CONFIG, json={"changes": {"admin.second_approval": True}})
        assert on.status_code == 200, on.text
        req = _ask(s, {"admin.second_approval": False})
        assert _value(s, "admin.second_approval") is True
        r = decide(s, SECOND_ADMIN, req["id"])
        assert r.status_code == 200, r.text
        assert _value(s, "admin.second_approval") is False
        direct = s.call(
            "PATCH", CONFIG, json={"changes": {"ratelimit.limits": {"admin:ip": "off"}}}
        )
        assert direct.status_code == 200, direct.text
        (event,) = config_changes(s, direct.headers["x-request-id"])
        assert event["details"]["weakening"] is True
        assert "state" not in event["details"]


@pytest.mark.postgres
def test_approval_on_postgresql(tmp_path: Path, fresh_postgres_url: str) -> None:
    """The same request, refusal and approval with the business tables and the trail in
    PostgreSQL."""
    url = fresh_postgres_url
    with admin_stack(tmp_path, database_url=url, overrides={"audit_store_url": url}) as s:
        req = _ask(s, {"ratelimit.limits": {"admin:person": "off"}})
        own = decide(s, ADMIN, req["id"])
        assert (own.status_code, own.json()["error"]) == (409, "same_admin"), own.text
        assert "admin:person" not in _value(s, "ratelimit.limits")
        r = decide(s, SECOND_ADMIN, req["id"])
        assert r.status_code == 200, r.text
        assert _value(s, "ratelimit.limits")["admin:person"] == "off"
        (event,) = config_changes(s, r.headers["x-request-id"])
        assert event["details"]["requested_by"] == key_label(s)
