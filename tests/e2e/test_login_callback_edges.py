"""Malformed callbacks over real HTTP against the mock: each is a clear 400 recorded as
one failed login, never a traceback, and never a reason to reach TARA."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from login_harness import Stack, running_stack

ORPHAN = [("none", "callback_received"), ("callback_received", "failed")]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("callback-edges")) as s:
        yield s


def _callback_url(stack: Stack, browser: httpx.Client) -> str:
    """Start a login and let the mock answer, but stop before following it to the callback."""
    start = browser.get(stack.service + "/auth/login", follow_redirects=False)
    authorize = httpx.URL(start.headers["location"]).copy_merge_params({"autologin": "38001085718"})
    back = httpx.get(str(authorize), timeout=10)
    assert back.status_code in (302, 303)
    return str(back.headers["location"])


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
        url = _callback_url(stack, b)
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
