"""Alembic environment of the business database; run through ``kroonika.db.migrate``."""

from __future__ import annotations

from alembic import context

from kroonika.db.migrate import VERSION_TABLE, load_models

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=load_models(),
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
