"""``POST /admin/privacy/free-text/scan`` and ``.../redact`` over real HTTP, on SQLite and
the real PostgreSQL: personal codes typed into stored free text before decision 0033 are
named by table, column, row id and pseudonym, redacted with each row recorded, and never
appear in an answer or an event (decision 0038)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from admin_harness import AdminStack, backend_stack, refuse_events
from sqlalchemy import insert, select

from kroonika.db.admin import admin_role_request
from kroonika.db.tokens import access_list, clients

WHY = "DPO-91 personal codes typed before decision 0033"
SCAN, REDACT = "/admin/privacy/free-text/scan", "/admin/privacy/free-text/redact"
#: valid codes, stored nowhere on purpose (none is a harness person's)
ROLE_CODE, REASON_CODE, CLIENT_CODE = "39912310000", "47101010033", "50001010006"
CODES = (ROLE_CODE, REASON_CODE, CLIENT_CODE)
MARK = "[REDACTED:personal_code]"
BY = "person:p1:AAAAAAAAAAAAAAAAAAAAAAAA"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[AdminStack]:
    """A running service whose business database holds codes in three free-text columns,
    written directly, as the code before decision 0033 stored them."""
    with backend_stack(tmp_path, request.param, request) as s:
        with s.stack.services.engine.begin() as conn:
            conn.execute(
                insert(admin_role_request).values(
                    id="rr_old", subject="EE60001017716", role="admin", action="grant",
                    requested_by=BY, requested_at=1, expires_at=4_000_000_000,
                    status="rejected", justification=f"INC-1 for EE{ROLE_CODE} by phone",
                )
            )  # fmt: skip
            conn.execute(
                insert(access_list).values(
                    id="al_old", list="deny", kind="ip", value="192.0.2.9", created_by=BY,
                    created_at=1, reason=f"INC-2 PNOEE-{REASON_CODE} complained",
                )
            )  # fmt: skip
            conn.execute(
                insert(clients).values(
                    client_id="svc-old", name=f"Kassa {CLIENT_CODE}", secret_hash="x",
                    allowed_audiences="[]", allowed_claims="[]", max_ttl_s=60, created_at=1,
                )
            )  # fmt: skip
        yield s


def _pseudonym(stack: AdminStack, code: str) -> str:
    return stack.stack.services.audit.fingerprinter.pseudonym("EE" + code)


def _texts(stack: AdminStack) -> list[str]:
    with stack.stack.services.engine.connect() as conn:
        return [
            conn.execute(select(admin_role_request.c.justification)).scalar_one(),
            conn.execute(select(access_list.c.reason)).scalar_one(),
            conn.execute(
                select(clients.c.name).where(clients.c.client_id == "svc-old")
            ).scalar_one(),
        ]


def _no_code_in(data: str | bytes) -> None:
    raw = data.encode() if isinstance(data, str) else data
    for code in CODES:
        assert code.encode() not in raw


def test_a_scan_names_each_value_by_pseudonym_and_is_recorded(stack: AdminStack) -> None:
    """200 with table, column, row id and subject_refs per value; no code, no text; one
    audit.access (action scan-free-text) with the justification and the count."""
    r = stack.call("POST", SCAN, role="privacy", why=WHY, json={})
    assert r.status_code == 200, r.text
    found = {
        (f["table"], f["column"], f["row_id"]): f["subject_refs"] for f in r.json()["findings"]
    }
    assert found == {
        ("admin_role_request", "justification", "rr_old"): [_pseudonym(stack, ROLE_CODE)],
        ("token_access_list", "reason", "al_old"): [_pseudonym(stack, REASON_CODE)],
        ("token_clients", "name", "svc-old"): [_pseudonym(stack, CLIENT_CODE)],
    }
    _no_code_in(r.text)
    assert "Kassa" not in r.text
    (access,) = [
        e for e in stack.events(types=("audit.access",))
        if e["details"]["action"] == "scan-free-text"
    ]  # fmt: skip
    assert access["details"]["justification"] == WHY
    assert access["details"]["returned"] == 3


def test_a_redaction_removes_the_codes_and_records_each_row(
    stack: AdminStack, caplog: pytest.LogCaptureFixture
) -> None:
    """The codes become the marker and the rest of the text stays; one admin.text.redact
    per row, with the request's correlation; a second scan finds nothing. No code in any
    answer, event or log line."""
    caplog.set_level(logging.DEBUG)
    r = stack.call("POST", REDACT, role="privacy", why=WHY, json={})
    assert r.status_code == 200, r.text
    assert r.json()["redacted"] == 3
    assert r.json()["left"] == 0
    assert _texts(stack) == [
        f"INC-1 for {MARK} by phone",
        f"INC-2 {MARK} complained",
        f"Kassa {MARK}",
    ]
    redactions = stack.events(types=("admin.text.redact",))
    assert {e["target"]["id"] for e in redactions} == {"rr_old", "al_old", "svc-old"}
    assert all(e["details"]["justification"] == WHY for e in redactions)
    assert all(e["correlation"]["request_id"] for e in redactions)
    again = stack.call("POST", SCAN, role="privacy", why=WHY, json={})
    assert again.json() == {"findings": []}
    for text in (r.text, again.text):
        _no_code_in(text)
    for raw in stack.stack.raw_events():
        _no_code_in(raw)
    assert caplog.text  # the service logs in this process
    _no_code_in(caplog.text)


def test_nothing_is_redacted_when_the_trail_refuses_the_records(
    stack: AdminStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trail refuses admin.text.redact: 503 audit_unavailable, every value as it was."""
    before = _texts(stack)
    refuse_events(monkeypatch, stack, "admin.text.redact")
    r = stack.call("POST", REDACT, role="privacy", why=WHY, json={})
    monkeypatch.undo()
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "audit_unavailable"
    _no_code_in(r.text)
    assert _texts(stack) == before
    assert stack.events(types=("admin.text.redact",)) == []


def test_a_body_with_a_code_in_its_justification_is_refused(stack: AdminStack) -> None:
    """The justification is checked as everywhere (decision 0033): 400, nothing found
    is shown and the code is not echoed."""
    why = f"DPO-91 for EE{ROLE_CODE}"
    r = stack.call("POST", SCAN, role="privacy", why=None, json={"justification": why})
    assert r.status_code == 400, r.text
    assert "rr_old" not in r.text
    _no_code_in(r.text)
    _no_code_in(orjson.dumps(stack.events(types=("admin.request",))))
