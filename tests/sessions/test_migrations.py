"""The business database's Alembic revisions agree with the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text

from kroonika.db import make_engine
from kroonika.db.migrate import downgrade, load_models, upgrade


def test_upgrade_head_matches_the_models(tmp_path: Path) -> None:
    """After upgrade head, autogenerate finds no difference to kroonika.db.metadata."""
    engine = make_engine(f"sqlite:///{tmp_path / 'k.db'}")
    upgrade(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, load_models())
    engine.dispose()
    assert diff == [], f"models without a migration (add a revision): {diff}"


def test_upgrade_uses_alembic_version_and_downgrades_cleanly(tmp_path: Path) -> None:
    """Version table is alembic_version; downgrade to base removes the session tables."""
    engine = make_engine(f"sqlite:///{tmp_path / 'k.db'}")
    upgrade(engine)
    tables = set(inspect(engine).get_table_names())
    assert {"alembic_version", "login_flow", "session"} <= tables
    downgrade(engine, "base")
    assert not {"login_flow", "session"} & set(inspect(engine).get_table_names())
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def business_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty business database on SQLite and on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'k.db'}"
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


def _raw_client(engine: Engine, client_id: str) -> None:
    """A client as an instance on the code before k0004 registers it (no version)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO token_clients (client_id, name, secret_hash, allowed_audiences,"
                " allowed_claims, max_ttl_s, rate_limit, created_at, disabled)"
                " VALUES (:cid, 'svc', 'scrypt$x', '[]', '[]', 600, NULL, 1, false)"
            ),
            {"cid": client_id},
        )


def test_k0004_gives_every_client_a_row_version(business_url: str) -> None:
    """A client registered before migration k0004, or by an instance not yet upgraded
    after it, is at version 1; k0004 goes back down cleanly, and up again."""
    from kroonika.db.tokens import clients

    engine = make_engine(business_url)
    try:
        upgrade(engine, "k0003")
        _raw_client(engine, "kc_before")
        upgrade(engine)
        _raw_client(engine, "kc_old_code")
        with engine.connect() as conn:
            found = conn.execute(select(clients.c.client_id, clients.c.version)).all()
        assert sorted(tuple(r) for r in found) == [("kc_before", 1), ("kc_old_code", 1)]
        downgrade(engine, "k0003")
        assert "version" not in {c["name"] for c in inspect(engine).get_columns("token_clients")}
        upgrade(engine)
        assert "version" in {c["name"] for c in inspect(engine).get_columns("token_clients")}
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_upgrade_head_matches_the_models_on_postgresql(fresh_postgres_url: str) -> None:
    """After upgrade head on PostgreSQL, autogenerate finds no difference to the models."""
    engine = make_engine(fresh_postgres_url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, load_models())
    finally:
        engine.dispose()
    assert diff == [], f"models without a migration (add a revision): {diff}"


def test_k0005_ranks_a_key_made_before_it_first_in_its_second(business_url: str) -> None:
    """A signing key made before migration k0005 (no activation order) ranks first among
    the keys activating in its second: an emergency rotation right after the upgrade
    signs. k0005 goes back down cleanly, and up again."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    from kroonika.tokens import FixedClock, SigningKeyRing

    jwk = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key())
    engine = make_engine(business_url)
    try:
        upgrade(engine, "k0004")
        old = SigningKeyRing(engine, b"m" * 32, clock=FixedClock(1_750_000_000))
        with engine.begin() as conn:  # the row as the code before k0005 wrote it
            conn.execute(
                text(
                    "INSERT INTO token_signing_keys (kid, alg, created_at, activates_at,"
                    " public_jwk, private_enc) VALUES ('es256-old', 'ES256', 1750000000,"
                    " 1750000000, :jwk, :blob)"
                ),
                {"jwk": jwk, "blob": b"x"},
            )
        upgrade(engine)
        _, new = old.rotate(immediate=True)
        assert old.current().kid == new
        downgrade(engine, "k0004")
        columns = {c["name"] for c in inspect(engine).get_columns("token_signing_keys")}
        assert "activation_seq" not in columns
        upgrade(engine)
    finally:
        engine.dispose()
