"""An admin body with a field the route does not know is refused, not half applied: a
misspelt ``"disable": true`` answered 200 having changed nothing, and the administrator
believed the client disabled. The refusal names the field only when its name is a plain
identifier; a key that is a personal code or holds a line break is never echoed. A read
sent as POST takes its optional justification from the body too, and records it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from admin_harness import AdminStack, admin_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminStack]:
    with admin_stack(Path(tmp_path_factory.mktemp("unknown-fields"))) as s:
        yield s


def _new_client(stack: AdminStack) -> str:
    r = stack.call("POST", "/admin/clients", json={"name": "Unknown fields"})
    assert r.status_code == 201, r.text
    return str(r.json()["client_id"])


def _requests(stack: AdminStack, rid: str) -> list[dict[str, Any]]:
    return stack.events(types=("admin.request",), correlation=rid)


def test_a_misspelt_field_is_refused_and_changes_nothing(stack: AdminStack) -> None:
    cid = _new_client(stack)
    r = stack.call("PATCH", f"/admin/clients/{cid}", json={"disable": True})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid_request"
    assert r.json()["fields"] == ["body.disable"]
    # nothing changed, nothing recorded as changed, and the refusal is in the trail
    clients = stack.call("GET", "/admin/clients").json()["clients"]
    (client,) = [c for c in clients if c["client_id"] == cid]
    assert client["disabled"] is False
    rid = r.headers["x-request-id"]
    assert not stack.events(types=("config.change",), correlation=rid)
    assert [e["details"]["status"] for e in _requests(stack, rid)] == [422]


def test_a_new_client_with_a_wrong_field_name_is_not_created(stack: AdminStack) -> None:
    before = stack.call("GET", "/admin/clients").json()
    body = {"name": "Wrong field", "audiences": ["api://x"]}  # it is allowed_audiences
    r = stack.call("POST", "/admin/clients", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["fields"] == ["body.audiences"]
    assert stack.call("GET", "/admin/clients").json() == before


@pytest.mark.parametrize(
    ("key", "dangerous"),
    [
        ("38001085718", True),
        ("line\r\nbreak", True),
        ("\x1b[31mred", True),
        ("x" * 65, False),
        ("põhjus", False),
    ],
    ids=["personal-code", "crlf", "ansi", "long", "non-ascii"],
)
def test_an_unknown_key_that_is_not_a_plain_name_is_not_echoed(
    stack: AdminStack, key: str, dangerous: bool
) -> None:
    r = stack.call("POST", "/admin/roles/lookup", json={"subject": "38001085718", key: 1})
    assert r.status_code == 422, r.text
    assert r.json()["fields"] == ["body.<key>"]
    assert key not in r.text
    (request,) = _requests(stack, r.headers["x-request-id"])
    assert request["details"]["status"] == 422
    if dangerous:  # the record names body keys, but never a code or a control character
        assert key not in repr(request)


def test_a_nested_unknown_field_is_refused_too(stack: AdminStack) -> None:
    body = {"positions": [{"stream": "s", "seq": 1, "sequence": 2}], "justification": "x" * 12}
    r = stack.call("POST", "/admin/privacy/re-identify", role="privacy", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["fields"] == ["body.positions.0.sequence"]


def test_a_post_read_takes_its_justification_from_the_body(stack: AdminStack) -> None:
    why = "incident INC-7: whose tokens?"
    r = stack.call(
        "POST",
        "/admin/tokens/search",
        why=None,
        json={"subject": "38001085718", "justification": why},
    )
    assert r.status_code == 200, r.text
    (request,) = _requests(stack, r.headers["x-request-id"])
    assert request["details"]["justification"] == why


def test_a_post_read_refuses_a_justification_that_is_not_plain_text(
    stack: AdminStack,
) -> None:
    r = stack.call(
        "POST",
        "/admin/sessions/search",
        why=None,
        json={"subject": "38001085718", "justification": "evil\r\ninjected line"},
    )
    assert r.status_code == 400, r.text
    assert "injected" not in r.text
