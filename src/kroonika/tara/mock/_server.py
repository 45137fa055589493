"""Running the mock under uvicorn, and building its configuration from command-line options."""

from __future__ import annotations

from pathlib import Path

import uvicorn
from pydantic import SecretStr

from kroonika.tara.mock._app import create_app
from kroonika.tara.mock.config import InvalidMockConfig, Misbehaviour, MockConfig, load_clients

__all__ = ["config_from_options", "run"]


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

    The issuer defaults to ``http://{host}:{port}``.
    """
    return MockConfig(
        issuer=issuer if issuer is not None else f"http://{_url_host(host)}:{port}",
        clients=load_clients(clients_file),
        strict=strict,
        misbehaviour=Misbehaviour(),
        control_api=control_api,
        control_token=SecretStr(control_token) if control_token is not None else None,
        key_dir=Path(key_dir) if key_dir is not None else None,
    )


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
