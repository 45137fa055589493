"""A routine rotation of the pseudonymisation key, over real HTTP with the TARA mock and
PostgreSQL (decision 0022): the service is restarted with a new key and the old one in
``KROONIKA_PSEUDONYM_PREVIOUS_KEYS``. Who may do what does not change: API keys made by
people before the rotation keep their roles, administrators keep theirs, requests made
before it are decided as before (and never by their own requester), an erasure named by
the old pseudonym finds the person; the trail records the rotation. Only a label whose
key is no longer configured at all cannot be resolved, and that fails closed."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from admin_harness import (
    ADMIN,
    AUDITOR,
    PRIVACY,
    SECOND_ADMIN,
    SECURITY,
    WHY,
    AdminStack,
    admin_stack,
    as_person,
    person_label,
    person_session,
)

from kroonika.admin import RoleStore
from kroonika.security.detectors import Profile
from kroonika.security.profiles import ProfileStore

OLD = base64.b64encode(b"old pseudonymisation key 32 byte").decode()
NEW = base64.b64encode(b"new pseudonymisation key 32 byte").decode()
BEFORE = {"pseudonym_key": OLD, "pseudonym_kid": "p1"}
AFTER = {"pseudonym_key": NEW, "pseudonym_kid": "p2", "pseudonym_previous_keys": {"p1": OLD}}
#: a weakening change: it waits for a second administrator (decision 0017)
WEAKER = {"ratelimit.limits": {"login_start:ip": "off"}}
#: someone who holds no role (a role request's subject)
NEWCOMER = "49002010965"


@dataclass
class Before:
    """What was made before the rotation."""

    keys: dict[str, str]  # role -> API key made by that role's holder
    chained: str  # an admin key made with the admin key
    config_requests: list[str]  # pending, asked with the admin key (ADMIN's)
    role_requests: list[str]  # pending, asked by ADMIN in person
    old_labels: dict[str, str]  # personal code -> admin:<pseudonym under p1>
    profile: Profile  # SECURITY's security profile under p1, after one login


@dataclass
class Rotated:
    stack: AdminStack
    before: Before

    def with_key(self, method: str, path: str, key: str, **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}", "x-justification": WHY}
        return httpx.request(method, self.stack.url + path, headers=headers, timeout=60, **kw)


def _make_before(stack: AdminStack) -> Before:
    r = stack.call("POST", "/admin/api-keys", json={"name": "chained", "roles": ["admin"]})
    assert r.status_code == 201, r.text
    config_requests = []
    for _ in range(2):
        asked = stack.call("PATCH", "/admin/config", json={"changes": WEAKER})
        assert asked.status_code == 202, asked.text
        config_requests.append(asked.json()["request"]["id"])
    services = stack.stack.services
    with person_session(stack, SECURITY):
        pass  # one login: the monitor makes a profile under the p1 pseudonym
    profile = _profile(stack, "EE" + SECURITY, lambda p: p.login_count >= 1)
    roles = RoleStore(services.engine, clock=services.clock)
    role_requests = [
        roles.request(
            NEWCOMER,
            role,
            "grant",
            by=person_label(services, ADMIN),
            by_subject="EE" + ADMIN,
            why=WHY,
            ttl_s=stack.stack.settings.admin_approval_ttl_s,
        ).id
        for role in ("auditor", "security")
    ]
    return Before(
        keys=dict(stack.keys),
        chained=r.json()["api_key"],
        config_requests=config_requests,
        role_requests=role_requests,
        old_labels={c: person_label(services, c) for c in (ADMIN, SECOND_ADMIN, AUDITOR, SECURITY)},
        profile=profile,
    )


def _profile(stack: AdminStack, subject: str, ready: Callable[[Profile], bool]) -> Profile:
    """The person's security profile under the current key once ``ready`` holds (the
    monitor folds a login in after its record is stored)."""
    services = stack.stack.services
    store = ProfileStore(services.engine)
    person = services.audit.fingerprinter.pseudonym(subject)
    deadline = time.monotonic() + 20
    while True:
        found = store.get(person)
        if found is not None and ready(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no profile for {person}: {found}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def rotated(
    tmp_path_factory: pytest.TempPathFactory, module_postgres_url: str
) -> Iterator[Rotated]:
    """One deployment on a PostgreSQL database of its own, run under the key p1, then
    restarted under p2 with p1 kept as a previous key."""
    tmp = Path(tmp_path_factory.mktemp("rotation"))
    url = module_postgres_url
    with admin_stack(tmp, database_url=url, overrides=BEFORE) as first:
        before = _make_before(first)
    with admin_stack(tmp, database_url=url, overrides=AFTER) as second:
        yield Rotated(second, before)


def _approve(rotated: Rotated, code: str, kind: str, rid: str) -> httpx.Response:
    """The person ``code`` approves the ``kind`` (config, roles) request ``rid``."""
    path = f"/admin/{kind}/requests/{rid}"
    return as_person(rotated.stack, code, "POST", path, json={"approve": True})


def test_an_api_key_made_before_the_rotation_keeps_its_roles(rotated: Rotated) -> None:
    """The admin key made by ADMIN under p1 still acts as admin under p2, and the listing
    shows its effective roles unchanged."""
    r = rotated.with_key("GET", "/admin/api-keys", rotated.before.keys["admin"])
    assert r.status_code == 200, r.text
    by_label = {k["created_by"]: k for k in r.json()["api_keys"]}
    made = by_label[rotated.before.old_labels[ADMIN]]
    assert made["created_by"].startswith("admin:p1:")
    assert made["effective_roles"] == ["admin"]


def test_every_role_of_a_key_made_before_the_rotation_still_acts(rotated: Rotated) -> None:
    """The auditor's key reads the trail; the privacy officer's key reaches the privacy
    routes (past the role check: 422 for a body that names nobody, not 403)."""
    audit = rotated.with_key("GET", "/audit/events?limit=1", rotated.before.keys["auditor"])
    assert audit.status_code == 200, audit.text
    privacy = rotated.with_key(
        "POST", "/admin/privacy/erasures", rotated.before.keys["privacy"], json={}
    )
    assert (privacy.status_code, privacy.json()["error"]) == (422, "invalid_request")


def test_a_key_made_by_a_key_before_the_rotation_keeps_its_roles(rotated: Rotated) -> None:
    """The chain key -> key -> person is followed to the person under the old key."""
    r = rotated.with_key("GET", "/admin/api-keys", rotated.before.chained)
    assert r.status_code == 200, r.text


def test_an_administrator_logging_in_after_the_rotation_holds_their_roles(
    rotated: Rotated,
) -> None:
    """Roles are held by the person, not by a pseudonym: ADMIN logs in and acts as admin,
    now named under p2."""
    r = as_person(rotated.stack, ADMIN, "GET", "/admin/api-keys")
    assert r.status_code == 200, r.text
    (call,) = rotated.stack.events(types=("admin.request",), correlation=r.headers["x-request-id"])
    assert call["actor"]["roles"] == ["admin"]
    assert call["actor"]["pseudonym"].startswith("p2:")


def test_a_config_request_from_before_the_rotation_is_approved_by_another_administrator(
    rotated: Rotated,
) -> None:
    """The requester (an API key of ADMIN's, made under p1) is still an administrator."""
    rid = rotated.before.config_requests[0]
    r = _approve(rotated, SECOND_ADMIN, "config", rid)
    assert r.status_code == 200, r.text
    assert r.json()["request"]["status"] == "approved"


def test_the_requester_cannot_approve_their_own_config_request_after_the_rotation(
    rotated: Rotated,
) -> None:
    """ADMIN, now named under p2, is still the person behind the requesting key: 409
    ``same_admin``, and the request stays pending."""
    rid = rotated.before.config_requests[1]
    r = _approve(rotated, ADMIN, "config", rid)
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "same_admin"
    listed = rotated.stack.call("GET", "/admin/config/requests?status=pending").json()
    assert rid in {q["id"] for q in listed["requests"]}


def test_a_role_request_from_before_the_rotation_is_approved_by_another_administrator(
    rotated: Rotated,
) -> None:
    """The requester, ADMIN under p1, still holds admin: SECOND_ADMIN's approval applies."""
    rid = rotated.before.role_requests[0]
    r = _approve(rotated, SECOND_ADMIN, "roles", rid)
    assert r.status_code == 200, r.text
    assert r.json()["roles"] == ["auditor"]


def test_the_requester_cannot_approve_their_own_role_request_after_the_rotation(
    rotated: Rotated,
) -> None:
    """ADMIN asked under p1 and decides under p2: still the same person, 409
    ``same_admin``; the newcomer gets nothing."""
    rid = rotated.before.role_requests[1]
    r = _approve(rotated, ADMIN, "roles", rid)
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "same_admin"
    services = rotated.stack.stack.services
    assert "security" not in RoleStore(services.engine, clock=services.clock).roles_of(NEWCOMER)


def test_an_erasure_named_by_the_old_pseudonym_still_refuses_an_administrator(
    rotated: Rotated,
) -> None:
    """The auditor (a role holder) named by their p1 pseudonym is found: 409
    ``holds_admin_roles``, nothing done."""
    old = rotated.before.old_labels[AUDITOR].removeprefix("admin:")
    r = as_person(
        rotated.stack, PRIVACY, "POST", "/admin/privacy/erasures", json={"pseudonym": old}
    )
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "holds_admin_roles"


def test_the_rotation_is_recorded_once(rotated: Rotated) -> None:
    """The first start under p2 records ``key.rotate`` (purpose ``pseudonymisation``,
    p1 -> p2, actor system) naming no key material."""
    (event,) = [
        e
        for e in rotated.stack.events(types=("key.rotate",))
        if e["details"].get("purpose") == "pseudonymisation"
    ]
    assert (event["details"]["old_kid"], event["details"]["new_kid"]) == ("p1", "p2")
    assert event["actor"]["type"] == "system"
    stored = b"\n".join(rotated.stack.stack.raw_events())
    assert OLD.encode() not in stored
    assert NEW.encode() not in stored


def test_an_auditor_follows_a_person_across_the_rotation(rotated: Rotated) -> None:
    """SECURITY logged in under p1 before the rotation and logs in under p2 after it: the
    privacy officer's look-up names them under both keys, and GET /audit/events with both
    pseudonyms as ``actor`` finds the logins under each, in the order stored, and nobody
    else's (decision 0028)."""
    old = rotated.before.old_labels[SECURITY].removeprefix("admin:")
    new = person_label(rotated.stack.stack.services, SECURITY).removeprefix("admin:")
    assert old.startswith("p1:")
    assert new.startswith("p2:")
    looked = rotated.stack.call(
        "POST", "/admin/privacy/pseudonyms", role="privacy", json={"personal_code": SECURITY}
    )
    assert looked.status_code == 200, looked.text
    assert looked.json()["pseudonyms"] == [
        {"pseudonym": new, "key": "current"},
        {"pseudonym": old, "key": "retired"},
    ]
    with person_session(rotated.stack, SECURITY):
        pass
    r = rotated.stack.call(
        "GET",
        "/audit/events",
        role="auditor",
        params=[("actor", new), ("actor", old), ("type", "auth.login"), ("limit", "1000")],
    )
    assert r.status_code == 200, r.text
    found = [e["actor"]["pseudonym"] for e in r.json()["events"]]
    assert set(found) == {old, new}
    assert found.index(old) < found.index(new)


def test_the_keys_listing_shows_what_still_needs_the_retired_key(rotated: Rotated) -> None:
    """GET /admin/keys: p2 active since the restart, p1 retired, and per key id the API
    keys and requests that name a person under it (those made before the rotation under
    p1, the harness's new keys under p2)."""
    r = rotated.stack.call("GET", "/admin/keys")
    assert r.status_code == 200, r.text
    keys = r.json()["pseudonymisation"]
    assert (keys["active"], keys["retired"]) == ("p2", ["p1"])
    assert keys["since"] is not None
    listed = rotated.stack.call("GET", "/admin/api-keys").json()["api_keys"]
    made_under = {kid: sum(k["created_by"].startswith(f"admin:{kid}:") for k in listed)
                  for kid in ("p1", "p2")}  # fmt: skip
    assert keys["labels"]["p2"] == made_under["p2"]
    assert keys["labels"]["p1"] >= made_under["p1"] > 0


def test_a_person_logging_in_after_the_rotation_keeps_their_security_profile(
    rotated: Rotated,
) -> None:
    """SECURITY's profile made under p1 moves to their p2 pseudonym at their first login
    after the rotation: the baseline goes on (count, first seen, countries), it does not
    start again, and nothing stays under the old pseudonym. Other tests of the module
    may log SECURITY in after the rotation too, before or after this one: the count
    goes on from the old profile by every login under p2."""
    before = rotated.before.profile
    with person_session(rotated.stack, SECURITY):
        pass
    new = person_label(rotated.stack.stack.services, SECURITY).removeprefix("admin:")
    logins = rotated.stack.events(types=("auth.login",), actors=(new,), outcome="success")
    assert logins
    expected = before.login_count + len(logins)
    after = _profile(rotated.stack, "EE" + SECURITY, lambda p: p.login_count >= expected)
    assert after.login_count == expected
    assert after.first_seen == before.first_seen
    assert set(before.countries) <= set(after.countries)
    services = rotated.stack.stack.services
    old = rotated.before.old_labels[SECURITY].removeprefix("admin:")
    assert ProfileStore(services.engine).get(old) is None


def test_a_key_whose_creator_was_named_under_a_dropped_key_has_no_roles(
    tmp_path: Path, fresh_postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Without p1 configured nobody can tell who ``admin:p1:...`` is: that key fails
    closed (403), while its creator, logging in, holds their roles. The start warns, and
    the rotation's record says the old key is gone."""
    url = fresh_postgres_url
    with admin_stack(tmp_path, database_url=url, overrides=BEFORE) as first:
        old_key = first.keys["admin"]
    dropped = {"pseudonym_key": NEW, "pseudonym_kid": "p2"}
    with admin_stack(tmp_path, database_url=url, overrides=dropped) as second:
        r = httpx.get(
            second.url + "/admin/api-keys",
            headers={"authorization": f"Bearer {old_key}"},
            timeout=60,
        )
        assert r.status_code == 403, r.text
        assert as_person(second, ADMIN, "GET", "/admin/api-keys").status_code == 200
        (rotation,) = [
            e
            for e in second.events(types=("key.rotate",))
            if e["details"]["purpose"] == "pseudonymisation"
        ]
        assert "p1 no longer configured" in rotation["details"]["justification"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("'p1', which is not configured" in w for w in warnings), warnings
