"""`kroonika mock-tara` as a process: its output holds no state, nonce or personal code."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

STATE = "state-Zq8WvB3nL0pK7xY2"
NONCE = "nonce-Hc4RtM9sD1fJ6gA5"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_mock_process_logs_no_flow_secrets(tmp_path: Path) -> None:
    """An autologin authorization through the real server leaves no state, nonce or
    personal code in anything the process prints."""
    clients = tmp_path / "clients.toml"
    clients.write_text(
        '[[clients]]\nclient_id = "rp"\nsecret = "rp-secret-123"\n'
        'redirect_uris = ["http://127.0.0.1:9/cb"]\n'
        'allowed_scopes = ["openid", "idcard", "mid", "smartid"]\n'
    )
    port = _free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "kroonika"), "mock-tara", "--clients", str(clients),
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(base + "/oidc/jwks", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        response = httpx.get(
            base + "/oidc/authorize",
            params={
                "client_id": "rp", "redirect_uri": "http://127.0.0.1:9/cb",
                "response_type": "code", "scope": "openid idcard", "state": STATE,
                "nonce": NONCE, "autologin": "38001085718",
            },
            timeout=10,
        )  # fmt: skip
        assert response.status_code in (302, 303)
        assert STATE in response.headers["location"]
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    assert b"Uvicorn running" in output or b"Started server" in output
    for secret in (STATE, NONCE, "38001085718"):
        assert secret.encode() not in output
