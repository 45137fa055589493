"""``blocks(from_time=...)`` starts at the first block that ends at or after the time,
found through the time index, and returns what a full walk would."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import event
from test_dashboard_figures import NOW, H, Writer, _raise

from kroonika.audit.store.sql import SqlAuditStore


def test_from_time_returns_what_a_full_walk_filters(store_url: str, tmp_path: Path) -> None:
    """Blocks of several streams, old and new interleaved: the same blocks, in row order,
    as filtering every block by its last time; a bound after every block gives none."""
    w = Writer(store_url, tmp_path / "keys")
    try:
        for i, ago in enumerate((50, 3, 40, 2, 30, 1)):
            w.emit(ago * H, _raise(f"a{i}"), stream=("one", "two")[i % 2])
        bound = (NOW - 35 * H).isoformat().replace("+00:00", "Z")
        every = [(b.rowid, b.stream) for b in w.store.blocks()]
        assert len(every) == 6
        expected = [(b.rowid, b.stream) for b in w.store.blocks() if b.last_time >= bound]
        assert [(b.rowid, b.stream) for b in w.store.blocks(from_time=bound)] == expected
        assert len(expected) == 4  # 50 h and 40 h ago are before the bound
        late = (NOW + H).isoformat().replace("+00:00", "Z")
        assert list(w.store.blocks(from_time=late)) == []
        assert [b.rowid for b in w.store.blocks("two", from_time=bound)] == [
            r for r, s in expected if s == "two"
        ]
    finally:
        w.store.close()


def test_the_first_block_is_found_through_the_time_index(tmp_path: Path) -> None:
    """The store's look-up of the first block is answered from the ``last_time`` index,
    not by walking row ids (SQLite's min() shortcut would walk every older block)."""
    path = tmp_path / "audit.db"
    store = SqlAuditStore(f"sqlite:///{path}")
    store.upgrade()
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append((statement, params))

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        assert list(store.blocks(from_time="2026-11-27T00:00:00.000000Z")) == []
    finally:
        store.close()
    (lookup,) = [(sql, p) for sql, p in seen if "min(" in sql]
    conn = sqlite3.connect(path)
    try:
        plan = conn.execute("EXPLAIN QUERY PLAN " + lookup[0], lookup[1]).fetchall()
    finally:
        conn.close()
    assert "USING COVERING INDEX audit_blocks_time" in plan[0][3], plan
