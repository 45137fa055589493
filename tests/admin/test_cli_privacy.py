"""``kroonika audit erase`` and ``kroonika audit reveal``: erasure by crypto-shredding leaves
a trail that verifies, with the person's personal data unreadable and gone from the stored
bytes; re-identification is recorded before it answers; both need a justification."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from privacy_kit import recorded, refuse_records, stored_bytes
from sqlalchemy import func, insert, select
from typer.testing import CliRunner

from kroonika.audit import (
    Actor,
    ActorType,
    AuditTrail,
    AuditUnavailable,
    Correlation,
    PersonalData,
    Source,
    SqlAuditStore,
    events,
)
from kroonika.audit.privacy import flow_subject
from kroonika.audit.store._schema import subject_keys
from kroonika.auditing import build_audit
from kroonika.cli import app
from kroonika.db import make_engine
from kroonika.db.migrate import upgrade
from kroonika.db.security import security_profile
from kroonika.db.sessions import session
from kroonika.settings import Settings

CODE = "38001085718"
GIVEN, FAMILY = "HERMIONE-ÜLLE", "KÕRVITSAPUU"
WHY = "DPO-77 erasure request of a data subject"


@pytest.fixture
def person(var: Path) -> dict[str, Any]:
    """A person with two events carrying their names, an ended session and a security
    profile; yields the events and the pseudonym."""
    settings = Settings(var_dir=var)
    comps = build_audit(settings, stream="service-1")
    comps.trail.log_start_sync()
    records = []
    for _ in range(2):
        sealed = comps.trail.emit_sync(
            events.session_create(
                actor=Actor(ActorType.USER, subject="EE" + CODE),
                personal=PersonalData(given_name=GIVEN, family_name=FAMILY),
            )
        )
        assert sealed is not None
        records.append(orjson.loads(sealed.canonical))
    pseudonym = comps.fingerprinter.pseudonym("EE" + CODE)
    comps.stop_sync()
    engine = make_engine(settings.resolved_database_url())
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(insert(session).values(**_session_row("ended", ended_at=5)))
        conn.execute(insert(session).values(**_session_row("other", subject="EE60001017716")))
        conn.execute(
            insert(security_profile).values(
                person=pseudonym,
                login_count=3,
                first_seen=1,
                countries='{"EE": 3}',
                networks="{}",
                hours="[" + ",".join(["0"] * 24) + "]",
                updated_at=1,
            )
        )
    engine.dispose()
    return {"records": records, "pseudonym": pseudonym}


def _session_row(ref: str, *, subject: str = "EE" + CODE, ended_at: int | None = None) -> Any:
    mine = subject == "EE" + CODE
    return {
        "ref": ref,
        "secret_digest": ref * 4,
        "subject": subject,
        "given_name": GIVEN if mine else "TOOMAS",
        "family_name": FAMILY if mine else "TAMM",
        "method": "idcard",
        "acr": "high",
        "ip": "192.0.2.44",
        "created_at": 1,
        "last_seen_at": 1,
        "idle_expires_at": 10,
        "absolute_expires_at": 10,
        "ended_at": ended_at,
        "end_reason": "logout" if ended_at else None,
    }


def _count(url: str, table: Any) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    finally:
        engine.dispose()


def _key_subjects(url: str) -> set[str]:
    store = SqlAuditStore(url)
    try:
        with store.engine.connect() as conn:
            return set(conn.execute(select(subject_keys.c.subject)).scalars())
    finally:
        store.close()


def test_erasure_shreds_the_person_and_the_trail_still_verifies(
    var: Path, person: dict[str, Any]
) -> None:
    """After ``audit erase`` the events are still there and verify, their pii is unreadable
    ('erased' on reveal), the profile and the ended session are gone, another person's row
    stays, and the one audit.erasure names the pseudonym and the justification only."""
    runner = CliRunner()
    settings = Settings(var_dir=var)
    audit_url = settings.resolved_audit_store_url()
    engine = make_engine(audit_url)
    with engine.connect() as conn:
        wrapped = [bytes(r[0]) for r in conn.execute(select(subject_keys.c.wrapped))]
    engine.dispose()
    assert wrapped

    done = runner.invoke(app, ["audit", "erase", "--personal-code", CODE, "-j", WHY])
    assert done.exit_code == 0, done.output
    assert person["pseudonym"] in done.output
    assert "keys=1 profiles=1 sessions=1" in done.output
    assert CODE not in done.output

    verify = runner.invoke(app, ["audit", "verify"])
    assert verify.exit_code == 0, verify.output
    (erasure,) = recorded(var, "audit.erasure")
    assert erasure["outcome"] == "success"
    assert erasure["target"] == {"type": "subject", "id": person["pseudonym"]}
    assert erasure["details"]["justification"] == WHY
    assert erasure["details"]["by"] == "personal_code"
    assert erasure["details"]["keys"] == 1
    assert "pii" not in erasure  # the command line's actor has no personal data
    assert _count(audit_url, subject_keys) == 0
    assert _count(settings.resolved_database_url(), security_profile) == 0
    assert _count(settings.resolved_database_url(), session) == 1  # the other person's

    ids = [r["id"] for r in person["records"]]
    shown = runner.invoke(app, ["audit", "reveal", "-j", WHY, "--event", ids[0], "--event", ids[1]])
    assert shown.exit_code == 0, shown.output
    items = [orjson.loads(line) for line in shown.output.splitlines()]
    assert [i["status"] for i in items] == ["erased", "erased"]
    assert all("personal" not in i for i in items)

    stored = stored_bytes(var)
    for clear in (CODE.encode(), GIVEN.encode(), FAMILY.encode(), *wrapped):
        assert clear not in stored
    assert b"TOOMAS" in stored  # the other person's session is still there


def test_reveal_is_recorded_before_it_answers(var: Path, person: dict[str, Any]) -> None:
    """A reveal prints the person's data and records audit.access 're-identify' with the
    justification, the event id and the field names, never the values."""
    record = person["records"][0]
    shown = CliRunner().invoke(app, ["audit", "reveal", "-j", WHY, "--event", record["id"]])
    assert shown.exit_code == 0, shown.output
    (item,) = [orjson.loads(line) for line in shown.output.splitlines()]
    assert item["status"] == "revealed"
    assert item["personal"] == {
        "personal_code": "EE" + CODE,
        "given_name": GIVEN,
        "family_name": FAMILY,
    }
    (access,) = [
        e for e in recorded(var, "audit.access") if e["details"]["action"] == "re-identify"
    ]
    assert access["details"]["justification"] == WHY
    assert access["details"]["event_ids"] == [record["id"]]
    assert access["details"]["fields"] == ["family_name", "given_name", "personal_code"]
    text = orjson.dumps(access).decode()
    for clear in (CODE, GIVEN, FAMILY):
        assert clear not in text


def test_nothing_is_erased_or_revealed_when_the_trail_refuses(
    var: Path, person: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trail takes the command's start but refuses its erasure and its re-identification
    record: exit 2, the keys, profile and session are still there, nothing is printed."""
    real = AuditTrail.emit_sync

    def refuse(self: AuditTrail, event: Any) -> Any:
        if event.type in ("audit.erasure", "audit.access"):
            raise AuditUnavailable("store down")
        return real(self, event)

    monkeypatch.setattr(AuditTrail, "emit_sync", refuse)
    runner = CliRunner()
    done = runner.invoke(app, ["audit", "erase", "--personal-code", CODE, "-j", WHY])
    assert done.exit_code == 2
    assert "nothing erased" in done.output
    shown = runner.invoke(
        app, ["audit", "reveal", "-j", WHY, "--event", person["records"][0]["id"]]
    )
    assert shown.exit_code == 2
    assert GIVEN not in shown.output
    monkeypatch.undo()
    settings = Settings(var_dir=var)
    assert _count(settings.resolved_audit_store_url(), subject_keys) == 1
    assert _count(settings.resolved_database_url(), security_profile) == 1
    assert _count(settings.resolved_database_url(), session) == 2
    assert recorded(var, "audit.erasure") == []


@pytest.mark.parametrize("args", [["-j", ""], ["-j", "short"], []])
def test_a_justification_is_required(var: Path, person: dict[str, Any], args: list[str]) -> None:
    """No, an empty or a too short justification is a usage error and erases nothing."""
    done = CliRunner().invoke(app, ["audit", "erase", "--personal-code", CODE, *args])
    assert done.exit_code == 2
    assert "justification" in done.output.lower()
    assert recorded(var, "audit.erasure") == []


def test_an_unknown_person_is_answered_and_recorded(var: Path, person: dict[str, Any]) -> None:
    """Erasing someone with nothing stored says so (not an error) and is still recorded."""
    done = CliRunner().invoke(app, ["audit", "erase", "--personal-code", "49002124277", "-j", WHY])
    assert done.exit_code == 0, done.output
    assert "nothing found" in done.output
    assert "49002124277" not in done.output
    (erasure,) = recorded(var, "audit.erasure")
    assert erasure["details"]["keys"] == 0
    assert "49002124277" not in orjson.dumps(erasure).decode()


def test_an_active_session_is_ended_recorded_and_deleted(var: Path, person: dict[str, Any]) -> None:
    """The other person is logged in: their session is ended (session.terminate, reason
    erasure, under their pseudonym), then deleted; the answer counts it."""
    other = "60001017716"
    done = CliRunner().invoke(app, ["audit", "erase", "--personal-code", other, "-j", WHY])
    assert done.exit_code == 0, done.output
    assert "sessions_ended=1" in done.output
    assert "sessions_active=0" in done.output
    assert _count(Settings(var_dir=var).resolved_database_url(), session) == 1
    (ended,) = recorded(var, "session.terminate")
    assert (ended["reason"], ended["details"]["ended_by"]) == ("erasure", "privacy")
    (erasure,) = recorded(var, "audit.erasure")
    assert ended["actor"]["pseudonym"] == erasure["target"]["id"]
    assert erasure["details"]["sessions_active"] == 1


def test_a_refused_ending_is_undone_and_can_be_run_again(
    var: Path, person: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trail refuses session.terminate: exit 2 saying to run it again, the session is
    active again and the erasure's failure is recorded; the second run completes."""
    real = AuditTrail.emit_sync

    def refuse(self: AuditTrail, event: Any) -> Any:
        if event.type == "session.terminate":
            raise AuditUnavailable("store down")
        return real(self, event)

    args = ["audit", "erase", "--personal-code", "60001017716", "-j", WHY]
    with monkeypatch.context() as patched:  # the var fixture's settings stay
        patched.setattr(AuditTrail, "emit_sync", refuse)
        done = CliRunner().invoke(app, args)
    assert done.exit_code == 2
    assert "run it again" in done.output
    url = Settings(var_dir=var).resolved_database_url()
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(select(session).where(session.c.ref == "other")).one()
    finally:
        engine.dispose()
    assert (row.ended_at, row.end_reason) == (None, None)
    outcomes = [(e["outcome"], e.get("reason")) for e in recorded(var, "audit.erasure")]
    assert outcomes == [("success", None), ("failure", "incomplete")]
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "sessions_ended=1" in again.output
    assert _count(url, session) == 1


def test_an_administrator_is_refused(var: Path, person: dict[str, Any]) -> None:
    """A person holding an administrator role: exit 2 naming what to do first, nothing
    recorded as erased, their key kept."""
    from kroonika.admin import RoleStore

    engine = make_engine(Settings(var_dir=var).resolved_database_url())
    try:
        RoleStore(engine, clock=lambda: 1.0).grant(CODE, "auditor", by="test")
    finally:
        engine.dispose()
    done = CliRunner().invoke(app, ["audit", "erase", "--personal-code", CODE, "-j", WHY])
    assert done.exit_code == 2
    assert "administrator role" in done.output
    assert CODE not in done.output
    assert recorded(var, "audit.erasure") == []
    assert _count(Settings(var_dir=var).resolved_audit_store_url(), subject_keys) == 1


def test_erasure_by_pseudonym_finds_the_session(var: Path, person: dict[str, Any]) -> None:
    """Named by pseudonym only, the erasure still finds the person's ended session."""
    done = CliRunner().invoke(
        app, ["audit", "erase", "--pseudonym", person["pseudonym"], "-j", WHY]
    )
    assert done.exit_code == 0, done.output
    assert "keys=1 profiles=1 sessions=1" in done.output


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--personal-code", CODE, "--pseudonym", "p1:" + "A" * 24],
        ["--pseudonym", "not a pseudonym"],
        ["--personal-code", "\x1b[2J"],
    ],
)
def test_a_person_named_badly_is_a_usage_error(var: Path, args: list[str]) -> None:
    """Nobody, two names or a malformed one: exit 2, nothing recorded, no escape echoed."""
    done = CliRunner().invoke(app, ["audit", "erase", *args, "-j", WHY])
    assert done.exit_code == 2
    assert "\x1b" not in done.output
    assert not (var / "audit.db").exists() or recorded(var, "audit.erasure") == []


def test_reveal_bounds_and_names(var: Path) -> None:
    """More than 50 events, none, or a --seq without --stream are usage errors."""
    runner = CliRunner()
    many = [a for i in range(51) for a in ("--event", f"{i:08x}")]
    assert runner.invoke(app, ["audit", "reveal", "-j", WHY, *many]).exit_code == 2
    assert runner.invoke(app, ["audit", "reveal", "-j", WHY]).exit_code == 2
    assert runner.invoke(app, ["audit", "reveal", "-j", WHY, "--seq", "1"]).exit_code == 2


def test_reveal_by_stream_and_seq(var: Path, person: dict[str, Any]) -> None:
    """An event named by its stream and seq is found and revealed like one named by id."""
    record = person["records"][1]
    shown = CliRunner().invoke(
        app, ["audit", "reveal", "-j", WHY, "--stream", "service-1", "--seq", str(record["seq"])]
    )
    assert shown.exit_code == 0, shown.output
    (item,) = [orjson.loads(line) for line in shown.output.splitlines()]
    assert (item["id"], item["status"]) == (record["id"], "revealed")


def test_erasure_finds_the_person_under_a_retired_pseudonym_key(
    var: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events made before a pseudonymisation key rotation carry the old pseudonym: with the
    retired key in KROONIKA_PSEUDONYM_PREVIOUS_KEYS the erasure deletes their keys too."""
    pseudonyms = _rotated(var, monkeypatch)
    done = CliRunner().invoke(app, ["audit", "erase", "--personal-code", CODE, "-j", WHY])
    assert done.exit_code == 0, done.output
    assert "keys=2" in done.output
    assert pseudonyms[1] in done.output
    assert f"also under {pseudonyms[0]}" in done.output
    (erasure,) = recorded(var, "audit.erasure")
    assert erasure["details"]["pseudonyms"] == [pseudonyms[1], pseudonyms[0]]
    assert _count(Settings().resolved_audit_store_url(), subject_keys) == 0


def test_a_cli_erasure_forgets_the_person_in_the_shared_detector_windows(
    var: Path, person: dict[str, Any], redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the detector windows shared through Redis, the command reaches the running
    instances at once: the person's recent failures and findings there are gone, and in
    a network's window their failure stays under a stand-in (decision 0018)."""
    from kroonika.security.detectors import LoginObservation
    from kroonika.security.windows import RedisWindows

    monkeypatch.setenv("KROONIKA_REDIS_URL", redis_url)
    pseudonym = person["pseudonym"]
    windows = RedisWindows(redis_url)
    network = f"198.51.{abs(hash(pseudonym)) % 250}.0/24"
    try:
        obs = LoginObservation(at=1_780_000_000.0, success=False, person=pseudonym, network=network)
        for kind, key in (("person", pseudonym), ("ip", network)):
            windows.remember(kind, key, obs, 1_779_999_000.0, 256)  # type: ignore[arg-type]
        assert windows.claim(("brute_force", "person", pseudonym), obs.at, 120, 600)

        done = CliRunner().invoke(app, ["audit", "erase", "--personal-code", CODE, "-j", WHY])
        assert done.exit_code == 0, done.output

        again = windows.remember("person", pseudonym, obs, 1_779_999_000.0, 256)
        assert [o.person for o in again] == [pseudonym]  # only the one just added
        by_net = windows.remember("ip", network, obs, 1_779_999_000.0, 256)
        people = sorted(str(o.person) for o in by_net)
        assert people[0].startswith("erased:")
        assert people[1] == pseudonym
        assert windows.claim(("brute_force", "person", pseudonym), obs.at, 120, 600)
    finally:
        windows.forget([pseudonym])
        windows.close()


def test_erasure_reaches_the_steps_of_the_persons_logins_under_every_pseudonym_key(
    var: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A login before and one after a pseudonymisation key rotation, each written by
    another instance: the erasure deletes the keys of both flows (their steps before TARA
    named the person hold the full address); a stranger's flow keeps its key."""
    import base64

    old, new = base64.b64encode(b"o" * 32).decode(), base64.b64encode(b"n" * 32).decode()

    def step(flow: str) -> Any:
        return events.auth_flow_transition(
            actor=Actor(ActorType.ANONYMOUS),
            source=Source(ip="198.51.100.77"),
            correlation=Correlation(flow_id=flow),
            from_state="none",
            to_state="started",
        )

    for kid, key in (("p0", old), ("p1", new)):
        monkeypatch.setenv("KROONIKA_PSEUDONYM_KID", kid)
        monkeypatch.setenv("KROONIKA_PSEUDONYM_KEY", key)
        comps = build_audit(Settings(), stream=f"service-{kid}")
        comps.trail.emit_sync(step(f"flow-{kid}"))
        comps.trail.emit_sync(
            events.auth_login(
                actor=Actor(ActorType.USER, subject="EE" + CODE),
                source=Source(ip="198.51.100.77"),
                correlation=Correlation(flow_id=f"flow-{kid}"),
            )
        )
        comps.trail.emit_sync(step("flow-stranger"))
        comps.stop_sync()
    monkeypatch.setenv("KROONIKA_PSEUDONYM_PREVIOUS_KEYS", f'{{"p0": "{old}"}}')
    url = Settings().resolved_audit_store_url()
    flows = {flow_subject("flow-p0"), flow_subject("flow-p1"), flow_subject("flow-stranger")}
    assert flows <= _key_subjects(url)
    done = CliRunner().invoke(app, ["audit", "erase", "--personal-code", CODE, "-j", WHY])
    assert done.exit_code == 0, done.output
    assert "flow_keys=2" in done.output
    (erasure,) = recorded(var, "audit.erasure")
    assert erasure["details"]["flow_keys"] == 2
    assert _key_subjects(url) & flows == {flow_subject("flow-stranger")}


def test_erasure_by_a_retired_pseudonym_names_the_current_one_first(
    var: Path, person: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a rotation the person named by their old (p1) pseudonym is found through
    their session; the answer and the record name them under the current key (p2)
    first, as the trail names them now, and the old pseudonym after it."""
    import base64

    old_key = (var / "secrets" / "pseudonym_key").read_text().strip()
    monkeypatch.setenv("KROONIKA_PSEUDONYM_KID", "p2")
    monkeypatch.setenv("KROONIKA_PSEUDONYM_KEY", base64.b64encode(b"n" * 32).decode())
    monkeypatch.setenv("KROONIKA_PSEUDONYM_PREVIOUS_KEYS", f'{{"p1": "{old_key}"}}')
    done = CliRunner().invoke(
        app, ["audit", "erase", "--pseudonym", person["pseudonym"], "-j", WHY]
    )
    assert done.exit_code == 0, done.output
    first, also = done.output.splitlines()[:2]
    assert first.startswith("erased p2:")
    assert also == f"also under {person['pseudonym']}"
    (erasure,) = recorded(var, "audit.erasure")
    current = first.split()[1].rstrip(":")
    assert erasure["target"]["id"] == current
    assert erasure["details"]["pseudonyms"] == [current, person["pseudonym"]]


# --- kroonika audit pseudonyms -------------------------------------------------------------


def _rotated(var: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The person's events under p0, then under p1 after a rotation that keeps p0 as a
    previous key; their pseudonyms, the retired first."""
    import base64

    old, new = base64.b64encode(b"o" * 32).decode(), base64.b64encode(b"n" * 32).decode()
    pseudonyms = []
    for kid, key in (("p0", old), ("p1", new)):
        monkeypatch.setenv("KROONIKA_PSEUDONYM_KID", kid)
        monkeypatch.setenv("KROONIKA_PSEUDONYM_KEY", key)
        comps = build_audit(Settings(), stream=f"service-{kid}")
        comps.trail.emit_sync(
            events.session_create(actor=Actor(ActorType.USER, subject="EE" + CODE))
        )
        pseudonyms.append(comps.fingerprinter.pseudonym("EE" + CODE))
        comps.stop_sync()
    monkeypatch.setenv("KROONIKA_PSEUDONYM_PREVIOUS_KEYS", f'{{"p0": "{old}"}}')
    return pseudonyms


def _lookups(var: Path) -> list[dict[str, Any]]:
    return [e for e in recorded(var, "audit.access") if e["details"]["action"] == "pseudonymise"]


def test_pseudonyms_under_every_key_are_recorded_and_printed(
    var: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The personal code read from standard input gives the person's pseudonym under the
    current key and each retired one; audit.access (action pseudonymise) records the
    justification and whom (the current pseudonym), never the code, which is not echoed."""
    old, new = _rotated(var, monkeypatch)
    done = CliRunner().invoke(app, ["audit", "pseudonyms", "-j", WHY], input=CODE + "\n")
    assert done.exit_code == 0, done.output
    assert done.output.splitlines() == [f"{new}\tcurrent", f"{old}\tretired"]
    (lookup,) = _lookups(var)
    assert lookup["details"]["justification"] == WHY
    assert lookup["details"]["returned"] == 2
    assert lookup["target"] == {"type": "subject", "id": new}
    assert CODE not in orjson.dumps(lookup).decode()
    found = CliRunner().invoke(
        app, ["audit", "query", "--actor", new, "--actor", old, "--type", "session", "-o", "jsonl"]
    )
    assert found.exit_code == 0, found.output
    assert [orjson.loads(x)["actor"]["pseudonym"] for x in found.output.splitlines()] == [old, new]


def test_pseudonyms_read_the_personal_code_from_a_file(
    var: Path, person: dict[str, Any], tmp_path: Path
) -> None:
    """--personal-code-file names a file holding the code (argv is visible to every user
    of the host and kept in shell history: the code is never an argument)."""
    code_file = tmp_path / "code.txt"
    code_file.write_text(f"  {CODE}  \n")
    done = CliRunner().invoke(
        app, ["audit", "pseudonyms", "-j", WHY, "--personal-code-file", str(code_file)]
    )
    assert done.exit_code == 0, done.output
    assert done.output == f"{person['pseudonym']}\tcurrent\n"
    assert len(_lookups(var)) == 1


def test_pseudonyms_by_a_pseudonym_find_the_person_under_the_other_keys(
    var: Path, person: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Named by their old pseudonym (an auditor's only handle on them), the person is found
    through their session and named under the current key too, current first."""
    import base64

    old_key = (var / "secrets" / "pseudonym_key").read_text().strip()
    monkeypatch.setenv("KROONIKA_PSEUDONYM_KID", "p2")
    monkeypatch.setenv("KROONIKA_PSEUDONYM_KEY", base64.b64encode(b"n" * 32).decode())
    monkeypatch.setenv("KROONIKA_PSEUDONYM_PREVIOUS_KEYS", f'{{"p1": "{old_key}"}}')
    done = CliRunner().invoke(
        app, ["audit", "pseudonyms", "-j", WHY, "--pseudonym", person["pseudonym"]]
    )
    assert done.exit_code == 0, done.output
    current, retired = done.output.splitlines()
    assert current.startswith("p2:")
    assert current.endswith("\tcurrent")
    assert retired == f"{person['pseudonym']}\tretired"
    (lookup,) = _lookups(var)
    assert lookup["target"]["id"] == current.split("\t")[0]
    assert lookup["details"]["query"] == "by=pseudonym"


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (["-j", WHY, "--personal-code", CODE], ""),  # never on the command line
        (["-j", WHY], ""),
        (["-j", WHY], f"{CODE}\n49002124277\n"),
        (["-j", WHY], "\x1b[2J\n"),
        (["-j", WHY, "--pseudonym", "p1:" + "A" * 24, "--personal-code-file", "-"], CODE),
        (["-j", WHY, "--personal-code-file", "/nonexistent/code"], ""),
        (["-j", "short"], CODE),
        ([], CODE),
    ],
)
def test_pseudonyms_asked_badly_are_a_usage_error(
    var: Path, person: dict[str, Any], args: list[str], stdin: str
) -> None:
    """A code as an argument, no code, two codes, a malformed one, a code and a pseudonym,
    no or a short justification: exit 2, nothing printed or recorded, no code echoed."""
    done = CliRunner().invoke(app, ["audit", "pseudonyms", *args], input=stdin)
    assert done.exit_code == 2, done.output
    assert CODE not in done.output
    assert "\x1b" not in done.output
    assert person["pseudonym"] not in done.output
    assert _lookups(var) == []


def test_no_pseudonym_is_printed_when_the_trail_refuses_the_record(
    var: Path, person: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recorded before it answers: a refused audit.access is exit 2 and nothing shown."""
    refuse_records(monkeypatch, "audit.access")
    done = CliRunner().invoke(app, ["audit", "pseudonyms", "-j", WHY], input=CODE)
    assert done.exit_code == 2
    assert person["pseudonym"] not in done.output


def test_an_erasure_reads_the_personal_code_from_standard_input(
    var: Path, person: dict[str, Any]
) -> None:
    """``erase --personal-code-file -`` takes the code from standard input, off argv,
    with no deprecation warning."""
    done = CliRunner().invoke(
        app, ["audit", "erase", "-j", WHY, "--personal-code-file", "-"], input=CODE + "\n"
    )
    assert done.exit_code == 0, done.output
    assert done.stderr == ""
    assert done.output.startswith(f"erased {person['pseudonym']}: keys=1")
    assert CODE not in done.output
    both = CliRunner().invoke(
        app,
        ["audit", "erase", "-j", WHY, "--personal-code-file", "-", "--personal-code", CODE],
        input=CODE,
    )
    assert both.exit_code == 2


def test_the_personal_code_option_still_erases_and_says_it_is_deprecated(
    var: Path, person: dict[str, Any]
) -> None:
    """``--personal-code`` keeps working for scripts in development, with a warning on
    standard error that points at the standard input and file forms and does not repeat
    the code; what is done is as before."""
    done = CliRunner().invoke(app, ["audit", "erase", "--personal-code", CODE, "-j", WHY])
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith(f"erased {person['pseudonym']}: keys=1")
    assert "--personal-code is deprecated" in done.stderr
    assert "--personal-code-file -" in done.stderr
    assert CODE not in done.output
    (erasure,) = recorded(var, "audit.erasure")
    assert erasure["details"]["by"] == "personal_code"


@pytest.mark.parametrize("justification", [WHY, "short"])
def test_the_personal_code_option_is_refused_in_production(
    var: Path, person: dict[str, Any], monkeypatch: pytest.MonkeyPatch, justification: str
) -> None:
    """With ``KROONIKA_ENV=production`` a code on the command line is exit 2 before
    anything is opened: one line saying why and what to use, no code, nothing erased or
    recorded."""
    monkeypatch.setenv("KROONIKA_ENV", "production")
    done = CliRunner().invoke(app, ["audit", "erase", "--personal-code", CODE, "-j", justification])
    assert done.exit_code == 2, done.output
    assert done.stdout == ""
    assert "--personal-code is refused in production" in done.stderr
    assert "--personal-code-file" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert CODE not in done.output
    assert recorded(var, "audit.erasure") == []
    monkeypatch.delenv("KROONIKA_ENV")
    event = person["records"][0]["id"]
    shown = CliRunner().invoke(app, ["audit", "reveal", "-j", WHY, "--event", event])
    assert shown.exit_code == 0, shown.output
    assert GIVEN in shown.stdout  # not erased
