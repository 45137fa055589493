"""Database errors never carry the statement's parameters: their text reaches logs and
tracebacks, and parameters hold personal codes, secrets' hashes and token ids."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Column, MetaData, String, Table, insert
from sqlalchemy.exc import SQLAlchemyError

from kroonika.audit import SqlAuditStore
from kroonika.audit.store._schema import purge_grants
from kroonika.db import make_engine

# Longer than the columns, so PostgreSQL refuses it with a message that does not quote
# it. (Some of its messages do quote values, e.g. a duplicate key's DETAIL; no engine
# option hides those, so error text must never reach a response.)
SECRET = "EE38001085718-parameter-value-" + "x" * 200

_meta = MetaData()
_people = Table(
    "people",
    _meta,
    Column("code", String(64), primary_key=True),
    Column("name", String(64), nullable=False),
)


def _refused_insert_error(url: str, name: str | None) -> str:
    engine = make_engine(url)
    try:
        _meta.create_all(engine)
        with pytest.raises(SQLAlchemyError) as caught, engine.begin() as con:
            con.execute(insert(_people).values(code=SECRET, name=name))
        return str(caught.value)
    finally:
        engine.dispose()


def test_sqlite_business_database_errors_hide_parameters(tmp_path: Path) -> None:
    text = _refused_insert_error(f"sqlite:///{tmp_path / 'k.db'}", None)  # NOT NULL
    assert "people" in text  # the error itself is still said
    assert SECRET not in text


@pytest.mark.postgres
def test_postgres_business_database_errors_hide_parameters(fresh_postgres_url: str) -> None:
    text = _refused_insert_error(fresh_postgres_url, "x")  # too long
    assert "value too long" in text
    assert SECRET not in text


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_audit_store_errors_hide_parameters(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A refused write to an audit table is reported without the values written."""
    if kind == "postgres":
        url = request.getfixturevalue("fresh_postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'audit.db'}"
    store = SqlAuditStore(url)
    try:
        store.upgrade()
        grant = insert(purge_grants).values(stream=SECRET, upto_seq=None)
        with pytest.raises(SQLAlchemyError) as caught, store.engine.begin() as con:
            con.execute(grant)  # upto_seq is NOT NULL
        assert SECRET not in str(caught.value)
    finally:
        store.close()
