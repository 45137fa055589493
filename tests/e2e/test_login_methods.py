"""A successful login per authentication method, over real HTTP with the mock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from login_harness import SUCCESS_STEPS, Stack, running_stack


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path) as s:
        yield s


@pytest.mark.parametrize(
    ("method", "code", "extra", "acr"),
    [
        ("idcard", "38001085718", {}, "high"),
        ("mid", "60001019906", {}, "high"),
        ("smartid", "40404040009", {}, "high"),
        (
            "eidas",
            "38001085718",
            {
                "autologin_method": "eidas",
                "autologin_given_name": "JAAK-KRISTJAN",
                "autologin_family_name": "JÕEORG",
                "autologin_acr": "substantial",
            },
            "substantial",
        ),
    ],
)
def test_login_with_each_method_creates_a_session(
    stack: Stack, method: str, code: str, extra: dict[str, str], acr: str
) -> None:
    """Login with a method ends on return_to with a session, one auth.login and all steps."""
    with stack.browser(autologin=code, **extra) as browser:
        landed = browser.get(stack.service + f"/auth/login?method={method}&return_to=/")
        assert landed.status_code == 200
        assert str(landed.url) == stack.service + "/"
        callback_rid = landed.history[-1].headers["x-request-id"]
        session = browser.get(stack.service + "/auth/session").json()
    assert session["method"] == method
    assert session["acr"] == acr
    assert session["subject"] == "EE" + code
    login, steps = stack.login_events(callback_rid)
    assert login["outcome"] == "success"
    assert login["details"]["method"] == method
    assert steps == SUCCESS_STEPS
    creates = stack.events(types=("session.create",), correlation=login["correlation"]["flow_id"])
    assert len(creates) == 1
    assert creates[0]["correlation"]["session_ref"] == login["correlation"]["session_ref"]
    assert session["id"] not in creates[0]["correlation"]["session_ref"]


def test_login_event_carries_the_names_encrypted_and_unchanged(stack: Stack) -> None:
    """Who logged in (personal code and TARA's names, ’ Ä Ž Š included) is in the auth.login
    event's encrypted pii exactly as TARA sent it, and nowhere in the clear."""
    with stack.browser(autologin="60001019906") as browser:
        landed = browser.get(stack.service + "/auth/login")
        assert landed.status_code == 200
    login, _ = stack.login_events(landed.history[-1].headers["x-request-id"])
    personal = stack.personal(login)
    assert personal is not None
    assert (personal["given_name"], personal["family_name"]) == (
        "MARY ÄNN",
        "O’CONNEŽ-ŠUSLIK TESTNUMBER",
    )
    assert personal["personal_code"] == "EE60001019906"
    clear = b"\n".join(stack.raw_events()).decode()
    assert "CONNE" not in clear
    assert "60001019906" not in clear
