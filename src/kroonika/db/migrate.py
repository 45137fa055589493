"""Alembic for the business database: ``upgrade(engine)`` brings it to the newest revision.

The environment lives in ``kroonika/db/migrations`` (version table ``alembic_version``). Every
module with tables is imported by :func:`load_models` so autogenerate and the agreement test see
all of :data:`kroonika.db.metadata`.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, MetaData

import kroonika.db as _db

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"


def load_models() -> MetaData:
    """Import every ``kroonika.db.<area>`` module so all tables are on the shared metadata."""
    for info in pkgutil.iter_modules(_db.__path__):
        if info.name not in {"migrate", "migrations"} and not info.name.startswith("_"):
            importlib.import_module(f"kroonika.db.{info.name}")
    return _db.metadata


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the business database behind ``engine`` to ``revision`` (in one transaction)."""
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


__all__ = ["MIGRATIONS", "VERSION_TABLE", "alembic_config", "downgrade", "load_models", "upgrade"]
