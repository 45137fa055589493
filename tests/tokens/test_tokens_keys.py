"""The signing key ring: algorithms, encryption at rest, rotation with overlap."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, select

from conftest import Kit
from kroonika.db import make_engine
from kroonika.db.tokens import signing_keys
from kroonika.tokens import (
    FixedClock,
    KeyRingError,
    MintRequest,
    Reason,
    SigningKeyRing,
    create_tables,
)

NOW = 1_750_000_000


def _ring(alg: str = "ES256", master: bytes = b"m" * 32, **kw: object) -> SigningKeyRing:
    engine = create_engine("sqlite://")
    create_tables(engine)
    return SigningKeyRing(engine, master, clock=FixedClock(NOW), alg=alg, **kw)  # type: ignore[arg-type]


def test_es256_is_default_and_published() -> None:
    """A first key is ES256, has a kid and appears in the JWK set."""
    ring = _ring()
    kid = ring.ensure()
    (jwk,) = ring.jwks()["keys"]
    assert jwk["kid"] == kid
    assert jwk["alg"] == "ES256"
    assert jwk["kty"] == "EC"
    assert "d" not in jwk


def test_rs256_configurable() -> None:
    """RS256 keys can be configured instead."""
    ring = _ring("RS256", rsa_bits=2048)
    ring.ensure()
    (jwk,) = ring.jwks()["keys"]
    assert jwk["alg"] == "RS256"
    assert jwk["kty"] == "RSA"
    assert "d" not in jwk


def test_private_key_encrypted_at_rest() -> None:
    """The stored private key is ciphertext and needs the master key."""
    ring = _ring()
    kid = ring.ensure()
    assert kid is not None
    with ring._engine.connect() as conn:
        blob = conn.execute(select(signing_keys.c.private_enc)).scalar_one()
    assert b"PRIVATE KEY" not in blob
    wrong = SigningKeyRing(ring._engine, b"x" * 32, clock=FixedClock(NOW))
    with pytest.raises(KeyRingError):
        wrong.current()


def test_new_key_published_before_use() -> None:
    """A rotated key is in the JWKS at once but signs only after the publish lead."""
    clock = FixedClock(NOW)
    engine = create_engine("sqlite://")
    create_tables(engine)
    ring = SigningKeyRing(engine, b"m" * 32, clock=clock, publish_lead_s=600)
    first = ring.ensure()
    old, new = ring.rotate()
    assert old == first
    assert {k["kid"] for k in ring.jwks()["keys"]} == {first, new}
    assert ring.current().kid == first
    clock.advance(600)
    assert ring.current().kid == new


def test_rotate_if_due() -> None:
    """Scheduled rotation creates a key only when the interval has passed."""
    clock = FixedClock(NOW)
    engine = create_engine("sqlite://")
    create_tables(engine)
    ring = SigningKeyRing(engine, b"m" * 32, clock=clock, rotation_interval_s=86400)
    ring.ensure()
    assert ring.rotate_if_due() is None
    clock.advance(86400)
    assert ring.rotate_if_due() is not None


@pytest.mark.asyncio
async def test_old_key_tokens_valid_until_expiry_then_retired(kit: Kit) -> None:
    """After rotation tokens signed by the old key stay valid until they expire;
    the old key is retired only after its last token expired."""
    client = kit.client()
    ring = kit.tokens.keys
    old_kid = ring.current().kid
    issued = await kit.service.issue(client, MintRequest(subject="s", ttl_s=3600))
    ring.publish_lead_s = 60
    _, new_kid = ring.rotate()
    kit.clock.advance(61)
    assert ring.current().kid == new_kid
    fresh = await kit.service.issue(client, MintRequest(subject="s"))
    assert fresh.record.kid == new_kid
    assert (await kit.service.validate(issued.token)).valid
    assert ring.retire_expired() == []
    assert old_kid in {k["kid"] for k in ring.jwks()["keys"]}
    kit.clock.advance(3600 + 60)
    assert ring.retire_expired() == [old_kid]
    assert old_kid not in {k["kid"] for k in ring.jwks()["keys"]}
    assert (await kit.service.validate(issued.token)).reason is Reason.UNKNOWN_KEY


def test_staged_key_is_published_but_signs_only_once_activated() -> None:
    """A staged rotation publishes the key but never signs with it, whatever the time,
    until it is activated (at once, or after the publish lead)."""
    clock = FixedClock(NOW)
    engine = create_engine("sqlite://")
    create_tables(engine)
    ring = SigningKeyRing(engine, b"m" * 32, clock=clock, publish_lead_s=600)
    first = ring.ensure()
    old, new = ring.rotate(immediate=True, staged=True)
    assert old == first
    assert {k["kid"] for k in ring.jwks()["keys"]} == {first, new}
    clock.advance(10**7)
    assert ring.current().kid == first
    ring.activate(new, immediate=True)
    assert ring.current().kid == new
    _, later = ring.rotate(staged=True)
    ring.activate(later)
    assert ring.current().kid == new
    clock.advance(600)
    assert ring.current().kid == later


def test_discard_removes_only_keys_that_never_signed() -> None:
    """A staged or still pending key can be discarded (the undo of an unrecorded
    rotation); a key that may have signed tokens cannot."""
    clock = FixedClock(NOW)
    engine = create_engine("sqlite://")
    create_tables(engine)
    ring = SigningKeyRing(engine, b"m" * 32, clock=clock, publish_lead_s=600)
    first = ring.ensure()
    assert first is not None
    _, staged = ring.rotate(staged=True)
    ring.discard(staged)
    _, pending = ring.rotate()
    ring.discard(pending)
    assert [k.kid for k in ring.published()] == [first]
    with pytest.raises(KeyRingError):
        ring.discard(first)
    with pytest.raises(KeyRingError):
        ring.activate(first)
    assert ring.current().kid == first


@pytest.fixture(params=["sqlite", "postgresql"])
def key_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """An empty key table on SQLite or on the real PostgreSQL."""
    if request.param == "sqlite":
        engine = create_engine("sqlite://")
    else:
        engine = make_engine(request.getfixturevalue("pg_database"))
    create_tables(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def test_keys_activated_in_the_same_second_the_later_signs(key_engine: Engine) -> None:
    """A first key and emergency rotations right after it, all in one second: each time
    the key activated last signs, on this instance and on another one (the random kid
    decided before, so a rotation away from a leaked key could leave it signing)."""
    clock = FixedClock(NOW)
    ring = SigningKeyRing(key_engine, b"m" * 32, clock=clock)
    other = SigningKeyRing(key_engine, b"m" * 32, clock=clock)
    newest = ring.ensure()
    for _ in range(12):
        assert ring.current().kid == newest
        other.refresh()
        assert other.current().kid == newest
        _, newest = ring.rotate(immediate=True)
    assert ring.current().kid == newest


def test_staged_keys_sign_in_the_order_they_were_activated(key_engine: Engine) -> None:
    """Two staged keys activated at once in the same second: the one activated last
    signs, whichever was created first."""
    clock = FixedClock(NOW)
    ring = SigningKeyRing(key_engine, b"m" * 32, clock=clock)
    ring.ensure()
    _, first = ring.rotate(staged=True)
    _, second = ring.rotate(staged=True)
    ring.activate(second, immediate=True)
    assert ring.current().kid == second
    ring.activate(first, immediate=True)
    assert ring.current().kid == first


def test_a_key_outranked_in_its_second_is_superseded_then(key_engine: Engine) -> None:
    """Retirement agrees with signing: of two keys activated in one second, the earlier
    one is superseded at that second (not later), and retired once its tokens can no
    longer be valid; the later one keeps signing."""
    clock = FixedClock(NOW)
    ring = SigningKeyRing(key_engine, b"m" * 32, clock=clock, max_token_lifetime_s=3600)
    first = ring.ensure()
    _, second = ring.rotate(immediate=True)
    assert ring.retire_expired() == []
    (row,) = [k for k in ring.published() if k.kid == first]
    assert row.superseded_at == NOW
    clock.advance(3601)
    assert ring.retire_expired() == [first]
    assert ring.current().kid == second
