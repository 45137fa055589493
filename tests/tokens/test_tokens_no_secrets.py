"""No token value and no client secret ever reaches the audit trail."""

from __future__ import annotations

import pytest

from conftest import Kit
from kroonika.audit import Actor, ActorType
from kroonika.tokens import MintRequest, NotPermitted, TokenRejected


@pytest.mark.asyncio
async def test_trail_holds_no_token_or_secret(kit: Kit) -> None:
    """Every operation runs; no stored event contains any issued token, any of its
    signature segments, or any client secret."""
    a = kit.client("a")
    b = kit.client("b", allowed_audiences=["svc-z"])
    issued: list[str] = []
    for i in range(3):
        issued.append((await kit.service.issue(a, MintRequest(subject=f"s{i}"))).token)
    session = await kit.service.issue_session_token(
        session_ref="sess", subject="EE38001085718", given_name="MARY", family_name="ÄNN"
    )
    issued.append(session.token)
    for t in issued:
        await kit.service.validate(t, caller=a)
        await kit.service.introspect(t, caller=a)
        await kit.service.introspect(t, caller=b)
    ext = await kit.service.extend(issued[0], caller=a)
    issued.append(ext.token)
    ref = await kit.service.extend(session.token, caller=None)
    issued.append(ref.token)
    with pytest.raises(NotPermitted):
        await kit.service.revoke(issued[1], caller=b)
    await kit.service.revoke(issued[1], caller=a)
    with pytest.raises(TokenRejected):
        await kit.service.extend(issued[1], caller=a)
    bulk = await kit.service.bulk_issue(a, [MintRequest(subject="x"), MintRequest(subject="y")])
    issued += [r.token for r in bulk if r.token]
    await kit.service.bulk_validate(issued, caller=a)
    await kit.service.bulk_revoke([{"token": t} for t in issued[-2:]], caller=a)
    await kit.service.revoke_session("sess", by=Actor(ActorType.SYSTEM), why="logout")
    await kit.service.list_add(
        "deny", "subject", "EE38001085718", reason="r", created_by="x", actor=Actor()
    )
    kit.clock.advance(10_000)
    for t in issued:
        await kit.service.validate(t)
    await kit.service.expire_overdue()
    await kit.audit.trail.stop()
    await kit.audit.trail.start()

    stored = kit.stored_events()
    assert len(stored) > 40
    blob = b"\n".join(stored)
    for token in issued:
        _header, payload, signature = token.split(".")
        assert token.encode() not in blob
        assert payload.encode() not in blob
        assert signature.encode() not in blob
    assert len(kit.secrets) == 2
    for secret in kit.secrets:
        assert secret.encode() not in blob
    assert b"EE38001085718" not in blob
