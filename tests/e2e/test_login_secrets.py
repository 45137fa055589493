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
from pydantic import SecretStr

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
            _harvest(landed.history, secrets)
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
            _harvest(failed.history, secrets)
        raw = stack.raw_events()
    secrets |= seen["token"]
    assert len(seen["token"]) >= 2
    assert len(secrets) > 8
    assert len(raw) > 15
    _assert_nowhere(secrets, raw, caplog, capfd)


def _harvest(hops: list[httpx.Response], secrets: set[str]) -> None:
    """The state, nonce and code in the hops' redirects and the values of the cookies
    they set (and the state part of a flow cookie's name)."""
    for hop in hops:
        q = parse_qs(urlsplit(str(hop.headers.get("location", ""))).query)
        for key in ("state", "nonce", "code"):
            secrets.update(q.get(key, []))
        for name, value in hop.cookies.items():
            if name.startswith(("kroonika", "__Host-")):
                secrets.add(value)
                if name.startswith("kroonika_flow_"):
                    secrets.add(name.removeprefix("kroonika_flow_"))


def _assert_nowhere(
    secrets: set[str],
    raw: list[bytes],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    blob = b"\n".join(raw)
    for secret in secrets:
        assert secret.encode() not in blob
    lines = [r.getMessage() for r in caplog.records if not _is_browser_request_log(r)]
    out, err = capfd.readouterr()
    text = "\n".join([*lines, out, err])
    assert any("request_id=" in line for line in lines)
    for secret in secrets:
        assert secret not in text


def test_no_secret_from_the_edge_cases_reaches_events_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """The refused and failing paths (a repeated parameter, a flow dropped by the cap,
    TARA refusing our client, an over-long code) leak no state, nonce, code, cookie or
    client secret either."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="httpcore")
    wrong = "a-rotated-client-secret-0123456789"
    secrets: set[str] = {SECRET, wrong, CODE}
    overrides = {"login_pending_flows_max": 1, "tara_client_secret": SecretStr(wrong)}
    with running_stack(tmp_path, settings_overrides=overrides) as stack:
        with stack.browser(autologin=None) as b:
            first = b.get(stack.service + "/auth/login", follow_redirects=False)
            second = b.get(stack.service + "/auth/login", follow_redirects=False)
            _harvest([first, second], secrets)
            url = httpx.URL(second.headers["location"]).copy_merge_params({"autologin": CODE})
            back = httpx.get(str(url), timeout=10)
            _harvest([back], secrets)
            q = dict(parse_qs(urlsplit(back.headers["location"]).query))
            callback = stack.service + "/auth/callback"
            twice = b.get(callback, params=[("state", q["state"][0])] * 2 + [("code", "c")])
            assert twice.json()["reason"] == "duplicate_parameter"
            long_code = b.get(callback, params={"state": q["state"][0], "code": "C" * 3000})
            assert long_code.json()["reason"] == "code_invalid"
        with stack.browser(autologin=CODE) as b2:
            rejected = b2.get(stack.service + "/auth/login")
            assert rejected.json()["reason"] == "idp_client_rejected"
            _harvest(rejected.history, secrets)
        raw = stack.raw_events()
    assert len(secrets) > 10
    _assert_nowhere(secrets, raw, caplog, capfd)
