"""``kroonika serve`` names a KROONIKA_* variable that is no setting in one warning at
start (decision 0034, 2026-11-28 (review settings2)), in production too, without its value."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

from login_harness import free_socket

from kroonika.audit import KeyRing

VALUE = "misspelt-variable-value-0123456789"


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_serve_warns_once_about_a_misspelt_variable_and_does_not_refuse(tmp_path: Path) -> None:
    """Production with TARA unreachable stops at the TARA check (after the warning), so
    the process ends by itself: the misspelt variable did not refuse the start."""
    sockets = [free_socket(), free_socket()]
    port, own = (sock.getsockname()[1] for sock in sockets)
    for sock in sockets:
        sock.close()
    keys = tmp_path / "audit-keys"
    KeyRing.open(keys, create=True)
    env = {
        **os.environ,
        "KROONIKA_ENV": "production",
        "KROONIKA_VAR_DIR": str(tmp_path / "var"),
        "KROONIKA_AUDIT_KEYS_DIR": str(keys),
        "KROONIKA_MASTER_KEY": _key(),
        "KROONIKA_PSEUDONYM_KEY": _key(),
        "KROONIKA_SESSION_KEY": _key(),
        "KROONIKA_TARA_ISSUER": f"https://127.0.0.1:{port}",
        "KROONIKA_TARA_CLIENT_ID": "kroonika-startup",
        "KROONIKA_TARA_CLIENT_SECRET": "startup-test-secret-0123456789",
        "KROONIKA_PUBLIC_URL": "https://kroonika.example",
        "KROONIKA_JOBS_ENABLED": "false",
        "KROONIKA_SESION_IDLE_S": VALUE,
        "KROONIKA_REQUIRE_SERVICES": "1",
    }
    kroonika = Path(sys.executable).with_name("kroonika")
    done = subprocess.run(
        [str(kroonika), "serve", "--port", str(own)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    warnings = [line for line in done.stderr.splitlines() if "KROONIKA_SESION_IDLE_S" in line]
    assert len(warnings) == 1, done.stderr
    assert "WARNING" in warnings[0]
    assert "did you mean KROONIKA_SESSION_IDLE_S?" in warnings[0]
    assert "KROONIKA_REQUIRE_SERVICES" not in done.stderr
    assert VALUE not in done.stderr + done.stdout
    assert f"TARA at https://127.0.0.1:{port} is unreachable" in done.stderr
