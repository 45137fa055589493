"""PostgreSQL: partition ``audit_blocks`` by month of ``last_time`` (SQLite: nothing).

The table is rebuilt as a partitioned table (same columns; ``last_time`` in the ``C``
collation; primary key ``(id, last_time)`` because a partitioned table's keys must hold
the partition key), its rows copied into monthly partitions, the append-only triggers
put back on the parent (PostgreSQL clones row triggers onto every partition, present and
future) and the trigger function taught that a partition of ``audit_blocks`` may be
deleted from under a purge grant. See :mod:`kroonika.audit.store.partitions`.

Revision ID: a0003
Revises: a0002
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

from kroonika.audit.store.partitions import create_month

revision = "a0003"
down_revision = "a0002"

_COLUMNS = """
    id BIGINT NOT NULL DEFAULT nextval('audit_blocks_id_seq'),
    stream VARCHAR(128) NOT NULL,
    first_seq BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    count INTEGER NOT NULL,
    first_time VARCHAR(32) NOT NULL,
    last_time VARCHAR(32) COLLATE "C" NOT NULL,
    data BYTEA NOT NULL,
    tree_size BIGINT NOT NULL,
    root BYTEA NOT NULL,
    head_time VARCHAR(32) NOT NULL,
    kid VARCHAR(64) NOT NULL,
    signature BYTEA NOT NULL,
    frontier BYTEA NOT NULL
"""

_FUNCTION = """CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger
   LANGUAGE plpgsql AS $$
   BEGIN
     IF TG_OP = 'DELETE' AND (TG_TABLE_NAME = 'audit_blocks'
                              OR TG_TABLE_NAME LIKE 'audit\\_blocks\\_p%') THEN
       IF EXISTS (SELECT 1 FROM audit_purge_grants g
                  WHERE g.stream = OLD.stream AND OLD.last_seq <= g.upto_seq) THEN
         RETURN OLD;
       END IF;
     END IF;
     RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
   END $$"""

_OLD_FUNCTION = """CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger
   LANGUAGE plpgsql AS $$
   BEGIN
     IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_blocks' THEN
       IF EXISTS (SELECT 1 FROM audit_purge_grants g
                  WHERE g.stream = OLD.stream AND OLD.last_seq <= g.upto_seq) THEN
         RETURN OLD;
       END IF;
     END IF;
     RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
   END $$"""

_TRIGGERS = [
    """CREATE TRIGGER audit_blocks_append_only BEFORE UPDATE OR DELETE ON audit_blocks
       FOR EACH ROW EXECUTE FUNCTION audit_append_only()""",
    """CREATE TRIGGER audit_blocks_no_truncate BEFORE TRUNCATE ON audit_blocks
       FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()""",
]

_INDEXES = [
    "CREATE INDEX audit_blocks_stream_seq ON audit_blocks (stream, last_seq)",
    "CREATE INDEX audit_blocks_time ON audit_blocks (last_time)",
]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute(_FUNCTION)
    op.execute("ALTER TABLE audit_blocks RENAME TO audit_blocks_unpartitioned")
    op.execute("ALTER SEQUENCE audit_blocks_id_seq OWNED BY NONE")
    op.execute(f"CREATE TABLE audit_blocks ({_COLUMNS}) PARTITION BY RANGE (last_time)")
    op.execute("CREATE TABLE audit_blocks_pdefault PARTITION OF audit_blocks DEFAULT")
    months = bind.execute(
        text("SELECT DISTINCT substr(last_time, 1, 7) FROM audit_blocks_unpartitioned ORDER BY 1")
    ).scalars()
    for ym in list(months):
        create_month(bind, int(ym[:4]), int(ym[5:7]))
    op.execute("INSERT INTO audit_blocks SELECT * FROM audit_blocks_unpartitioned")
    op.execute("DROP TABLE audit_blocks_unpartitioned")  # its triggers and indexes with it
    op.execute("ALTER SEQUENCE audit_blocks_id_seq OWNED BY audit_blocks.id")
    op.execute("ALTER TABLE audit_blocks ADD PRIMARY KEY (id, last_time)")
    for ddl in _INDEXES + _TRIGGERS:
        op.execute(ddl)
    op.execute(
        "CREATE TRIGGER audit_blocks_no_truncate BEFORE TRUNCATE ON audit_blocks_pdefault "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()"
    )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE audit_blocks RENAME TO audit_blocks_partitioned")
    op.execute("ALTER SEQUENCE audit_blocks_id_seq OWNED BY NONE")
    plain = _COLUMNS.replace(' COLLATE "C"', "")
    op.execute(f"CREATE TABLE audit_blocks ({plain})")
    op.execute("INSERT INTO audit_blocks SELECT * FROM audit_blocks_partitioned")
    op.execute("DROP TABLE audit_blocks_partitioned CASCADE")
    op.execute("ALTER SEQUENCE audit_blocks_id_seq OWNED BY audit_blocks.id")
    op.execute("ALTER TABLE audit_blocks ADD PRIMARY KEY (id)")
    for ddl in _INDEXES + _TRIGGERS:
        op.execute(ddl)
    op.execute(_OLD_FUNCTION)
