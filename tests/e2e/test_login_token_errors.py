"""Every answer of TARA's token endpoint over real HTTP against the mock: the status the
browser gets, the auth.login reason and the operator's log line.

Our side at fault (client secret, registration) or TARA at fault (5xx, garbage, timeouts)
is a 502, never a 400 as if the citizen had done something wrong; a code TARA refuses
(``invalid_grant``) stays a 400."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from login_harness import ALL_SCOPES, SECRET, Stack, running_stack
from pydantic import SecretStr

RECEIVED = [("none", "started"), ("started", "redirected"), ("redirected", "callback_received")]
ROTATED_SECRET = "rotated-secret/0123456789"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("token-errors"), settings_overrides={"tara_timeout_s": 1.0}
    ) as s:
        yield s


@pytest.fixture(autouse=True)
def _switches_off(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "stack" in request.fixturenames:
        stack: Stack = request.getfixturevalue("stack")
        httpx.post(stack.mock + "/mock/reset", json={}, timeout=10).raise_for_status()


def _operator_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "kroonika.web.auth"]


def test_a_rotated_client_secret_is_a_502_that_names_the_fix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """TARA answering invalid_client (our secret is wrong) is our fault: 502 with a stable
    reason, idp_error invalid_client in the event, and an ERROR line naming the setting
    to fix, without either secret."""
    caplog.set_level(logging.INFO, logger="kroonika")
    overrides = {"tara_client_secret": SecretStr(ROTATED_SECRET)}
    with running_stack(tmp_path, settings_overrides=overrides) as stack:
        r, login, steps = stack.login()
        raw = b"".join(stack.raw_events())
    assert r.status_code == 502
    assert r.json()["error"] == "login_failed"
    assert r.json()["reason"] == "idp_client_rejected"
    assert (login["outcome"], login["reason"]) == ("failure", "idp_client_rejected")
    assert login["details"]["idp_error"] == "invalid_client"
    assert steps == [*RECEIVED, ("callback_received", "failed")]
    errors = [r for r in _operator_lines(caplog) if r.levelno >= logging.ERROR]
    assert any("KROONIKA_TARA_CLIENT_SECRET" in e.getMessage() for e in errors), errors
    for secret in (SECRET, ROTATED_SECRET):
        assert secret not in caplog.text
        assert secret.encode() not in raw
        assert secret not in r.text


def test_a_token_request_from_an_unregistered_address_is_a_502(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """TARA answering unauthorized_client (production refuses token requests from
    addresses RIA has not registered) is our registration at fault: 502, and the log
    line says to register the addresses."""
    caplog.set_level(logging.INFO, logger="kroonika")
    networks = {"token_request_networks": ("192.0.2.0/24",)}
    with running_stack(tmp_path, mock_client=networks) as stack:
        r, login, _ = stack.login()
    assert (r.status_code, r.json()["reason"]) == (502, "idp_client_rejected")
    assert login["details"]["idp_error"] == "unauthorized_client"
    errors = [r for r in _operator_lines(caplog) if r.levelno >= logging.ERROR]
    assert any("address" in e.getMessage() for e in errors), errors


@pytest.mark.parametrize(
    ("switches", "status", "reason"),
    [
        ({"fail_token_endpoint": True}, 502, "idp_unavailable"),
        ({"token_endpoint_status": 503}, 502, "idp_unavailable"),
        ({"token_endpoint_status": 429}, 502, "idp_unavailable"),
        ({"slow_token_endpoint_seconds": 3.0}, 502, "idp_unavailable"),
        ({"token_endpoint_status": 404}, 502, "idp_bad_response"),
        ({"token_endpoint_status": 302}, 502, "idp_bad_response"),
        ({"token_endpoint_status": 401}, 502, "idp_bad_response"),
        ({"garbled_token_response": True}, 502, "idp_bad_response"),
    ],
    ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else str(v),
)
def test_a_failing_token_endpoint_is_a_502(
    stack: Stack, switches: dict[str, Any], status: int, reason: str
) -> None:
    """TARA down, slow, rate limiting or answering something that is not a token
    response is not the citizen's fault: 502 with the reason."""
    stack.mock_switch(**switches)
    r, login, steps = stack.login()
    assert (r.status_code, r.json()["reason"]) == (status, reason)
    assert login["reason"] == reason
    assert steps == [*RECEIVED, ("callback_received", "failed")]


def test_a_code_tara_refuses_is_a_400_with_invalid_grant(stack: Stack) -> None:
    """A code TARA does not know (invalid_grant) is the one answer that stays a 400."""
    with stack.browser(autologin=None) as b:
        start = b.get(stack.service + "/auth/login", follow_redirects=False)
        authorize = httpx.URL(start.headers["location"]).copy_merge_params(
            {"autologin": "38001085718"}
        )
        back = httpx.URL(httpx.get(str(authorize), timeout=10).headers["location"])
        r = b.get(str(back.copy_set_param("code", "not-a-real-code")))
    login, _ = stack.login_events(r.headers["x-request-id"])
    assert (r.status_code, r.json()["reason"]) == (400, "code_exchange_failed")
    assert login["details"]["idp_error"] == "invalid_grant"


def test_a_scope_tara_does_not_allow_us_is_a_502_that_names_the_setting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """KROONIKA_TARA_SCOPES asking for a scope RIA did not register for the client makes
    TARA send every browser back with invalid_scope: our configuration, so a 502 with
    reason idp_request_rejected and an ERROR line naming the setting."""
    caplog.set_level(logging.INFO, logger="kroonika")
    registered = {"allowed_scopes": frozenset(ALL_SCOPES)}
    asked = {"tara_scopes": [*ALL_SCOPES, "email"]}
    with running_stack(tmp_path, mock_client=registered, settings_overrides=asked) as stack:
        r, login, steps = stack.login()
    assert (r.status_code, r.json()["reason"]) == (502, "idp_request_rejected")
    assert login["details"]["idp_error"] == "invalid_scope"
    assert steps == [*RECEIVED, ("callback_received", "failed")]
    errors = [r for r in _operator_lines(caplog) if r.levelno >= logging.ERROR]
    assert any("KROONIKA_TARA_SCOPES" in e.getMessage() for e in errors), errors


@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [
        ("server_error", 502, "idp_unavailable"),
        ("temporarily_unavailable", 502, "idp_unavailable"),
        ("invalid_request", 502, "idp_request_rejected"),
        ("access_denied", 400, "idp_error"),
    ],
)
def test_an_error_tara_sends_the_browser_back_with_is_classified(
    stack: Stack, error: str, status: int, reason: str
) -> None:
    """An error on the callback is the citizen's only for user_cancel (and errors that
    are not TARA's, such as access_denied): TARA failing or refusing our request is 502."""
    with stack.browser(autologin=None) as b:
        start = b.get(stack.service + "/auth/login", follow_redirects=False)
        state = httpx.URL(start.headers["location"]).params["state"]
        r = b.get(stack.service + "/auth/callback", params={"state": state, "error": error})
    login, _ = stack.login_events(r.headers["x-request-id"])
    assert (r.status_code, r.json()["reason"]) == (status, reason)
    assert (login["reason"], login["details"]["idp_error"]) == (reason, error)
