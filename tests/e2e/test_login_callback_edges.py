"""Malformed callbacks over real HTTP against the mock: each is a clear 400 recorded as
one failed login, never a traceback, and never a reason to reach TARA."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from login_harness import SECRET, Stack, refusing_connections, running_stack

from kroonika.web import Services

ORPHAN = [("none", "callback_received"), ("callback_received", "failed")]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    no_limits = {"login_start:ip": "off", "login_start:person": "off"}
    with running_stack(
        tmp_path_factory.mktemp("callback-edges"),
        settings_overrides={"ratelimit_limits": no_limits},
    ) as s:
        yield s


def _with_query(url: str, pairs: list[tuple[str, str]]) -> str:
    return url.split("?")[0] + "?" + urlencode(pairs)


@pytest.mark.parametrize(
    "polluted",
    [
        lambda q: [("state", q["state"]), ("state", q["state"]), ("code", q["code"])],
        lambda q: [("state", "x" * 43), ("state", q["state"]), ("code", q["code"])],
        lambda q: [("state", q["state"]), ("code", "forged-code"), ("code", q["code"])],
        lambda q: [("state", q["state"]), ("code", q["code"]), ("error", "a"), ("error", "b")],
    ],
    ids=["state-twice", "state-forged-first", "code-forged-first", "error-twice"],
)
def test_a_repeated_parameter_is_refused_before_tara(stack: Stack, polluted: object) -> None:
    """A callback with state, code or error given twice is a 400 with reason
    duplicate_parameter as an attempt of its own; it neither uses the flow nor sends a
    code to TARA, so the genuine callback afterwards still logs in."""
    with stack.browser(autologin=None) as b:
        url = stack.callback_url(b)
        q = dict(parse_qsl(urlsplit(url).query))
        r = b.get(_with_query(url, polluted(q)), follow_redirects=False)  # type: ignore[operator]
        assert r.status_code == 400
        assert (r.json()["error"], r.json()["reason"]) == ("login_failed", "duplicate_parameter")
        assert q["state"] not in r.text
        login, steps = stack.login_events(r.headers["x-request-id"])
        assert (login["outcome"], login["reason"]) == ("failure", "duplicate_parameter")
        assert steps == ORPHAN
        genuine = b.get(url, follow_redirects=False)
    assert genuine.status_code == 302, genuine.text
    login, _ = stack.login_events(genuine.headers["x-request-id"])
    assert login["outcome"] == "success"


@pytest.mark.parametrize(
    ("param", "reason"),
    [("state", "state_invalid"), ("code", "code_invalid")],
)
def test_an_over_long_parameter_is_named_as_such(stack: Stack, param: str, reason: str) -> None:
    """A state or code of 10,000 characters is refused as invalid (not as missing), and
    the answer does not repeat it."""
    huge = "A" * 10_000
    with stack.browser(autologin=None) as b:
        url = stack.callback_url(b)
        q = dict(parse_qsl(urlsplit(url).query))
        r = b.get(_with_query(url, list({**q, param: huge}.items())), follow_redirects=False)
    assert (r.status_code, r.json()["reason"]) == (400, reason)
    assert huge[:64] not in r.text
    login, _ = stack.login_events(r.headers["x-request-id"])
    assert login["reason"] == reason


HOSTILE = "\r\n2026-01-01 INFO kroonika forged line \x1b[31mred\x1b[0m \u202e"


def test_control_characters_from_tara_reach_no_log_line_or_event(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """CR, LF, ANSI escapes and bidi controls in error or error_description (which the
    browser relays from TARA, or forges) appear in no log line, event or answer; the
    unrecognisable error is recorded as idp_error unrecognised."""
    caplog.set_level(logging.DEBUG, logger="kroonika")
    with stack.browser(autologin=None) as b:
        url = stack.callback_url(b)
        q = dict(parse_qsl(urlsplit(url).query))
        pairs = [("state", q["state"]), ("error", "bad" + HOSTILE)]
        r = b.get(_with_query(url, [*pairs, ("error_description", HOSTILE)]))
    assert (r.status_code, r.json()["reason"]) == (400, "idp_error")
    login, _ = stack.login_events(r.headers["x-request-id"])
    assert login["details"]["idp_error"] == "unrecognised"
    raw = b"".join(stack.raw_events())
    for part in ("forged line", "\x1b", "\u202e"):
        assert part not in caplog.text
        assert part.encode() not in raw
        assert part not in r.text


NAMES = [
    ("60001019906", "MARY ÄNN", "O’CONNEŽ-ŠUSLIK TESTNUMBER"),
    ("38001085718", "JAAK-KRISTJAN", "JÕEORG"),
    ("37101010021", "IGOR", "ŽAIKOVSKI"),
    ("39001010000", "ÕIE-ÜLLE ÄÄ", "D'ARTAGNAN ŠÕÖÜ"),
]


@pytest.mark.parametrize(("code", "given", "family"), NAMES)
def test_names_from_tara_come_back_exactly(
    stack: Stack, code: str, given: str, family: str
) -> None:
    """Upper-case names with ’ Ä Õ Ž Š, hyphens and apostrophes survive TARA, the session
    store and /auth/session unchanged (NFC), and stay out of the clear audit trail."""
    extra = {"autologin_given_name": given, "autologin_family_name": family}
    with stack.browser(autologin=code, **extra) as b:
        assert b.get(stack.service + "/auth/login").status_code == 200
        session = b.get(stack.service + "/auth/session").json()
    assert (session["given_name"], session["family_name"]) == (given, family)
    raw = b"".join(stack.raw_events())
    assert family.encode() not in raw
    assert family.encode("unicode_escape") not in raw


def _no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """No line of the login path (web, sessions, TARA client) carries a traceback."""
    login_path = ("kroonika.web", "kroonika.sessions", "kroonika.tara")
    records = [r for r in caplog.records if r.name.startswith(login_path)]
    assert records
    assert [(r.name, r.getMessage()) for r in records if r.exc_info or r.exc_text] == []
    assert not [r for r in records if "Traceback" in r.getMessage()]


@pytest.mark.postgres
def test_a_callback_while_the_database_is_gone_can_be_retried(
    tmp_path: Path, fresh_postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The database refusing connections when TARA sends the browser back is a 503
    database_unavailable, recorded as a failed login with that reason and logged without
    a traceback; nothing was used up, so the same callback logs in once it is back."""
    caplog.set_level(logging.INFO, logger="kroonika")
    with (
        running_stack(tmp_path, database_url=fresh_postgres_url) as stack,
        stack.browser(autologin=None) as b,
    ):
        url = stack.callback_url(b)
        with refusing_connections(fresh_postgres_url):
            r = b.get(url, follow_redirects=False)
        assert (r.status_code, r.json()["error"]) == (503, "database_unavailable")
        login, _ = stack.login_events(r.headers["x-request-id"])
        assert (login["outcome"], login["reason"]) == ("failure", "database_unavailable")
        again = b.get(url, follow_redirects=False)
        assert again.status_code == 302, again.text
    _no_traceback(caplog)


@pytest.mark.postgres
def test_the_database_going_away_after_the_code_exchange_ends_the_attempt(
    tmp_path: Path, fresh_postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL going away between TARA's answer and storing the session is a 503:
    one failed auth.login with reason database_unavailable, after id_token_verified;
    no traceback, no secret; a new login works once it is back."""
    caplog.set_level(logging.INFO, logger="kroonika")

    def configure(services: Services) -> None:
        store = services.sessions.store
        original = store.add
        first = [True]

        def add_while_the_database_goes(*args: Any) -> None:
            if first:
                first.pop()
                with refusing_connections(fresh_postgres_url):
                    original(*args)
            original(*args)

        store.add = add_while_the_database_goes  # type: ignore[method-assign]

    with running_stack(tmp_path, database_url=fresh_postgres_url, configure=configure) as stack:
        with stack.browser() as b:
            r = b.get(stack.service + "/auth/login")
        assert (r.status_code, r.json()["error"]) == (503, "database_unavailable")
        login, steps = stack.login_events(r.headers["x-request-id"])
        assert (login["outcome"], login["reason"]) == ("failure", "database_unavailable")
        assert steps[-2:] == [
            ("code_exchanged", "id_token_verified"),
            ("id_token_verified", "failed"),
        ]
        with stack.browser() as b:
            assert b.get(stack.service + "/auth/login").status_code == 200
    _no_traceback(caplog)
    assert SECRET not in caplog.text


@pytest.mark.postgres
def test_a_login_started_while_the_database_is_gone_is_recorded(
    tmp_path: Path, fresh_postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Starting a login while the database refuses connections is a 503 and still one
    failed attempt (reason database_unavailable), not a request the trail never saw."""
    caplog.set_level(logging.INFO, logger="kroonika")
    with running_stack(tmp_path, database_url=fresh_postgres_url) as stack:
        with refusing_connections(fresh_postgres_url):
            r = httpx.get(stack.service + "/auth/login", timeout=10)
        assert (r.status_code, r.json()["error"]) == (503, "database_unavailable")
        assert "set-cookie" not in r.headers
        login, steps = stack.login_events(r.headers["x-request-id"])
        assert (login["outcome"], login["reason"]) == ("failure", "database_unavailable")
        assert steps == [("none", "failed")]
    _no_traceback(caplog)
