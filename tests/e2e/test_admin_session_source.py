"""A session an administrator ends: the person's ``session.terminate`` names where the
person was seen, never the administrator's address. The administrator's own address is
in the administrator's event of the same request (``correlation.request_id``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from admin_harness import AdminStack, admin_stack

PERSON = "38001085718"
PERSON_IP = "193.40.0.1"
ADMIN_IP = "198.51.100.7"
OVERRIDES = {
    "audit_ip_v4_prefix": 32,  # full addresses in clear, so that the test can tell them apart
    "audit_ip_v6_prefix": 128,
    "trusted_proxies": ["127.0.0.1/32"],
}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[AdminStack]:
    with admin_stack(tmp_path, overrides=OVERRIDES) as s:
        yield s


def _logged_in(stack: AdminStack) -> str:
    with stack.stack.browser(autologin=PERSON) as b:
        b.headers["x-forwarded-for"] = PERSON_IP
        assert b.get(stack.url + "/auth/login").status_code == 200
    found = stack.call(
        "GET", "/admin/sessions", role="security", params={"subject": "EE" + PERSON}
    ).json()
    (ref,) = [s["ref"] for s in found["sessions"]]
    return str(ref)


def _ended(stack: AdminStack, request_id: str) -> list[dict[str, object]]:
    return stack.events(types=("session.terminate",), correlation=request_id)


@pytest.mark.parametrize("how", ["one session", "bulk", "subject revoke"])
def test_an_admin_ended_session_does_not_carry_the_admins_address(
    stack: AdminStack, how: str
) -> None:
    ref = _logged_in(stack)
    (created,) = stack.events(types=("session.create",))
    assert created["source"]["ip"] == PERSON_IP  # type: ignore[index]
    headers = {"x-forwarded-for": ADMIN_IP}
    if how == "one session":
        r = stack.call("DELETE", f"/admin/sessions/{ref}", role="security", headers=headers)
    elif how == "bulk":
        r = stack.call(
            "POST",
            "/admin/bulk/sessions/end",
            role="security",
            headers=headers,
            json={"refs": [ref]},
        )
    else:
        r = stack.call(
            "POST",
            "/admin/subjects/revoke",
            role="security",
            headers=headers,
            json={"subject": PERSON},
        )
    assert r.status_code == 200, r.text
    request_id = r.headers["x-request-id"]
    (ended,) = _ended(stack, request_id)
    assert ended["details"]["ended_by"] == "admin"  # type: ignore[index]
    assert ended["actor"]["pseudonym"] == created["actor"]["pseudonym"]  # type: ignore[index]
    assert ADMIN_IP not in str(ended)
    assert "ip" not in ended.get("source", {})  # type: ignore[operator]
    # who ended it, and from where: the administrator's own events of that request
    others = [
        e
        for e in stack.events(correlation=request_id)
        if e["type"] != "session.terminate" and e["actor"]["type"] == "admin"  # type: ignore[index]
    ]
    assert others
    assert all(e["source"]["ip"] == ADMIN_IP for e in others)  # type: ignore[index]
