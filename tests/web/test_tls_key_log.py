"""``SSLKEYLOGFILE`` at start-up: production refuses to start, development warns once
and the service's own TLS clients (the TARA client) write no session keys (decision
0032)."""

from __future__ import annotations

import logging
import ssl
import sys
from pathlib import Path

import httpx
import pytest
from test_tara_startup import _development, production

from kroonika.settings import SettingsError
from kroonika.web import create_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "audit" / "sinks"))
from http_collector import Collector
from sink_kit import make_ca


def exists(path: Path) -> bool:
    return path.exists()


@pytest.fixture
def key_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "keys.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(path))
    return path


def test_production_refuses_to_start_with_a_key_log_file(tmp_path: Path, key_log: Path) -> None:
    """The error names the variable and what it does, not the file."""
    with pytest.raises(SettingsError, match="SSLKEYLOGFILE") as caught:
        create_app(production(tmp_path, "https://tara.example"))
    assert str(key_log) not in str(caught.value)
    assert not exists(key_log)


@pytest.mark.asyncio
async def test_development_warns_once_and_the_tara_client_logs_no_keys(
    tmp_path: Path, key_log: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Development starts, says once that the variable is set, and a TLS handshake of
    the TARA client (to a server it does not trust: the keys would be written all the
    same) leaves the file absent."""
    caplog.set_level(logging.WARNING, logger="kroonika")
    app = create_app(_development(tmp_path, "https://tara.example"))
    warnings = [r.getMessage() for r in caplog.records if "SSLKEYLOGFILE" in r.getMessage()]
    assert len(warnings) == 1, warnings
    ca, cert, key = make_ca(tmp_path / "pki")
    del ca
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # logs nothing itself
    server.load_cert_chain(cert, key)
    collector = Collector(lambda r: (200, b"{}"), tls=server)
    await collector.start()
    http: httpx.AsyncClient = app.state.services.http
    try:
        with pytest.raises(httpx.ConnectError):
            await http.get(collector.url)
    finally:
        await collector.stop()
        await http.aclose()
    assert not exists(key_log)
