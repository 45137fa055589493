"""Runtime configuration: key checks, whole-config checks, diffs, and secret values stored
encrypted under the master key."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from kroonika.admin import KEYS, ConfigInvalid, RuntimeConfig
from kroonika.admin._config import SECRET_MASK, Applier, SecretBox
from kroonika.db import make_engine
from kroonika.db.admin import runtime_config
from kroonika.db.migrate import upgrade
from kroonika.settings import Settings

WEBHOOK = "whsec-0123456789abcdef-very-secret"


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    e = make_engine(f"sqlite:///{tmp_path / 'config.db'}")
    upgrade(e)
    return e


def _ttls(v: Mapping[str, Any]) -> None:
    if not v["token.ttl_min_s"] <= v["token.ttl_default_s"] <= v["token.ttl_max_s"]:
        raise ValueError("token TTLs need min <= default <= max")


def config(engine: Engine, tmp_path: Path, key: bytes | None = None) -> RuntimeConfig:
    return RuntimeConfig(
        engine,
        Settings(var_dir=tmp_path / "var"),
        lambda: 1_700_000_000.0,
        [Applier("tokens", _ttls, lambda v: None)],
        box=SecretBox(key or b"k" * 32),
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("session.idle_s", 29),
        ("session.idle_s", True),
        ("session.idle_s", "900"),
        ("session.max_per_person", 1001),
        ("ratelimit.enabled", 1),
        ("ratelimit.limits", {"login_start:ip": 20}),
        ("token.session_audience", ["", "x"]),
        ("log.levels", {"uvicorn": "DEBUG"}),
        ("log.levels", {"kroonika.web": "LOUD"}),
        ("admin.ticket_pattern", "(unclosed"),
        ("admin.ticket_pattern", r"(?=INC)INC-\d+"),  # look-around: not linear-time
        ("admin.ticket_pattern", r"(INC)-\d+ \1"),  # a back-reference neither
        ("jobs.sessions.cron", "every minute"),
        ("jobs.sessions.cron", "0 0 31 2 *"),
        ("jobs.sessions.cron", "* * * * * */5"),
        ("token.session_audience", ["aud"] * 101),
        ("token.session_audience", ["\x1b[31maud"]),
        ("ratelimit.limits", {f"k{i}": "1/minute" for i in range(101)}),
        ("log.levels", {"kroonikaX\n": "INFO"}),
        ("log.levels", {"kroonika.web\x1b[2J": "INFO"}),
        ("alerts.webhook_secret", "short"),
        ("no.such.key", 1),
    ],
)
def test_each_key_refuses_bad_values(
    engine: Engine, tmp_path: Path, key: str, value: object
) -> None:
    """A bad value is refused with its key named in the errors, and nothing is stored."""
    cfg = config(engine, tmp_path)
    with pytest.raises(ConfigInvalid) as err:
        cfg.change({key: value}, by="test")
    assert key in err.value.errors  # type: ignore[attr-defined]
    assert cfg.effective() == cfg.defaults()


def test_values_are_normalised(engine: Engine, tmp_path: Path) -> None:
    """Log levels are upper-cased; a null ticket pattern is allowed."""
    cfg = config(engine, tmp_path)
    clean = cfg.validate({"log.levels": {"kroonika.web": "debug"}, "admin.ticket_pattern": None})
    assert clean == {"log.levels": {"kroonika.web": "DEBUG"}, "admin.ticket_pattern": None}


def test_the_whole_configuration_is_checked(engine: Engine, tmp_path: Path) -> None:
    """Each value may be valid alone and the combination still refused (min > default)."""
    cfg = config(engine, tmp_path)
    with pytest.raises(ConfigInvalid, match="tokens: token TTLs"):
        cfg.change({"token.ttl_min_s": 10_000}, by="test")
    assert cfg.get("token.ttl_min_s") == Settings().token_ttl_min_s


def test_a_change_reports_before_after_and_version(engine: Engine, tmp_path: Path) -> None:
    """Only keys whose value changes are reported, with a version per key."""
    cfg = config(engine, tmp_path)
    idle = cfg.get("session.idle_s")
    (change,) = cfg.change({"session.idle_s": idle + 60, "ratelimit.enabled": True}, by="t")
    assert (change.key, change.before, change.after, change.version) == (
        "session.idle_s",
        idle,
        idle + 60,
        1,
    )
    assert change.shown() == (str(idle), str(idle + 60))
    assert cfg.change({"session.idle_s": idle + 60}, by="t") == []
    (again,) = cfg.change({"session.idle_s": idle}, by="t")
    assert again.version == 2


def test_secret_values_are_stored_encrypted_and_never_shown(engine: Engine, tmp_path: Path) -> None:
    """The table holds ciphertext (not the value); reads mask it; diffs say set/changed;
    a fresh reader with the same master key gets the value back."""
    cfg = config(engine, tmp_path)
    (change,) = cfg.change({"alerts.webhook_secret": WEBHOOK}, by="t")
    assert change.shown() == ("unset", "changed")
    with engine.connect() as conn:
        (stored,) = conn.execute(select(runtime_config.c.value)).scalars().all()
    assert WEBHOOK not in stored
    assert '"enc":"v1:' in stored
    assert cfg.public()["alerts.webhook_secret"]["value"] == SECRET_MASK
    other = config(engine, tmp_path)
    other.refresh()
    assert other.get("alerts.webhook_secret") == WEBHOOK
    (second,) = cfg.change({"alerts.webhook_secret": WEBHOOK + "-2"}, by="t")
    assert second.shown() == ("set", "changed")


def test_a_secret_does_not_open_under_another_master_key(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With the wrong master key the stored secret is ignored (default applies), the log
    names the key but not the value."""
    config(engine, tmp_path).change({"alerts.webhook_secret": WEBHOOK}, by="t")
    wrong = config(engine, tmp_path, key=os.urandom(32))
    wrong.refresh()
    assert wrong.get("alerts.webhook_secret") is None
    assert "alerts.webhook_secret" in caplog.text
    assert WEBHOOK not in caplog.text


def test_sealed_values_are_bound_to_their_key_name() -> None:
    """Ciphertext moved to another key name does not open (the name is associated data)."""
    box = SecretBox(b"m" * 32)
    sealed = box.seal("alerts.webhook_secret", WEBHOOK)
    assert box.open("alerts.webhook_secret", sealed) == WEBHOOK
    with pytest.raises(ValueError, match="does not open"):
        box.open("other.secret", sealed)
    with pytest.raises(ValueError, match="not stored encrypted"):
        box.open("alerts.webhook_secret", WEBHOOK)


def test_every_secret_key_is_declared_secret() -> None:
    """Keys whose name says secret are marked secret (so they are sealed and masked)."""
    assert [k for k in KEYS if "secret" in k] == [k for k, v in KEYS.items() if v.secret]


def test_a_stored_value_that_no_longer_validates_falls_back_to_its_default(
    engine: Engine, tmp_path: Path
) -> None:
    """A row written under an older, looser check (a cron that is never due) is ignored
    on load, so nothing that reads the schedule fails on it."""
    _store_row(engine, "jobs.sessions.cron", '"0 0 31 2 *"')
    cfg = config(engine, tmp_path)
    cfg.refresh()
    assert cfg.get("jobs.sessions.cron") == cfg.defaults()["jobs.sessions.cron"]
    (change,) = cfg.change({"jobs.sessions.cron": "*/5 * * * *"}, by="t")
    assert change.version == 2
    assert config(engine, tmp_path).refresh()


def test_two_first_changes_of_a_key_at_once_are_a_conflict(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When another instance stores a key first (between this one's refresh and its
    write), the change is refused as a conflict to retry, not a database error."""
    first, second = config(engine, tmp_path), config(engine, tmp_path)
    second.refresh()
    monkeypatch.setattr(second, "refresh", lambda: False)  # the race: a stale view
    first.change({"session.idle_s": 600}, by="a")
    with pytest.raises(ConfigInvalid) as err:
        second.change({"session.idle_s": 700}, by="b")
    assert err.value.code == "conflict"
    assert config(engine, tmp_path).refresh()


def test_a_stored_false_cannot_switch_off_a_deployment_second_approval(
    engine: Engine, tmp_path: Path
) -> None:
    """The deployment's second approval is a floor: a runtime ``false`` (stored before the
    API refused it, or written into the table) does not switch it off."""
    _store_row(engine, "admin.second_approval", "false")
    cfg = config(engine, tmp_path)
    cfg.refresh()
    assert cfg.get("admin.second_approval") is True
    shown = cfg.public()["admin.second_approval"]
    assert (shown["value"], shown["source"]) == (True, "settings")


def test_a_runtime_second_approval_holds_over_a_deployment_without_one(
    engine: Engine, tmp_path: Path
) -> None:
    """Where the deployment has it off, switching it on at run time takes effect."""
    cfg = RuntimeConfig(
        engine,
        Settings(var_dir=tmp_path / "var", admin_second_approval=False),
        lambda: 1_700_000_000.0,
        box=SecretBox(b"k" * 32),
    )
    assert cfg.get("admin.second_approval") is False
    cfg.change({"admin.second_approval": True}, by="admin:x")
    assert cfg.get("admin.second_approval") is True


def _store_row(engine: Engine, key: str, value: str) -> None:
    """A runtime_config row as an older version or a hand edit left it."""
    from sqlalchemy import insert

    with engine.begin() as conn:
        conn.execute(
            insert(runtime_config).values(
                key=key, value=value, version=1, updated_at=1, updated_by="old"
            )
        )


# --- which changes weaken a control (decision 0017) -----------------------------------------


@pytest.mark.parametrize(
    ("changes", "weakening"),
    [
        ({"admin.second_approval": False}, ["admin.second_approval"]),
        ({"ratelimit.enabled": False}, ["ratelimit.enabled"]),
        ({"ratelimit.limits": {"admin:ip": "off"}}, ["ratelimit.limits"]),
        ({"ratelimit.limits": {"admin:person": "1000/minute"}}, ["ratelimit.limits"]),
        ({"ratelimit.limits": {"admin:person": "1000/hour"}}, ["ratelimit.limits"]),  # burst
        ({"ratelimit.limits": {"login_start:ip": "1/second"}}, ["ratelimit.limits"]),  # rate
        ({"ratelimit.limits": {"admin:person": "60/minute"}}, []),
        ({"ratelimit.limits": {"login_start:ip": "30/hour"}}, []),
        ({"jobs.sessions.enabled": False}, ["jobs.sessions.enabled"]),
        ({"jobs.audit_retention.enabled": False}, ["jobs.audit_retention.enabled"]),
        ({"jobs.access_lists.enabled": False}, []),  # tidies entries no longer enforced
        ({"jobs.audit_retention.cron": "23 3 1 * *"}, ["jobs.audit_retention.cron"]),
        ({"jobs.audit_retention.cron": "23 */6 * * *"}, []),
        ({"jobs.sessions.cron": "*/5 * * * *"}, ["jobs.sessions.cron"]),
        ({"session.idle_s": 86_400}, ["session.idle_s"]),
        ({"session.idle_s": 300}, []),
        ({"session.max_per_person": 3}, []),  # from no limit to one: stricter
        ({"token.ttl_max_s": 10**8}, ["token.ttl_max_s"]),
        ({"token.session_audience": ["kroonika", "elsewhere"]}, ["token.session_audience"]),
        ({"alerts.brute_force_failures": 10_000}, ["alerts.brute_force_failures"]),
        ({"alerts.brute_force_window_s": 10}, ["alerts.brute_force_window_s"]),
        ({"alerts.brute_force_window_s": 3600}, []),
        ({"admin.ticket_pattern": r"INC-\d+"}, []),  # a pattern where there was none
        ({"log.levels": {"kroonika": "ERROR"}}, []),
        ({"alerts.webhook_secret": WEBHOOK}, []),
        ({"ratelimit.enabled": True, "session.idle_s": 86_400}, ["session.idle_s"]),
    ],
)
def test_weakening_changes_are_told_apart(
    engine: Engine, tmp_path: Path, changes: dict[str, Any], weakening: list[str]
) -> None:
    """Each key says which direction weakens its control; the rest is not weakening."""
    cfg = config(engine, tmp_path)
    assert cfg.weakening(cfg.validate(changes)) == weakening


def test_a_set_ticket_pattern_is_weakened_by_clearing_or_replacing_it(
    engine: Engine, tmp_path: Path
) -> None:
    """Whether another pattern is stricter cannot be told, so any change away from a set
    pattern counts as weakening; setting the same one again is no change at all."""
    cfg = config(engine, tmp_path)
    cfg.change({"admin.ticket_pattern": r"INC-\d+"}, by="test")
    for value in (None, ".", r"INC-\d{4}"):
        assert cfg.weakening({"admin.ticket_pattern": value}) == ["admin.ticket_pattern"]
    assert cfg.weakening({"admin.ticket_pattern": r"INC-\d+"}) == []


def test_a_limit_back_to_its_default_is_compared_with_the_default(
    engine: Engine, tmp_path: Path
) -> None:
    """Dropping a stricter override raises the limit to the default: weakening."""
    cfg = config(engine, tmp_path)
    cfg.change({"ratelimit.limits": {"admin:ip": "10/minute"}}, by="test")
    assert cfg.weakening({"ratelimit.limits": {}}) == ["ratelimit.limits"]


CLIENT = {
    "client.name": "svc",
    "client.allowed_audiences": ["svc-a"],
    "client.allowed_claims": [],
    "client.max_ttl_s": 600,
    "client.rate_limit": "10/minute",
    "client.disabled": False,
}


@pytest.mark.parametrize(
    ("changes", "weakening"),
    [
        ({"client.allowed_audiences": ["svc-a", "svc-b"]}, ["client.allowed_audiences"]),
        ({"client.allowed_audiences": ["svc-b"]}, ["client.allowed_audiences"]),  # swapped
        ({"client.allowed_audiences": []}, []),
        ({"client.allowed_claims": ["role"]}, ["client.allowed_claims"]),
        ({"client.max_ttl_s": 601}, ["client.max_ttl_s"]),
        ({"client.max_ttl_s": 60}, []),
        ({"client.rate_limit": None}, ["client.rate_limit"]),  # removed
        ({"client.rate_limit": "11/minute"}, ["client.rate_limit"]),
        ({"client.rate_limit": "1/second"}, ["client.rate_limit"]),  # a bigger burst rate
        ({"client.rate_limit": "100/hour"}, ["client.rate_limit"]),  # a bigger burst
        ({"client.rate_limit": "10/hour"}, []),
        ({"client.rate_limit": "not a limit"}, ["client.rate_limit"]),  # cannot tell
        ({"client.disabled": True}, []),
        ({"client.name": "renamed"}, []),
        ({"client.name": "renamed", "client.max_ttl_s": 900}, ["client.max_ttl_s"]),
    ],
)
def test_client_changes_that_weaken_are_told_apart(
    changes: dict[str, Any], weakening: list[str]
) -> None:
    """Each client field says which direction gives the client more; a comparison that
    cannot decide counts as weakening."""
    from kroonika.admin._config import CLIENT_WEAKENS, weakened

    assert weakened(CLIENT_WEAKENS, CLIENT, changes) == weakening


def test_a_disabled_client_enabled_again_is_weakening() -> None:
    """Enabling is the one direction of ``disabled`` that needs a second person; an own
    rate limit set where there was none only adds a window."""
    from kroonika.admin._config import CLIENT_WEAKENS, weakened

    off = {**CLIENT, "client.disabled": True, "client.rate_limit": None}
    assert weakened(CLIENT_WEAKENS, off, {"client.disabled": False}) == ["client.disabled"]
    assert weakened(CLIENT_WEAKENS, off, {"client.rate_limit": "1000/second"}) == []


def test_an_approved_change_whose_key_moved_on_is_stale(engine: Engine, tmp_path: Path) -> None:
    """``expect`` holds the version and value a change was asked against: once the key
    changed, applying it raises ChangeConflict and nothing is stored."""
    from kroonika.admin import ChangeConflict

    cfg = config(engine, tmp_path)
    asked = {"session.idle_s": (cfg.version("session.idle_s"), cfg.get("session.idle_s"))}
    cfg.change({"session.idle_s": 600}, by="other")
    with pytest.raises(ChangeConflict):
        cfg.change({"session.idle_s": 86_400}, by="test", expect=asked)
    assert cfg.get("session.idle_s") == 600
    fresh = {"session.idle_s": (cfg.version("session.idle_s"), 600)}
    assert [c.key for c in cfg.change({"session.idle_s": 86_400}, by="t", expect=fresh)] == [
        "session.idle_s"
    ]
