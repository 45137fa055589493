"""The privacy officer's API over real HTTP, on SQLite and on the real PostgreSQL: erasure
by crypto-shredding (the trail still verifies, the person's data is unreadable and gone
from the stored bytes, a new login gets a fresh key), re-identification recorded before it
answers, the privacy role and a justification required, and nothing done when the trail
cannot record it."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from admin_harness import AdminStack, admin_stack, backend_stack
from sqlalchemy import func, select
from test_database_down import refusing_connections

from kroonika.audit.store._schema import subject_keys
from kroonika.db import make_engine
from kroonika.db.security import security_profile
from kroonika.db.sessions import session

CODE = "49002124277"
GIVEN, FAMILY = "ÕIE-MALLE", "PÕDRAMÄGI"
WHY = "DPO-41 erasure request of a data subject"
ERASE = "/admin/privacy/erasures"
REVEAL = "/admin/privacy/re-identify"
PSEUDONYMS = "/admin/privacy/pseudonyms"


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _login_and_logout(stack: AdminStack) -> dict[str, Any]:
    """The person logs in with their names and logs out; returns their auth.login event.
    The service's manual clock is brought up to the mock's real one first (a module's
    stack lives longer than the ID token leeway)."""
    clock = stack.stack.clock
    clock.advance(max(0.0, time.time() - clock()))
    with stack.stack.browser(
        autologin=CODE, autologin_given_name=GIVEN, autologin_family_name=FAMILY
    ) as b:
        login = b.get(stack.url + "/auth/login")
        assert login.status_code == 200, login.text
        s = b.get(stack.url + "/auth/session").json()
        assert (
            b.post(
                stack.url + "/auth/logout", headers={"x-csrf-token": s["csrf_token"]}
            ).status_code
            == 200
        )
    logins = [e for e in stack.events(types=("auth.login",)) if e["outcome"] == "success"]
    return logins[-1]


def _count(url: str, table: Any, where: Any = None) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            q = select(func.count()).select_from(table)
            if where is not None:
                q = q.where(where)
            return int(conn.execute(q).scalar_one())
    finally:
        engine.dispose()


def _keys(stack: AdminStack, pseudonym: str) -> int:
    url = stack.stack.settings.resolved_audit_store_url()
    return _count(url, subject_keys, subject_keys.c.subject == pseudonym)


def _reveal(
    stack: AdminStack, *ids: str, role: str = "privacy", why: str | None = WHY
) -> httpx.Response:
    return stack.call("POST", REVEAL, role=role, why=why, json={"event_ids": list(ids)})


@pytest.mark.parametrize("backend", BACKENDS)
def test_erasure_shreds_the_person_and_the_trail_still_verifies(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    """After the erasure: one audit.erasure naming the pseudonym (never the code), the
    person's keys, profile and ended session gone, the verifier intact, re-identification
    of their login 'erased', and the personal code and names in no answer, log line or
    stored event; a new login afterwards gets a fresh, readable key."""
    with backend_stack(tmp_path, backend, request) as stack:
        login = _login_and_logout(stack)
        pseudonym = login["actor"]["pseudonym"]
        assert _reveal(stack, login["id"]).json()["events"][0]["status"] == "revealed"
        assert _keys(stack, pseudonym) >= 1
        caplog.clear()
        caplog.set_level(logging.DEBUG)

        r = stack.call("POST", ERASE, role="privacy", why=WHY, json={"personal_code": CODE})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "erased"
        assert body["pseudonym"] == pseudonym
        assert body["deleted"]["keys"] >= 1
        assert body["deleted"]["sessions"] == 1
        assert body["deleted"]["tokens"] >= 1
        (erasure,) = stack.events(types=("audit.erasure",))
        assert erasure["target"] == {"type": "subject", "id": pseudonym}
        assert erasure["details"]["justification"] == WHY
        assert erasure["correlation"]["request_id"] == r.headers["x-request-id"]
        assert _keys(stack, pseudonym) == 0
        db = stack.stack.settings.resolved_database_url()
        assert _count(db, session, session.c.subject == "EE" + CODE) == 0

        verify = stack.call("POST", "/audit/verify", role="auditor")
        assert verify.status_code == 200
        assert verify.json()["intact"] is True
        shown = _reveal(stack, login["id"])
        assert shown.status_code == 200
        (item,) = shown.json()["events"]
        assert item["status"] == "erased"
        assert "personal" not in item
        exported = stack.call("GET", "/audit/events?format=jsonl", role="auditor")
        assert exported.status_code == 200
        assert login["id"] in exported.text

        for clear in (CODE, GIVEN, FAMILY):
            assert clear not in r.text
            assert clear not in caplog.text
            assert clear.encode() not in b"".join(stack.stack.raw_events())

        again = _login_and_logout(stack)
        assert again["pii"]["kid"] != login["pii"]["kid"]
        (fresh,) = _reveal(stack, again["id"]).json()["events"]
        assert fresh["status"] == "revealed"
        assert fresh["personal"]["given_name"] == GIVEN


def test_the_security_profile_goes_with_the_person(tmp_path: Path) -> None:
    """A login gives the person a security profile (keyed by pseudonym); erasure deletes it."""
    with admin_stack(tmp_path) as stack:
        login = _login_and_logout(stack)
        db = stack.stack.settings.resolved_database_url()
        person = security_profile.c.person == login["actor"]["pseudonym"]
        assert _count(db, security_profile, person) == 1
        r = stack.call("POST", ERASE, role="privacy", why=WHY, json={"personal_code": CODE})
        assert r.json()["deleted"]["profiles"] == 1
        assert _count(db, security_profile, person) == 0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminStack]:
    with admin_stack(Path(tmp_path_factory.mktemp("privacy"))) as s:
        yield s


@pytest.mark.parametrize("role", ["admin", "auditor", "security"])
def test_other_roles_are_refused_and_nothing_is_erased(stack: AdminStack, role: str) -> None:
    """403 for every role but privacy, on every route; the person's keys stay."""
    login = _login_and_logout(stack)
    pseudonym = login["actor"]["pseudonym"]
    before = _keys(stack, pseudonym)
    r = stack.call("POST", ERASE, role=role, why=WHY, json={"personal_code": CODE})
    assert r.status_code == 403, r.text
    assert _keys(stack, pseudonym) == before > 0
    assert _reveal(stack, login["id"], role=role).status_code == 403
    looked = stack.call("POST", PSEUDONYMS, role=role, why=WHY, json={"personal_code": CODE})
    assert looked.status_code == 403
    assert pseudonym not in looked.text


@pytest.mark.parametrize("why", [None, "short"])
def test_a_justification_is_required(stack: AdminStack, why: str | None) -> None:
    """Without a justification (or a too short one): 400 justification_required with a
    message saying so, and nothing erased or revealed."""
    login = _login_and_logout(stack)
    before = _keys(stack, login["actor"]["pseudonym"])
    r = stack.call("POST", ERASE, role="privacy", why=why, json={"personal_code": CODE})
    assert r.status_code == 400
    assert r.json()["error"] == "justification_required"
    assert "justification" in r.json()["detail"]
    assert _keys(stack, login["actor"]["pseudonym"]) == before
    shown = _reveal(stack, login["id"], why=why)
    assert shown.status_code == 400
    assert GIVEN not in shown.text
    looked = stack.call("POST", PSEUDONYMS, role="privacy", why=why, json={"personal_code": CODE})
    assert looked.status_code == 400
    assert login["actor"]["pseudonym"] not in looked.text


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"personal_code": CODE, "pseudonym": "p1:" + "A" * 24},
        {"pseudonym": "nobody"},
        {"personal_code": "x"},
    ],
)
def test_a_person_named_badly_is_a_clear_422(stack: AdminStack, body: dict[str, Any]) -> None:
    """Nobody, two names or a malformed one: 422 invalid_request saying how to name them,
    to an erasure and to a look-up of pseudonyms alike."""
    for route in (ERASE, PSEUDONYMS):
        r = stack.call("POST", route, role="privacy", why=WHY, json=body)
        assert r.status_code == 422, r.text
        assert r.json()["error"] == "invalid_request"
        assert CODE not in r.text


def test_an_unknown_person_gets_the_same_answer_with_nothing_deleted(stack: AdminStack) -> None:
    """Nobody by that code: 200 nothing_found, zero counts, and still one audit.erasure."""
    r = stack.call("POST", ERASE, role="privacy", why=WHY, json={"personal_code": "50001010006"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "nothing_found"
    assert set(r.json()["deleted"].values()) == {0}
    recorded = stack.events(types=("audit.erasure",), correlation=r.headers["x-request-id"])
    assert len(recorded) == 1


def test_re_identification_is_recorded_with_ids_and_field_names_only(stack: AdminStack) -> None:
    """The audit.access 're-identify' of the call names the events and fields revealed and
    the justification, never a value; an unknown id is 'not_found'; more than 50 is 422."""
    login = _login_and_logout(stack)
    unknown = "01234567-89ab-7def-8123-456789abcdef"
    r = _reveal(stack, login["id"], unknown)
    assert r.status_code == 200, r.text
    revealed, missing = r.json()["events"]
    assert revealed["personal"]["personal_code"] == "EE" + CODE
    assert missing == {"id": unknown, "status": "not_found"}
    (access,) = [
        e
        for e in stack.events(types=("audit.access",), correlation=r.headers["x-request-id"])
        if e["details"]["action"] == "re-identify"
    ]
    assert access["details"]["event_ids"] == [login["id"]]
    assert "given_name" in access["details"]["fields"]
    assert access["details"]["justification"] == WHY
    import orjson

    for clear in (CODE, GIVEN, FAMILY):
        assert clear not in orjson.dumps(access).decode()
    many = [f"{i:08x}" for i in range(51)]
    assert _reveal(stack, *many).status_code == 422


def test_a_look_up_of_pseudonyms_is_recorded_before_it_answers(stack: AdminStack) -> None:
    """POST /admin/privacy/pseudonyms names the person under the current key (no key is
    retired here); its audit.access 'pseudonymise' holds the justification and the
    pseudonym as target, never the personal code."""
    login = _login_and_logout(stack)
    r = stack.call("POST", PSEUDONYMS, role="privacy", why=WHY, json={"personal_code": CODE})
    assert r.status_code == 200, r.text
    pseudonym = login["actor"]["pseudonym"]
    assert r.json() == {"pseudonyms": [{"pseudonym": pseudonym, "key": "current"}]}
    (access,) = [
        e
        for e in stack.events(types=("audit.access",), correlation=r.headers["x-request-id"])
        if e["details"]["action"] == "pseudonymise"
    ]
    assert access["target"] == {"type": "subject", "id": pseudonym}
    assert access["details"]["justification"] == WHY
    assert access["details"]["returned"] == 1
    import orjson

    assert CODE not in orjson.dumps(access).decode()
    (call,) = stack.events(types=("admin.request",), correlation=r.headers["x-request-id"])
    assert CODE not in orjson.dumps(call).decode()


@pytest.mark.postgres
def test_nothing_is_erased_or_revealed_while_the_trail_is_down(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    """The audit store (PostgreSQL) refuses connections: erasure and re-identification answer
    503 audit_unavailable; afterwards the keys, the profile and the ended session are all
    still there and no audit.erasure was recorded."""
    with admin_stack(tmp_path, overrides={"audit_store_url": fresh_postgres_url}) as stack:
        login = _login_and_logout(stack)
        pseudonym = login["actor"]["pseudonym"]
        keys = _keys(stack, pseudonym)
        db = stack.stack.settings.resolved_database_url()
        with refusing_connections(fresh_postgres_url):
            erased = stack.call(
                "POST", ERASE, role="privacy", why=WHY, json={"personal_code": CODE}
            )
            shown = _reveal(stack, login["id"])
            looked = stack.call(
                "POST", PSEUDONYMS, role="privacy", why=WHY, json={"personal_code": CODE}
            )
        assert pseudonym not in looked.text
        for r in (erased, shown, looked):
            assert r.status_code == 503, r.text
            assert r.json()["error"] == "audit_unavailable"
        assert GIVEN not in shown.text
        assert _keys(stack, pseudonym) == keys > 0
        assert _count(db, security_profile, security_profile.c.person == pseudonym) == 1
        assert _count(db, session, session.c.subject == "EE" + CODE) == 1
        assert stack.events(types=("audit.erasure",)) == []


def test_a_privacy_officer_logged_in_through_tara_needs_the_csrf_token(tmp_path: Path) -> None:
    """With a session cookie instead of an API key, an erasure without the CSRF token is 403
    csrf_failed and erases nothing; with it, the erasure is recorded as done by the officer's
    pseudonym."""
    from admin_harness import PEOPLE, PRIVACY

    overrides = {"admin_bootstrap": {**PEOPLE, PRIVACY: ["privacy"]}}
    with admin_stack(tmp_path, overrides=overrides) as stack:
        login = _login_and_logout(stack)
        pseudonym = login["actor"]["pseudonym"]
        with stack.stack.browser(autologin=PRIVACY) as b:
            assert b.get(stack.url + "/auth/login").status_code == 200
            csrf = b.get(stack.url + "/auth/session").json()["csrf_token"]
            body = {"personal_code": CODE}
            forged = b.post(stack.url + ERASE, json=body, headers={"x-justification": WHY})
            assert forged.status_code == 403
            assert forged.json()["error"] == "csrf_failed"
            assert _keys(stack, pseudonym) > 0
            done = b.post(
                stack.url + ERASE, json=body, headers={"x-justification": WHY, "x-csrf-token": csrf}
            )
        assert done.status_code == 200, done.text
        assert _keys(stack, pseudonym) == 0
        (erasure,) = stack.events(types=("audit.erasure",))
        assert erasure["actor"]["type"] == "admin"
        assert erasure["actor"]["roles"] == ["privacy"]
        assert erasure["actor"]["pseudonym"] not in (None, pseudonym)


@pytest.mark.postgres
def test_an_erasure_on_one_instance_holds_on_another_that_cached_the_key(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    """Two services on one PostgreSQL (shared secrets, a stream each): the person logs in on
    B, which keeps their data key in memory; A erases them; B's re-identification of the
    login then answers 'erased' (B decrypts only with stored keys). B notices the erasure
    at its next erasure check (here: every commit): by the person's login after that, B
    encrypts under a fresh key that A can read, and never stores the erased key again."""
    url = fresh_postgres_url
    common = {"database_url": url}
    b_overrides = {"audit_store_url": url, "audit_stream": "inst-b", "audit_erasure_check_s": 0}
    with (
        admin_stack(
            tmp_path, overrides={"audit_store_url": url, "audit_stream": "inst-a"}, **common
        ) as a,
        admin_stack(tmp_path, overrides=b_overrides, **common) as b,
    ):
        login = _login_and_logout(b)
        assert login["stream"] == "inst-b"
        assert _reveal(b, login["id"]).json()["events"][0]["status"] == "revealed"
        erased = a.call("POST", ERASE, role="privacy", why=WHY, json={"personal_code": CODE})
        assert erased.status_code == 200, erased.text
        assert erased.json()["deleted"]["keys"] >= 1
        (item,) = _reveal(b, login["id"]).json()["events"]
        assert item["status"] == "erased"
        _login_and_logout(b)  # its first event may still use the cached key: it is checked
        later = _login_and_logout(b)
        assert later["pii"]["kid"] != login["pii"]["kid"]
        (fresh,) = _reveal(a, later["id"]).json()["events"]
        assert fresh["status"] == "revealed"
        assert _keys(a, login["pii"]["kid"].rsplit("/", 1)[0]) >= 1
        url_keys = subject_keys.c.key_id == login["pii"]["kid"]
        assert _count(url, subject_keys, url_keys) == 0
        verify = a.call("POST", "/audit/verify", role="auditor")
        assert verify.json()["intact"] is True
