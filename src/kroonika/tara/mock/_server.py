"""Running the mock under uvicorn, and building its configuration from command-line options."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import uvicorn
from pydantic import SecretStr

from kroonika.tara.mock._app import create_app, is_loopback
from kroonika.tara.mock.config import InvalidMockConfig, Misbehaviour, MockConfig, load_clients

__all__ = ["config_from_options", "control_token_from_env", "run"]

#: Where the commands (``kroonika mock-tara``, ``kroonika dev``, ``python -m
#: kroonika.tara.mock``) take the control token from: the environment, never the command
#: line, so that it stays out of ``ps``.
CONTROL_TOKEN_ENV = "KROONIKA_MOCK_TARA_CONTROL_TOKEN"  # noqa: S105 (a variable name)


def control_token_from_env(environ: Mapping[str, str]) -> str | None:
    """The control token in ``environ`` (:data:`CONTROL_TOKEN_ENV`); unset or empty is none.

    Its length is checked where the :class:`MockConfig` is built, in a message that names
    the variable and never holds the value."""
    return environ.get(CONTROL_TOKEN_ENV) or None


def config_from_options(
    *,
    clients_file: Path | str,
    host: str = "127.0.0.1",
    port: int = 8001,
    issuer: str | None = None,
    strict: bool = False,
    control_api: bool = False,
    control_token: str | None = None,
    key_dir: Path | str | None = None,
) -> MockConfig:
    """A :class:`MockConfig` from the options a command line offers (``kroonika mock-tara``).

    The issuer defaults to ``http://{host}:{port}``. The control API on a ``host`` that is
    not loopback needs a ``control_token``: without one it answers only loopback clients,
    so every client it was opened to would get 403 (decision 0015).
    """
    if control_api and control_token is None and not _is_loopback_host(host):
        raise InvalidMockConfig(
            f"--control-api on --host {host!r} needs {CONTROL_TOKEN_ENV}: without a token "
            "the control API answers only loopback clients (set it, or listen on 127.0.0.1)"
        )
    return MockConfig(
        issuer=issuer if issuer is not None else f"http://{_url_host(host)}:{port}",
        clients=load_clients(clients_file),
        strict=strict,
        misbehaviour=Misbehaviour(),
        control_api=control_api,
        control_token=SecretStr(control_token) if control_token is not None else None,
        key_dir=Path(key_dir) if key_dir is not None else None,
    )


def _is_loopback_host(host: str) -> bool:
    """Whether ``host`` (what the server binds) is a loopback address or ``localhost``.
    Another name is not: what it resolves to is not known here."""
    return host.lower() == "localhost" or is_loopback(host)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def run(
    host: str = "127.0.0.1",
    port: int = 8001,
    config: MockConfig | None = None,
    *,
    log_level: str = "info",
) -> None:
    """Serve the mock with uvicorn until interrupted (one process: its state is in memory).

    uvicorn's access log is off: authorization requests carry the relying party's
    ``state`` and ``nonce`` (and ``autologin`` a personal code) in their query strings,
    and none of those may reach a log line.
    """
    if config is None:
        raise InvalidMockConfig("run() needs a MockConfig, e.g. from config_from_options()")
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        log_level=log_level,
        workers=1,
        access_log=False,
        proxy_headers=False,
        log_config=None,  # the CLI's logging: one escaped line per record
    )
