"""Clauses of TARA.md that no other test held the service to, over real HTTP against the
mock: what the authorization request carries, hostile error callbacks, and the bound on
key-set refetches for unknown ``kid`` values (review tara, decision 0005)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import httpx
import pytest
from login_harness import ALL_SCOPES, CLIENT_ID, SUCCESS_STEPS, Stack, running_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    no_limits = {"login_start:ip": "off", "login_start:person": "off"}
    with running_stack(
        tmp_path_factory.mktemp("tara-clauses"),
        settings_overrides={"ratelimit_limits": no_limits},
    ) as s:
        yield s


def _authorize(stack: Stack, browser: httpx.Client, query: str) -> dict[str, list[str]]:
    """The query of the authorization request that ``/auth/login?<query>`` redirects to."""
    start = browser.get(stack.service + "/auth/login?" + query, follow_redirects=False)
    assert start.status_code == 302, start.text
    location = start.headers["location"]
    assert location.startswith(stack.mock + "/oidc/authorize?")
    return parse_qs(urlsplit(location).query, keep_blank_values=True)


@pytest.mark.parametrize(
    ("query", "scope", "acr", "locale"),
    [
        ("", "openid", "substantial", "et"),
        ("method=mid", "openid mid", "substantial", "et"),
        ("method=idcard&method=smartid", "openid idcard smartid", "substantial", "et"),
        ("acr=high&ui_locales=en", "openid", "high", "en"),
        ("acr=low&ui_locales=fr%20ru%20en", "openid", "substantial", "ru"),
        ("ui_locales=xx", "openid", "substantial", "et"),
    ],
)
def test_the_authorization_request_carries_what_tara_reads(
    stack: Stack, query: str, scope: str, acr: str, locale: str
) -> None:
    """Each parameter once: client_id, the exact redirect_uri, response_type code, openid
    plus the asked methods, state and nonce of 8+ characters, acr_values never below the
    configured minimum, and ui_locales the first one TARA speaks (else et), which the
    mock's page then speaks."""
    with stack.browser(autologin=None) as b:
        q = _authorize(stack, b, query)
        assert all(len(v) == 1 for v in q.values()), q
        # nothing TARA does not document (no PKCE, prompt or response_mode)
        assert set(q) == {
            "client_id",
            "redirect_uri",
            "response_type",
            "scope",
            "state",
            "nonce",
            "acr_values",
            "ui_locales",
        }
        assert q["client_id"] == [CLIENT_ID]
        assert q["redirect_uri"] == [stack.service + "/auth/callback"]
        assert q["response_type"] == ["code"]
        assert q["scope"] == [scope]
        assert q["acr_values"] == [acr]
        assert q["ui_locales"] == [locale]
        assert len(q["state"][0]) >= 8
        assert len(q["nonce"][0]) >= 8
        assert q["state"] != q["nonce"]
        page = b.get(stack.mock + "/oidc/authorize?" + urlencode({k: v[0] for k, v in q.items()}))
    assert page.status_code == 200
    assert f'<html lang="{locale}">' in page.text


MARK = "zq-hostile-mark"
HOSTILE = {
    "html": f"<script>alert('{MARK}')</script><img src=x onerror=alert(1)>&amp;",
    "crlf-ansi": f"\r\n2026-01-01 INFO kroonika {MARK}\x1b[2J\x1b[31m\u202e",
    "very-long": MARK + "A" * 6000,
    "nul-and-surrogate-escape": f"{MARK}\x00%ED%A0%80",
}


@pytest.mark.parametrize("description", HOSTILE.values(), ids=HOSTILE.keys())
@pytest.mark.parametrize("error", ["user_cancel", "user_cancel" + "x" * 3000])
def test_a_hostile_error_description_reaches_no_log_event_or_answer(
    stack: Stack, caplog: pytest.LogCaptureFixture, description: str, error: str
) -> None:
    """TARA's free text (error_description: markup, CRLF, ANSI, bidi, 6,000 characters)
    is read by nothing: a 400 naming only the reason, and neither it nor the state, the
    code or the error over its bound in any log line, event or answer."""
    caplog.set_level(logging.DEBUG, logger="kroonika")
    with stack.browser(autologin=None) as b:
        url = stack.callback_url(b)
        q = dict(parse_qsl(urlsplit(url).query))
        pairs = [("state", q["state"]), ("error", error), ("error_description", description)]
        r = b.get(url.split("?")[0] + "?" + urlencode(pairs), follow_redirects=False)
    reason = "user_cancel" if error == "user_cancel" else "idp_error"
    assert (r.status_code, r.json()["reason"]) == (400, reason)
    assert r.headers["content-type"] == "application/json"
    login, _ = stack.login_events(r.headers["x-request-id"])
    assert (login["outcome"], login["reason"]) == ("failure", reason)
    if reason == "idp_error":
        assert login["details"]["idp_error"] == "unrecognised"
    raw = b"".join(stack.raw_events())
    for secret in (MARK, q["state"], q["code"], "x" * 64):
        assert secret not in caplog.text
        assert secret.encode() not in raw
        assert secret not in r.text


def _login(stack: Stack) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
    """One login in a fresh browser: the callback's status, its auth.login and steps."""
    with stack.browser() as b:
        r = b.get(stack.service + "/auth/login")
    callback = r.history[-1] if r.history and r.status_code == 200 else r
    login, steps = stack.login_events(callback.headers["x-request-id"])
    return callback.status_code, login, steps


def test_unknown_kids_refetch_the_key_set_a_bounded_number_of_times(tmp_path: Path) -> None:
    """A TARA (or whoever answers for it) signing every token under a new kid makes the
    service refetch the key set at most three times a minute, not once per login; a
    real rotation after that minute is found with one refetch."""
    with running_stack(tmp_path) as stack:
        assert _login(stack)[1]["outcome"] == "success"
        warm = stack.services.tara.jwks.fetches
        stack.mock_switch(unknown_kid=True)
        for _ in range(6):
            status, login, _ = _login(stack)
            assert (status, login["reason"]) == (502, "id_token.unknown_kid")
        assert stack.services.tara.jwks.fetches == warm + 3
        stack.mock_switch(unknown_kid=False)
        stack.clock.advance(61)
        stack.mock_rotate(new_key=True)
        status, login, steps = _login(stack)
    assert (status, login["outcome"]) == (302, "success"), login
    assert steps == SUCCESS_STEPS
    assert stack.services.tara.jwks.fetches == warm + 4


@pytest.mark.parametrize(
    ("method", "code", "field", "value"),
    [
        ("idcard", "38001085718", "email", "38001085718@eesti.ee"),
        ("mid", "60001019906", "phone", "+37200000766"),
    ],
)
def test_email_and_phone_tara_releases_reach_only_the_encrypted_pii(
    tmp_path: Path, method: str, code: str, field: str, value: str
) -> None:
    """With the email and phone scopes configured (besides openid and the asked method),
    the e-mail TARA takes from an ID card and the phone number from Mobile-ID are in the
    auth.login event's encrypted pii, and nowhere in the clear."""
    scopes = {"tara_scopes": [*ALL_SCOPES, "email", "phone"]}
    with running_stack(tmp_path, settings_overrides=scopes) as stack:
        with stack.browser(autologin=code) as b:
            q = _authorize(stack, b, f"method={method}")
            assert q["scope"] == [f"openid email phone {method}"]
            landed = b.get(stack.service + f"/auth/login?method={method}")
        assert landed.status_code == 200
        login, steps = stack.login_events(landed.history[-1].headers["x-request-id"])
        assert steps == SUCCESS_STEPS
        personal = stack.personal(login)
        clear = b"\n".join(stack.raw_events()).decode()
    assert personal is not None
    assert personal[field] == value
    assert value not in clear
