"""No secret and no clear personal code reaches the stored bytes or CLI output."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from audit_kit import TrailKit

from kroonika.audit import (
    Actor,
    ActorType,
    Correlation,
    PersonalData,
    Source,
    Target,
    events,
)

JWT = (
    "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0."
    "eyJzdWIiOiJFRTM4MDAxMDg1NzE4IiwianRpIjoiYWJjIn0."
    "MEUCIQDxZ3f8c2lnbmF0dXJlLWJ5dGVzLWhlcmU"
)
SESSION_ID = secrets.token_urlsafe(32)
CLIENT_SECRET = secrets.token_urlsafe(24) + "Q7z"
AUTH_CODE = "code=" + secrets.token_urlsafe(16)
PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA\n-----END PRIVATE KEY-----"
BEARER = "Bearer " + secrets.token_urlsafe(20)
PERSONAL_CODE = "38001085718"
SECRETS = [JWT, SESSION_ID, CLIENT_SECRET, AUTH_CODE.split("=")[1], PRIVATE_KEY, BEARER,
           PERSONAL_CODE]  # fmt: skip


def hostile_events() -> list[object]:
    """Events with a known secret in every string field an application could fill."""
    out: list[object] = []
    for value in [JWT, SESSION_ID, CLIENT_SECRET, AUTH_CODE, PRIVATE_KEY, BEARER,
                  f"EE{PERSONAL_CODE}", f"user {PERSONAL_CODE} failed"]:  # fmt: skip
        out.append(
            events.auth_login(
                reason=value,
                actor=Actor(
                    ActorType.USER, subject=f"EE{PERSONAL_CODE}", client_id=value, roles=(value,)
                ),
                source=Source(ip="192.0.2.10", user_agent=value),
                target=Target("session", value),
                correlation=Correlation(request_id=value, trace_id=value),
                personal=PersonalData(given_name="JAAK-KRISTJAN", email="jaak@example.ee"),
                method=value,
                acr=value,
                amr=[value],
                idp_error=value,
            )
        )
    return out


def assert_clean(blob: bytes) -> None:
    for secret in SECRETS:
        assert secret.encode() not in blob, secret[:12]
        assert base64.b64encode(secret.encode()) not in blob
    for clear in (b"JAAK-KRISTJAN", b"jaak@example.ee", b"192.0.2.10"):
        assert clear not in blob


def test_no_secret_in_stored_bytes(kit_factory: Callable[..., TrailKit], tmp_path: Path) -> None:
    """The database files hold none of the secrets, names or the full IP."""
    kit = kit_factory()
    kit.trail.emit_many_sync(hostile_events())  # type: ignore[arg-type]
    kit.store.close()
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("audit.db*"))
    assert b"auth.login" in blob  # the events are there
    assert_clean(blob)
    assert kit.counters.get("redact.jwt") > 0


@pytest.mark.slow
def test_no_secret_in_cli_output(tmp_path: Path) -> None:
    """query, export (every format) and verify print none of the secrets."""
    env = {**os.environ, "KROONIKA_VAR_DIR": str(tmp_path), "KROONIKA_AUDIT_STRICT": "1"}
    script = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_secrets import hostile_events\n"
        "from kroonika.settings import load_settings\n"
        "from kroonika.auditing import build_audit\n"
        "c = build_audit(load_settings(), stream='hostile')\n"
        "c.trail.emit_many_sync(hostile_events())\n"
    )
    subprocess.run([sys.executable, "-c", script], env=env, check=True)
    kroonika = str(Path(sys.executable).parent / "kroonika")
    outputs = []
    for args in (
        ["audit", "query", "-o", "jsonl"],
        ["audit", "query"],
        ["audit", "verify", "--json"],
        *(["audit", "export", "--format", f] for f in ("json", "ecs", "ocsf", "cef", "leef")),
    ):
        done = subprocess.run([kroonika, *args], env=env, capture_output=True, check=False)
        assert done.returncode == 0, done.stderr.decode()
        outputs.append(done.stdout + done.stderr)
    blob = b"\n".join(outputs)
    assert b"auth.login" in blob
    assert_clean(blob)
