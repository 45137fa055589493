"""``kroonika dev`` (what ``make run`` starts) on a fresh machine: a subprocess in an empty
directory prints what it started, a browser logs in through the printed login URL, the
process stops cleanly on SIGINT or SIGTERM, and the trail it left verifies."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import pytest
from login_harness import free_socket

pytestmark = pytest.mark.slow

KROONIKA = str(Path(sys.executable).with_name("kroonika"))
PERSON = "38001085718"


def _free_port() -> int:
    sock = free_socket()
    try:
        return int(sock.getsockname()[1])
    finally:
        sock.close()


def _env() -> dict[str, str]:
    """The caller's environment without any KROONIKA_* setting (a fresh machine)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("KROONIKA_")}


class Banner:
    """Reads the process's stdout in a thread until the banner is complete."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.done = threading.Event()
        self.proc = proc
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("Stop with"):
                self.done.set()
        self.done.set()

    def field(self, name: str) -> str:
        for line in self.lines:
            m = re.match(rf"\s+{re.escape(name)}:\s+(\S+)", line)
            if m:
                return m.group(1)
        raise AssertionError(f"{name} not printed in {self.lines}")


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KROONIKA, *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_dev_from_a_fresh_directory(tmp_path: Path, stop: signal.Signals) -> None:
    """Both URLs answer, the printed login URL logs a test identity in, the session is
    visible, the signal stops it with exit code 0, audit.log.stop is recorded and
    ``kroonika audit verify`` passes."""
    port, mock_port = _free_port(), _free_port()
    stderr = (tmp_path / "stderr.log").open("w")
    proc = subprocess.Popen(
        [KROONIKA, "dev", "--port", str(port), "--mock-port", str(mock_port)],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    banner = Banner(proc)
    try:
        assert banner.done.wait(120), (tmp_path / "stderr.log").read_text()
        service = banner.field("Service").rstrip("/")
        login_url = banner.field("Log in at")
        mock = banner.field("TARA mock")
        assert service == f"http://127.0.0.1:{port}"
        assert mock == f"http://127.0.0.1:{mock_port}"
        assert login_url == service + "/auth/login"
        assert Path(banner.field("var/")) == (tmp_path / "var").resolve()

        assert httpx.get(mock + "/.well-known/openid-configuration").status_code == 200
        ready = httpx.get(service + "/ready", timeout=30)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["tara"] == "ok"

        def autologin(request: httpx.Request) -> None:
            if str(request.url).startswith(mock + "/oidc/authorize"):
                request.url = request.url.copy_merge_params({"autologin": PERSON})

        with httpx.Client(
            follow_redirects=True, timeout=30, event_hooks={"request": [autologin]}
        ) as browser:
            landed = browser.get(login_url)
            assert landed.status_code == 200
            assert str(landed.url).startswith(service)
            session = browser.get(service + "/auth/session")
            dashboard = banner.field("Dashboard")
            assert dashboard == service + "/admin/dashboard"
            refused = browser.get(dashboard)
        assert session.status_code == 200, session.text
        assert session.json()["subject"] == "EE" + PERSON
        # the printed dashboard refuses a person who holds no role, as a page
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("text/html")
        # a path that tries to forge a log line and to colour the operator's terminal
        forged = httpx.get(service + "/probe%0d%0a2026-01-01%20INFO%20forged%1b[31m%e2%80%a8x")
        assert forged.status_code == 404
    finally:
        proc.send_signal(stop)
        try:
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
            stderr.close()
            if proc.stdout is not None:
                proc.stdout.close()
    log = (tmp_path / "stderr.log").read_text()
    assert code == 0, log
    assert "Kroonika stopped." in log
    assert "/probe\\x0d\\x0a2026-01-01 INFO forged\\x1b[31m\\u2028x 404" in log, log
    assert not any(line.startswith("2026-01-01 INFO forged") for line in log.splitlines())
    assert "\x1b" not in log
    assert "\u2028" not in log

    stops = _cli(tmp_path, "audit", "query", "--type", "audit.log.stop", "-o", "jsonl")
    assert stops.returncode == 0, stops.stderr
    assert len(stops.stdout.splitlines()) == 1
    logins = _cli(tmp_path, "audit", "query", "--type", "auth.login", "-o", "jsonl")
    assert [orjson.loads(x)["outcome"] for x in logins.stdout.splitlines()] == ["success"]
    verify = _cli(tmp_path, "audit", "verify", "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_dev_refuses_a_taken_port(tmp_path: Path) -> None:
    """A port already in use ends the command with a clear error and exit code 1."""
    taken = free_socket()
    taken.listen()
    try:
        done = _cli(
            tmp_path,
            "dev",
            "--port",
            str(taken.getsockname()[1]),
            "--mock-port",
            str(_free_port()),
        )
    finally:
        taken.close()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "could not start" in done.stderr


@contextmanager
def _dev(tmp_path: Path, **env: str) -> Iterator[tuple[Banner, Path]]:
    """``kroonika dev`` on free ports with ``env`` added; stopped with SIGINT afterwards."""
    port, mock_port = _free_port(), _free_port()
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [KROONIKA, "dev", "--port", str(port), "--mock-port", str(mock_port)],
            cwd=tmp_path,
            env={**_env(), **env},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        banner = Banner(proc)
        try:
            assert banner.done.wait(120), log.read_text()
            yield banner, log
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                assert proc.wait(timeout=120) == 0, log.read_text()
            finally:
                if proc.poll() is None:
                    proc.kill()
                if proc.stdout is not None:
                    proc.stdout.close()


def test_dev_control_api_answers_loopback_tools_but_no_web_page(tmp_path: Path) -> None:
    """Without KROONIKA_MOCK_TARA_CONTROL_TOKEN the printed control URL works from loopback
    without a token (``kroonika simulate`` and curl need nothing), but a request a web page
    sends (Origin, e.g. after DNS rebinding) is refused and changes nothing."""
    with _dev(tmp_path) as (banner, _):
        control = banner.field("Mock control")
        assert control == banner.field("TARA mock") + "/mock/config"
        assert httpx.post(control, json={"low_acr": True}).json()["misbehaviour"]["low_acr"]
        page = httpx.post(
            control, json={"low_acr": False}, headers={"origin": "http://rebound.example:8001"}
        )
        assert page.status_code == 403
        assert httpx.get(control).json()["misbehaviour"]["low_acr"] is True
        assert any("loopback" in line for line in banner.lines if "Mock control" in line)


def test_dev_control_api_needs_the_token_from_the_environment(tmp_path: Path) -> None:
    """With KROONIKA_MOCK_TARA_CONTROL_TOKEN set, ``kroonika dev``'s control API needs it
    as a bearer token, and the value appears in neither the banner nor the log."""
    token = "dev-control-" + os.urandom(12).hex()
    with _dev(tmp_path, KROONIKA_MOCK_TARA_CONTROL_TOKEN=token) as (banner, log):
        control = banner.field("Mock control")
        assert httpx.get(control).status_code == 401
        bearer = {"authorization": f"Bearer {token}"}
        assert httpx.post(control, json={"low_acr": True}, headers=bearer).status_code == 200
        assert any("KROONIKA_MOCK_TARA_CONTROL_TOKEN" in line for line in banner.lines)
    assert token not in "\n".join(banner.lines)
    assert token not in log.read_text()


def test_dev_refuses_a_short_control_token_without_showing_it(tmp_path: Path) -> None:
    """A control token under 16 characters ends ``kroonika dev`` with exit code 2 and a
    message that does not repeat it."""
    done = subprocess.run(
        [KROONIKA, "dev", "--port", str(_free_port()), "--mock-port", str(_free_port())],
        cwd=tmp_path,
        env={**_env(), "KROONIKA_MOCK_TARA_CONTROL_TOKEN": "short-tok3n"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "KROONIKA_MOCK_TARA_CONTROL_TOKEN" in done.stderr
    assert "short-tok3n" not in done.stdout + done.stderr
