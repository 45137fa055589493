"""Two-person approval of token-client changes that weaken a control, over real HTTP with
the TARA mock (decision 0017): with ``admin.second_approval`` on, ``PATCH
/admin/clients/{id}`` that gives a client more (audiences, claims, a longer maximum TTL, a
looser own rate limit, re-enabling it) waits for a second administrator exactly as a
configuration change does; a change that gives it less applies at once."""

from __future__ import annotations

import asyncio
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
    key_label,
    person_label,
    person_session,
    refuse_events,
)
from sqlalchemy import select, update

from kroonika.audit import AuditUnavailable
from kroonika.db.tokens import clients as token_clients
from kroonika.tokens import ClientRegistry, hash_secret

CLIENTS = "/admin/clients"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminStack]:
    """The deployment default: second approval on."""
    with admin_stack(Path(tmp_path_factory.mktemp("client-approval"))) as s:
        yield s


def _client(stack: AdminStack, **fields: Any) -> dict[str, Any]:
    made = stack.call(
        "POST",
        CLIENTS,
        json={
            "name": "relying-service",
            "allowed_audiences": ["svc-a"],
            "max_ttl_s": 600,
            "rate_limit": "10/minute",
            **fields,
        },
    )
    assert made.status_code == 201, made.text
    shown: dict[str, Any] = made.json()
    shown.pop("client_secret")
    return shown


def _now(stack: AdminStack, client_id: str) -> dict[str, Any]:
    (found,) = [
        c for c in stack.call("GET", CLIENTS).json()["clients"] if c["client_id"] == client_id
    ]
    return dict(found)


@pytest.mark.parametrize(
    ("patch", "weakening"),
    [
        ({"allowed_audiences": ["svc-a", "everything"]}, ["client.allowed_audiences"]),
        ({"allowed_claims": ["role"]}, ["client.allowed_claims"]),
        ({"max_ttl_s": 86_400}, ["client.max_ttl_s"]),
        ({"rate_limit": "1000/minute"}, ["client.rate_limit"]),
        ({"rate_limit": "1/second"}, ["client.rate_limit"]),  # a bigger burst: 60/minute
    ],
)
def test_a_weakening_client_change_waits_and_is_not_applied(
    stack: AdminStack, patch: dict[str, Any], weakening: list[str]
) -> None:
    """202 with a pending request naming the client; the client is unchanged; one
    config.change per field, outcome unknown, state pending, with requester and expiry."""
    client = _client(stack)
    r = stack.call("PATCH", f"{CLIENTS}/{client['client_id']}", json=patch)
    assert r.status_code == 202, r.text
    req = r.json()["request"]
    assert (req["status"], req["weakening"]) == ("pending", weakening)
    assert req["target"] == f"client/{client['client_id']}"
    assert req["expires_at"] - req["requested_at"] == 86_400
    assert _now(stack, client["client_id"]) == client
    (event,) = config_changes(stack, r.headers["x-request-id"])
    assert event["outcome"] == "unknown"
    assert event["target"] == {"type": "client", "id": client["client_id"]}
    d = event["details"]
    assert (d["key"], d["state"], d["request_id"]) == (weakening[0], "pending", req["id"])
    assert (d["requested_by"], d["expires_at"], d["weakening"]) == (
        key_label(stack),
        req["expires_at"],
        True,
    )
    listed = stack.call("GET", REQUESTS, params={"status": "pending"}).json()["requests"]
    assert req["id"] in {x["id"] for x in listed}


def test_re_enabling_a_disabled_client_waits(stack: AdminStack) -> None:
    """A client disabled (at once, by one person) stays disabled until a second person
    approves enabling it again."""
    client = _client(stack)
    cid = client["client_id"]
    assert stack.call("POST", f"{CLIENTS}/{cid}/disable").status_code == 200
    r = stack.call("PATCH", f"{CLIENTS}/{cid}", json={"disabled": False})
    assert r.status_code == 202, r.text
    assert r.json()["request"]["weakening"] == ["client.disabled"]
    assert _now(stack, cid)["disabled"] is True


def test_a_strengthening_client_change_applies_at_once(stack: AdminStack) -> None:
    """Less for the client (an audience taken away, a shorter TTL, a stricter own limit,
    disabled) and a new name: 200, applied, one config.change per field, no request."""
    client = _client(stack, allowed_audiences=["svc-a", "svc-b"])
    cid = client["client_id"]
    patch = {
        "name": "renamed",
        "allowed_audiences": ["svc-b"],
        "max_ttl_s": 60,
        "rate_limit": "5/minute",
        "disabled": True,
    }
    r = stack.call("PATCH", f"{CLIENTS}/{cid}", json=patch)
    assert r.status_code == 200, r.text
    now = _now(stack, cid)
    assert {k: now[k] for k in patch} == patch
    events = config_changes(stack, r.headers["x-request-id"])
    assert sorted(e["details"]["key"] for e in events) == [f"client.{k}" for k in sorted(patch)]
    for event in events:
        assert event["outcome"] == "success"
        assert "state" not in event["details"]
        assert "weakening" not in event["details"]


def test_one_weakening_field_holds_back_the_whole_change(stack: AdminStack) -> None:
    """A change is applied as one: with a weakening field among others nothing is applied
    until it is approved, and then all of it."""
    client = _client(stack)
    cid = client["client_id"]
    req = stack.call("PATCH", f"{CLIENTS}/{cid}", json={"name": "both", "max_ttl_s": 7200}).json()[
        "request"
    ]
    assert req["weakening"] == ["client.max_ttl_s"]
    assert req["changes"] == {"client.max_ttl_s": 7200, "client.name": "both"}
    assert _now(stack, cid)["name"] == client["name"]
    assert decide(stack, SECOND_ADMIN, req["id"]).status_code == 200
    assert (_now(stack, cid)["name"], _now(stack, cid)["max_ttl_s"]) == ("both", 7200)


def test_the_requester_cannot_approve_their_own_client_change(stack: AdminStack) -> None:
    """The person who asked is no second pair of eyes (409 same_admin, a
    separation_of_duties violation), nor is the key made by them; the client stays as it
    was and the request pending."""
    client = _client(stack)
    cid = client["client_id"]
    asked = as_person(
        stack, ADMIN, "PATCH", f"{CLIENTS}/{cid}", json={"allowed_audiences": ["svc-a", "x"]}
    )
    assert asked.status_code == 202, asked.text
    request_id = asked.json()["request"]["id"]
    own = decide(stack, ADMIN, request_id)
    assert (own.status_code, own.json()["error"]) == (409, "same_admin"), own.text
    (v,) = stack.events(
        types=("security.policy_violation",), correlation=own.headers["x-request-id"]
    )
    assert v["details"]["policy"] == "separation_of_duties"
    by_key = stack.call("POST", f"{REQUESTS}/{request_id}", json={"approve": True})
    assert (by_key.status_code, by_key.json()["error"]) == (409, "api_key"), by_key.text
    assert _now(stack, cid) == client
    (still,) = [x for x in stack.call("GET", REQUESTS).json()["requests"] if x["id"] == request_id]
    assert still["status"] == "pending"


def test_a_second_admin_approves_a_client_change_and_both_are_recorded(
    stack: AdminStack,
) -> None:
    """Another person approves: the client gets exactly what was asked; the config.change
    names the client, the requester and the approver (the actor), with before and after;
    a second decision is 409 already_decided."""
    client = _client(stack)
    cid = client["client_id"]
    req = stack.call("PATCH", f"{CLIENTS}/{cid}", json={"max_ttl_s": 3600}).json()["request"]
    r = decide(stack, SECOND_ADMIN, req["id"])
    assert r.status_code == 200, r.text
    assert (r.json()["request"]["status"], r.json()["changed"]) == (
        "approved",
        ["client.max_ttl_s"],
    )
    assert _now(stack, cid)["max_ttl_s"] == 3600
    (event,) = config_changes(stack, r.headers["x-request-id"])
    d = event["details"]
    second = person_label(stack.stack.services, SECOND_ADMIN)
    assert event["target"] == {"type": "client", "id": cid}
    assert (event["outcome"], d["state"], d["request_id"]) == ("success", "approved", req["id"])
    assert (d["requested_by"], d["decided_by"]) == (key_label(stack), second)
    assert "admin:" + event["actor"]["pseudonym"] == second
    assert (d["key"], d["before"], d["after"], d["weakening"]) == (
        "client.max_ttl_s",
        "600",
        "3600",
        True,
    )
    assert d["justification"] == WHY
    again = decide(stack, SECOND_ADMIN, req["id"], approve=False)
    assert (again.status_code, again.json()["error"]) == (409, "already_decided"), again.text


def test_a_rejected_client_change_is_not_applied(stack: AdminStack) -> None:
    """Rejection: the client unchanged, a failed config.change with state rejected."""
    client = _client(stack)
    cid = client["client_id"]
    req = stack.call("PATCH", f"{CLIENTS}/{cid}", json={"allowed_claims": ["role"]}).json()[
        "request"
    ]
    r = decide(stack, SECOND_ADMIN, req["id"], approve=False)
    assert r.status_code == 200, r.text
    assert _now(stack, cid) == client
    (event,) = config_changes(stack, r.headers["x-request-id"])
    assert (event["outcome"], event["details"]["state"], event["target"]["id"]) == (
        "failure",
        "rejected",
        cid,
    )


def test_a_client_that_moved_on_is_stale(stack: AdminStack) -> None:
    """The field changed after the request (a tightening applied at once): approval is
    409 stale, nothing applied, the request still pending."""
    client = _client(stack)
    cid = client["client_id"]
    req = stack.call("PATCH", f"{CLIENTS}/{cid}", json={"max_ttl_s": 7200}).json()["request"]
    assert stack.call("PATCH", f"{CLIENTS}/{cid}", json={"max_ttl_s": 300}).status_code == 200
    r = decide(stack, SECOND_ADMIN, req["id"])
    assert (r.status_code, r.json()["error"]) == (409, "stale"), r.text
    assert _now(stack, cid)["max_ttl_s"] == 300
    assert not config_changes(stack, r.headers["x-request-id"])
    listed = stack.call("GET", REQUESTS, params={"status": "pending"}).json()["requests"]
    assert req["id"] in {x["id"] for x in listed}


def test_an_approved_client_change_the_trail_cannot_record_is_undone(
    stack: AdminStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trail refuses the approval's config.change: 503, the client as it was, the
    request pending again; once the trail is back the approval goes through."""
    client = _client(stack)
    cid = client["client_id"]
    req = stack.call("PATCH", f"{CLIENTS}/{cid}", json={"rate_limit": "500/minute"}).json()[
        "request"
    ]
    with person_session(stack, SECOND_ADMIN) as (b, csrf):
        headers = {"x-justification": WHY, "x-csrf-token": csrf}
        refuse_events(monkeypatch, stack, "config.change")
        r = b.post(f"{stack.url}{REQUESTS}/{req['id']}", json={"approve": True}, headers=headers)
        monkeypatch.undo()
        assert r.status_code == 503, r.text
        assert _now(stack, cid) == client
        ok = b.post(f"{stack.url}{REQUESTS}/{req['id']}", json={"approve": True}, headers=headers)
    assert ok.status_code == 200, ok.text
    assert _now(stack, cid)["rate_limit"] == "500/minute"


def test_a_client_request_the_trail_cannot_record_is_not_kept(
    stack: AdminStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """503 and no pending request: nothing waits that the trail has not seen."""
    client = _client(stack)
    known = {x["id"] for x in stack.call("GET", REQUESTS).json()["requests"]}
    refuse_events(monkeypatch, stack, "config.change")
    r = stack.call("PATCH", f"{CLIENTS}/{client['client_id']}", json={"max_ttl_s": 9999})
    monkeypatch.undo()
    assert r.status_code == 503, r.text
    assert {x["id"] for x in stack.call("GET", REQUESTS).json()["requests"]} == known
    assert _now(stack, client["client_id"]) == client


def test_an_expired_client_request_cannot_be_approved(tmp_path: Path) -> None:
    """After KROONIKA_ADMIN_APPROVAL_TTL_S: 409 expired, the client unchanged."""
    with admin_stack(tmp_path, overrides={"admin_approval_ttl_s": 60}) as s:
        client = _client(s)
        cid = client["client_id"]
        req = s.call("PATCH", f"{CLIENTS}/{cid}", json={"max_ttl_s": 7200}).json()["request"]
        r = approve_after(s, SECOND_ADMIN, req["id"], 61)
        assert (r.status_code, r.json()["error"]) == (409, "expired"), r.text
        assert _now(s, cid) == client


def test_without_four_eyes_a_weakening_client_change_applies_and_says_so(
    tmp_path: Path,
) -> None:
    """With second approval off the change applies at once (the own rate limit removed
    by null too); its config.change says weakening: true and carries no request."""
    with admin_stack(tmp_path, overrides={"admin_second_approval": False}) as s:
        cid = _client(s)["client_id"]
        r = s.call("PATCH", f"{CLIENTS}/{cid}", json={"max_ttl_s": 7200})
        assert r.status_code == 200, r.text
        assert _now(s, cid)["max_ttl_s"] == 7200
        (event,) = config_changes(s, r.headers["x-request-id"])
        assert event["details"]["weakening"] is True
        assert "state" not in event["details"]
        removed = s.call("PATCH", f"{CLIENTS}/{cid}", json={"rate_limit": None})
        assert (removed.status_code, removed.json()["rate_limit"]) == (200, None), removed.text
        (event,) = config_changes(s, removed.headers["x-request-id"])
        d = event["details"]
        assert (d["key"], d["before"], d["after"], d["weakening"]) == (
            "client.rate_limit",
            '"10/minute"',
            "null",
            True,
        )


def test_an_explicit_null_asks_to_remove_the_own_rate_limit(stack: AdminStack) -> None:
    """``"rate_limit": null`` removes the client's own limit: weakening, so a request
    whose config.change shows the limit before and null after; approved, the client has
    no own limit any more."""
    client = _client(stack)
    cid = client["client_id"]
    r = stack.call("PATCH", f"{CLIENTS}/{cid}", json={"rate_limit": None})
    assert r.status_code == 202, r.text
    req = r.json()["request"]
    assert (req["weakening"], req["changes"]) == (
        ["client.rate_limit"],
        {"client.rate_limit": None},
    )
    assert _now(stack, cid) == client
    (asked,) = config_changes(stack, r.headers["x-request-id"])
    assert (asked["details"]["before"], asked["details"]["after"]) == ('"10/minute"', "null")
    approved = decide(stack, SECOND_ADMIN, req["id"])
    assert approved.status_code == 200, approved.text
    assert _now(stack, cid) == {**client, "rate_limit": None}
    (event,) = config_changes(stack, approved.headers["x-request-id"])
    d = event["details"]
    assert (d["key"], d["before"], d["after"], d["state"]) == (
        "client.rate_limit",
        '"10/minute"',
        "null",
        "approved",
    )


def test_an_absent_rate_limit_is_left_as_it_is(stack: AdminStack) -> None:
    """A PATCH without ``rate_limit`` (a rename) keeps the client's own limit."""
    client = _client(stack)
    r = stack.call("PATCH", f"{CLIENTS}/{client['client_id']}", json={"name": "renamed"})
    assert r.status_code == 200, r.text
    assert r.json()["rate_limit"] == "10/minute"


@pytest.mark.parametrize("field", ["name", "allowed_audiences", "max_ttl_s", "disabled"])
def test_null_for_a_field_that_cannot_be_removed_is_refused(stack: AdminStack, field: str) -> None:
    """Only the own rate limit can be removed: null for another field is 400
    invalid_client, not silently nothing."""
    client = _client(stack)
    r = stack.call("PATCH", f"{CLIENTS}/{client['client_id']}", json={field: None})
    assert (r.status_code, r.json()["error"]) == (400, "invalid_client"), r.text
    assert _now(stack, client["client_id"]) == client


def _store(s: AdminStack, client_id: str, **fields: Any) -> None:
    """Another writer (a ``/disable``, another PATCH, another instance) stores ``fields``
    straight into the table, without bumping the client's version: as an instance still
    on the code before migration k0004 would (a recorded write over HTTP, which bumps
    it, is :func:`_overtaken_while_refused`)."""
    with s.stack.services.engine.begin() as conn:
        conn.execute(
            update(token_clients).where(token_clients.c.client_id == client_id).values(**fields)
        )


def _lands_after_the_read(
    monkeypatch: pytest.MonkeyPatch, s: AdminStack, client_id: str, **fields: Any
) -> list[bool]:
    """The next read of ``client_id`` is followed at once by another writer's change of
    its ``fields`` (landing while the call that read it is still at work); the list says
    whether it landed."""
    real = ClientRegistry.get
    landed: list[bool] = []

    def get(self: ClientRegistry, cid: str) -> Any:
        found = real(self, cid)
        if cid == client_id and found is not None and not landed:
            landed.append(True)
            _store(s, cid, **fields)
        return found

    monkeypatch.setattr(ClientRegistry, "get", get)
    return landed


def _refused_calls(stack: AdminStack, response: Any) -> list[int]:
    """The status of the call's ``admin.request`` (its record)."""
    return [
        e["details"]["status"]
        for e in stack.events(
            types=("admin.request",), correlation=response.headers["x-request-id"]
        )
    ]


def _disabled_in_between(s: AdminStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client disabled between a request for a longer TTL cap and its approval stays
    disabled: the approval writes the TTL cap only. Both orders: the disable before the
    approval, and the disable landing after the approval read the client."""
    before = _client(s)
    cid = before["client_id"]
    req = s.call("PATCH", f"{CLIENTS}/{cid}", json={"max_ttl_s": 7200}).json()["request"]
    assert s.call("POST", f"{CLIENTS}/{cid}/disable").status_code == 200
    r = decide(s, SECOND_ADMIN, req["id"])
    assert r.status_code == 200, r.text
    assert _now(s, cid) == {**before, "max_ttl_s": 7200, "disabled": True}
    assert r.json()["client"]["disabled"] is True

    racing = _client(s)
    cid = racing["client_id"]
    req = s.call("PATCH", f"{CLIENTS}/{cid}", json={"max_ttl_s": 7200}).json()["request"]
    landed = _lands_after_the_read(monkeypatch, s, cid, disabled=True)
    r = decide(s, SECOND_ADMIN, req["id"])
    monkeypatch.undo()
    assert (r.status_code, landed) == (200, [True]), r.text
    assert _now(s, cid) == {**racing, "max_ttl_s": 7200, "disabled": True}


def test_a_disable_between_request_and_approval_survives(
    stack: AdminStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """See :func:`_disabled_in_between` (SQLite)."""
    _disabled_in_between(stack, monkeypatch)


@pytest.mark.postgres
def test_a_disable_between_request_and_approval_survives_on_postgresql(
    tmp_path: Path, fresh_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """See :func:`_disabled_in_between` (PostgreSQL)."""
    with admin_stack(tmp_path, database_url=fresh_postgres_url) as s:
        _disabled_in_between(s, monkeypatch)


def test_a_field_of_the_request_moving_on_during_approval_is_stale(
    stack: AdminStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request's own field changed after the approval read the client: 409 stale,
    recorded (the call's admin.request), the other change kept, the request pending."""
    client = _client(stack)
    cid = client["client_id"]
    req = stack.call("PATCH", f"{CLIENTS}/{cid}", json={"max_ttl_s": 7200}).json()["request"]
    landed = _lands_after_the_read(monkeypatch, stack, cid, max_ttl_s=300)
    r = decide(stack, SECOND_ADMIN, req["id"])
    monkeypatch.undo()
    assert (r.status_code, r.json()["error"], landed) == (409, "stale", [True]), r.text
    assert _refused_calls(stack, r) == [409]
    assert not config_changes(stack, r.headers["x-request-id"])
    assert _now(stack, cid) == {**client, "max_ttl_s": 300}
    listed = stack.call("GET", REQUESTS, params={"status": "pending"}).json()["requests"]
    assert req["id"] in {x["id"] for x in listed}


def test_a_disable_during_a_direct_change_survives(
    stack: AdminStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change that applies at once (a shorter TTL cap) writes its own fields only: a
    disable that landed after it read the client stays."""
    client = _client(stack)
    cid = client["client_id"]
    landed = _lands_after_the_read(monkeypatch, stack, cid, disabled=True)
    r = stack.call("PATCH", f"{CLIENTS}/{cid}", json={"max_ttl_s": 60})
    monkeypatch.undo()
    assert (r.status_code, landed) == (200, [True]), r.text
    assert _now(stack, cid) == {**client, "max_ttl_s": 60, "disabled": True}


def test_undoing_an_unrecorded_approval_keeps_a_disable_made_meanwhile(
    stack: AdminStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trail refuses the approval's record while the client is being disabled: the
    approved TTL cap is put back, the disable stays."""
    client = _client(stack)
    cid = client["client_id"]
    req = stack.call("PATCH", f"{CLIENTS}/{cid}", json={"max_ttl_s": 7200}).json()["request"]
    trail = stack.stack.services.audit.trail
    refusing = trail.emit_many

    async def disable_then_refuse(events: Any) -> Any:
        batch = list(events)
        if any(e.type == "config.change" for e in batch):
            _store(stack, cid, disabled=True)
            raise AuditUnavailable("store down")
        return await refusing(batch)

    with person_session(stack, SECOND_ADMIN) as (b, csrf):
        monkeypatch.setattr(trail, "emit_many", disable_then_refuse)
        r = b.post(
            f"{stack.url}{REQUESTS}/{req['id']}",
            json={"approve": True},
            headers={"x-justification": WHY, "x-csrf-token": csrf},
        )
        monkeypatch.undo()
    assert r.status_code == 503, r.text
    assert _now(stack, cid) == {**client, "disabled": True}


def test_a_disable_during_a_secret_rotation_survives(
    stack: AdminStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new secret does not write the disabled flag it read: a client disabled while
    its secret was being rotated stays disabled."""
    client = _client(stack)
    cid = client["client_id"]
    landed = _lands_after_the_read(monkeypatch, stack, cid, disabled=True)
    r = stack.call("POST", f"{CLIENTS}/{cid}/rotate-secret")
    monkeypatch.undo()
    assert (r.status_code, landed) == (200, [True]), r.text
    assert _now(stack, cid)["disabled"] is True


def test_a_patch_that_changes_nothing_records_nothing(stack: AdminStack) -> None:
    """The values the client already has: 200, the client as it was, no config.change."""
    client = _client(stack)
    cid = client["client_id"]
    r = stack.call("PATCH", f"{CLIENTS}/{cid}", json={"max_ttl_s": 600, "rate_limit": "10/minute"})
    assert r.status_code == 200, r.text
    assert _now(stack, cid) == client
    assert not config_changes(stack, r.headers["x-request-id"])


def _refused_with(
    monkeypatch: pytest.MonkeyPatch, s: AdminStack, client_id: str, **fields: Any
) -> None:
    """The trail refuses the next ``config.change`` (alone or in a batch); with
    ``fields``, another writer stores them on ``client_id`` first: a change landing
    between the call's write and its undo."""
    trail = s.stack.services.audit.trail
    emit, emit_many = trail.emit, trail.emit_many

    def refuse() -> None:
        if fields:
            _store(s, client_id, **fields)
        raise AuditUnavailable("store down")

    async def one(event: Any) -> Any:
        if event.type == "config.change":
            refuse()
        return await emit(event)

    async def many(events: Any) -> Any:
        batch = list(events)
        if any(e.type == "config.change" for e in batch):
            refuse()
        return await emit_many(batch)

    monkeypatch.setattr(trail, "emit", one)
    monkeypatch.setattr(trail, "emit_many", many)


def _skipped_undos(caplog: pytest.LogCaptureFixture, client_id: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelname == "WARNING" and client_id in r.getMessage() and "undo" in r.getMessage()
    ]


def _secret_hash(s: AdminStack, client_id: str) -> str:
    with s.stack.services.engine.connect() as conn:
        found = conn.execute(
            select(token_clients.c.secret_hash).where(token_clients.c.client_id == client_id)
        ).scalar_one()
    return str(found)


def _undo_of_an_unrecorded_client_change(
    s: AdminStack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The trail refuses the record of a ``/disable``, a PATCH or a ``rotate-secret``:
    each field is put back only if it still holds what the call wrote. With no change
    in between, everything is put back and nothing is logged; with one (an enable, or
    another rotation, landing before the undo, from a writer that does not bump the
    version), that field keeps the newer value, the call's other fields are still put
    back, and a warning says the undo was skipped."""
    quiet = _client(s)
    cid = quiet["client_id"]
    _refused_with(monkeypatch, s, cid)
    r = s.call("POST", f"{CLIENTS}/{cid}/disable")
    monkeypatch.undo()
    assert r.status_code == 503, r.text
    assert _now(s, cid) == quiet
    assert not _skipped_undos(caplog, cid)

    enabled = _client(s)  # disabled, then enabled (recorded) while a /disable's record fails
    cid = enabled["client_id"]
    _store(s, cid, disabled=True)
    _refused_with(monkeypatch, s, cid, disabled=False)
    r = s.call("POST", f"{CLIENTS}/{cid}/disable")
    monkeypatch.undo()
    assert r.status_code == 503, r.text
    assert _now(s, cid) == enabled
    assert len(_skipped_undos(caplog, cid)) == 1

    patched = _client(s)  # a PATCH: its TTL cap put back, the enable meanwhile kept
    cid = patched["client_id"]
    _refused_with(monkeypatch, s, cid, disabled=False)
    r = s.call("PATCH", f"{CLIENTS}/{cid}", json={"max_ttl_s": 60, "disabled": True})
    monkeypatch.undo()
    assert r.status_code == 503, r.text
    assert _now(s, cid) == patched
    assert len(_skipped_undos(caplog, cid)) == 1

    rotated = _client(s)  # a rotation: the other rotation's secret stays the one
    cid = rotated["client_id"]
    first = _secret_hash(s, cid)
    _refused_with(monkeypatch, s, cid)
    assert s.call("POST", f"{CLIENTS}/{cid}/rotate-secret").status_code == 503
    monkeypatch.undo()
    assert _secret_hash(s, cid) == first
    assert not _skipped_undos(caplog, cid)
    other = hash_secret("another rotation", n=2**10)
    _refused_with(monkeypatch, s, cid, secret_hash=other)
    assert s.call("POST", f"{CLIENTS}/{cid}/rotate-secret").status_code == 503
    monkeypatch.undo()
    assert _secret_hash(s, cid) == other
    assert len(_skipped_undos(caplog, cid)) == 1
    assert not any(other in r.getMessage() or first in r.getMessage() for r in caplog.records)


def test_the_undo_of_an_unrecorded_change_keeps_a_change_made_meanwhile(
    stack: AdminStack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """See :func:`_undo_of_an_unrecorded_client_change` (SQLite)."""
    _undo_of_an_unrecorded_client_change(stack, monkeypatch, caplog)


@pytest.mark.postgres
def test_the_undo_of_an_unrecorded_change_keeps_a_change_made_meanwhile_on_postgresql(
    tmp_path: Path,
    fresh_postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """See :func:`_undo_of_an_unrecorded_client_change` (PostgreSQL)."""
    with admin_stack(tmp_path, database_url=fresh_postgres_url) as s:
        _undo_of_an_unrecorded_client_change(s, monkeypatch, caplog)


def _overtaken_while_refused(
    monkeypatch: pytest.MonkeyPatch, s: AdminStack, method: str, path: str, **kw: Any
) -> list[Any]:
    """The trail refuses the next ``config.change`` (alone or in a batch), but only after
    another administrator's call (``method`` ``path``) ran to its end over HTTP and was
    recorded: a write landing between the refused call's write and its undo. The list
    gets that call's response."""
    trail = s.stack.services.audit.trail
    emit, emit_many = trail.emit, trail.emit_many
    other: list[Any] = []
    refusing: list[bool] = []

    async def refuse() -> None:
        refusing.append(True)  # the other call's own record goes through
        other.append(await asyncio.to_thread(s.call, method, path, **kw))
        raise AuditUnavailable("store down")

    async def one(event: Any) -> Any:
        if event.type == "config.change" and not refusing:
            await refuse()
        return await emit(event)

    async def many(events: Any) -> Any:
        batch = list(events)
        if any(e.type == "config.change" for e in batch) and not refusing:
            await refuse()
        return await emit_many(batch)

    monkeypatch.setattr(trail, "emit", one)
    monkeypatch.setattr(trail, "emit_many", many)
    return other


def _recorded(s: AdminStack, response: Any) -> list[tuple[str, Any]]:
    """The ``config.change`` keys and ``after`` values one call recorded."""
    return [
        (e["details"]["key"], e["details"]["after"])
        for e in config_changes(s, response.headers["x-request-id"])
    ]


def _two_disables_at_once(
    s: AdminStack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Two administrators disable one enabled client at once; the trail refuses the first
    disable's record and stores the second's: the client stays disabled, as the recorded
    disable says (the first's undo cannot tell its own ``true`` from the second's by
    value, only by the row version), and a warning says the undo was skipped."""
    client = _client(s)
    cid = client["client_id"]
    other = _overtaken_while_refused(monkeypatch, s, "POST", f"{CLIENTS}/{cid}/disable")
    r = s.call("POST", f"{CLIENTS}/{cid}/disable")
    monkeypatch.undo()
    assert (r.status_code, [o.status_code for o in other]) == (503, [200]), r.text
    assert _recorded(s, other[0]) == [("client.disabled", "true")]
    assert _now(s, cid) == {**client, "disabled": True}
    assert len(_skipped_undos(caplog, cid)) == 1


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def on_each_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AdminStack]:
    """The module's stack (SQLite), and one on a fresh database of the real PostgreSQL."""
    if request.param == "sqlite":
        yield request.getfixturevalue("stack")
        return
    with admin_stack(tmp_path, database_url=request.getfixturevalue("fresh_postgres_url")) as s:
        yield s


def test_two_disables_at_once_the_first_unrecorded_leave_the_client_disabled(
    on_each_database: AdminStack,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """See :func:`_two_disables_at_once`."""
    _two_disables_at_once(on_each_database, monkeypatch, caplog)


def _undo_overtaken_by_a_recorded_write(
    s: AdminStack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another administrator's recorded ``/disable`` lands between a call's write and the
    undo of it (the trail refused the call's record). A PATCH or an approval is left in
    force, the disable kept, and a warning names the fields left (the version moved on;
    the undo cannot know which fields the newer write set); the approved request stays
    approved, as it is in force. A rotation's undo still brings the old secret back: it
    is conditional on the hash it wrote, which only that rotation ever wrote."""
    patched = _client(s)
    cid = patched["client_id"]
    other = _overtaken_while_refused(monkeypatch, s, "POST", f"{CLIENTS}/{cid}/disable")
    r = s.call("PATCH", f"{CLIENTS}/{cid}", json={"max_ttl_s": 60})
    monkeypatch.undo()
    assert (r.status_code, [o.status_code for o in other]) == (503, [200]), r.text
    assert _now(s, cid) == {**patched, "max_ttl_s": 60, "disabled": True}
    assert [m.rsplit(" for ", 1)[1] for m in _skipped_undos(caplog, cid)] == [
        "max_ttl_s, changed meanwhile"
    ]

    approved = _client(s)
    cid = approved["client_id"]
    req = s.call("PATCH", f"{CLIENTS}/{cid}", json={"max_ttl_s": 7200}).json()["request"]
    other = _overtaken_while_refused(monkeypatch, s, "POST", f"{CLIENTS}/{cid}/disable")
    r = decide(s, SECOND_ADMIN, req["id"])
    monkeypatch.undo()
    assert (r.status_code, [o.status_code for o in other]) == (503, [200]), r.text
    assert _now(s, cid) == {**approved, "max_ttl_s": 7200, "disabled": True}
    assert len(_skipped_undos(caplog, cid)) == 1
    listed = s.call("GET", REQUESTS, params={"status": "approved"}).json()["requests"]
    assert req["id"] in {x["id"] for x in listed}

    rotated = _client(s)
    cid = rotated["client_id"]
    first = _secret_hash(s, cid)
    other = _overtaken_while_refused(monkeypatch, s, "POST", f"{CLIENTS}/{cid}/disable")
    r = s.call("POST", f"{CLIENTS}/{cid}/rotate-secret")
    monkeypatch.undo()
    assert (r.status_code, [o.status_code for o in other]) == (503, [200]), r.text
    assert (_secret_hash(s, cid), _now(s, cid)) == (first, {**rotated, "disabled": True})
    assert not _skipped_undos(caplog, cid)


def test_an_undo_overtaken_by_a_recorded_write_leaves_it(
    on_each_database: AdminStack,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """See :func:`_undo_overtaken_by_a_recorded_write`."""
    _undo_overtaken_by_a_recorded_write(on_each_database, monkeypatch, caplog)
