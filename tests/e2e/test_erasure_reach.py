"""What an erasure reaches beyond the keys, over real HTTP with the bundled TARA mock, on
SQLite and on the real PostgreSQL (decision 0018): a person still logged in has their
sessions ended and tokens revoked, each recorded, and undone when the trail refuses the
record; an administrator is refused until their roles are removed; a denylist entry stays;
and afterwards no event of the whole store reveals the person's data."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from admin_harness import ADMIN, AdminStack, admin_stack, backend_stack, refuse_events
from sqlalchemy import select
from test_privacy_api import BACKENDS

from kroonika.db import make_engine
from kroonika.db.sessions import session
from kroonika.db.tokens import tokens

CODE = "49002124277"
SUBJECT = "EE" + CODE
GIVEN, FAMILY = "ÕIE-MALLE", "PÕDRAMÄGI"
WHY = "DPO-77 erasure request of a data subject"
ERASE = "/admin/privacy/erasures"
REVEAL = "/admin/privacy/re-identify"


def _browser(stack: AdminStack) -> httpx.Client:
    """The person's browser. The service's manual clock is brought up to the mock's real
    one first (the ID token's time is checked against it)."""
    clock = stack.stack.clock
    clock.advance(max(0.0, time.time() - clock()))
    return stack.stack.browser(
        autologin=CODE, autologin_given_name=GIVEN, autologin_family_name=FAMILY
    )


def _logged_in(stack: AdminStack) -> httpx.Client:
    """A browser in which the person is logged in (and stays so); the caller closes it."""
    b = _browser(stack)
    assert b.get(stack.url + "/auth/login").status_code == 200
    assert b.get(stack.url + "/auth/session").status_code == 200
    return b


def _rows(stack: AdminStack, table: Any, *where: Any) -> list[Any]:
    engine = make_engine(stack.stack.settings.resolved_database_url())
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(table).where(*where)).all())
    finally:
        engine.dispose()


def _erase(stack: AdminStack, code: str = CODE) -> httpx.Response:
    return stack.call("POST", ERASE, role="privacy", why=WHY, json={"personal_code": code})


def _pseudonym(stack: AdminStack) -> str:
    return stack.stack.services.audit.fingerprinter.pseudonym(SUBJECT)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_logged_in_person_is_logged_out_their_tokens_revoked_and_their_rows_gone(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """The person is logged in while erased: their session ends (session.terminate, reason
    erasure, in their browser too), their active tokens are revoked (token.revoke), then
    the session row is deleted and the tokens keep their metadata without the subject."""
    with backend_stack(tmp_path, backend, request) as stack:
        browser = _logged_in(stack)
        jtis = [r.jti for r in _rows(stack, tokens, tokens.c.subject == SUBJECT)]
        assert jtis
        assert all(r.state == "active" for r in _rows(stack, tokens, tokens.c.jti.in_(jtis)))
        r = _erase(stack)
        assert r.status_code == 200, r.text
        done = r.json()["deleted"]
        assert done["sessions_ended"] == 1
        assert done["tokens_revoked"] == len(jtis)
        assert done["sessions"] == 1
        assert done["sessions_active"] == 0
        assert browser.get(stack.url + "/auth/session").status_code == 401
        browser.close()
        (ended,) = stack.events(types=("session.terminate",))
        assert ended["reason"] == "erasure"
        assert ended["details"]["ended_by"] == "privacy"
        assert ended["actor"]["pseudonym"] == _pseudonym(stack)
        revoked = stack.events(types=("token.revoke",))
        assert sorted(e["target"]["id"] for e in revoked) == sorted(jtis)
        assert {e["details"]["why"] for e in revoked} == {"erasure"}
        (erasure,) = stack.events(types=("audit.erasure",))
        assert erasure["details"]["sessions_active"] == 1
        assert _rows(stack, session, session.c.subject == SUBJECT) == []
        left = _rows(stack, tokens, tokens.c.jti.in_(jtis))
        assert {(t.state, t.subject) for t in left} == {("revoked", None)}
        assert stack.call("POST", "/audit/verify", role="auditor").json()["intact"] is True


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_refused_ending_is_undone_and_the_erasure_can_be_run_again(
    tmp_path: Path,
    backend: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The trail refuses session.terminate: 503 audit_unavailable, the session is open
    again (the browser still logged in), nothing deleted, and the recorded erasure is
    followed by its failure record; run again, the erasure completes."""
    with backend_stack(tmp_path, backend, request) as stack:
        browser = _logged_in(stack)
        refuse_events(monkeypatch, stack, "session.terminate")
        r = _erase(stack)
        monkeypatch.undo()
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "audit_unavailable"
        assert browser.get(stack.url + "/auth/session").status_code == 200
        (row,) = _rows(stack, session, session.c.subject == SUBJECT)
        assert (row.ended_at, row.end_reason) == (None, None)
        assert stack.stack.services.audit.subject_keys.count(_pseudonym(stack)) >= 1
        assert [
            (e["outcome"], e.get("reason")) for e in stack.events(types=("audit.erasure",))
        ] == [
            ("success", None),
            ("failure", "incomplete"),
        ]
        again = _erase(stack)
        assert again.status_code == 200, again.text
        assert again.json()["deleted"]["sessions_ended"] == 1
        assert browser.get(stack.url + "/auth/session").status_code == 401
        browser.close()


def test_refused_revocations_are_undone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trail refuses token.revoke: 503, the person's tokens are active again (their
    session, ended and recorded before, stays ended); run again, they are revoked."""
    from kroonika.audit import AuditEvent, AuditUnavailable

    with admin_stack(tmp_path) as stack:
        _logged_in(stack).close()
        jtis = [r.jti for r in _rows(stack, tokens, tokens.c.subject == SUBJECT)]
        trail = stack.stack.services.audit.trail
        original = trail.emit_many

        async def refuse(batch: Any) -> Any:
            batch = list(batch)
            if any(isinstance(e, AuditEvent) and e.type == "token.revoke" for e in batch):
                raise AuditUnavailable("store down")
            return await original(batch)

        monkeypatch.setattr(trail, "emit_many", refuse)
        r = _erase(stack)
        monkeypatch.undo()
        assert r.status_code == 503, r.text
        assert {t.state for t in _rows(stack, tokens, tokens.c.jti.in_(jtis))} == {"active"}
        assert stack.events(types=("token.revoke",)) == []
        again = _erase(stack)
        assert again.status_code == 200, again.text
        assert again.json()["deleted"]["tokens_revoked"] == len(jtis)
        assert {t.state for t in _rows(stack, tokens, tokens.c.jti.in_(jtis))} == {"revoked"}


def test_an_administrator_is_refused_until_their_roles_are_removed(tmp_path: Path) -> None:
    """Erasing a person who holds an administrator role: 409 holds_admin_roles naming what
    to do, nothing recorded as erased and their keys kept."""
    with admin_stack(tmp_path) as stack:
        pseudonym = stack.stack.services.audit.fingerprinter.pseudonym("EE" + ADMIN)
        before = stack.stack.services.audit.subject_keys.count(pseudonym)
        r = _erase(stack, ADMIN)
        assert r.status_code == 409, r.text
        assert r.json()["error"] == "holds_admin_roles"
        assert "revoke" in r.json()["detail"]
        assert ADMIN not in r.text
        assert stack.events(types=("audit.erasure",)) == []
        assert stack.stack.services.audit.subject_keys.count(pseudonym) == before


def _revealable(stack: AdminStack) -> list[dict[str, Any]]:
    """Re-identify every event of the store that has a ``pii`` block, 50 at a time."""
    ids = [e["id"] for e in stack.events() if isinstance(e.get("pii"), dict)]
    out: list[dict[str, Any]] = []
    for i in range(0, len(ids), 50):
        r = stack.call("POST", REVEAL, role="privacy", why=WHY, json={"event_ids": ids[i : i + 50]})
        assert r.status_code == 200, r.text
        out += r.json()["events"]
    return out


def _mine(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The revealed items that name the person (their code or their names)."""
    clear = (SUBJECT, GIVEN, FAMILY)
    return [
        i
        for i in items
        if i["status"] == "revealed" and any(v in clear for v in i["personal"].values())
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_after_an_erasure_no_event_in_the_store_reveals_the_person(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """The person logs in, is denylisted and is refused at their next login (a failed
    login whose subject TARA named): before the erasure the store reveals them in several
    events, failed login included; after it, re-identifying every event of the store
    reveals them in none. The denylist entry is kept and counted."""
    with backend_stack(tmp_path, backend, request) as stack:
        _logged_in(stack).close()
        entry = stack.call(
            "POST",
            "/admin/lists",
            json={"list": "deny", "kind": "subject", "value": CODE, "reason": "fraud case 7"},
        )
        assert entry.status_code == 201, entry.text
        with _browser(stack) as b:
            assert b.get(stack.url + "/auth/login").status_code == 403
        refused = [
            e
            for e in stack.events(types=("auth.login",))
            if e["outcome"] == "failure" and e.get("reason") == "denylisted_subject"
        ]
        assert refused
        assert refused[-1]["actor"]["pseudonym"] == _pseudonym(stack)
        before = _mine(_revealable(stack))
        assert refused[-1]["id"] in {i["id"] for i in before}
        assert {"auth.login", "session.create"} <= {i["type"] for i in before}

        r = _erase(stack)
        assert r.status_code == 200, r.text
        assert r.json()["deleted"]["list_entries"] == 1
        after = _revealable(stack)
        assert _mine(after) == []
        assert {i["id"] for i in before} <= {i["id"] for i in after if i["status"] == "erased"}
        kept = stack.call("GET", "/admin/lists?kind=subject").json()["entries"]
        assert [e["subject_ref"] for e in kept] == [_pseudonym(stack)]


def _reveal_ids(stack: AdminStack, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Re-identify the events ``ids`` (at most 50): each one's answer by id."""
    r = stack.call("POST", REVEAL, role="privacy", why=WHY, json={"event_ids": ids})
    assert r.status_code == 200, r.text
    return {i["id"]: i for i in r.json()["events"]}


def _anonymous_with_pii(stack: AdminStack, flow_id: str) -> list[str]:
    """The ids of the events of one login flow that name no person but carry ``pii``."""
    return [
        e["id"]
        for e in stack.events(correlation=flow_id)
        if e.get("correlation", {}).get("flow_id") == flow_id
        and "pseudonym" not in e["actor"]
        and isinstance(e.get("pii"), dict)
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_after_an_erasure_the_steps_of_the_persons_logins_before_tara_answered_are_unreadable(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """The steps of the person's login before TARA named them (started, redirected,
    callback) carry the browser's full address and share the login's flow id: after the
    erasure they answer 'erased'. A stranger's login that never named anybody stays
    readable (decision 0023)."""
    with backend_stack(tmp_path, backend, request) as stack:
        with stack.stack.browser(autologin=None) as stranger:
            assert stranger.get(stack.url + "/auth/login").status_code == 200
        (abandoned,) = {
            e["correlation"]["flow_id"]
            for e in stack.events(types=("auth.flow.transition",))
            if e["details"]["to_state"] == "redirected"
        }
        _logged_in(stack).close()
        (login,) = [e for e in stack.events(types=("auth.login",)) if e["outcome"] == "success"]
        flow_id = login["correlation"]["flow_id"]
        early = _anonymous_with_pii(stack, flow_id)
        assert len(early) >= 2
        others = _anonymous_with_pii(stack, abandoned)
        assert others
        before = _reveal_ids(stack, early + others)
        assert {before[i]["status"] for i in early + others} == {"revealed"}
        assert all(before[i]["personal"].get("ip") for i in early)

        r = _erase(stack)
        assert r.status_code == 200, r.text
        after = _reveal_ids(stack, early + others)
        assert {after[i]["status"] for i in early} == {"erased"}
        assert {after[i]["status"] for i in others} == {"revealed"}
        assert r.json()["deleted"]["flow_keys"] >= 1
        assert stack.call("POST", "/audit/verify", role="auditor").json()["intact"] is True
