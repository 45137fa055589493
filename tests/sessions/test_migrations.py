"""The business database's Alembic revisions agree with the models."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

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
