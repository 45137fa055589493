"""Personal codes typed into the admin API's free text over real HTTP (decision 0033): a
justification, a list entry's reason or a client's or API key's name that holds a valid
personal code is refused with 400 ``personal_code_in_text`` before anything is stored;
the code is not in the answer, the business database, the audit trail or the log."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from admin_harness import AdminStack, admin_stack

from kroonika.audit.personal_codes import check_digit

#: valid personal codes that no one in the harness has: typed by mistake in these tests
TYPED = [ten + str(check_digit(ten)) for ten in ("4940313652", "5010101000", "3611224123")]
LISTS = "/admin/lists"
ENTRY = {"list": "deny", "kind": "ip", "value": "198.51.100.9", "reason": "scanner seen"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("codes-in-text"))


@pytest.fixture(scope="module")
def stack(home: Path) -> Iterator[AdminStack]:
    with admin_stack(home) as s:
        yield s


def _stored(home: Path) -> bytes:
    """Every byte the service has written: the business database, the audit store, keys."""
    return b"".join(p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file())


def _refused(r: httpx.Response, field: str) -> None:
    """400 personal_code_in_text that names the field and the pseudonym, and no code."""
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "personal_code_in_text"
    assert body["detail"].startswith(f"the {field} holds a personal code")
    assert "pseudonym (subject_ref)" in body["detail"]
    for code in TYPED:
        assert code not in r.text


def _last_call(stack: AdminStack, r: httpx.Response) -> dict[str, Any]:
    (call,) = stack.events(types=("admin.request",), correlation=r.headers["x-request-id"])
    return call


@pytest.mark.parametrize(
    "why",
    [
        f"INC-7 the person {TYPED[0]} asked",
        f"INC-7 as EE{TYPED[0]} asked",
        f"INC-7 cert PNOEE-{TYPED[1]}",
        f"INC-7 isikukood:{TYPED[2]}\nsecond line",
    ],
)
def test_a_code_in_the_justification_header_refuses_the_change(stack: AdminStack, why: str) -> None:
    """400 before the change: no entry added; the call is recorded without a
    justification (and no policy violation: nobody broke a rule on purpose)."""
    before = stack.call("GET", LISTS).json()["entries"]
    r = stack.call("POST", LISTS, json=ENTRY, why=why.replace("\n", " "))
    _refused(r, "justification")
    assert stack.call("GET", LISTS).json()["entries"] == before
    call = _last_call(stack, r)
    assert call["details"]["status"] == 400
    assert "justification" not in call["details"]
    violations = stack.events(
        types=("security.policy_violation",), correlation=r.headers["x-request-id"]
    )
    assert violations == []


def test_a_code_in_a_justification_field_refuses_a_role_request(stack: AdminStack) -> None:
    """The body's justification is checked as the header is: no role request is made."""
    before = stack.call("GET", "/admin/roles").json()["pending"]
    r = stack.call(
        "POST",
        "/admin/roles",
        why=None,
        json={"subject": "47101010033", "role": "auditor", "justification": f"INC-7 {TYPED[0]}"},
    )
    _refused(r, "justification")
    assert stack.call("GET", "/admin/roles").json()["pending"] == before


def test_a_code_in_a_justification_refuses_a_configuration_request(stack: AdminStack) -> None:
    """No configuration change and no request for one."""
    config = stack.call("GET", "/admin/config").json()["config"]
    requests = stack.call("GET", "/admin/config/requests").json()["requests"]
    value = config["session.absolute_s"]["value"]
    r = stack.call(
        "PATCH",
        "/admin/config",
        why=f"CHG-9 asked by {TYPED[1]}",
        json={"changes": {"session.absolute_s": value + 60}},
    )
    _refused(r, "justification")
    assert stack.call("GET", "/admin/config").json()["config"] == config
    assert stack.call("GET", "/admin/config/requests").json()["requests"] == requests


def test_a_code_in_the_optional_justification_of_a_read_is_refused(stack: AdminStack) -> None:
    """A read's justification is recorded too, so it is checked the same way."""
    r = stack.call("GET", LISTS, why=f"INC-7 looking for {TYPED[2]}")
    _refused(r, "justification")


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", LISTS, {**ENTRY, "reason": f"customer {TYPED[0]} complained"}, "reason"),
        ("POST", "/admin/clients", {"name": f"app of EE{TYPED[1]}"}, "name"),
        ("POST", "/admin/api-keys", {"name": f"key for {TYPED[2]}", "roles": ["auditor"]}, "name"),
    ],
)
def test_a_code_in_a_stored_name_or_reason_is_refused(
    stack: AdminStack, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    """A list entry's reason, a client's name, an API key's name: nothing is created."""
    listing = stack.call("GET", path).json()
    r = stack.call(method, path, json=body)
    _refused(r, field)
    assert stack.call("GET", path).json() == listing


def test_a_code_in_a_changed_reason_or_name_is_refused(stack: AdminStack) -> None:
    """PATCH of a list entry's reason and of a client's name: both stay as they were."""
    entry = stack.call("POST", LISTS, json={**ENTRY, "value": "198.51.100.10"})
    assert entry.status_code == 201, entry.text
    path = f"{LISTS}/{entry.json()['id']}"
    _refused(stack.call("PATCH", path, json={"reason": f"now {TYPED[0]}"}), "reason")
    client = stack.call("POST", "/admin/clients", json={"name": "reporting"})
    assert client.status_code == 201, client.text
    cpath = f"/admin/clients/{client.json()['client_id']}"
    _refused(stack.call("PATCH", cpath, json={"name": f"reporting {TYPED[1]}"}), "name")
    entries = {e["id"]: e for e in stack.call("GET", LISTS).json()["entries"]}
    assert entries[entry.json()["id"]]["reason"] == "scanner seen"
    clients = {c["client_id"]: c for c in stack.call("GET", "/admin/clients").json()["clients"]}
    assert clients[client.json()["client_id"]]["name"] == "reporting"


def test_an_import_line_with_a_code_in_its_reason_is_refused(stack: AdminStack) -> None:
    """The line is invalid (422, nothing imported) and its error does not echo the code."""
    before = stack.call("GET", LISTS).json()["entries"]
    csv = (
        "list,kind,value,reason,expires_at\n"
        "deny,ip,198.51.100.11,scanner seen,\n"
        f"deny,ip,198.51.100.12,asked by {TYPED[0]},\n"
    )
    r = stack.call(
        "POST",
        f"{LISTS}/import",
        content=csv.encode(),
        headers={"content-type": "text/csv"},
    )
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error["line"] == 3
    assert error["error"].startswith("the reason holds a personal code")
    assert "pseudonym (subject_ref)" in error["error"]
    assert TYPED[0] not in r.text
    assert stack.call("GET", LISTS).json()["entries"] == before


def test_no_typed_code_is_stored_recorded_or_logged(
    stack: AdminStack, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After these refusals (with the log captured) and any others that ran before, no
    byte the service wrote holds a typed code, while an accepted call's reason is there."""
    caplog.set_level(logging.DEBUG)
    for code in TYPED:
        _refused(stack.call("POST", LISTS, json=ENTRY, why=f"INC-7 {code}"), "justification")
        _refused(stack.call("POST", LISTS, json={**ENTRY, "reason": f"seen {code}"}), "reason")
    ok = stack.call("POST", LISTS, json={**ENTRY, "value": "198.51.100.13", "reason": "zq-marker"})
    assert ok.status_code == 201, ok.text
    stored = _stored(home)
    assert b"zq-marker" in stored
    logged = caplog.text
    for code in TYPED:
        assert code.encode() not in stored, code
        assert code not in logged, code
