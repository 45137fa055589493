"""An ID token that fails its checks after a good code exchange, over real HTTP against
the mock's misbehaviour switches (decision 0019).

The token came from TARA over this service's own TLS back channel: a token that does
not verify is TARA misbehaving, this service's clock or configuration, or someone on
that channel, never the citizen. So it is a 502 with the check as the reason and an
operator line saying what to check; only a nonce or state that is not this flow's
(a code injected into the browser's callback) stays the browser's 400."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator

import httpx
import pytest
from login_harness import Stack, running_stack

from kroonika.security.detectors import FORGERY_SIGNS

RECEIVED = [("none", "started"), ("started", "redirected"), ("redirected", "callback_received")]
EXCHANGED = [*RECEIVED, ("callback_received", "code_exchanged"), ("code_exchanged", "failed")]
#: A JWS (an ID token) anywhere in a text: it must never reach the log or the answer.
JWS = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("id-token-faults")) as s:
        yield s


@pytest.fixture(autouse=True)
def _switches_off(stack: Stack) -> Iterator[None]:
    yield
    httpx.post(stack.mock + "/mock/reset", json={}, timeout=10).raise_for_status()


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "kroonika.web.auth" and r.levelno >= logging.ERROR
    ]


@pytest.mark.parametrize(
    ("switch", "check", "what_to_check"),
    [
        ("wrong_issuer", "issuer_mismatch", "KROONIKA_TARA_ISSUER"),
        ("wrong_audience", "audience_mismatch", "KROONIKA_TARA_CLIENT_ID"),
        ("bad_signature", "bad_signature", "JWKS"),
        ("unknown_kid", "unknown_kid", "JWKS"),
        ("expired_token", "expired", "clock"),
    ],
)
def test_an_id_token_that_fails_a_check_is_a_502_naming_what_to_check(
    stack: Stack, caplog: pytest.LogCaptureFixture, switch: str, check: str, what_to_check: str
) -> None:
    """TARA's token failing a check is no fault of the citizen: 502, the check as the
    reason (answer and auth.login), a detail naming it, and an ERROR line saying what the
    operator checks; the token itself appears nowhere."""
    caplog.set_level(logging.INFO, logger="kroonika")
    stack.mock_switch(**{switch: True})
    r, login, steps = stack.login()
    body = r.json()
    assert r.status_code == 502, body
    assert (body["error"], body["reason"]) == ("login_failed", f"id_token.{check}")
    assert check in body["detail"]
    assert (login["outcome"], login["reason"]) == ("failure", f"id_token.{check}")
    assert steps == EXCHANGED
    errors = _errors(caplog)
    assert any(what_to_check in e and check in e for e in errors), errors
    assert not JWS.search(caplog.text)
    assert not JWS.search(r.text)


@pytest.mark.parametrize("behind", [-120, 120])
def test_a_clock_out_of_step_with_tara_is_a_502_naming_the_clock(
    tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture, behind: int
) -> None:
    """This host's clock behind TARA's (a token issued in the future) or ahead (every
    token already expired) fails every login alike: 502, and the line names the clock
    and the leeway setting."""
    caplog.set_level(logging.INFO, logger="kroonika")
    with (
        running_stack(tmp_path_factory.mktemp("clock"), mock_clock=time.time) as stack,
        stack.browser() as b,
    ):
        start = b.get(stack.service + "/auth/login", follow_redirects=False)
        stack.clock.advance(behind)
        r = b.get(start.headers["location"])
        login, _ = stack.login_events(r.headers["x-request-id"])
    check = "issued_in_future" if behind < 0 else "expired"
    assert (r.status_code, r.json()["reason"]) == (502, f"id_token.{check}")
    assert login["reason"] == f"id_token.{check}"
    errors = _errors(caplog)
    assert any("clock" in e and "KROONIKA_TARA_LEEWAY_S" in e for e in errors), errors


def test_a_nonce_that_is_not_this_flows_stays_the_browsers_400(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """A nonce mismatch means a code from another login reached this browser's callback
    (code injection): the browser's doing, 400, and no operator ERROR."""
    caplog.set_level(logging.INFO, logger="kroonika")
    stack.mock_switch(wrong_nonce=True)
    r, login, steps = stack.login()
    assert (r.status_code, r.json()["reason"]) == (400, "id_token.nonce_mismatch")
    assert login["reason"] == "id_token.nonce_mismatch"
    assert steps == EXCHANGED
    assert _errors(caplog) == []


def test_a_badly_signed_id_token_raises_a_forged_id_token_anomaly(stack: Stack) -> None:
    """The service's own monitor turns a badly signed ID token into a
    ``security.anomaly`` about the provider (decision 0007), not about the citizen."""
    stack.mock_switch(bad_signature=True)
    r, login, _ = stack.login()
    assert login["reason"] == "id_token.bad_signature", r.text
    deadline = time.monotonic() + 30  # the monitor runs on its own time: a loaded machine
    found: list[dict[str, object]] = []
    while not found and time.monotonic() < deadline:
        found = [
            e
            for e in stack.events(types=("security.anomaly",))
            if e["details"]["kind"] == "forged_id_token"
        ]
        time.sleep(0.1)
    # One per window: an earlier test's unknown_kid login may have raised it first.
    assert found, "no forged_id_token anomaly within 30 s"
    details = found[0]["details"]
    assert isinstance(details, dict)
    evidence = json.loads(str(details["evidence"]))
    assert evidence["idp"] == "tara"
    assert details["key_kind"] == "idp"
    assert details["confidence"] == FORGERY_SIGNS[evidence["reason"]]
