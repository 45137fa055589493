"""Client registry: scrypt-hashed secrets, authentication."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, select

from kroonika.db.tokens import clients
from kroonika.tokens import (
    ClientError,
    ClientRegistry,
    FixedClock,
    InvalidClient,
    create_tables,
    hash_secret,
    verify_secret,
)


@pytest.fixture
def registry() -> ClientRegistry:
    engine = create_engine("sqlite://")
    create_tables(engine)
    return ClientRegistry(engine, clock=FixedClock(1), scrypt_n=2**10)


def test_hash_round_trip() -> None:
    """An scrypt hash verifies its secret and nothing else."""
    h = hash_secret("s3cret-value", n=2**10)
    assert h.startswith("scrypt$1024$8$1$")
    assert verify_secret("s3cret-value", h)
    assert not verify_secret("s3cret-valuE", h)


def test_garbage_hash_does_not_verify() -> None:
    """A corrupt stored hash never verifies."""
    assert not verify_secret("x", "scrypt$bad")
    assert not verify_secret("x", "md5$1$2$3$4$5")


def test_register_and_authenticate(registry: ClientRegistry) -> None:
    """A registered client authenticates with its secret, which is not stored."""
    new = registry.register("svc", allowed_audiences=["a"], allowed_claims=["role"])
    assert registry.authenticate(new.client.client_id, new.secret) == new.client
    with registry._engine.connect() as conn:
        stored = conn.execute(select(clients.c.secret_hash)).scalar_one()
    assert new.secret not in stored


def test_wrong_secret_and_unknown_client(registry: ClientRegistry) -> None:
    """Wrong secrets and unknown ids fail the same way."""
    new = registry.register("svc")
    with pytest.raises(InvalidClient):
        registry.authenticate(new.client.client_id, new.secret + "x")
    with pytest.raises(InvalidClient):
        registry.authenticate("kc_unknown", new.secret)


def test_cached_success_still_checks_secret(registry: ClientRegistry) -> None:
    """After a cached success a wrong secret still fails."""
    new = registry.register("svc")
    registry.authenticate(new.client.client_id, new.secret)
    with pytest.raises(InvalidClient):
        registry.authenticate(new.client.client_id, "wrong")


def test_disabled_client_cannot_authenticate(registry: ClientRegistry) -> None:
    """Disabling a client takes effect even after a cached success."""
    new = registry.register("svc")
    registry.authenticate(new.client.client_id, new.secret)
    registry.set_disabled(new.client.client_id, True)
    with pytest.raises(InvalidClient):
        registry.authenticate(new.client.client_id, new.secret)


def test_bad_claim_name_refused(registry: ClientRegistry) -> None:
    """A registration with an invalid claim name is refused."""
    with pytest.raises(ClientError):
        registry.register("svc", allowed_claims=["no spaces"])
