"""The token service under hostile use: revocation that an extension cannot dodge,
extension caps, malformed bulk input, and every refusal audited exactly once."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from conftest import Kit
from kroonika.audit import Actor, ActorType
from kroonika.tokens import (
    BatchTooLarge,
    InvalidClient,
    MintRefused,
    MintRequest,
    NotPermitted,
    Reason,
    TokenRejected,
    parse_mint_request,
)

ADMIN = Actor(ActorType.ADMIN, subject="EE38001085718")


def _events(kit: Kit, etype: str) -> list[dict[str, Any]]:
    return [d for d in (orjson.loads(b) for b in kit.stored_events()) if d["type"] == etype]


# --- revocation follows extensions --------------------------------------------------------


@pytest.mark.asyncio
async def test_revoking_an_extended_token_revokes_its_replacement(kit: Kit) -> None:
    """Whoever revokes the token they handed out ends the access it gave: a thief who
    extended it first keeps nothing (before, the replacement stayed active)."""
    client = kit.client()
    issued = await kit.service.issue(client, MintRequest(subject="s"))
    stolen = await kit.service.extend(issued.token, caller=None)  # the bearer extends
    assert await kit.service.revoke(issued.token, caller=client) == 1
    assert (await kit.service.validate(stolen.token)).reason is Reason.REVOKED
    evs = _events(kit, "token.revoke")
    assert [(e["outcome"], e["details"]["jti"]) for e in evs] == [
        ("success", issued.record.jti),
        ("success", stolen.record.jti),
    ]
    assert evs[0]["details"]["count"] == 1
    assert issued.record.jti in evs[1]["details"]["why"]


@pytest.mark.asyncio
async def test_revocation_follows_a_chain_of_extensions(kit: Kit) -> None:
    """A → B → C: revoking A (by token or, as an administrator, by id) ends C."""
    client = kit.client()
    a = await kit.service.issue(client, MintRequest(subject="s"))
    b = await kit.service.extend(a.token, caller=client)
    c = await kit.service.extend(b.token, caller=client)
    assert await kit.service.revoke_jti(a.record.jti, by=ADMIN, why="compromised") == 1
    assert (await kit.service.validate(c.token)).reason is Reason.REVOKED
    # nothing left to do: the same request again changes nothing and says so
    assert await kit.service.revoke_jti(a.record.jti, by=ADMIN, why="again") == 0
    last = _events(kit, "token.revoke")[-1]
    assert last["reason"] == "not_active"
    assert last["details"]["count"] == 0


@pytest.mark.asyncio
async def test_bulk_revoke_by_old_jti_and_duplicates(kit: Kit) -> None:
    """Bulk revocation by the jti of an extended token ends the replacement; a duplicate
    item reports not_active; every item has its event."""
    client = kit.client()
    a = await kit.service.issue(client, MintRequest(subject="s"))
    b = await kit.service.extend(a.token, caller=client)
    results = await kit.service.bulk_revoke(
        [{"jti": a.record.jti}, {"jti": a.record.jti}], caller=client
    )
    assert [r.status for r in results] == ["revoked", "not_active"]
    assert (await kit.service.validate(b.token)).reason is Reason.REVOKED
    evs = _events(kit, "token.revoke")
    assert len(evs) == 3  # two items, plus the replacement revoked with the first


# --- extension caps -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_bearer_cannot_stretch_past_the_minting_clients_maximum(lite: Kit) -> None:
    """The bearer of a token from a client with a 120 s maximum cannot refresh it to the
    policy's 3600 s (before: it could)."""
    client = lite.client(max_ttl_s=120)
    issued = await lite.service.issue(client, MintRequest(subject="s", ttl_s=60))
    with pytest.raises(TokenRejected) as err:
        await lite.service.extend(issued.token, caller=None, ttl_s=3600)
    assert err.value.reason == "ttl_too_long"
    assert err.value.audited
    ok = await lite.service.extend(issued.token, caller=None, ttl_s=120)
    assert ok.record.exp - ok.record.iat == 120
    refused = [e for e in _events(lite, "token.refresh") if e["outcome"] == "failure"]
    assert [e["reason"] for e in refused] == ["ttl_too_long"]


@pytest.mark.asyncio
async def test_audience_client_cannot_stretch_past_the_issuers_maximum(lite: Kit) -> None:
    """A client named in the audience, with a larger maximum of its own, is still held to
    the maximum of the client that minted the token."""
    rp = lite.new_client("rp", client_id="svc-b", max_ttl_s=3600).client
    issuer = lite.client("issuer", allowed_audiences=["svc-b"], max_ttl_s=300)
    issued = await lite.service.issue(issuer, MintRequest(subject="s", audience=("svc-b",)))
    with pytest.raises(TokenRejected, match="ttl_too_long"):
        await lite.service.extend(issued.token, caller=rp, ttl_s=3600)


@pytest.mark.asyncio
async def test_no_extension_once_the_minting_client_is_disabled(lite: Kit) -> None:
    """A disabled client's tokens cannot be extended by anyone (the bearer included)."""
    client = lite.client()
    issued = await lite.service.issue(client, MintRequest(subject="s"))
    lite.tokens.clients.set_disabled(client.client_id, True)
    with pytest.raises(TokenRejected, match="client_disabled"):
        await lite.service.extend(issued.token, caller=None)
    assert (await lite.service.validate(issued.token)).valid  # not extended, not revoked


@pytest.mark.asyncio
async def test_revoked_token_cannot_be_extended(lite: Kit) -> None:
    """Revoked, then extended: refused and audited, with no replacement."""
    client = lite.client()
    issued = await lite.service.issue(client, MintRequest(subject="s"))
    await lite.service.revoke(issued.token, caller=client)
    for caller in (client, None):
        with pytest.raises(TokenRejected, match="revoked"):
            await lite.service.extend(issued.token, caller=caller)
    assert len(_events(lite, "token.extend")) == len(_events(lite, "token.refresh")) == 1


# --- introspection ------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("claim", ["username", "active"])
async def test_introspection_members_cannot_be_set_as_claims(lite: Kit, claim: str) -> None:
    """``username`` (and ``active``) are what introspection reports itself: a client
    allowed such a claim still cannot mint a token that claims to be someone's."""
    client = lite.client(allowed_claims=[claim])
    with pytest.raises(MintRefused, match="reserved_claim"):
        await lite.service.issue(client, MintRequest(claims={claim: "root"}))


@pytest.mark.asyncio
async def test_introspection_for_a_foreign_client_is_bare(lite: Kit) -> None:
    """A client that neither minted the token nor is named for it learns nothing."""
    a = lite.client("a")
    b = lite.client("b", allowed_audiences=["svc-z"])
    issued = await lite.service.issue(a, MintRequest(subject="s", claims={"role": "x"}))
    assert await lite.service.introspect(issued.token, caller=b) == {"active": False}


# --- malformed and oversized input --------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ([], "invalid_request"),
        ("x", "invalid_request"),
        ({"audience": 5}, "invalid_audience"),
        ({"audience": ["svc-a", 5]}, "invalid_audience"),
        ({"audience": {"svc-a": 1}}, "invalid_audience"),
        ({"subject": 5}, "invalid_subject"),
        ({"ttl_s": 60.0}, "invalid_ttl"),
        ({"ttl_s": True}, "invalid_ttl"),
        ({"claims": [1]}, "invalid_claims"),
    ],
)
def test_parse_mint_request_refuses(item: object, reason: str) -> None:
    """Every wrong type is a named refusal (an int audience was a 500)."""
    with pytest.raises(MintRefused) as err:
        parse_mint_request(item)
    assert err.value.reason == reason


@pytest.mark.asyncio
async def test_bulk_issue_refuses_malformed_items_one_by_one(lite: Kit) -> None:
    """Raw JSON items: a malformed one is refused (and audited) alone; the rest issue."""
    client = lite.client()
    results = await lite.service.bulk_issue(
        client, [{"subject": "a"}, 7, {"audience": 3}, {"subject": "b"}]
    )
    assert [r.status for r in results] == ["issued", "refused", "refused", "issued"]
    assert [r.reason for r in results] == [None, "invalid_request", "invalid_audience", None]
    evs = _events(lite, "token.issue")
    assert sorted(e["outcome"] for e in evs) == ["failure", "failure", "success", "success"]


@pytest.mark.asyncio
async def test_bulk_revoke_malformed_items_are_audited(kit: Kit) -> None:
    """Non-objects, ids that cannot be ours (a NUL that PostgreSQL refuses: it was a
    500; an overlong one) are refused per item, each with its failed token.revoke."""
    client = kit.client()
    items: list[Any] = [1, None, {"jti": "\x00"}, {"jti": "x" * 65}, {"jti": 5}, {}]
    results = await kit.service.bulk_revoke(items, caller=client)
    assert [(r.status, r.reason) for r in results] == [("refused", "malformed")] * len(items)
    evs = _events(kit, "token.revoke")
    assert [(e["outcome"], e["reason"]) for e in evs] == [("failure", "malformed")] * len(items)


@pytest.mark.asyncio
async def test_batch_too_large_is_audited_for_every_bulk_operation(lite: Kit) -> None:
    """An oversized batch is refused before any work, and the refusal is recorded."""
    client = lite.client()
    n = lite.service.policy.bulk_max + 1
    with pytest.raises(BatchTooLarge) as e1:
        await lite.service.bulk_validate(["x"] * n, caller=client)
    with pytest.raises(BatchTooLarge) as e2:
        await lite.service.bulk_revoke([{"jti": "x"}] * n, caller=client)
    with pytest.raises(BatchTooLarge) as e3:
        await lite.service.bulk_issue(client, [{}] * n)
    assert all(e.value.audited for e in (e1, e2, e3))
    for etype in ("token.validate", "token.revoke", "token.issue"):
        (ev,) = _events(lite, etype)
        assert (ev["outcome"], ev["reason"]) == ("failure", "batch_too_large")
        assert ev["actor"]["client_id"] == client.client_id


@pytest.mark.asyncio
async def test_refusals_say_they_were_audited(lite: Kit) -> None:
    """The service marks the refusals it recorded, so the routes do not record twice."""
    a = lite.client("a")
    b = lite.client("b", allowed_audiences=["svc-z"])
    with pytest.raises(MintRefused) as mint:
        await lite.service.issue(a, MintRequest(audience=("nope",)))
    issued = await lite.service.issue(a, MintRequest(subject="s"))
    with pytest.raises(NotPermitted) as revoke:
        await lite.service.revoke(issued.token, caller=b)
    with pytest.raises(NotPermitted) as extend:
        await lite.service.extend(issued.token, caller=b)
    with pytest.raises(TokenRejected) as mine:
        await lite.service.mine("junk")
    assert all(e.value.audited for e in (mint, revoke, extend, mine))


@pytest.mark.asyncio
async def test_refusal_detail_does_not_echo_long_or_raw_input(lite: Kit) -> None:
    """An audience the client may not use comes back short and escaped."""
    client = lite.client()
    with pytest.raises(MintRefused) as err:
        await lite.service.issue(client, MintRequest(audience=("\x1b[31m" + "x" * 5000,)))
    assert len(str(err.value)) < 120
    assert "\x1b" not in str(err.value)


@pytest.mark.asyncio
async def test_nul_in_client_id_or_list_filters_is_refused_on_every_database(kit: Kit) -> None:
    """PostgreSQL text cannot hold a NUL: a client id or a jti with one was a database
    error (a 500, and a failed authentication nobody recorded). Now a plain refusal."""
    with pytest.raises(InvalidClient):
        kit.tokens.clients.authenticate("kc_\x00", "secret")
    client = kit.client()
    (result,) = await kit.service.bulk_revoke([{"jti": "a\x00"}], caller=client)
    assert (result.status, result.reason) == ("refused", "malformed")
