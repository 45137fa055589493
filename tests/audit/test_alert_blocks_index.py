"""The alert state is read from the blocks that hold an alert or response record only,
found by the store's partial index (migration a0007): ``read_book`` (``kroonika alerts
list``) and the live book's first look read those blocks and no other, and give the
same alerts as a pass over every record of the trail."""

from __future__ import annotations

from typing import Any

import orjson
from audit_kit import deny_response
from sqlalchemy import event, text
from test_alert_live_book import Writers, ack, login, raise_, state, writers

from kroonika.audit import Actor, ActorType, Target, events
from kroonika.audit._model import Category
from kroonika.audit.alerting import AlertBook, LiveBook, alert_id_for, read_book
from kroonika.audit.catalogue import CATALOGUE
from kroonika.audit.store.sql import ALERT_BLOCKS_INDEX, ALERT_MARKER, alert_blocks_predicate


def every_record(store: Any) -> AlertBook:
    """The alert state from a pass over every record of every block, no sifting."""
    book = AlertBook()
    for block in store.blocks():
        for body in block.records():
            book.apply(orjson.loads(body))
    return book


def respond(n: int) -> Any:
    alert_id = alert_id_for("r", f"event-{n}")
    return deny_response(alert_id, result="dry_run", rule="r", mode="dry_run", ttl_s=900)


def test_only_the_blocks_holding_alerts_are_read_and_the_answer_is_the_same(
    writers: Writers,
) -> None:
    """Twenty blocks of other events around five blocks of alert state (raises, a
    response, an acknowledgement, from two streams): the book of a whole pass, from five
    blocks read."""
    plan = [(login(), "one")] * 8 + [(raise_(1), "one"), (raise_(2), "two")]
    plan += [(login(), "two")] * 6 + [(respond(1), "two"), (ack(2), "one")]
    plan += [(login(), "one")] * 6 + [(raise_(3), "two")]
    for ev, stream in plan:
        writers.emit(ev, stream)
    whole = every_record(writers.store)
    assert len(whole.alerts) == 3
    assert state(read_book(writers.store).alerts.values()) == state(whole.alerts.values())
    shown = {a.alert_id: a.public() for a in read_book(writers.store).alerts.values()}
    assert shown == {a.alert_id: a.public() for a in whole.alerts.values()}
    live = LiveBook(writers.store)
    assert {a.alert_id: a.public() for a in live.alerts()} == shown
    assert live.blocks_read == 5  # of 25: the blocks without alert state are not sent
    writers.emit(login(), "three")
    writers.emit(ack(3), "three")
    assert state(live.alerts()) == state(every_record(writers.store).alerts.values())
    assert live.blocks_read == 6


def test_the_read_uses_the_partial_index(writers: Writers) -> None:
    """The store has the index (built by the migration on the same condition the read
    states), and the database answers the read through it, not by reading every block."""
    writers.emit(raise_(1))
    store = writers.store
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append((statement, params))

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        assert len(read_book(store).alerts) == 1
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    read = next((sql, p) for sql, p in seen if alert_blocks_predicate(store.dialect) in sql)
    with store.engine.connect() as conn:
        if store.dialect == "sqlite":
            raw = conn.connection.driver_connection
            assert raw is not None
            plan = " ".join(str(r) for r in raw.execute("EXPLAIN QUERY PLAN " + read[0], read[1]))
        else:
            conn.execute(text("SET enable_seqscan = off"))  # a tiny table: seq scan is cheaper
            plan = " ".join(str(r) for r in conn.exec_driver_sql("EXPLAIN " + read[0], read[1]))
            # each partition has its own copy of the index, named after the partition
            names = conn.execute(text(_PARTITION_INDEXES), {"name": ALERT_BLOCKS_INDEX})
            indexes = {ALERT_BLOCKS_INDEX, *names.scalars()}
            assert any(f" {name} " in plan for name in indexes), plan
            return
    assert f" {ALERT_BLOCKS_INDEX}" in plan, plan


_PARTITION_INDEXES = """SELECT c.relname FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
    WHERE p.relname = :name"""

__all__ = ["writers"]  # the fixture


def test_the_marker_is_the_category_of_the_alert_state_types_only() -> None:
    """The index finds blocks by ``"category":"alert"``: every type the alert state is
    made of has that category, and no other type has it (a new type of the state in
    another category would be missed; one of another kind would be read for nothing)."""
    alerting = {t for t, spec in CATALOGUE.items() if spec.category is Category.ALERT}
    state_types = {t for t in CATALOGUE if t.startswith(("alert.", "response."))}
    assert alerting == state_types == {"alert.raise", "alert.acknowledge", "response.action"}
    record = events.alert_raise(
        actor=Actor(ActorType.SYSTEM),
        target=Target("alert", alert_id_for("r", "x")),
        alert_id=alert_id_for("r", "x"),
        rule="r",
        summary="r: x",
    )
    assert ALERT_MARKER in orjson.dumps({"category": record.category.value})
