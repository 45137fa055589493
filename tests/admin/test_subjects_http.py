"""Tokens, sessions and list entries over real HTTP: no answer, export or event names a
person by personal code; each person is named by the pseudonym the audit trail uses for
them and their country (decisions 0025 and 0031)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from admin_harness import PEOPLE, AdminStack, admin_stack, refuse_events
from login_harness import basic_auth, register_client

#: logs in (a session and its access token)
PERSON = "39912319997"
#: the subject of a token a relying service mints
MINTED = "38502020210"
#: on the deny-list
LISTED = "49101010037"
#: an address and a network on the deny-list (operational data the admin typed)
ADDRESS = "198.51.100.77"
TOKENS = "/admin/tokens"
SESSIONS = "/admin/sessions"
LISTS = "/admin/lists"
CLEAR_EXPORT = "/admin/privacy/lists/export"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminStack]:
    with admin_stack(Path(tmp_path_factory.mktemp("subjects"))) as s:
        _log_in(s)
        client = register_client(s.stack, "minter", [])
        for subject in ("EE" + MINTED, "batch-job-7"):
            r = httpx.post(
                s.url + "/tokens",
                json={"subject": subject, "audience": "svc-a", "ttl_s": 300},
                headers=basic_auth(client),
                timeout=30,
            )
            assert r.status_code == 201, r.text
        yield s


def _log_in(stack: AdminStack) -> None:
    """PERSON logs in through the TARA mock (the service's clock set to the mock's)."""
    import time

    clock = stack.stack.clock
    clock.advance(max(0.0, time.time() - clock()))
    names = {"autologin_given_name": "TEST", "autologin_family_name": "PERSON"}
    with stack.stack.browser(autologin=PERSON, **names) as b:
        assert b.get(stack.url + "/auth/login").status_code == 200


def _codes() -> list[str]:
    """Every personal code these tests know, as typed and as TARA spells it."""
    codes = (*PEOPLE, PERSON, MINTED, LISTED)
    return [form for code in codes for form in (code, "EE" + code)]


def _no_code(text: str, where: str = "") -> None:
    for code in _codes():
        assert code not in text, f"{code} in {where}"


def _answer(r: httpx.Response) -> None:
    _no_code(r.text, f"{r.request.method} {r.request.url.path}")


def _pseudonym(stack: AdminStack, code: str) -> str:
    return stack.stack.services.audit.fingerprinter.pseudonym("EE" + code)


def _call_record(stack: AdminStack, r: httpx.Response) -> dict[str, Any]:
    (call,) = stack.events(types=("admin.request",), correlation=r.headers["x-request-id"])
    return call


def test_tokens_name_their_subject_by_pseudonym(stack: AdminStack) -> None:
    """GET /admin/tokens holds no personal code: a person's session token and a token a
    service minted for a subject are named by subject_ref and country; the client stays."""
    r = stack.call("GET", TOKENS)
    assert r.status_code == 200, r.text
    _answer(r)
    tokens = r.json()["tokens"]
    assert all("subject" not in t for t in tokens)
    mine = [t for t in tokens if t["subject_ref"] == _pseudonym(stack, PERSON)]
    assert mine
    assert {(t["country"], t["subject_type"]) for t in mine} == {("EE", "person")}
    (minted,) = [t for t in tokens if t["subject_ref"] == _pseudonym(stack, MINTED)]
    assert (minted["country"], minted["subject_type"]) == ("EE", "client_subject")
    assert minted["client_id"]
    batch = stack.stack.services.audit.fingerprinter.pseudonym("batch-job-7")
    assert [t["country"] for t in tokens if t["subject_ref"] == batch] == [None]


def test_sessions_name_their_person_by_pseudonym(stack: AdminStack) -> None:
    """GET /admin/sessions holds no personal code; the person is subject_ref and country."""
    r = stack.call("GET", SESSIONS, role="security")
    assert r.status_code == 200, r.text
    _answer(r)
    sessions = r.json()["sessions"]
    assert all("subject" not in s for s in sessions)
    (mine,) = [s for s in sessions if s["subject_ref"] == _pseudonym(stack, PERSON)]
    assert mine["country"] == "EE"


@pytest.mark.parametrize("path", [TOKENS, SESSIONS])
def test_the_query_filter_still_finds_one_person(stack: AdminStack, path: str) -> None:
    """?subject= (discouraged, kept) still finds the person, typed with or without EE."""
    key = path.rsplit("/", 1)[1]
    for typed in (PERSON, "EE" + PERSON):
        found = stack.call("GET", path, params={"subject": typed}).json()[key]
        assert found
        assert {x["subject_ref"] for x in found} == {_pseudonym(stack, PERSON)}


@pytest.mark.parametrize("path", [TOKENS, SESSIONS])
def test_a_body_search_finds_one_person_and_records_no_code(stack: AdminStack, path: str) -> None:
    """POST .../search with the code in the body finds what ?subject= finds; neither the
    answer nor the call's record holds the code, the record holds the pseudonym."""
    key = path.rsplit("/", 1)[1]
    by_query = stack.call("GET", path, params={"subject": PERSON}).json()[key]
    for role in ("admin", "security"):
        r = stack.call("POST", path + "/search", role=role, why=None, json={"subject": PERSON})
        assert r.status_code == 200, r.text
        _answer(r)
        assert r.json()[key] == by_query
        call = _call_record(stack, r)
        _no_code(orjson.dumps(call).decode(), "admin.request")
        assert _pseudonym(stack, PERSON) in orjson.dumps(call["details"]["params"]).decode()


def test_a_token_body_search_takes_the_other_filters(stack: AdminStack) -> None:
    """The body search filters by client and status as the query does."""
    r = stack.call("POST", TOKENS + "/search", json={"subject": MINTED, "status": "active"})
    assert [t["subject_type"] for t in r.json()["tokens"]] == ["client_subject"]
    none = stack.call("POST", TOKENS + "/search", json={"subject": MINTED, "status": "revoked"})
    assert none.json()["tokens"] == []
    client = r.json()["tokens"][0]["client_id"]
    both = stack.call("POST", TOKENS + "/search", json={"client": client, "limit": 10})
    assert len(both.json()["tokens"]) == 2


@pytest.mark.parametrize("path", [TOKENS, SESSIONS])
@pytest.mark.parametrize("subject", ["x", "EE3800108\x005718", "EE" + "1" * 90])
def test_a_malformed_body_search_is_refused_without_echo(
    stack: AdminStack, path: str, subject: str
) -> None:
    """A subject that is no subject: 422, and the answer does not repeat it."""
    r = stack.call("POST", path + "/search", json={"subject": subject})
    assert r.status_code == 422, r.text
    assert subject not in r.text


@pytest.mark.parametrize("role", [None, "auditor", "privacy"])
@pytest.mark.parametrize("path", [TOKENS, SESSIONS])
def test_only_operators_search(stack: AdminStack, role: str | None, path: str) -> None:
    """No credentials: 401; a role that may not read tokens and sessions: 403."""
    r = stack.call("POST", path + "/search", role=role, json={"subject": PERSON})
    assert r.status_code == (401 if role is None else 403), r.text
    _answer(r)


def _add(stack: AdminStack, kind: str, value: str) -> dict[str, Any]:
    body = {"list": "deny", "kind": kind, "value": value, "reason": "fraud case 9"}
    r = stack.call("POST", LISTS, json=body)
    assert r.status_code == 201, r.text
    _answer(r)
    entry: dict[str, Any] = r.json()
    return entry


def _entry_events(stack: AdminStack, entry_id: str) -> list[dict[str, Any]]:
    kinds = ("access_list.add", "access_list.update", "access_list.remove")
    return [e for e in stack.events(types=kinds) if e["target"]["id"] == entry_id]


def test_a_subject_entry_is_its_pseudonym_in_answers_and_events(stack: AdminStack) -> None:
    """A subject entry's add, change, listing and removal answer subject_ref and country,
    never the code; its access_list.* records name it by the same value."""
    added = _add(stack, "subject", LISTED)
    assert "value" not in added
    ref = _pseudonym(stack, LISTED)
    assert (added["subject_ref"], added["country"]) == (ref, "EE")
    changed = stack.call("PATCH", f"{LISTS}/{added['id']}", json={"reason": "fraud case 10"})
    assert changed.status_code == 200, changed.text
    _answer(changed)
    assert changed.json()["subject_ref"] == ref
    for params in ({}, {"kind": "subject"}):
        listed = stack.call("GET", LISTS, role="security", params=params)
        _answer(listed)
        assert ref in {e.get("subject_ref") for e in listed.json()["entries"]}
    removed = stack.call("DELETE", f"{LISTS}/{added['id']}")
    assert removed.status_code == 200, removed.text
    _answer(removed)
    records = _entry_events(stack, added["id"])
    assert [e["type"] for e in records] == [
        "access_list.add",
        "access_list.update",
        "access_list.remove",
    ]
    _no_code(orjson.dumps(records).decode(), "access_list events")
    assert {e["details"]["value_ref"] for e in records} == {ref}


def test_a_network_entry_is_shown_to_admins_but_not_recorded(stack: AdminStack) -> None:
    """An address on the list is in the admin answers as typed (operational data), and its
    records carry only its keyed fingerprint, not even the /24 (decision 0031)."""
    added = _add(stack, "ip", ADDRESS)
    assert added["value"] == ADDRESS + "/32"
    listed = stack.call("GET", LISTS, params={"kind": "ip"}).json()["entries"]
    assert ADDRESS + "/32" in {e["value"] for e in listed}
    (record,) = _entry_events(stack, added["id"])
    assert "198.51.100" not in orjson.dumps(record).decode()
    stack.call("DELETE", f"{LISTS}/{added['id']}")


def _export(stack: AdminStack, fmt: str) -> httpx.Response:
    r = stack.call("GET", LISTS + "/export", role="security", params={"format": fmt})
    assert r.status_code == 200, r.text
    return r


def test_the_export_names_people_by_pseudonym(stack: AdminStack) -> None:
    """GET /admin/lists/export (JSON and CSV) holds no personal code; a subject entry is
    its subject_ref and country, the other entries are as before."""
    subject = _add(stack, "subject", LISTED)
    jti = _add(stack, "jti", "export-jti-1")
    try:
        rows = _export(stack, "json").json()
        _no_code(orjson.dumps(rows).decode(), "JSON export")
        (mine,) = [x for x in rows if x["id"] == subject["id"]]
        assert (mine["subject_ref"], mine["country"]) == (_pseudonym(stack, LISTED), "EE")
        assert not mine["value"]
        assert [x["value"] for x in rows if x["id"] == jti["id"]] == ["export-jti-1"]
        text = _export(stack, "csv").text
        _no_code(text, "CSV export")
        assert _pseudonym(stack, LISTED) in text
    finally:
        for e in (subject, jti):
            stack.call("DELETE", f"{LISTS}/{e['id']}")


def test_a_pseudonymised_export_imports_all_but_its_people(stack: AdminStack) -> None:
    """Importing the default export: a subject line is refused by line (its code is not
    in it) without a code in the answer; partial=true imports the others."""
    subject = _add(stack, "subject", LISTED)
    jti = _add(stack, "jti", "export-jti-2")
    data = _export(stack, "csv").content
    for e in (subject, jti):
        stack.call("DELETE", f"{LISTS}/{e['id']}")
    whole = stack.call("POST", LISTS + "/import", params={"format": "csv"}, content=data)
    assert whole.status_code == 422, whole.text
    _answer(whole)
    assert any("pseudonymised" in err["error"] for err in whole.json()["errors"])
    part = stack.call(
        "POST", LISTS + "/import", params={"format": "csv", "partial": "true"}, content=data
    )
    assert part.status_code == 200, part.text
    _answer(part)
    assert part.json()["summary"]["succeeded"] == 1
    entries = stack.call("GET", LISTS).json()["entries"]
    assert "export-jti-2" in {e.get("value") for e in entries}
    assert _pseudonym(stack, LISTED) not in {e.get("subject_ref") for e in entries}
    for e in entries:
        stack.call("DELETE", f"{LISTS}/{e['id']}")


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_a_clear_export_is_the_privacy_officers_and_imports_again(
    stack: AdminStack, fmt: str
) -> None:
    """POST /admin/privacy/lists/export: privacy role and a justification; recorded as
    audit.access (action export) without a code before it answers; its file imports
    every entry again, the person's included."""
    subject = _add(stack, "subject", LISTED)
    r = stack.call("POST", CLEAR_EXPORT, role="privacy", json={"format": fmt})
    assert r.status_code == 200, r.text
    assert "EE" + LISTED in r.text
    (record,) = stack.events(types=("audit.access",), correlation=r.headers["x-request-id"])
    assert record["details"]["action"] == "export"
    assert record["details"]["returned"] >= 1
    _no_code(orjson.dumps(record).decode(), "audit.access")
    stack.call("DELETE", f"{LISTS}/{subject['id']}")
    back = stack.call("POST", LISTS + "/import", params={"format": fmt}, content=r.content)
    assert back.status_code == 200, back.text
    _answer(back)
    entries = stack.call("GET", LISTS, params={"kind": "subject"}).json()["entries"]
    assert [e["subject_ref"] for e in entries] == [_pseudonym(stack, LISTED)]
    for e in entries:
        stack.call("DELETE", f"{LISTS}/{e['id']}")


@pytest.mark.parametrize("role", ["admin", "security", "auditor"])
def test_only_the_privacy_officer_exports_in_clear(stack: AdminStack, role: str) -> None:
    """Any other role gets 403 and no code."""
    r = stack.call("POST", CLEAR_EXPORT, role=role, json={"format": "json"})
    assert r.status_code == 403, r.text
    _answer(r)


def test_a_clear_export_needs_a_justification(stack: AdminStack) -> None:
    """Without a justification the clear export is refused and nothing is exported."""
    subject = _add(stack, "subject", LISTED)
    try:
        r = stack.call("POST", CLEAR_EXPORT, role="privacy", why=None, json={"format": "json"})
        assert r.status_code in (400, 422), r.text
        _answer(r)
    finally:
        stack.call("DELETE", f"{LISTS}/{subject['id']}")


def test_a_clear_export_the_trail_cannot_record_is_not_given(
    stack: AdminStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trail refuses the audit.access record: 503, and no code in the answer."""
    subject = _add(stack, "subject", LISTED)
    try:
        refuse_events(monkeypatch, stack, "audit.access")
        r = stack.call("POST", CLEAR_EXPORT, role="privacy", json={"format": "csv"})
        monkeypatch.undo()
        assert r.status_code == 503, r.text
        _answer(r)
    finally:
        stack.call("DELETE", f"{LISTS}/{subject['id']}")


def test_a_status_check_takes_the_code_in_a_body(stack: AdminStack) -> None:
    """POST /admin/lists/status answers what GET /admin/lists/status?subject= answers,
    with the code in the body: the call's record holds the pseudonym, never the code,
    and neither does the answer."""
    added = _add(stack, "subject", LISTED)
    try:
        by_query = stack.call(
            "GET", LISTS + "/status", role="security", params={"subject": LISTED}
        ).json()
        assert by_query["allowed"] is False
        for typed in (LISTED, "EE" + LISTED):
            r = stack.call(
                "POST", LISTS + "/status", role="security", why=None, json={"subject": typed}
            )
            assert r.status_code == 200, r.text
            _answer(r)
            assert r.json() == by_query
            call = _call_record(stack, r)
            _no_code(orjson.dumps(call).decode(), "admin.request")
            assert _pseudonym(stack, LISTED) in orjson.dumps(call["details"]["params"]).decode()
        other = stack.call("POST", LISTS + "/status", json={"subject": PERSON}).json()
        assert other["allowed"] is True
        ip = stack.call("POST", LISTS + "/status", json={"ip": "192.0.2.1"})
        assert ip.status_code == 200, ip.text
    finally:
        stack.call("DELETE", f"{LISTS}/{added['id']}")


@pytest.mark.parametrize(
    "body", [{}, {"subject": "x"}, {"subject": "EE3800108\x005718"}, {"ip": "not-an-ip"}]
)
def test_a_malformed_status_check_is_refused_without_echo(
    stack: AdminStack, body: dict[str, str]
) -> None:
    r = stack.call("POST", LISTS + "/status", json=body)
    assert r.status_code in (400, 422), r.text
    for value in body.values():
        assert value not in r.text
