"""``kroonika admins add``: the grant is audited as config.change of admin.roles by
system/cli, never with the clear personal code, and undone if the trail refuses it."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from kroonika.audit import AuditTrail, AuditUnavailable, Query, SqlAuditStore, run_query
from kroonika.cli import app
from kroonika.settings import Settings

CODE = "38001085718"


def _events(var: Path, kind: str) -> list[dict[str, object]]:
    store = SqlAuditStore(Settings(var_dir=var).resolved_audit_store_url(), read_only=True)
    try:
        return [orjson.loads(b) for b in run_query(store, Query(types=(kind,)))]
    finally:
        store.close()


def test_a_grant_is_audited_once(var: Path) -> None:
    """The first grant gives one config.change (before [], after ["admin"]) by system/cli
    with the justification; granting again changes nothing and records nothing."""
    runner = CliRunner()
    first = runner.invoke(
        app, ["admins", "add", CODE, "--role", "admin", "-j", "INC-9 first admin"]
    )
    assert first.exit_code == 0, first.output
    assert "granted" in first.output
    (event,) = _events(var, "config.change")
    assert event["details"]["key"] == "admin.roles"
    assert event["details"]["before"] == "[]"
    assert event["details"]["after"] == '["admin"]'
    assert event["details"]["justification"] == "INC-9 first admin"
    assert event["actor"]["type"] == "system"
    assert event["actor"]["client_id"] == "cli"
    assert event["target"]["type"] == "admin_roles"
    again = runner.invoke(app, ["admins", "add", CODE, "--role", "admin"])
    assert again.exit_code == 0
    assert "already held" in again.output
    assert len(_events(var, "config.change")) == 1
    second_role = runner.invoke(app, ["admins", "add", CODE, "--role", "auditor"])
    assert second_role.exit_code == 0
    latest = _events(var, "config.change")[-1]["details"]
    assert (latest["before"], latest["after"]) == ('["admin"]', '["admin","auditor"]')
    raw = b"".join(
        orjson.dumps(e) for e in _events(var, "config.change") + _events(var, "audit.log.start")
    )
    assert CODE.encode() not in raw


def test_the_grant_is_undone_when_the_trail_refuses(
    var: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No role without its record: a refused event exits 2 and leaves no grant."""

    def refuse(self: AuditTrail, event: object) -> None:
        raise AuditUnavailable("store down")

    monkeypatch.setattr(AuditTrail, "emit_sync", refuse)
    runner = CliRunner()
    done = runner.invoke(app, ["admins", "add", CODE])
    assert done.exit_code == 2
    assert "not granted" in done.output
    monkeypatch.undo()
    monkeypatch.setenv("KROONIKA_VAR_DIR", str(var))
    listed = runner.invoke(app, ["admins", "list"])
    assert listed.exit_code == 0
    assert CODE not in listed.output


def test_a_bad_role_is_a_usage_error(var: Path) -> None:
    """An unknown role is refused before anything is granted or recorded."""
    done = CliRunner().invoke(app, ["admins", "add", CODE, "--role", "root"])
    assert done.exit_code == 2
    assert not (var / "audit.db").exists() or _events(var, "config.change") == []


def test_every_cli_writer_records_its_stop(var: Path) -> None:
    """Each command that writes to the trail leaves a matching audit.log.stop per stream."""
    runner = CliRunner()
    assert runner.invoke(app, ["admins", "add", CODE, "-j", "INC-9 first admin"]).exit_code == 0
    assert runner.invoke(app, ["admins", "add", CODE, "--role", "auditor"]).exit_code == 0
    starts = {e["stream"] for e in _events(var, "audit.log.start")}
    stops = {e["stream"] for e in _events(var, "audit.log.stop")}
    assert len(starts) == 2
    assert starts == stops


@pytest.mark.parametrize("code", ["", "\x1b[2J\x1b]0;owned\x07EE1", "EE3800108571\u202e8"])
def test_a_subject_with_terminal_codes_or_nothing_is_a_usage_error(var: Path, code: str) -> None:
    """Nothing, escape sequences or bidi controls are refused before anything is granted."""
    done = CliRunner().invoke(app, ["admins", "add", code, "-j", "INC-9 first admin"])
    assert done.exit_code == 2
    assert "subject" in done.output
    assert "\x1b" not in done.output
    assert not (var / "audit.db").exists() or _events(var, "config.change") == []


def test_the_list_shows_stored_control_characters_escaped(var: Path) -> None:
    """A row written before subjects were checked cannot drive the operator's terminal
    (its subject is not shown at all, its granted_by escaped)."""
    from sqlalchemy import insert

    from kroonika.db import make_engine
    from kroonika.db.admin import admin_role
    from kroonika.db.migrate import upgrade

    engine = make_engine(Settings(var_dir=var).resolved_database_url())
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(admin_role).values(
                subject="\x1b]0;owned\x07EVIL\u202e",
                role="admin",
                granted_by="x\x1b[2J",
                granted_at=1,
            )
        )
    engine.dispose()
    listed = CliRunner().invoke(app, ["admins", "list"])
    assert listed.exit_code == 0
    assert "\x1b" not in listed.output
    assert "\u202e" not in listed.output
    assert "EVIL" not in listed.output
    assert "\tadmin\tx\\x1b[2J" in listed.output


def test_the_list_names_holders_by_pseudonym(var: Path) -> None:
    """``admins list`` prints each holder's pseudonym (the target of their admin.roles
    record) and country, never the personal codes of everyone."""
    runner = CliRunner()
    for code, role in ((CODE, "admin"), ("60001019906", "auditor")):
        done = runner.invoke(app, ["admins", "add", code, "--role", role, "-j", "INC-9 bootstrap"])
        assert done.exit_code == 0, done.output
    refs = {e["details"]["after"]: e["target"]["id"] for e in _events(var, "config.change")}
    listed = runner.invoke(app, ["admins", "list"])
    assert listed.exit_code == 0, listed.output
    assert CODE not in listed.output
    assert "60001019906" not in listed.output
    lines = set(listed.output.splitlines())
    admin, auditor = refs['["admin"]'], refs['["auditor"]']
    assert f"{admin}\tEE\tadmin\tcli" in lines
    assert f"{auditor}\tEE\tauditor\tcli" in lines


def test_show_answers_one_persons_roles(var: Path) -> None:
    """``admins show CODE``: the pseudonym and roles of the person the operator names."""
    runner = CliRunner()
    assert runner.invoke(app, ["admins", "add", CODE, "-j", "INC-9 first"]).exit_code == 0
    (event,) = _events(var, "config.change")
    shown = runner.invoke(app, ["admins", "show", "EE" + CODE])
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines() == [f"{event['target']['id']}\tadmin"]
    nobody = runner.invoke(app, ["admins", "show", "60001019906"])
    assert nobody.exit_code == 0, nobody.output
    assert nobody.stdout.splitlines()[0].endswith("\t")
    bad = runner.invoke(app, ["admins", "show", "EVIL \x1b"])
    assert bad.exit_code == 2


@pytest.mark.parametrize("why", ["", "   ", "INC-9 forged\r\nline", "INC-9 \x1b[2J wiped"])
def test_a_justification_that_is_not_plain_text_is_a_usage_error(var: Path, why: str) -> None:
    """The CLI holds its justification to the API's rule: no grant and no record without
    one, or with CR or terminal codes in it."""
    done = CliRunner().invoke(app, ["admins", "add", CODE, "-j", why])
    assert done.exit_code == 2
    assert "justification" in done.output
    if not why.strip():  # it names the option the user gives it with, not an HTTP header
        assert "-j/--justification" in done.output
        assert "X-Justification" not in done.output
    assert "\x1b" not in done.output
    assert not (var / "audit.db").exists() or _events(var, "config.change") == []


def test_the_code_is_read_from_standard_input_or_a_file(var: Path, tmp_path: Path) -> None:
    """``-`` or ``--personal-code-file``: the code never on the command line, where every
    user of the host sees it (ps) and the shell keeps it; no warning then."""
    runner = CliRunner()
    added = runner.invoke(app, ["admins", "add", "-", "-j", "INC-9 first"], input=CODE + "\n")
    assert added.exit_code == 0, added.output
    assert "warning" not in added.stderr
    (event,) = _events(var, "config.change")
    code_file = tmp_path / "code.txt"
    code_file.write_text("EE" + CODE + "\n")
    shown = runner.invoke(app, ["admins", "show", "--personal-code-file", str(code_file)])
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines() == [f"{event['target']['id']}\tadmin"]
    assert shown.stderr == ""
    both = runner.invoke(app, ["admins", "show", CODE, "--personal-code-file", str(code_file)])
    assert both.exit_code == 2
    neither = runner.invoke(app, ["admins", "show"])
    assert neither.exit_code == 2
    assert "--personal-code-file" in neither.stderr


def test_a_code_on_the_command_line_is_a_warning_and_refused_in_production(
    var: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["admins", "show", CODE])
    assert done.exit_code == 0, done.output
    assert "deprecated" in done.stderr
    assert "--personal-code-file -" in done.stderr
    assert CODE not in done.stderr
    monkeypatch.setenv("KROONIKA_ENV", "production")
    for args in (["admins", "show", CODE], ["admins", "add", CODE, "-j", "INC-9 first admin"]):
        refused = runner.invoke(app, args)
        assert refused.exit_code == 2, refused.output
        assert "refused in production" in refused.stderr
        assert CODE not in refused.output
    assert not (var / "audit.db").exists() or _events(var, "config.change") == []
