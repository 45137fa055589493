"""``kroonika privacy scan-free-text``: personal codes typed into free text before
decision 0033 are found in the business database (SQLite and PostgreSQL) and, with
``--redact``, replaced by redact's marker, each change recorded; no code ever reaches
an output, an event or (SQLite) the stored bytes (decision 0038)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from privacy_kit import recorded, refuse_records, stored_bytes
from sqlalchemy import Connection, Table, insert, select
from sqlalchemy.engine.base import RootTransaction
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from kroonika.admin._stored_text import StoredText
from kroonika.audit import AuditTrail, AuditUnavailable
from kroonika.audit.personal_codes import check_digit
from kroonika.auditing import build_audit
from kroonika.cli import app
from kroonika.db import make_engine
from kroonika.db.admin import admin_api_key, admin_config_request, admin_role_request, job_run
from kroonika.db.migrate import upgrade
from kroonika.db.tokens import access_list, clients, tokens
from kroonika.settings import Settings

WHY = "DPO-91 clean-up of personal codes typed before decision 0033"
MARK = "[REDACTED:personal_code]"


def _code(first_ten: str) -> str:
    return first_ten + str(check_digit(first_ten))


#: one valid code per free-text column (none of them is stored anywhere on purpose)
C = {
    name: _code(ten)
    for name, ten in {
        "role_why": "3800108571",
        "config_why": "6000101990",
        "config_changes": "4040404000",
        "config_expected": "4000101000",
        "reason": "4710101003",
        "client": "3710101002",
        "key": "3850505123",
        "token": "4911111234",
        "job": "5010203045",
        "long": "3020304056",
    }.items()
}
VERSION = int(_code("6110101234"))  # a valid code, kept as the number it is
EXPECTED = C["config_expected"]
LONG_NAME = "x" * 180 + " " + C["long"]
#: the subject of the role request and of the token: stored in clear on purpose
HOLDER = _code("3991231000")
BY = "person:p1:AAAAAAAAAAAAAAAAAAAAAAAA"
FAR = 4_000_000_000


@dataclass(frozen=True)
class Seeded:
    """A free-text value holding a code, and what it must read after redaction."""

    table: Table
    column: str
    row_id: str
    code: str
    after: str


def _seed(url: str) -> list[Seeded]:
    """Rows as the code before decision 0033 stored them, codes in every free-text
    column, and one clean row whose text must stay as it is."""
    changes = orjson.dumps({"client.name": f"Kassa {C['config_changes']}"}).decode()
    rows: list[tuple[Table, dict[str, Any]]] = [
        (
            admin_role_request,
            {
                "id": "rr_1",
                "subject": "EE" + HOLDER,
                "role": "admin",
                "action": "grant",
                "requested_by": BY,
                "requested_at": 1,
                "expires_at": FAR,
                "status": "pending",
                "justification": f"INC-1 asked by EE{C['role_why']} on the phone",
            },
        ),
        (
            admin_config_request,
            {
                "id": "cr_1",
                "changes": changes,
                # a version that reads as a code: a number, kept (the JSON stays valid)
                "expected": orjson.dumps({"client.name": [VERSION, f"Kassa {EXPECTED}"]}).decode(),
                "weakening": "[]",
                "requested_by": BY,
                "requested_at": 1,
                "expires_at": FAR,
                "justification": f"CHG-2 isikukood:{C['config_why']}",
                "status": "pending",
                "target": "client/svc-1",
            },
        ),
        (
            access_list,
            {
                "id": "al_1",
                "list": "deny",
                "kind": "ip",
                "value": "192.0.2.1",
                "created_by": BY,
                "created_at": 1,
                "reason": f"INC-3 reported by PNOEE-{C['reason']} today",
            },
        ),
        (
            access_list,
            {
                "id": "al_2",
                "list": "deny",
                "kind": "ip",
                "value": "192.0.2.2",
                "created_by": BY,
                "created_at": 1,
                "reason": "INC-4 mistyped 38001085719, order 970010857180",
            },
        ),
        (
            clients,
            {
                "client_id": "svc-1",
                "name": f"Kassa {C['client']}",
                "secret_hash": "x",
                "allowed_audiences": "[]",
                "allowed_claims": "[]",
                "max_ttl_s": 60,
                "created_at": 1,
            },
        ),
        (
            clients,
            {
                "client_id": "svc-2",
                "name": LONG_NAME,
                "secret_hash": "x",
                "allowed_audiences": "[]",
                "allowed_claims": "[]",
                "max_ttl_s": 60,
                "created_at": 1,
            },
        ),
        (
            admin_api_key,
            {
                "id": "k1",
                "name": f"deploy key of {C['key']}",
                "secret_digest": "0" * 64,
                "roles": "admin",
                "created_by": BY,
                "created_at": 1,
                "expires_at": FAR,
            },
        ),
        (
            tokens,
            {
                "jti": "jti-1",
                "kid": "k",
                "alg": "ES256",
                "token_type": "custom",
                "subject": "EE" + HOLDER,
                "audience": "[]",
                "claim_names": "[]",
                "iat": 1,
                "exp": 2,
                "state": "revoked",
                "changed_by": BY,
                "change_reason": f"INC-5 EE{C['token']} left the company",
            },
        ),
        (
            job_run,
            {
                "id": "run-1",
                "job": "sessions",
                "trigger": "schedule",
                "owner": "host-1",
                "started_at": 1,
                "outcome": "failure",
                "counts": "{}",
                "error": f"IntegrityError: value {C['job']}",
            },
        ),
    ]
    engine = make_engine(url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            for table, values in rows:
                conn.execute(insert(table).values(**values))
    finally:
        engine.dispose()
    return [
        Seeded(admin_role_request, "justification", "rr_1", C["role_why"],
               f"INC-1 asked by {MARK} on the phone"),
        Seeded(admin_config_request, "justification", "cr_1", C["config_why"],
               f"CHG-2 isikukood:{MARK}"),
        Seeded(admin_config_request, "changes", "cr_1", C["config_changes"],
               orjson.dumps({"client.name": f"Kassa {MARK}"}).decode()),
        Seeded(
            admin_config_request,
            "expected",
            "cr_1",
            EXPECTED,
            orjson.dumps({"client.name": [VERSION, f"Kassa {MARK}"]}).decode(),
        ),
        Seeded(access_list, "reason", "al_1", C["reason"], f"INC-3 reported by {MARK} today"),
        Seeded(clients, "name", "svc-1", C["client"], f"Kassa {MARK}"),
        # the marker is longer than the code: cut to the column's 200 characters
        Seeded(clients, "name", "svc-2", C["long"], "x" * 180 + " " + MARK[:18] + "\u2026"),
        Seeded(admin_api_key, "name", "k1", C["key"], f"deploy key of {MARK}"),
        Seeded(tokens, "change_reason", "jti-1", C["token"], f"INC-5 {MARK} left the company"),
        Seeded(job_run, "error", "run-1", C["job"], f"IntegrityError: value {MARK}"),
    ]  # fmt: skip


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def business(
    request: pytest.FixtureRequest, var: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, list[Seeded]]:
    """The business database (SQLite in the var directory, or a PostgreSQL database of
    its own) seeded with codes in every free-text column; yields its URL and the seeds."""
    if request.param == "postgres":
        url = request.getfixturevalue("fresh_postgres_url")
        monkeypatch.setenv("KROONIKA_DATABASE_URL", url)
    else:
        url = Settings(var_dir=var).resolved_database_url()
    return url, _seed(url)


def _pseudonym(var: Path, code: str) -> str:
    comps = build_audit(Settings(var_dir=var), stream="test-pseudonym")
    try:
        return comps.fingerprinter.pseudonym("EE" + code)
    finally:
        comps.store.close()


def _value(url: str, seed: Seeded) -> str:
    engine = make_engine(url)
    key = next(iter(seed.table.primary_key.columns))
    try:
        with engine.connect() as conn:
            return str(
                conn.execute(
                    select(seed.table.c[seed.column]).where(key == seed.row_id)
                ).scalar_one()
            )
    finally:
        engine.dispose()


def _no_code_in(text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    for code in C.values():
        assert code.encode() not in data


def _scan(*args: str) -> Any:
    return CliRunner().invoke(app, ["privacy", "scan-free-text", "-j", WHY, *args])


def test_scan_reports_every_column_by_pseudonym_and_exits_1(
    var: Path, business: tuple[str, list[Seeded]]
) -> None:
    """Each seeded value is reported with its table, column, row id and the person's
    pseudonym; the clean row is not; exit 1; no code, no text in the output."""
    url, seeds = business
    done = _scan()
    assert done.exit_code == 1, done.output
    lines = set(done.stdout.splitlines())
    for s in seeds:
        assert f"{s.table.name}\t{s.column}\t{s.row_id}\t{_pseudonym(var, s.code)}" in lines
    assert len(lines) == len(seeds)
    assert "al_2" not in done.output
    _no_code_in(done.output)
    for word in ("asked by", "Kassa", "deploy key", "left the company"):
        assert word not in done.output
    assert _value(url, seeds[0]).endswith("on the phone")  # a scan changes nothing


def test_scan_json_is_machine_readable(var: Path, business: tuple[str, list[Seeded]]) -> None:
    """--json: one document with each finding's table, column, row id and subject_refs."""
    _, seeds = business
    done = _scan("--json")
    assert done.exit_code == 1
    doc = orjson.loads(done.stdout)
    found = {(f["table"], f["column"], f["row_id"]): f["subject_refs"] for f in doc["findings"]}
    assert found == {(s.table.name, s.column, s.row_id): [_pseudonym(var, s.code)] for s in seeds}
    assert doc["redacted"] == 0
    _no_code_in(done.output)


def test_scan_is_recorded_as_an_access_with_its_justification(
    var: Path, business: tuple[str, list[Seeded]]
) -> None:
    """One audit.access (action scan-free-text) with the justification and the number
    of findings; no code in it."""
    _, seeds = business
    assert _scan().exit_code == 1
    [access] = [
        e for e in recorded(var, "audit.access") if e["details"]["action"] == "scan-free-text"
    ]
    assert access["details"]["justification"] == WHY
    assert access["details"]["returned"] == len(seeds)
    _no_code_in(orjson.dumps(access))


def test_redact_replaces_the_codes_records_each_row_and_a_second_scan_finds_nothing(
    var: Path, business: tuple[str, list[Seeded]], caplog: pytest.LogCaptureFixture
) -> None:
    """--redact: every code becomes the marker, the text around it stays, the clean row
    is untouched; one admin.text.redact per changed row names table, columns, row and
    pseudonyms; then a scan exits 0. No code in any output, event or stored byte."""
    url, seeds = business
    caplog.set_level(logging.DEBUG)
    done = _scan("--redact", "--json")
    assert done.exit_code == 0, done.output
    changed_rows = {(s.table.name, s.row_id) for s in seeds}
    assert orjson.loads(done.stdout)["redacted"] == len(changed_rows)
    for s in seeds:
        assert _value(url, s) == s.after
    clean = Seeded(access_list, "reason", "al_2", "", "")
    assert _value(url, clean) == "INC-4 mistyped 38001085719, order 970010857180"
    redactions = recorded(var, "admin.text.redact")
    rows = {(e["target"]["type"], e["target"]["id"]): e["details"] for e in redactions}
    assert len(redactions) == len(rows) == len(changed_rows)
    for s in seeds:
        details = rows[(s.table.name, s.row_id)]
        assert s.column in details["columns"]
        assert _pseudonym(var, s.code) in details["pseudonyms"]
        assert details["justification"] == WHY
    again = _scan()
    assert again.exit_code == 0, again.output
    assert again.stdout == ""
    for text in (done.output, again.output, orjson.dumps(redactions), caplog.text):
        _no_code_in(text)
    _no_code_in(stored_bytes(var))  # the audit store; with SQLite the business DB too


def test_nothing_is_changed_when_the_trail_refuses_the_records(
    var: Path, business: tuple[str, list[Seeded]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fail closed: the trail refuses admin.text.redact; exit 2 and every value is as
    it was."""
    url, seeds = business

    def refuse(self: AuditTrail, batch: Any) -> Any:
        raise AuditUnavailable("store down")

    monkeypatch.setattr(AuditTrail, "emit_many_sync", refuse)
    done = _scan("--redact")
    assert done.exit_code == 2
    assert "nothing redacted" in done.output
    _no_code_in(done.output)
    monkeypatch.undo()
    for s in seeds:
        assert s.code in _value(url, s)


def test_a_commit_that_fails_after_the_records_is_recorded_as_a_failure(
    var: Path, business: tuple[str, list[Seeded]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The records of the first table are stored, then its commit fails: the value is
    as it was, exit 2, and each record is followed by a failure record (reason
    incomplete) for the same row."""
    url, seeds = business

    real_commit = RootTransaction._connection_commit_impl
    real_redact = StoredText._redact_table

    def redact_then_break(self: StoredText, conn: Connection, *args: Any) -> Any:
        conn.info["break_commit"] = True  # this transaction's commit will fail
        return real_redact(self, conn, *args)

    def commit(self: RootTransaction) -> None:
        if self.connection.info.pop("break_commit", False):
            raise OperationalError("COMMIT", {}, Exception("disk I/O error"))
        real_commit(self)

    monkeypatch.setattr(StoredText, "_redact_table", redact_then_break)
    monkeypatch.setattr(RootTransaction, "_connection_commit_impl", commit)
    done = _scan("--redact")
    monkeypatch.undo()
    assert done.exit_code == 2
    _no_code_in(done.output)
    for s in seeds:
        assert s.code in _value(url, s)
    redactions = recorded(var, "admin.text.redact")
    assert [(e["outcome"], e.get("reason")) for e in redactions] == [
        ("success", None),
        ("failure", "incomplete"),
    ]
    assert {e["target"]["id"] for e in redactions} == {"rr_1"}


def test_nothing_is_shown_when_the_trail_refuses_the_access(
    var: Path, business: tuple[str, list[Seeded]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan is recorded before it answers: refused, exit 2 and no finding shown."""
    refuse_records(monkeypatch, "audit.access")
    done = _scan()
    assert done.exit_code == 2
    assert "rr_1" not in done.output


@pytest.mark.parametrize(
    "args",
    [
        ["privacy", "scan-free-text"],
        ["privacy", "scan-free-text", "-j", "x"],
        ["privacy", "scan-free-text", "-j", f"DPO-91 by EE{C['key']}"],
    ],
)
def test_a_missing_or_bad_justification_is_a_usage_error(var: Path, args: list[str]) -> None:
    """No, too short, or a personal code in it: exit 2, the code not repeated."""
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 2
    _no_code_in(done.output)


def test_an_empty_database_exits_0(var: Path) -> None:
    """Nothing stored, nothing found: exit 0, nothing printed."""
    done = _scan()
    assert done.exit_code == 0, done.output
    assert done.stdout == ""
