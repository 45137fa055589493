"""TARA mock configuration: checked when built, clients files, keys on disk, public API."""

from __future__ import annotations

import functools
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

import kroonika.tara.mock as mock
from kroonika.tara.mock import (
    InvalidMockConfig,
    Misbehaviour,
    MockConfig,
    RegisteredClient,
    config_from_options,
    create_app,
    load_clients,
)
from kroonika.tara.mock.__main__ import main
from kroonika.tara.mock._keys import KEY_FILES, KeyRing, load_or_generate

SECRET = "clients-file-secret-0123"
EXAMPLE = Path(mock.__file__).parent / "example_clients.toml"


@functools.cache
def _keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    return (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


def _client(client_id: str = "rp") -> RegisteredClient:
    return RegisteredClient(
        client_id=client_id, secret=SecretStr(SECRET), redirect_uris=("https://rp.example/cb",)
    )


def _config(**overrides: Any) -> MockConfig:
    values: dict[str, Any] = {"issuer": "https://tara.mock.test", "clients": (_client(),)}
    values.update(overrides)
    return MockConfig(**values)


def test_public_api_does_not_drift() -> None:
    """The package exports exactly these names, sorted."""
    assert mock.__all__ == sorted(mock.__all__, key=lambda n: (not n.isupper(), n))
    assert set(mock.__all__) == {
        "PUBLIC_IDENTITIES",
        "AuthMethod",
        "Clock",
        "InvalidMockConfig",
        "Misbehaviour",
        "MockConfig",
        "PublicIdentity",
        "RegisteredClient",
        "config_from_options",
        "control_token_from_env",
        "create_app",
        "load_clients",
        "run",
    }


@pytest.mark.parametrize(
    "issuer",
    [
        "https://tara.mock.test/",
        "tara.mock.test",
        "ftp://tara.mock.test",
        "https://tara.mock.test?x=1",
        "https://tara.mock.test#f",
    ],
)
def test_issuer_must_be_a_url_without_trailing_slash(issuer: str) -> None:
    """A trailing slash, a query, a fragment or a non-HTTP scheme is refused at build time."""
    with pytest.raises(InvalidMockConfig, match="issuer"):
        _config(issuer=issuer)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"clients": ()}, "at least one client"),
        ({"clients": (_client(), _client())}, "registered twice"),
        ({"keys": _keys(), "key_dir": Path("/nonexistent")}, "not both"),
        ({"code_ttl_seconds": 0}, "code_ttl_seconds"),
        ({"id_token_ttl_seconds": -1}, "id_token_ttl_seconds"),
        ({"control_token": SecretStr("short")}, "control_token"),
        ({"signing_key": 2}, "signing_key"),
    ],
)
def test_bad_config_is_refused_when_built(overrides: dict[str, Any], message: str) -> None:
    """Configuration mistakes raise InvalidMockConfig before anything is served."""
    with pytest.raises(InvalidMockConfig, match=message):
        _config(**overrides)


def test_small_keys_are_refused() -> None:
    """Signing keys under 2048 bits are refused."""
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (the point)
    with pytest.raises(InvalidMockConfig, match="2048"):
        _config(keys=(small, _keys()[1]))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"secret": "short"}, "at least 8"),
        ({"redirect_uris": []}, "redirect_uris"),
        ({"redirect_uris": ["/relative"]}, "absolute"),
        ({"redirect_uris": ["https://rp.example/cb#frag"]}, "fragment"),
        ({"allowed_scopes": ["openid", "profile"]}, "unknown scopes"),
        ({"allowed_scopes": ["idcard"]}, "openid"),
        ({"auth_method": "private_key_jwt"}, "auth_method"),
        ({"client_id": "has space"}, "client_id"),
        ({"colour": "blue"}, "colour"),
        ({"token_request_networks": ["not-a-network"]}, "token_request_networks"),
    ],
)
def test_bad_client_in_file_is_refused(
    tmp_path: Path, fields: dict[str, Any], message: str
) -> None:
    """A bad client entry names the problem, and never echoes the secret."""
    client = {"client_id": "rp", "secret": SECRET, "redirect_uris": ["https://rp.example/cb"]}
    client.update(fields)
    path = tmp_path / "clients.json"
    path.write_text(json.dumps({"clients": [client]}), encoding="utf-8")
    with pytest.raises(InvalidMockConfig, match=message) as excinfo:
        load_clients(path)
    assert SECRET not in str(excinfo.value)
    assert "short" not in str(excinfo.value).replace("shorter", "")


def test_clients_file_in_toml(tmp_path: Path) -> None:
    """A TOML clients file gives the registered clients with their defaults."""
    path = tmp_path / "clients.toml"
    path.write_text(
        "[[clients]]\n"
        'client_id = "rp"\n'
        f'secret = "{SECRET}"\n'
        'redirect_uris = ["https://rp.example/cb"]\n'
        "[[clients]]\n"
        'client_id = "rp-post"\n'
        f'secret = "{SECRET}"\n'
        'redirect_uris = ["https://rp.example/cb"]\n'
        'allowed_scopes = ["openid", "smartid"]\n'
        'auth_method = "client_secret_post"\n',
        encoding="utf-8",
    )
    basic, post = load_clients(path)
    assert basic.client_id == "rp"
    assert basic.auth_method == "client_secret_basic"
    assert basic.secret.get_secret_value() == SECRET
    assert "openid" in basic.allowed_scopes
    assert post.auth_method == "client_secret_post"
    assert post.allowed_scopes == frozenset({"openid", "smartid"})
    assert SECRET not in repr(basic)


def test_example_clients_file_loads() -> None:
    """The shipped example clients file is valid."""
    clients = load_clients(EXAMPLE)
    assert {c.auth_method for c in clients} == {"client_secret_basic", "client_secret_post"}


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("clients.yaml", "clients: []", "must end in .toml or .json"),
        ("clients.toml", "[[clients]\n", "not valid"),
        ("clients.json", "{", "not valid"),
        ("clients.json", "[]", "must hold an object"),
        ("clients.json", '{"clients": []}', "clients"),
        ("clients.json", '{"clients": [], "other": 1}', "other"),
    ],
)
def test_bad_clients_file_is_refused(tmp_path: Path, name: str, content: str, message: str) -> None:
    """Unreadable, malformed or empty clients files are refused with a reason."""
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InvalidMockConfig, match=message):
        load_clients(path)


def test_missing_clients_file_is_refused(tmp_path: Path) -> None:
    """A missing clients file raises InvalidMockConfig, not OSError."""
    with pytest.raises(InvalidMockConfig, match="cannot read"):
        load_clients(tmp_path / "absent.toml")


def test_duplicate_client_ids_in_file_are_refused(tmp_path: Path) -> None:
    """Two clients with one id are refused."""
    client = {"client_id": "rp", "secret": SECRET, "redirect_uris": ["https://rp.example/cb"]}
    path = tmp_path / "clients.json"
    path.write_text(json.dumps({"clients": [client, client]}), encoding="utf-8")
    with pytest.raises(InvalidMockConfig, match="unique"):
        load_clients(path)


def test_keys_are_generated_once_and_kept(tmp_path: Path) -> None:
    """key_dir gets two 0600 PEM keys on first use and the same kids afterwards."""
    first = KeyRing(load_or_generate(tmp_path / "keys"), 0)
    for name in KEY_FILES:
        mode = (tmp_path / "keys" / name).stat().st_mode
        assert stat.S_IMODE(mode) == 0o600
    second = KeyRing(load_or_generate(tmp_path / "keys"), 0)
    assert first.kids == second.kids


def test_broken_key_file_is_refused(tmp_path: Path) -> None:
    """A key file that is not a PEM RSA key stops the mock from starting."""
    (tmp_path / KEY_FILES[0]).write_text("not a key", encoding="utf-8")
    with pytest.raises(InvalidMockConfig, match="PEM"):
        create_app(_config(key_dir=tmp_path))


def test_same_key_twice_is_refused() -> None:
    """Two identical keys cannot demonstrate rotation and are refused."""
    key = _keys()[0]
    with pytest.raises(InvalidMockConfig, match="differ"):
        create_app(_config(keys=(key, key)))


def test_misbehaviour_is_all_off_by_default() -> None:
    """Every switch is off unless asked for."""
    switches = Misbehaviour().model_dump()
    assert switches.pop("slow_token_endpoint_seconds") == 0
    assert not any(switches.values())


def test_config_from_options_builds_the_issuer_from_host_and_port() -> None:
    """Without an explicit issuer it is http://host:port, IPv6 in brackets."""
    config = config_from_options(clients_file=EXAMPLE, host="127.0.0.1", port=8123)
    assert config.issuer == "http://127.0.0.1:8123"
    v6 = config_from_options(clients_file=EXAMPLE, host="::1", port=8001, strict=True)
    assert v6.issuer == "http://[::1]:8001"
    assert v6.strict


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "mock.example", ""])
def test_a_control_api_for_remote_clients_needs_a_token(host: str) -> None:
    """Listening beyond loopback with the control API and no token is refused when built:
    without a token every client that is not on loopback would get 403."""
    with pytest.raises(InvalidMockConfig, match="KROONIKA_MOCK_TARA_CONTROL_TOKEN") as raised:
        config_from_options(clients_file=EXAMPLE, host=host, control_api=True)
    assert "\n" not in str(raised.value)
    token = "t" * 16
    assert config_from_options(
        clients_file=EXAMPLE, host=host, control_api=True, control_token=token
    ).control_api
    assert not config_from_options(clients_file=EXAMPLE, host=host).control_api


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost", "LocalHost"])
def test_a_control_api_on_loopback_needs_no_token(host: str) -> None:
    """On a loopback address (or the name localhost) the control API runs without a
    token, answering loopback clients (kroonika dev, make run)."""
    config = config_from_options(clients_file=EXAMPLE, host=host, control_api=True)
    assert config.control_api
    assert config.control_token is None


def test_command_line_refuses_a_remote_control_api_without_a_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """python -m kroonika.tara.mock --host 0.0.0.0 --control-api without a token: exit 2."""
    monkeypatch.delenv("KROONIKA_MOCK_TARA_CONTROL_TOKEN", raising=False)
    argv = ["--clients", str(EXAMPLE), "--host", "0.0.0.0", "--control-api"]
    assert main(argv) == 2
    assert "KROONIKA_MOCK_TARA_CONTROL_TOKEN" in capsys.readouterr().err


def test_command_line_refuses_a_bad_clients_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """python -m kroonika.tara.mock exits 2 with a message for a bad clients file."""
    assert main(["--clients", str(tmp_path / "absent.toml")]) == 2
    assert "cannot read clients file" in capsys.readouterr().err
