"""The role listing, lookup and role requests over real HTTP: no answer names a role
holder by personal code; each holder is named by the pseudonym the audit trail uses for
them (decision 0025)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from admin_harness import (
    ADMIN,
    PEOPLE,
    SECOND_ADMIN,
    AdminStack,
    admin_stack,
    as_person,
    decide,
)

ROLES = "/admin/roles"
LOOKUP = "/admin/roles/lookup"
REQUESTS = "/admin/config/requests"
#: a person who is asked a role in these tests (not one of the harness's people)
ASKED = "47101010033"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminStack]:
    with admin_stack(Path(tmp_path_factory.mktemp("roles"))) as s:
        yield s


def _codes() -> list[str]:
    """Every personal code these tests know, as typed and as TARA spells it."""
    return [form for code in (*PEOPLE, ASKED) for form in (code, "EE" + code)]


def _no_code(r: httpx.Response) -> None:
    for code in _codes():
        assert code not in r.text, f"{code} in {r.request.method} {r.request.url.path}"


def _pseudonym(stack: AdminStack, code: str) -> str:
    return stack.stack.services.audit.fingerprinter.pseudonym("EE" + code)


def _ask(stack: AdminStack, role: str = "privacy") -> dict[str, Any]:
    r = as_person(stack, ADMIN, "POST", ROLES, json={"subject": ASKED, "role": role})
    assert r.status_code == 202, r.text
    _no_code(r)
    request: dict[str, Any] = r.json()["request"]
    return request


def test_the_role_list_names_holders_by_pseudonym_only(stack: AdminStack) -> None:
    """GET /admin/roles holds no personal code; each holder is the pseudonym of their
    code with at most its country, and the pending requests no code either."""
    _ask(stack)
    r = stack.call("GET", ROLES)
    assert r.status_code == 200, r.text
    _no_code(r)
    holders = r.json()["holders"]
    assert all("subject" not in h for h in holders)
    for code, roles in PEOPLE.items():
        mine = [h for h in holders if h["subject_ref"] == _pseudonym(stack, code)]
        assert sorted(h["role"] for h in mine) == roles
        assert {h["country"] for h in mine} == {"EE"}
    assert any(q["subject_ref"] == _pseudonym(stack, ASKED) for q in r.json()["pending"])


def test_a_holder_is_named_as_the_trail_names_them(stack: AdminStack) -> None:
    """The subject_ref of an approved grant is the target of its admin.roles record, so an
    auditor can match the listing and the trail."""
    req = _ask(stack, "auditor")
    r = decide(stack, SECOND_ADMIN, req["id"], path="/admin/roles/requests")
    assert r.status_code == 200, r.text
    _no_code(r)
    (record,) = stack.events(types=("config.change",), correlation=r.headers["x-request-id"])
    ref = record["target"]["id"]
    assert ref == req["subject_ref"] == _pseudonym(stack, ASKED)
    holders = stack.call("GET", ROLES).json()["holders"]
    assert {"auditor"} <= {h["role"] for h in holders if h["subject_ref"] == ref}


def test_a_lookup_answers_one_persons_roles(stack: AdminStack) -> None:
    """POST /admin/roles/lookup with a code in the body: that person's pseudonym and
    roles, the code nowhere in the answer or in the call's record."""
    for typed in (SECOND_ADMIN, "ee" + SECOND_ADMIN):
        r = stack.call("POST", LOOKUP, json={"subject": typed})
        assert r.status_code == 200, r.text
        _no_code(r)
        body = r.json()
        assert body["subject_ref"] == _pseudonym(stack, SECOND_ADMIN)
        assert [x["role"] for x in body["roles"]] == ["admin"]
        (call,) = stack.events(types=("admin.request",), correlation=r.headers["x-request-id"])
        assert call["details"]["route"] == LOOKUP
        assert call["details"]["status"] == 200
        assert SECOND_ADMIN not in str(call)
        assert _pseudonym(stack, SECOND_ADMIN) in call["details"]["params"]


def test_a_lookup_of_a_person_without_roles_is_empty(stack: AdminStack) -> None:
    """Someone holding nothing: 200 with no roles (not an error that names the code)."""
    r = stack.call("POST", LOOKUP, json={"subject": "39912319997"})
    assert r.status_code == 200, r.text
    assert "39912319997" not in r.text
    assert r.json()["roles"] == []


@pytest.mark.parametrize("subject", ["x", "EE3800108\x005718", "EE" + "1" * 90])
def test_a_malformed_lookup_is_refused_without_echo(stack: AdminStack, subject: str) -> None:
    """A subject that is no subject: 422, and the answer does not repeat it."""
    r = stack.call("POST", LOOKUP, json={"subject": subject})
    assert r.status_code == 422, r.text
    assert subject not in r.text


@pytest.mark.parametrize("role", [None, "auditor", "security", "privacy"])
@pytest.mark.parametrize(("method", "path"), [("GET", ROLES), ("POST", LOOKUP)])
def test_only_an_administrator_reads_roles(
    stack: AdminStack, role: str | None, method: str, path: str
) -> None:
    """No credentials: 401; any role but admin: 403; neither answer names anyone."""
    kw: dict[str, Any] = {"json": {"subject": ADMIN}} if method == "POST" else {}
    r = stack.call(method, path, role=role, **kw)
    assert r.status_code == (401 if role is None else 403), r.text
    _no_code(r)


def test_role_requests_are_listed_with_the_other_requests(stack: AdminStack) -> None:
    """GET /admin/config/requests lists role requests too (target roles/<pseudonym>),
    filtered by status like the others, with no code; /admin/roles keeps its pending."""
    req = _ask(stack, "security")
    r = stack.call("GET", REQUESTS, params={"status": "pending"})
    assert r.status_code == 200, r.text
    _no_code(r)
    (listed,) = [x for x in r.json()["requests"] if x["id"] == req["id"]]
    assert listed["target"] == "roles/" + _pseudonym(stack, ASKED)
    assert (listed["role"], listed["action"], listed["status"]) == ("security", "grant", "pending")
    assert req["id"] in {x["id"] for x in stack.call("GET", ROLES).json()["pending"]}
    rejected = decide(stack, SECOND_ADMIN, req["id"], approve=False, path="/admin/roles/requests")
    assert rejected.status_code == 200, rejected.text
    still = stack.call("GET", REQUESTS, params={"status": "pending"}).json()["requests"]
    assert req["id"] not in {x["id"] for x in still}
    done = stack.call("GET", REQUESTS, params={"status": "rejected"}).json()["requests"]
    assert req["id"] in {x["id"] for x in done}


def test_the_listing_is_newest_first_within_its_limit(stack: AdminStack) -> None:
    """Role and configuration requests share one order (newest first) and one limit."""
    stack.stack.clock.advance(2)
    first = _ask(stack, "privacy")
    stack.stack.clock.advance(2)
    before = stack.call("GET", "/admin/config").json()["config"]["session.absolute_s"]["value"]
    changes = {"session.absolute_s": before + 60}
    asked = stack.call("PATCH", "/admin/config", json={"changes": changes})
    assert asked.status_code == 202, asked.text
    r = stack.call("GET", REQUESTS, params={"limit": 2})
    assert r.status_code == 200, r.text
    ids = [x["id"] for x in r.json()["requests"]]
    assert ids == [asked.json()["request"]["id"], first["id"]]


def test_deciding_a_role_request_as_a_configuration_request_says_where(
    stack: AdminStack,
) -> None:
    """POST /admin/config/requests/rr_...: 404 naming the route that decides it."""
    req = _ask(stack, "privacy")
    r = decide(stack, SECOND_ADMIN, req["id"])
    assert r.status_code == 404, r.text
    assert "/admin/roles/requests/" in r.json()["detail"]
