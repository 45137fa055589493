"""The token service against a real audit trail, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio

import jwt
import orjson
import pytest

from conftest import ISSUER, Kit
from kroonika.audit import Actor, ActorType
from kroonika.tokens import (
    RESERVED_CLAIMS,
    BatchTooLarge,
    ExtendConflict,
    MintRefused,
    MintRequest,
    NotPermitted,
    Reason,
    RequestContext,
    TokenRejected,
)

ADMIN = Actor(ActorType.ADMIN, subject="EE38001085718")


def _events(kit: Kit, etype: str) -> list[dict[str, object]]:
    return [d for d in (orjson.loads(b) for b in kit.stored_events()) if d["type"] == etype]


@pytest.mark.asyncio
async def test_issue_validate_round_trip(kit: Kit) -> None:
    """A minted token validates, carries our claims and is audited with metadata only."""
    client = kit.client()
    issued = await kit.service.issue(
        client,
        MintRequest(subject="user-1", audience=("svc-a",), ttl_s=300, claims={"role": "zebra-42"}),
    )
    claims = jwt.decode(issued.token, options={"verify_signature": False})
    assert claims["iss"] == ISSUER
    assert claims["aud"] == "svc-a"
    assert claims["role"] == "zebra-42"
    assert claims["exp"] - claims["iat"] == 300
    verdict = await kit.service.validate(issued.token, audience="svc-a")
    assert verdict.valid
    (ev,) = _events(kit, "token.issue")
    details = ev["details"]
    assert isinstance(details, dict)
    assert details["jti"] == claims["jti"]
    assert details["client"] == client.client_id
    assert "role" in details["claim_names"]
    assert "zebra-42" not in orjson.dumps(details).decode()
    assert details["fingerprint"] == kit.audit.fingerprinter.fingerprint("token", issued.token)


@pytest.mark.asyncio
@pytest.mark.parametrize("claim", sorted(RESERVED_CLAIMS))
async def test_reserved_claims_cannot_be_set(lite: Kit, claim: str) -> None:
    """A caller can never set a reserved claim (iss, iat, nbf, exp, jti, aud, ...)."""
    client = lite.client(allowed_claims=[claim, "role"])
    with pytest.raises(MintRefused) as err:
        await lite.service.issue(client, MintRequest(subject="s", claims={claim: "x"}))
    assert err.value.reason == "reserved_claim"
    (ev,) = _events(lite, "token.issue")
    assert ev["outcome"] == "failure"
    assert ev["reason"] == "reserved_claim"


@pytest.mark.asyncio
async def test_audience_outside_allowed_list_refused(lite: Kit) -> None:
    """aud outside the client's allowed list is refused."""
    client = lite.client()
    with pytest.raises(MintRefused) as err:
        await lite.service.issue(client, MintRequest(subject="s", audience=("elsewhere",)))
    assert err.value.reason == "audience_not_allowed"


@pytest.mark.asyncio
@pytest.mark.parametrize(("ttl", "reason"), [(10, "ttl_too_short"), (7200, "ttl_too_long")])
async def test_ttl_policy(lite: Kit, ttl: int, reason: str) -> None:
    """TTL below the policy minimum or above the maximum is refused."""
    client = lite.client()
    with pytest.raises(MintRefused) as err:
        await lite.service.issue(client, MintRequest(subject="s", ttl_s=ttl))
    assert err.value.reason == reason


@pytest.mark.asyncio
async def test_client_max_ttl_caps_policy(lite: Kit) -> None:
    """A client's own maximum TTL is lower than the policy's and wins."""
    client = lite.client(max_ttl_s=120)
    with pytest.raises(MintRefused) as err:
        await lite.service.issue(client, MintRequest(subject="s", ttl_s=300))
    assert err.value.reason == "ttl_too_long"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"unlisted": 1}, "claim_not_allowed"),
        ({"bad name": 1}, "invalid_claim_name"),
        ({"role": "x" * 2000}, "claim_too_large"),
    ],
)
async def test_claim_validation(lite: Kit, claims: dict[str, object], reason: str) -> None:
    """Claim names must be allowed and well-formed; values are size-limited."""
    client = lite.client()
    with pytest.raises(MintRefused) as err:
        await lite.service.issue(client, MintRequest(subject="s", claims=claims))
    assert err.value.reason == reason


@pytest.mark.asyncio
async def test_revoked_reason(kit: Kit) -> None:
    """A revoked token validates as revoked."""
    client = kit.client()
    issued = await kit.service.issue(client, MintRequest(subject="s"))
    assert await kit.service.revoke(issued.token, caller=client) == 1
    assert (await kit.service.validate(issued.token)).reason is Reason.REVOKED


@pytest.mark.asyncio
async def test_unknown_token_reason(lite: Kit) -> None:
    """A token signed by our key but absent from the store is unknown_token."""
    key = lite.tokens.keys.current()
    now = lite.clock.now()
    token = jwt.encode(
        {"iss": ISSUER, "jti": "ghost", "iat": now, "exp": now + 60},
        key.private,
        algorithm=key.alg,
        headers={"kid": key.kid},
    )
    assert (await lite.service.validate(token)).reason is Reason.UNKNOWN_TOKEN


@pytest.mark.asyncio
async def test_expiry_observed_once(lite: Kit) -> None:
    """An expired token validates as expired and one token.expire event is written."""
    client = lite.client()
    issued = await lite.service.issue(client, MintRequest(subject="s", ttl_s=60))
    lite.clock.advance(3600)
    assert (await lite.service.validate(issued.token)).reason is Reason.EXPIRED
    assert (await lite.service.validate(issued.token)).reason is Reason.EXPIRED
    assert len(_events(lite, "token.expire")) == 1


@pytest.mark.asyncio
async def test_cleanup_expires_overdue(lite: Kit) -> None:
    """The cleanup job marks overdue tokens expired and audits each."""
    client = lite.client()
    for _ in range(3):
        await lite.service.issue(client, MintRequest(subject="s", ttl_s=60))
    lite.clock.advance(120)
    assert await lite.service.expire_overdue() == 3
    assert len(_events(lite, "token.expire")) == 3


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("subject", Reason.DENYLISTED_SUBJECT),
        ("client", Reason.DENYLISTED_CLIENT),
        ("jti", Reason.DENYLISTED_TOKEN),
        ("ip", Reason.DENYLISTED_IP),
    ],
)
async def test_denylist_enforced_at_validate(kit: Kit, kind: str, reason: Reason) -> None:
    """A deny entry of each kind makes an otherwise valid token invalid."""
    client = kit.client()
    issued = await kit.service.issue(client, MintRequest(subject="ee38001085718"))
    value = {
        "subject": "EE38001085718",
        "client": client.client_id,
        "jti": issued.record.jti,
        "ip": "192.0.2.0/24",
    }[kind]
    await kit.service.list_add(
        "deny", kind, value, reason="incident 42", created_by="admin", actor=ADMIN
    )
    ctx = RequestContext(ip="192.0.2.7")
    assert (await kit.service.validate(issued.token, ctx=ctx)).reason is reason
    (ev,) = _events(kit, "access_list.add")
    assert ev["details"]["kind"] == kind  # type: ignore[index]


@pytest.mark.asyncio
async def test_denylist_enforced_at_mint(lite: Kit) -> None:
    """A denylisted subject cannot get a token, for a client or after login."""
    client = lite.client()
    await lite.service.list_add(
        "deny", "subject", "EE38001085718", reason="fraud", created_by="a", actor=ADMIN
    )
    with pytest.raises(MintRefused) as err:
        await lite.service.issue(client, MintRequest(subject="EE38001085718"))
    assert err.value.reason == "denylisted_subject"
    with pytest.raises(MintRefused):
        await lite.service.issue_session_token(session_ref="s1", subject="EE38001085718")
    refused = [e for e in _events(lite, "token.issue") if e["outcome"] == "failure"]
    assert len(refused) == 2


@pytest.mark.asyncio
async def test_expired_list_entry_ignored(lite: Kit) -> None:
    """An entry past its expiry no longer denies."""
    client = lite.client()
    await lite.service.list_add(
        "deny",
        "subject",
        "S",
        reason="temporary",
        created_by="a",
        actor=ADMIN,
        expires_at=lite.clock.now() + 60,
    )
    with pytest.raises(MintRefused):
        await lite.service.issue(client, MintRequest(subject="S"))
    lite.clock.advance(61)
    assert (await lite.service.issue(client, MintRequest(subject="S"))).record.subject == "S"


@pytest.mark.asyncio
async def test_allowlist_mode_empty_means_nobody(lite: Kit) -> None:
    """In allowlist mode with no entries nobody gets a token."""
    lite.tokens.lists.allowlist_mode = True
    client = lite.client()
    with pytest.raises(MintRefused) as err:
        await lite.service.issue(client, MintRequest(subject="S"))
    assert err.value.reason == "not_allowlisted"


@pytest.mark.asyncio
async def test_allowlist_then_validate_not_allowlisted(lite: Kit) -> None:
    """A token minted while allowlisted stops validating once the entry is removed."""
    lite.tokens.lists.allowlist_mode = True
    client = lite.client()
    entry = await lite.service.list_add(
        "allow", "subject", "S", reason="pilot", created_by="a", actor=ADMIN
    )
    issued = await lite.service.issue(client, MintRequest(subject="S"))
    assert (await lite.service.validate(issued.token)).valid
    await lite.service.list_remove(entry.id, why="pilot over", actor=ADMIN)
    assert (await lite.service.validate(issued.token)).reason is Reason.NOT_ALLOWLISTED
    assert len(_events(lite, "access_list.remove")) == 1


@pytest.mark.asyncio
async def test_deny_beats_allow(lite: Kit) -> None:
    """A subject both allowed and denied is denied."""
    lite.tokens.lists.allowlist_mode = True
    client = lite.client()
    for lst in ("allow", "deny"):
        await lite.service.list_add(lst, "subject", "S", reason="r", created_by="a", actor=ADMIN)
    with pytest.raises(MintRefused) as err:
        await lite.service.issue(client, MintRequest(subject="S"))
    assert err.value.reason == "denylisted_subject"


@pytest.mark.asyncio
async def test_list_update_audited(lite: Kit) -> None:
    """Changing an entry's expiry is audited with what changed."""
    entry = await lite.service.list_add(
        "deny", "client", "c1", reason="r", created_by="a", actor=ADMIN
    )
    after = await lite.service.list_update(
        entry.id, why="extend ban", actor=ADMIN, expires_at=lite.clock.now() + 99
    )
    assert after.expires_at == lite.clock.now() + 99
    (ev,) = _events(lite, "access_list.update")
    assert "expires_at" in ev["details"]["changes"]  # type: ignore[index]


@pytest.mark.asyncio
async def test_introspect_only_for_audience_or_issuer_client(kit: Kit) -> None:
    """Introspection reports active only to a client the token was issued to or for."""
    owner = kit.client("owner", allowed_audiences=["svc-a"])
    other = kit.client("other", allowed_audiences=["svc-z"])
    issued = await kit.service.issue(owner, MintRequest(subject="s", audience=("svc-a",)))
    body = await kit.service.introspect(issued.token, caller=owner)
    assert body["active"] is True
    assert body["jti"] == issued.record.jti
    assert body["client_id"] == owner.client_id
    assert await kit.service.introspect(issued.token, caller=other) == {"active": False}
    evs = _events(kit, "token.introspect")
    assert [e["details"]["active"] for e in evs] == [True, False]  # type: ignore[index]
    assert evs[1]["reason"] == "not_for_caller"


@pytest.mark.asyncio
@pytest.mark.parametrize("state", ["active", "revoked", "denylisted"])
async def test_validate_tells_a_stranger_nothing_of_a_foreign_token(kit: Kit, state: str) -> None:
    """A client the token is neither from nor for learns only ``not_for_caller``,
    whatever the token's state: no revocation or deny-list oracle, no subject; the
    trail keeps the real verdict and the probe."""
    owner = kit.client("owner", allowed_audiences=["svc-a"])
    other = kit.client("other", allowed_audiences=["svc-z"])
    issued = await kit.service.issue(owner, MintRequest(subject="s-1", audience=("svc-a",)))
    if state == "revoked":
        assert await kit.service.revoke(issued.token, caller=owner) == 1
    elif state == "denylisted":
        await kit.service.list_add(
            "deny", "subject", "s-1", reason="r", created_by="a", actor=ADMIN
        )
    seen = await kit.service.validate(issued.token, caller=other)
    assert seen.reason is Reason.NOT_FOR_CALLER
    assert seen.token is None
    (item,) = await kit.service.bulk_validate([issued.token], caller=other)
    assert (item.status, item.jti, item.reason) == ("invalid", None, "not_for_caller")
    expected = {"active": None, "revoked": Reason.REVOKED, "denylisted": Reason.DENYLISTED_SUBJECT}
    assert (await kit.service.validate(issued.token, caller=owner)).reason is expected[state]
    probes = [
        e
        for e in _events(kit, "token.validate")
        if e["actor"]["client_id"] == other.client_id  # type: ignore[index]
    ]
    assert len(probes) == 2
    for e in probes:
        assert e["reason"] == "not_for_caller"
        assert e["outcome"] == "failure"
        assert e["details"]["verdict"] == (expected[state] or "valid")  # type: ignore[index]


@pytest.mark.asyncio
async def test_introspect_invalid_leaks_no_reason(lite: Kit) -> None:
    """An invalid token introspects as exactly {active: false}."""
    client = lite.client()
    assert await lite.service.introspect("not-a-token", caller=client) == {"active": False}


@pytest.mark.asyncio
async def test_forged_token_with_victims_jti_cannot_revoke(kit: Kit) -> None:
    """A token forged with the victim's jti (any key, any alg) does not revoke the victim's."""
    from cryptography.hazmat.primitives.asymmetric import ec

    victim_client = kit.client("victim")
    attacker = kit.client("attacker")
    victim = await kit.service.issue(victim_client, MintRequest(subject="v"))
    claims = jwt.decode(victim.token, options={"verify_signature": False})
    kid = jwt.get_unverified_header(victim.token)["kid"]
    own_key = ec.generate_private_key(ec.SECP256R1())
    forged = [
        jwt.encode(claims, own_key, algorithm="ES256", headers={"kid": kid}),
        jwt.encode(
            claims,
            "attacker-chosen-hmac-secret-0123456789",
            algorithm="HS256",
            headers={"kid": kid},
        ),
    ]
    for token in forged:
        for caller in (attacker, victim_client):
            assert await kit.service.revoke(token, caller=caller) == 0
    assert (await kit.service.validate(victim.token)).valid
    fails = [e for e in _events(kit, "token.revoke") if e["outcome"] == "failure"]
    assert {e["reason"] for e in fails} == {"bad_signature"}


@pytest.mark.asyncio
async def test_client_cannot_revoke_foreign_token(lite: Kit) -> None:
    """A client may revoke only tokens issued to or for it."""
    a = lite.client("a", allowed_audiences=["svc-a"])
    b = lite.client("b", allowed_audiences=["svc-b"])
    issued = await lite.service.issue(a, MintRequest(subject="s", audience=("svc-a",)))
    with pytest.raises(NotPermitted):
        await lite.service.revoke(issued.token, caller=b)
    assert (await lite.service.validate(issued.token)).valid


@pytest.mark.asyncio
async def test_audience_client_may_revoke(lite: Kit) -> None:
    """A client named in the token's audience may revoke it."""
    rp = lite.new_client("rp", client_id="svc-b").client
    issuer = lite.client("issuer", allowed_audiences=["svc-b"])
    issued = await lite.service.issue(issuer, MintRequest(subject="s", audience=("svc-b",)))
    assert await lite.service.revoke(issued.token, caller=rp) == 1


@pytest.mark.asyncio
async def test_extend_replaces_and_revokes_old(kit: Kit) -> None:
    """Extension returns a new token and the old one stops validating."""
    client = kit.client()
    issued = await kit.service.issue(client, MintRequest(subject="s", ttl_s=120))
    kit.clock.advance(60)
    new = await kit.service.extend(issued.token, caller=client, ttl_s=600)
    assert new.record.exp == kit.clock.now() + 600
    assert (await kit.service.validate(issued.token)).reason is Reason.REVOKED
    assert (await kit.service.validate(new.token)).valid
    (ev,) = _events(kit, "token.extend")
    assert ev["details"]["new_jti"] == new.record.jti  # type: ignore[index]


@pytest.mark.asyncio
async def test_concurrent_extensions_exactly_one_wins(kit: Kit) -> None:
    """Of eight concurrent extensions of one token exactly one succeeds."""
    client = kit.client()
    issued = await kit.service.issue(client, MintRequest(subject="s"))
    results = await asyncio.gather(
        *(kit.service.extend(issued.token, caller=client) for _ in range(8)),
        return_exceptions=True,
    )
    wins = [r for r in results if not isinstance(r, BaseException)]
    losses = [r for r in results if isinstance(r, ExtendConflict | TokenRejected)]
    assert len(wins) == 1
    assert len(losses) == 7
    evs = _events(kit, "token.extend")
    assert sorted(e["outcome"] for e in evs) == ["failure"] * 7 + ["success"]


@pytest.mark.asyncio
async def test_bearer_refresh_emits_refresh(lite: Kit) -> None:
    """Without a client the bearer refreshes its own token (token.refresh)."""
    issued = await lite.service.issue_session_token(session_ref="sess", subject="EE38001085718")
    new = await lite.service.extend(issued.token, caller=None)
    assert new.record.session_ref == "sess"
    assert len(_events(lite, "token.refresh")) == 1


@pytest.mark.asyncio
async def test_session_token_claims_and_revocation(kit: Kit) -> None:
    """The login token carries the person's claims and dies with its session."""
    issued = await kit.service.issue_session_token(
        session_ref="sess-1",
        subject="EE38001085718",
        given_name="MARY ÄNN",
        family_name="O’CONNEŽ-ŠUSLIK",
        amr=["mID"],
        acr="high",
    )
    c = jwt.decode(issued.token, options={"verify_signature": False})
    assert c["sub"] == "EE38001085718"
    assert c["sid"] == "sess-1"
    assert c["amr"] == ["mID"]
    assert jwt.get_unverified_header(issued.token)["typ"] == "at+jwt"
    n = await kit.service.revoke_session("sess-1", by=Actor(ActorType.SYSTEM), why="logout")
    assert n == 1
    assert (await kit.service.validate(issued.token)).reason is Reason.REVOKED
    stored = b"".join(kit.stored_events())
    assert b"EE38001085718" not in stored
    assert b"MARY" not in stored


@pytest.mark.asyncio
async def test_session_token_has_the_rfc9068_claims_it_claims_by_its_typ(kit: Kit) -> None:
    """``typ: at+jwt`` promises RFC 9068: iss, exp, aud, sub, client_id (the issuer: our
    own login asked), iat and jti, on the token and on its refreshed successor."""
    issued = await kit.service.issue_session_token(session_ref="s-9068", subject="EE38001085718")
    refreshed = await kit.service.extend(issued.token, caller=None)
    for token in (issued.token, refreshed.token):
        assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
        c = jwt.decode(token, options={"verify_signature": False})
        assert {"iss", "exp", "aud", "sub", "client_id", "iat", "jti"} <= set(c)
        assert c["client_id"] == kit.service.policy.issuer
    assert refreshed.record.client_id is None  # no registered client owns it


@pytest.mark.asyncio
async def test_bulk_mixed_results(kit: Kit) -> None:
    """Bulk issue/validate/revoke report per item by jti with mixed outcomes."""
    client = kit.client()
    other = kit.client("other")
    results = await kit.service.bulk_issue(
        client,
        [
            MintRequest(subject="a"),
            MintRequest(subject="b", claims={"iss": "x"}),
            MintRequest(subject="c", ttl_s=5),
        ],
    )
    assert [r.status for r in results] == ["issued", "refused", "refused"]
    good = results[0].token
    assert good is not None
    foreign = (await kit.service.issue(other, MintRequest(subject="z"))).token
    val = await kit.service.bulk_validate([good, "junk", foreign], caller=client)
    assert [r.status for r in val] == ["valid", "invalid", "valid"]
    assert val[0].jti == results[0].jti
    assert val[1].reason == "malformed"
    rev = await kit.service.bulk_revoke(
        [{"token": good}, {"token": foreign}, {"jti": "nope"}, {"x": 1}], caller=client
    )
    assert [r.status for r in rev] == ["revoked", "refused", "refused", "refused"]
    assert rev[1].reason == "not_owner"
    again = await kit.service.bulk_revoke([{"jti": results[0].jti}], caller=client)
    assert again[0].status == "not_active"


@pytest.mark.asyncio
async def test_bulk_batch_limit(lite: Kit) -> None:
    """More items than the configured maximum are refused as a whole."""
    client = lite.client()
    with pytest.raises(BatchTooLarge):
        await lite.service.bulk_validate(["x"] * 101, caller=client)


@pytest.mark.asyncio
async def test_mine_paginates(kit: Kit) -> None:
    """/tokens/mine pages through the bearer's own tokens, newest first."""
    bearer = await kit.service.issue_session_token(session_ref="s", subject="EE38001085718")
    client = kit.client()
    for _ in range(4):
        kit.clock.advance(1)
        await kit.service.issue(client, MintRequest(subject="EE38001085718"))
    await kit.service.issue(client, MintRequest(subject="someone-else"))
    seen: list[str] = []
    cursor = None
    while True:
        page = await kit.service.mine(bearer.token, limit=2, cursor=cursor)
        seen += [r.jti for r in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == 5
    assert len(set(seen)) == 5
    only_custom = await kit.service.mine(bearer.token, token_type="custom", limit=10)
    assert len(only_custom.items) == 4


@pytest.mark.asyncio
async def test_mine_needs_valid_bearer(lite: Kit) -> None:
    """An invalid bearer cannot list tokens."""
    with pytest.raises(TokenRejected):
        await lite.service.mine("junk")


@pytest.mark.asyncio
async def test_summary_mode(tmp_path: object) -> None:
    """With a summary window, successes become one counted event; failures stay single."""
    from pathlib import Path

    from conftest import close_kit, open_kit

    assert isinstance(tmp_path, Path)
    k = await open_kit(tmp_path, str(tmp_path / "k.db"), token_audit_summary_window_s=60)
    try:
        client = k.client()
        issued = await k.service.issue(client, MintRequest(subject="s"))
        for _ in range(5):
            await k.service.validate(issued.token, caller=client)
        await k.service.validate("junk", caller=client)
        assert await k.service.flush_summary() == 1
        evs = _events(k, "token.validate")
        assert len(evs) == 2
        summary = next(e for e in evs if e["outcome"] == "success")
        assert summary["details"]["count"] == 5  # type: ignore[index]
    finally:
        await close_kit(k)
