"""Settings refused at start-up say which setting is wrong, never what was given."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from kroonika.settings import Settings, SettingsError, load_settings, unknown_variables_warning

SECRET = "s3cr3t-value-0123456789"


@pytest.mark.parametrize(
    "values",
    [
        {"metrics_token": [SECRET]},
        {"tara_client_secret": {"value": SECRET}},
        {"audit_sinks": [{"name": "hook", "kind": "webhook", "secret": [SECRET]}]},
        {"session_idle_s": SECRET},
    ],
    ids=["metrics_token", "tara_client_secret", "sink secret", "a number"],
)
def test_a_refused_value_is_not_echoed(values: dict[str, object]) -> None:
    """The validation error names the field but does not quote the value."""
    with pytest.raises(ValidationError) as caught:
        Settings(**values)  # type: ignore[arg-type]
    message = str(caught.value)
    assert next(iter(values)) in message
    assert SECRET not in message


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "unix:///run/r.sock"])
def test_a_redis_url_must_be_redis(url: str) -> None:
    """A Redis URL both Redis clients can use is checked at start, with a clear message."""
    with pytest.raises(ValidationError, match="redis_url must be a redis:// or rediss:// URL"):
        Settings(redis_url=url)


def test_redis_urls_are_accepted() -> None:
    """Plain and TLS Redis URLs, with a password, are accepted."""
    for url in ("redis://127.0.0.1:6379/0", "rediss://:pw@cache.internal:6380/1"):
        assert Settings(redis_url=url).redis_url == url


@pytest.mark.parametrize(
    "name",
    ["a\r\nb", "line\nbreak", "esc\x1b[2J", "nul\x00", "bidi\u202eevil", "del\x7f", "", "x" * 129],
)
def test_a_stream_name_that_could_forge_output_is_refused(name: str) -> None:
    """The stream name is in every record, in every output line and in the sinks'
    message ids and headers: control and format characters (CR/LF, escapes, bidi
    overrides) would let it forge or hide lines, so it is refused at start."""
    with pytest.raises(ValidationError, match="audit_stream"):
        Settings(audit_stream=name)


def test_stream_names_people_write_are_accepted() -> None:
    for name in ("api-1", "tõrva-1", "writer.eu-north:2", "x" * 128):
        assert Settings(audit_stream=name).audit_stream == name


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (
            {"KROONIKA_AUDIT_RETENTION_DEFAULT_DAYS": "many"},
            "KROONIKA_AUDIT_RETENTION_DEFAULT_DAYS",
        ),
        ({"KROONIKA_SESSION_IDLE_S": SECRET}, "KROONIKA_SESSION_IDLE_S"),
        (
            {"KROONIKA_ALERT_RULES": '{"security_anomaly": {"response": {"action": "x"}}}'},
            "KROONIKA_ALERT_RULES",
        ),
    ],
)
def test_a_refused_environment_variable_is_named_as_the_operator_wrote_it(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    """``load_settings`` (every command and the service) says which variable is wrong, as
    it is set, in one line without pydantic's help link, and never quotes the value."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith((f"{named}: ", f"{named} (at "))
    assert "\n" not in message
    assert "errors.pydantic.dev" not in message
    assert SECRET not in message


def test_a_config_file_key_that_is_no_setting_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A misspelt key, or a variable name, in the TOML file would do nothing: it is
    refused, naming the key and the form a key takes."""
    path = tmp_path / "kroonika.toml"
    path.write_text("sesion_idle_s = 600\nKROONIKA_SESSION_IDLE_S = 600\n")
    monkeypatch.setenv("KROONIKA_CONFIG_FILE", str(path))
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "sesion_idle_s" in message
    assert "KROONIKA_SESSION_IDLE_S" in message
    assert "session_idle_s" in message  # how the key is written


def test_a_config_file_gives_what_the_environment_leaves_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys are the setting names in lower case; sinks are [[audit_sinks]] tables; the
    environment wins."""
    path = tmp_path / "kroonika.toml"
    path.write_text(
        "session_idle_s = 600\nsession_absolute_s = 7200\n"
        '[[audit_sinks]]\nkind = "jsonl"\nname = "files"\ndirectory = "/tmp/x"\n'
    )
    monkeypatch.setenv("KROONIKA_CONFIG_FILE", str(path))
    monkeypatch.setenv("KROONIKA_SESSION_ABSOLUTE_S", "3600")
    settings = load_settings()
    assert settings.session_idle_s == 600
    assert settings.session_absolute_s == 3600
    assert [s.name for s in settings.audit_sinks] == ["files"]


def test_a_kroonika_variable_that_is_no_setting_is_named_with_a_suggestion() -> None:
    """A misspelt variable (the setting keeps its default) is named with the setting it
    is close to; one far from every name is named alone; the value is never in it."""
    environ = {
        "KROONIKA_SESION_IDLE_S": "value-that-may-be-secret",
        "KROONIKA_NO_SUCH_THING_AT_ALL": "value-that-may-be-secret",
        "KROONIKA_SESSION_IDLE_S": "600",
        "kroonika_session_absolute_s": "3600",
        "PATH": "/usr/bin",
    }
    warning = unknown_variables_warning(environ)
    assert warning is not None
    assert "KROONIKA_SESION_IDLE_S (did you mean KROONIKA_SESSION_IDLE_S?)" in warning
    assert "KROONIKA_NO_SUCH_THING_AT_ALL" in warning
    assert "KROONIKA_NO_SUCH_THING_AT_ALL (" not in warning
    assert "value-that-may-be-secret" not in warning
    assert warning.count("KROONIKA_SESSION_IDLE_S") == 1  # the suggestion, not as unknown
    assert "KROONIKA_SESSION_ABSOLUTE_S" not in warning.upper()
    assert "PATH" not in warning


def test_variables_other_tools_read_are_not_warned_about() -> None:
    """The commands' own variables, the TARA mock's and the test suite's are known."""
    environ = dict.fromkeys(
        [
            "KROONIKA_DEBUG",
            "KROONIKA_REQUIRE_SERVICES",
            "KROONIKA_TEST_POSTGRES",
            "KROONIKA_REGEN_GOLDEN",
            "KROONIKA_MOCK_TARA_CONTROL_TOKEN",
            "KROONIKA_SIM_CLIENT_SECRET",
            "KROONIKA_SIM_ADMIN_KEY",
            "KROONIKA_SIM_AUDITOR_KEY",
            "KROONIKA_ENV",
        ],
        "1",
    )
    assert unknown_variables_warning(environ) is None


@pytest.mark.parametrize(
    "name",
    ["kroonika_session_absolute_s", "Kroonika_Session_Absolute_S", "KROONIKA_session_absolute_s"],
)
def test_the_environment_wins_over_the_config_file_whatever_the_case_of_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """pydantic-settings reads ``kroonika_session_absolute_s`` as the setting: it overrides
    the TOML file as the upper-case name does, not the other way round."""
    path = tmp_path / "kroonika.toml"
    path.write_text("session_absolute_s = 7200\nsession_idle_s = 600\n")
    monkeypatch.setenv("KROONIKA_CONFIG_FILE", str(path))
    monkeypatch.setenv(name, "3600")
    settings = load_settings()
    assert settings.session_absolute_s == 3600
    assert settings.session_idle_s == 600


def test_a_lower_case_config_file_variable_is_read() -> None:
    """``kroonika_config_file`` names the file as ``KROONIKA_CONFIG_FILE`` does (pydantic
    reads either), so it is a setting and not warned about."""
    assert unknown_variables_warning({"kroonika_config_file": "/etc/kroonika.toml"}) is None


def test_a_misspelt_lower_case_variable_is_named_as_written_with_a_suggestion() -> None:
    """A misspelt name in lower case is ignored like an upper-case one, so it is named the
    way the operator wrote it, with the setting it is close to."""
    warning = unknown_variables_warning({"kroonika_sesion_idle_s": "600"})
    assert warning is not None
    assert "kroonika_sesion_idle_s (did you mean KROONIKA_SESSION_IDLE_S?)" in warning


@pytest.mark.parametrize("name", ["kroonika_debug", "Kroonika_Require_Services"])
def test_another_tools_variable_in_another_case_is_named(name: str) -> None:
    """The commands and the test suite read their own variables with ``os.environ``, which
    is case-sensitive: ``kroonika_debug=1`` turns nothing on, so it is named (with the
    name that would)."""
    warning = unknown_variables_warning({name: "1"})
    assert warning is not None
    assert f"{name} (did you mean KROONIKA_{name[9:].upper()}?)" in warning
