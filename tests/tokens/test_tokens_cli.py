"""``kroonika keys rotate`` and ``kroonika clients add`` (through the Typer app)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from kroonika.audit import AuditUnavailable
from kroonika.cli import app
from kroonika.db import make_engine
from kroonika.db.migrate import upgrade
from kroonika.db.tokens import clients, signing_keys
from kroonika.settings import Settings
from kroonika.tokens import ClientRegistry, SystemClock
from kroonika.tokens._build import key_ring


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("KROONIKA_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("KROONIKA_TOKEN_CLIENT_SCRYPT_N", "1024")
    return Settings(var_dir=tmp_path / "var")


def test_clients_add_prints_secret_once_and_stores_hash(env: Settings) -> None:
    """The id and secret are printed; the secret authenticates and is not stored."""
    result = CliRunner().invoke(app, ["clients", "add", "portal", "-a", "svc-a", "-c", "role"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    engine = make_engine(env.resolved_database_url())
    try:
        client = ClientRegistry(engine, clock=SystemClock()).authenticate(
            lines["client_id"], lines["client_secret"]
        )
        assert client.allowed_audiences == ("svc-a",)
    finally:
        engine.dispose()
    db = Path(env.resolved_database_url().split("///", 1)[1]).read_bytes()
    assert lines["client_secret"].encode() not in db


def test_keys_rotate_publishes_new_key(env: Settings) -> None:
    """Rotation adds a published key that signs after the lead; the old one stays."""
    engine = make_engine(env.resolved_database_url())
    upgrade(engine)
    ring = key_ring(env, engine)
    first = ring.ensure()
    result = CliRunner().invoke(app, ["keys", "rotate", "-j", "scheduled rotation CHG-9"])
    assert result.exit_code == 0, result.output
    ring.refresh()
    kids = [k.kid for k in ring.published()]
    assert first in kids
    assert len(kids) == 2
    assert ring.current().kid == first
    engine.dispose()


@pytest.mark.parametrize(
    "why",
    ["short", "evil\x1b[2J rotation", "line\r\nforged: yes rotation", "x" * 2001],
    ids=["too-short", "ansi", "crlf", "too-long"],
)
def test_keys_rotate_takes_a_justification_by_the_common_rule(env: Settings, why: str) -> None:
    """``keys rotate -j`` checked nothing but personal codes (and cut the text at 2000):
    a justification of a few letters or with terminal codes was recorded as given. It
    follows the API's rule now; nothing is rotated when it is refused."""
    engine = make_engine(env.resolved_database_url())
    upgrade(engine)
    ring = key_ring(env, engine)
    ring.ensure()
    try:
        result = CliRunner().invoke(app, ["keys", "rotate", "-j", why])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        assert "\x1b" not in result.stderr
        assert "X-Justification" not in result.output
        ring.refresh()
        assert len(ring.published()) == 1
    finally:
        engine.dispose()


def _one_line_error(result: object) -> str:
    """A usage error: exit 2, no traceback, one line on standard error."""
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    assert isinstance(result.exception, SystemExit)  # type: ignore[attr-defined]
    err: str = result.stderr  # type: ignore[attr-defined]
    assert err.startswith("error: ")
    assert err.count("\n") == 1
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    "args",
    [
        ["clients", "add", "evil\x1b[31m\r\nclient_secret: forged"],
        ["clients", "add", "x", "-a", "two\nlines"],
        ["clients", "add", "x", "--max-ttl", str(10**30)],
        ["clients", "add", "x", "-c", "bad\x1b[2Jclaim"],
        ["clients", "add", "x", "--rate-limit", "lots\x1b[2J"],
        ["clients", "add", "x", "--rate-limit", "0/minute"],
    ],
)
def test_clients_add_bad_input_is_one_clean_line(env: Settings, args: list[str]) -> None:
    """Control characters, line breaks and numbers no column holds: refused with one
    line that carries no raw escape, and nothing is registered."""
    err = _one_line_error(CliRunner().invoke(app, args))
    assert "\x1b" not in err
    assert "\r" not in err
    engine = make_engine(env.resolved_database_url())
    try:
        assert ClientRegistry(engine, clock=SystemClock()).list() == []
    finally:
        engine.dispose()


def test_clients_list_escapes_stored_text(env: Settings) -> None:
    """A name or audience stored with control characters (by an older version, or by
    hand) is listed escaped: it cannot forge a line or send a terminal escape."""
    engine = make_engine(env.resolved_database_url())
    try:
        upgrade(engine)
        registry = ClientRegistry(engine, clock=SystemClock(), scrypt_n=1024)
        cid = registry.register("plain", allowed_audiences=["svc"]).client.client_id
        with engine.begin() as conn:
            conn.execute(
                clients.update()
                .where(clients.c.client_id == cid)
                .values(name="a\r\nclient_secret: forged\x1b[31m", allowed_audiences='["x\\ny"]')
            )
    finally:
        engine.dispose()
    result = CliRunner().invoke(app, ["clients", "list"])
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert "\\r\\nclient_secret: forged\\x1b[31m" in line
    assert "aud=x\\ny" in line


def test_clients_add_unaudited_is_undone(env: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the trail cannot record the registration, the client is removed again and
    no secret is printed."""

    def broken(settings: Settings, event: object) -> None:
        raise AuditUnavailable("trail down")

    monkeypatch.setattr("kroonika.cli_tokens._audit", broken)
    result = CliRunner().invoke(app, ["clients", "add", "portal", "-a", "svc-a"])
    _one_line_error(result)
    assert "client_secret" not in result.stdout
    engine = make_engine(env.resolved_database_url())
    try:
        assert ClientRegistry(engine, clock=SystemClock()).list() == []
    finally:
        engine.dispose()


# A PostgreSQL audit store on a port nobody listens on: the trail cannot be opened.
_TRAIL_DOWN = "postgresql+psycopg://kroonika@127.0.0.1:1/audit"


@pytest.mark.parametrize("now", [False, True])
def test_keys_rotate_unaudited_is_undone(
    env: Settings, monkeypatch: pytest.MonkeyPatch, now: bool
) -> None:
    """When the trail cannot record the rotation (with or without --now), no new key is
    left behind: the old key signs, the key set is as it was, exit 2."""
    engine = make_engine(env.resolved_database_url())
    try:
        upgrade(engine)
        ring = key_ring(env, engine)
        first = ring.ensure()
        monkeypatch.setenv("KROONIKA_AUDIT_STORE_URL", _TRAIL_DOWN)
        args = ["keys", "rotate", "-j", "scheduled rotation CHG-9", *(["--now"] if now else [])]
        _one_line_error(CliRunner().invoke(app, args))
        ring.refresh()
        assert [k.kid for k in ring.published()] == [first]
        assert ring.current().kid == first
    finally:
        engine.dispose()


def test_keys_rotate_now_signs_only_once_recorded(
    env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--now: while the rotation is being recorded the new key is published but does
    not sign yet; once recorded it signs at once."""
    from kroonika import cli_tokens

    engine = make_engine(env.resolved_database_url())
    try:
        upgrade(engine)
        ring = key_ring(env, engine)
        first = ring.ensure()
        with engine.begin() as conn:  # long in use (no tie within one second)
            conn.execute(signing_keys.update().values(created_at=1, activates_at=1))
        seen: list[tuple[str, list[str]]] = []
        record = cli_tokens._audit

        def audit(settings: Settings, event: object) -> None:
            ring.refresh()
            seen.append((ring.current().kid, [k.kid for k in ring.published()]))
            record(settings, event)  # type: ignore[arg-type]

        monkeypatch.setattr("kroonika.cli_tokens._audit", audit)
        result = CliRunner().invoke(app, ["keys", "rotate", "--now", "-j", "emergency: key leaked"])
        assert result.exit_code == 0, result.output
        ring.refresh()
        new = ring.current().kid
        assert new != first
        assert seen == [(first, [first, new])]
    finally:
        engine.dispose()


def test_cli_streams_carry_the_host_name(env: Settings) -> None:
    """``clients add`` and ``keys rotate`` named their audit stream ``cli-<pid>-<4 hex>``
    while every other command names ``cli-<host>-<pid>-<4 hex>``: on one PostgreSQL
    store shared by containers whose commands run with the same pid, two of them could
    pick one stream name. Each names its host now, like the rest."""
    import socket

    from kroonika.audit import SqlAuditStore

    assert CliRunner().invoke(app, ["clients", "add", "portal", "-a", "svc-a"]).exit_code == 0
    rotated = CliRunner().invoke(app, ["keys", "rotate", "-j", "scheduled rotation CHG-9"])
    assert rotated.exit_code == 0, rotated.output
    host = socket.gethostname().split(".")[0][:40]
    store = SqlAuditStore(env.resolved_audit_store_url(), read_only=True)
    try:
        streams = [s for s in store.streams() if s.startswith("cli-")]
    finally:
        store.close()
    assert len(streams) == 2
    assert all(s.startswith(f"cli-{host}-") for s in streams), streams
