"""A 404 of the admin and audit APIs over real HTTP never repeats the id it was asked
for: a token or a personal code pasted as an id is not sent back (decision 0037)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from admin_harness import ADMIN, AdminStack, admin_stack, as_person

#: what a careless caller pastes where an id belongs
JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJFRTM4MDAxMDg1NzE4In0.c2lnbmF0dXJlLW5vdC1yZWFs"
CODE = "38001085718"
IDS = [JWT, CODE, "EE" + CODE, "rr_" + CODE]

#: (method, path with {id}, role, JSON body or None)
ROUTES: list[tuple[str, str, str, dict[str, Any] | None]] = [
    ("POST", "/admin/tokens/{id}/revoke", "admin", None),
    ("DELETE", "/admin/sessions/{id}", "admin", None),
    ("PATCH", "/admin/lists/{id}", "admin", {"reason": "INC-1 new reason"}),
    ("DELETE", "/admin/lists/{id}", "admin", None),
    ("PATCH", "/admin/clients/{id}", "admin", {"name": "renamed"}),
    ("POST", "/admin/clients/{id}/rotate-secret", "admin", None),
    ("POST", "/admin/clients/{id}/disable", "admin", None),
    ("POST", "/admin/config/requests/{id}", "admin", {"approve": True}),
    ("POST", "/admin/jobs/{id}/run", "admin", None),
    ("GET", "/admin/jobs/{id}/runs", "admin", None),
    ("DELETE", "/admin/api-keys/{id}", "admin", None),
    ("POST", "/admin/alerts/{id}/acknowledge", "security", {"note": "seen"}),
    ("GET", "/audit/events/{id}", "auditor", None),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminStack]:
    with admin_stack(Path(tmp_path_factory.mktemp("not-found"))) as s:
        yield s


@pytest.mark.parametrize("ident", IDS, ids=["jwt", "code", "ee-code", "rr-code"])
@pytest.mark.parametrize(("method", "path", "role", "body"), ROUTES, ids=[r[1] for r in ROUTES])
def test_a_404_does_not_repeat_the_id(
    stack: AdminStack,
    method: str,
    path: str,
    role: str,
    body: dict[str, Any] | None,
    ident: str,
) -> None:
    """404 ``not_found`` with a fixed text: neither the id nor any part of it."""
    r = stack.call(method, path.replace("{id}", ident), role=role, json=body)
    assert r.status_code == 404, r.text
    assert r.json()["error"] == "not_found"
    assert r.json()["detail"].startswith("no ")
    assert "has this id" in r.json()["detail"]
    for part in (ident, CODE, "eyJ"):
        assert part not in r.text


@pytest.mark.parametrize("ident", IDS, ids=["jwt", "code", "ee-code", "rr-code"])
def test_a_person_deciding_an_unknown_role_request_gets_no_echo(
    stack: AdminStack, ident: str
) -> None:
    """Role requests are decided by people (a TARA session): the same fixed 404."""
    r = as_person(stack, ADMIN, "POST", f"/admin/roles/requests/{ident}", json={"approve": True})
    assert r.status_code == 404, r.text
    assert r.json() == {**r.json(), "error": "not_found", "detail": "no role request has this id"}
    assert ident not in r.text


def test_a_role_request_id_at_the_configuration_route_is_pointed_elsewhere(
    stack: AdminStack,
) -> None:
    """The hint for a role request's id names the right route, not the id."""
    r = stack.call("POST", f"/admin/config/requests/rr_{CODE}", json={"approve": True})
    assert r.status_code == 404
    assert "POST /admin/roles/requests/{request_id}" in r.json()["detail"]
    assert CODE not in r.text


def test_a_reason_of_white_space_is_no_404(stack: AdminStack) -> None:
    """Changing an entry's reason to white space is a 422 on the body (it was a 404
    that said the reason was empty)."""
    made = stack.call(
        "POST",
        "/admin/lists",
        json={"list": "deny", "kind": "ip", "value": "198.51.100.7", "reason": "INC-1 block"},
    )
    assert made.status_code in (200, 201), made.text
    entry = made.json()["id"]
    r = stack.call("PATCH", f"/admin/lists/{entry}", json={"reason": "     "})
    assert r.status_code == 422, r.text
    assert r.json()["fields"] == ["body.reason"]
