"""`kroonika mock-tara` as a process: its output holds no state, nonce or personal code."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from poll_kit import wait_until

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
        assert wait_until(lambda: _up(base, proc), interval=0.2), "the mock did not start"
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
        output = _stop(proc)
    assert b"Uvicorn running" in output or b"Started server" in output
    for secret in (STATE, NONCE, "38001085718"):
        assert secret.encode() not in output


def _start_mock(
    tmp_path: Path, *extra: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    clients = tmp_path / "clients.toml"
    clients.write_text(
        '[[clients]]\nclient_id = "rp"\nsecret = "rp-secret-123"\n'
        'redirect_uris = ["http://127.0.0.1:9/cb"]\n'
    )
    port = _free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "kroonika"), "mock-tara", "--clients", str(clients),
         "--port", str(port), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _up(base, proc) or proc.poll() is not None, interval=0.2)
    return proc, base


def _up(base: str, proc: subprocess.Popen[bytes]) -> bool:
    """The mock answers (a loaded machine may take many seconds to start a process)."""
    if proc.poll() is not None:
        return False
    try:
        httpx.get(base + "/oidc/jwks", timeout=5)
    except httpx.TransportError:
        return False
    return True


def _stop(proc: subprocess.Popen[bytes]) -> bytes:
    """Stop the mock as Ctrl-C does and return what it printed; one that does not stop
    is killed, so that no process (or pipe) outlives the test that started it."""
    proc.send_signal(signal.SIGINT)
    try:
        output, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate(timeout=30)
    return output


def test_mock_tara_reads_the_control_token_from_the_environment(tmp_path: Path) -> None:
    """``kroonika mock-tara --control-api`` with KROONIKA_MOCK_TARA_CONTROL_TOKEN set
    needs that bearer token (it ignored the variable before), and never prints it."""
    token = "cli-control-" + os.urandom(12).hex()
    env = {**os.environ, "KROONIKA_MOCK_TARA_CONTROL_TOKEN": token}
    proc, base = _start_mock(tmp_path, "--control-api", env=env)
    try:
        assert httpx.get(base + "/mock/config", timeout=10).status_code == 401
        bearer = {"authorization": f"Bearer {token}"}
        ok = httpx.post(base + "/mock/config", json={"low_acr": True}, headers=bearer, timeout=10)
        assert ok.status_code == 200, ok.text
    finally:
        output = _stop(proc)
    assert token.encode() not in output


def test_mock_tara_refuses_a_short_control_token_without_showing_it(tmp_path: Path) -> None:
    """A control token under 16 characters: exit code 2, one error line, not the value."""
    env = {**os.environ, "KROONIKA_MOCK_TARA_CONTROL_TOKEN": "short-tok3n"}
    proc, _ = _start_mock(tmp_path, "--control-api", env=env)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2, output
    assert b"KROONIKA_MOCK_TARA_CONTROL_TOKEN" in output
    assert b"short-tok3n" not in output


def _without_token() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "KROONIKA_MOCK_TARA_CONTROL_TOKEN"}


def test_mock_tara_refuses_a_control_api_for_remote_clients_without_a_token(
    tmp_path: Path,
) -> None:
    """``--host 0.0.0.0 --control-api`` without a token stops at start (exit code 2, one
    line naming the variable) instead of answering every remote client 403."""
    proc, _ = _start_mock(tmp_path, "--host", "0.0.0.0", "--control-api", env=_without_token())
    if proc.poll() is None:  # it started serving: stop it before failing
        proc.kill()
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2, output
    lines = output.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    assert "KROONIKA_MOCK_TARA_CONTROL_TOKEN" in lines[0]
    assert "0.0.0.0" in lines[0]


def test_mock_tara_serves_a_control_api_on_all_addresses_with_a_token(tmp_path: Path) -> None:
    """With the token set, ``--host 0.0.0.0 --control-api`` starts (a container whose
    host drives the switches) and /mock/* takes the bearer token."""
    token = "cli-control-" + os.urandom(12).hex()
    env = {**_without_token(), "KROONIKA_MOCK_TARA_CONTROL_TOKEN": token}
    proc, base = _start_mock(tmp_path, "--host", "0.0.0.0", "--control-api", env=env)
    try:
        bearer = {"authorization": f"Bearer {token}"}
        assert httpx.get(base + "/mock/config", headers=bearer, timeout=10).status_code == 200
        assert httpx.get(base + "/mock/config", timeout=10).status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    assert token.encode() not in output


def test_mock_tara_on_all_addresses_without_the_control_api_needs_no_token(
    tmp_path: Path,
) -> None:
    """Without ``--control-api`` the host is the operator's business: it starts."""
    proc, base = _start_mock(tmp_path, "--host", "0.0.0.0", env=_without_token())
    try:
        assert httpx.get(base + "/oidc/jwks", timeout=10).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
