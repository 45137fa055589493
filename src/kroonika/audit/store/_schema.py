"""Tables of the audit store (SQLAlchemy Core), shared by SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
)

metadata = MetaData()

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets BIGSERIAL.
_RowId = BigInteger().with_variant(Integer(), "sqlite")

blocks = Table(
    "audit_blocks",
    metadata,
    Column("id", _RowId, primary_key=True, autoincrement=True),
    Column("stream", String(128), nullable=False),
    Column("first_seq", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("count", Integer, nullable=False),
    Column("first_time", String(32), nullable=False),
    Column("last_time", String(32), nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("tree_size", BigInteger, nullable=False),
    Column("root", LargeBinary, nullable=False),
    Column("head_time", String(32), nullable=False),
    Column("kid", String(64), nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("frontier", LargeBinary, nullable=False),
    Index("audit_blocks_stream_seq", "stream", "last_seq"),
    # Readers walk one stream in storage order (WHERE stream = ? AND id > ? ORDER BY id):
    # without this index SQLite sorts every block of the stream, blobs included, per page.
    Index("audit_blocks_stream_id", "stream", "id"),
    Index("audit_blocks_time", "last_time"),
)

checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("id", _RowId, primary_key=True, autoincrement=True),
    Column("stream", String(128), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("root", LargeBinary, nullable=False),
    Column("time", String(32), nullable=False),
    Column("kid", String(64), nullable=False),
    Column("prev", LargeBinary, nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Index("audit_checkpoints_stream_size", "stream", "size"),
)

# Per-subject data keys, wrapped under the master key. Not an audit table: erasure
# deletes rows here, which is what makes erased personal data unreadable. Each
# writer process makes its own key per subject (key id = subject + "/" + a random
# generation), stored in the same transaction as the first event that uses it, so
# instances never race for one key and a stored event always has its key.
subject_keys = Table(
    "audit_subject_keys",
    metadata,
    Column("key_id", String(160), primary_key=True),
    Column("subject", String(128), nullable=False),
    Column("wrapped", LargeBinary, nullable=False),
    Column("created", String(32), nullable=False),
    Index("audit_subject_keys_subject", "subject"),
)

# Written by the retention job in the same transaction as its delete: the delete
# triggers refuse any removal of audit rows that no grant covers.
purge_grants = Table(
    "audit_purge_grants",
    metadata,
    Column("stream", String(128), primary_key=True),
    Column("upto_seq", BigInteger, nullable=False),
)

# Sinks' persisted cursors: one row per sink and stream.
sink_cursors = Table(
    "audit_sink_cursors",
    metadata,
    Column("sink", String(128), primary_key=True),
    Column("stream", String(128), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("updated", String(32), nullable=False),
)

# Items a sink refused permanently (after retries): the events stay in the store;
# this row says which sink skipped which range and why (written by the SinkRunner).
# A row is never deleted: an operator's replay that delivers the item sets
# ``replayed`` (a0006; decision 0013).
sink_dead_letters = Table(
    "audit_sink_dead_letters",
    metadata,
    Column("id", _RowId, primary_key=True, autoincrement=True),
    Column("sink", String(128), nullable=False),
    Column("stream", String(128), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("item_id", String(200), nullable=False),
    Column("error", String(500), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("time", String(32), nullable=False),
    Column("replayed", String(32), nullable=True),
    Index("audit_sink_dead_letters_sink", "sink", "stream", "seq"),
)

# Where a stream starts after a retention purge: the Merkle frontier and last leaf
# at a checkpointed size, so the verifier resumes there (the checkpoint at ``size``
# vouches for ``frontier``). Written in the purge's transaction.
retained_bases = Table(
    "audit_retained_bases",
    metadata,
    Column("stream", String(128), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("root", LargeBinary, nullable=False),
    Column("frontier", LargeBinary, nullable=False),
    Column("last_leaf", LargeBinary, nullable=False),
    Column("purged", String(32), nullable=False),
    # Ed25519 over store._types.base_statement by a checkpoint key (a0005). A base
    # without a valid signature is not trusted: the purged records count as deleted.
    Column("kid", String(64), nullable=True),
    Column("signature", LargeBinary, nullable=True),
)

SQLITE_TRIGGERS = [
    """CREATE TRIGGER audit_blocks_no_update BEFORE UPDATE ON audit_blocks
       BEGIN SELECT RAISE(ABORT, 'audit_blocks is append-only'); END""",
    """CREATE TRIGGER audit_blocks_no_delete BEFORE DELETE ON audit_blocks
       WHEN NOT EXISTS (SELECT 1 FROM audit_purge_grants g
                        WHERE g.stream = OLD.stream AND OLD.last_seq <= g.upto_seq)
       BEGIN SELECT RAISE(ABORT, 'audit_blocks is append-only'); END""",
    """CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
       BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END""",
    """CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
       BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END""",
]

POSTGRES_TRIGGERS = [
    """CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_blocks' THEN
           IF EXISTS (SELECT 1 FROM audit_purge_grants g
                      WHERE g.stream = OLD.stream AND OLD.last_seq <= g.upto_seq) THEN
             RETURN OLD;
           END IF;
         END IF;
         RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
       END $$""",
    """CREATE TRIGGER audit_blocks_append_only BEFORE UPDATE OR DELETE ON audit_blocks
       FOR EACH ROW EXECUTE FUNCTION audit_append_only()""",
    """CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE
       ON audit_checkpoints FOR EACH ROW EXECUTE FUNCTION audit_append_only()""",
    """CREATE TRIGGER audit_blocks_no_truncate BEFORE TRUNCATE ON audit_blocks
       FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()""",
]
