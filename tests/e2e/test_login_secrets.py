"""No state, nonce, code, token, cookie value, session id, client secret or clear personal
code appears in any stored audit event (raw canonical bytes) or in any operational log line."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from login_harness import SECRET, running_stack

from kroonika.web import Services

CODE = "38001085718"
BROWSER_PATHS = ("/auth/", "/oidc/authorize", "/oidc/login")


def _is_browser_request_log(record: logging.LogRecord) -> bool:
    """The test browser's own httpx request lines (they carry its URLs), not the service's."""
    msg = record.getMessage()
    return record.name == "httpx" and any(p in msg for p in BROWSER_PATHS)


def test_no_secret_reaches_events_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """Drive success, failure, extend and logout; then search everything for the secrets."""
    caplog.set_level(logging.DEBUG)
    # httpcore's DEBUG lines dump raw response headers of every client in this process,
    # including the test browser's (its Location headers carry state and code by design).
    # The service never runs with httpcore at DEBUG (`kroonika serve` pins it to WARNING).
    caplog.set_level(logging.INFO, logger="httpcore")
    seen: dict[str, set[str]] = {"token": set()}

    async def record_tokens(response: httpx.Response) -> None:
        if response.request.url.path == "/oidc/token":
            await response.aread()
            body: dict[str, Any] = json.loads(response.content or b"{}")
            for key in ("id_token", "access_token"):
                if isinstance(body.get(key), str):
                    seen["token"].add(body[key])

    http = httpx.AsyncClient(event_hooks={"response": [record_tokens]}, trust_env=False)

    def configure(services: Services) -> None:
        # Observe the RP's own token responses; the app closes this client on shutdown.
        services.tara._http = services.http = http
        services.owns_http = True

    secrets: set[str] = {SECRET, CODE}
    with running_stack(tmp_path, configure=configure) as stack:
        with stack.browser(autologin=CODE) as b:
            landed = b.get(stack.service + "/auth/login")
            for hop in landed.history:
                q = parse_qs(urlsplit(str(hop.headers.get("location", ""))).query)
                for key in ("state", "nonce", "code"):
                    secrets.update(q.get(key, []))
                for name, value in hop.cookies.items():
                    if name.startswith(("kroonika", "__Host-")):
                        secrets.add(value)
            session = b.get(stack.service + "/auth/session").json()
            secrets.add(session["csrf_token"])
            b.post(
                stack.service + "/auth/session/extend",
                headers={"x-csrf-token": session["csrf_token"]},
            )
            b.post(stack.service + "/auth/logout", headers={"x-csrf-token": session["csrf_token"]})
        stack.mock_switch(wrong_nonce=True)
        with stack.browser(autologin=CODE) as b2:
            failed = b2.get(stack.service + "/auth/login")
            assert failed.json()["reason"] == "id_token.nonce_mismatch"
            for hop in failed.history:
                q = parse_qs(urlsplit(str(hop.headers.get("location", ""))).query)
                for key in ("state", "nonce", "code"):
                    secrets.update(q.get(key, []))
        raw = stack.raw_events()
    secrets |= seen["token"]
    assert len(seen["token"]) >= 2
    assert len(secrets) > 8
    assert len(raw) > 15
    blob = b"\n".join(raw)
    for secret in secrets:
        assert secret.encode() not in blob
    lines = [r.getMessage() for r in caplog.records if not _is_browser_request_log(r)]
    out, err = capfd.readouterr()
    text = "\n".join([*lines, out, err])
    assert any("request_id=" in line for line in lines)
    for secret in secrets:
        assert secret not in text
