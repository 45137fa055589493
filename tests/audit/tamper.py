"""What an attacker with write access to the database can do (triggers dropped)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text

from kroonika.audit import SqlAuditStore
from kroonika.audit.store._types import decode_records, encode_records


def disable_guards(store: SqlAuditStore) -> None:
    with store.engine.begin() as conn:
        if store.dialect == "sqlite":
            for name in (
                "audit_blocks_no_update",
                "audit_blocks_no_delete",
                "audit_checkpoints_no_update",
                "audit_checkpoints_no_delete",
            ):
                conn.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
        else:
            conn.execute(text("ALTER TABLE audit_blocks DISABLE TRIGGER USER"))
            conn.execute(text("ALTER TABLE audit_checkpoints DISABLE TRIGGER USER"))


def block_ids(store: SqlAuditStore, stream: str) -> list[int]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id FROM audit_blocks WHERE stream = :s ORDER BY id"), {"s": stream}
        ).all()
    return [r[0] for r in rows]


def block_holding(store: SqlAuditStore, stream: str, seq: int) -> int:
    with store.engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT id FROM audit_blocks WHERE stream = :s AND first_seq <= :q "
                "AND last_seq >= :q"
            ),
            {"s": stream, "q": seq},
        ).one()
    return int(row[0])


def rewrite_records(
    store: SqlAuditStore, block_id: int, change: Callable[[list[bytes]], list[bytes]]
) -> None:
    with store.engine.begin() as conn:
        data = conn.execute(
            text("SELECT data FROM audit_blocks WHERE id = :i"), {"i": block_id}
        ).scalar_one()
        records = change(decode_records(bytes(data)))
        conn.execute(
            text("UPDATE audit_blocks SET data = :d WHERE id = :i"),
            {"d": encode_records(records), "i": block_id},
        )


def set_column(store: SqlAuditStore, table: str, row_id: int, column: str, value: object) -> None:
    with store.engine.begin() as conn:
        sql = f"UPDATE {table} SET {column} = :v WHERE id = :i"  # noqa: S608  (test-only names)
        conn.execute(text(sql), {"v": value, "i": row_id})


def execute(store: SqlAuditStore, sql: str, **params: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(sql), params)
