"""How much of the trail an erasure reads for the person's login flows (decision 0023):
the plan reads it all, the deletion only what was stored since, and a login made in
between is still reached, on SQLite and on the real PostgreSQL (where a block's row id
is drawn at insert, not at commit)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from sqlalchemy import Engine, insert, select

from kroonika.admin._privacy import Eraser
from kroonika.audit import (
    Actor,
    ActorType,
    AuditTrail,
    Correlation,
    Counters,
    Fingerprinter,
    KeyRing,
    Pipeline,
    Source,
    SqlAuditStore,
    SqlSubjectKeys,
    events,
)
from kroonika.audit.privacy import flow_subject
from kroonika.audit.store._schema import blocks
from kroonika.audit.store._types import Block, encode_records
from kroonika.db import make_engine
from kroonika.db.migrate import upgrade

SUBJECT = "EE38001085718"
FP = Fingerprinter(b"k" * 32, "p1")


class CountingStore:
    """The store, counting the blocks read through ``blocks``."""

    def __init__(self, store: SqlAuditStore) -> None:
        self.store = store
        self.read = 0

    def blocks(self, *args: Any, **kwargs: Any) -> Iterator[Block]:
        for block in self.store.blocks(*args, **kwargs):
            self.read += 1
            yield block

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@dataclass
class Setup:
    store: SqlAuditStore
    counting: CountingStore
    eraser: Eraser
    keys: SqlSubjectKeys
    writers: list[AuditTrail]


def _writer(
    store: SqlAuditStore, keys: SqlSubjectKeys, keyring: KeyRing, stream: str
) -> AuditTrail:
    """One stream's writer (as one instance), pseudonymising with :data:`FP`."""
    counters = Counters()
    return AuditTrail(
        Pipeline.standard(fingerprinter=FP, subject_keys=keys, counters=counters, strict=True),
        store,
        keyring,
        stream=stream,
        counters=counters,
        subject_keys=keys,
        checkpoint_every=1000,
        checkpoint_interval=3600,
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    """An eraser over a trail written by two streams (two writers, as two instances)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'audit.db'}"
    else:
        url = request.getfixturevalue("fresh_postgres_url")
    store = SqlAuditStore(url)
    store.upgrade()
    keys = SqlSubjectKeys(store, b"m" * 32)
    keyring = KeyRing.open(tmp_path / "keys", create=True)
    writers = [_writer(store, keys, keyring, s) for s in ("service-1", "service-2")]
    engine: Engine = make_engine(f"sqlite:///{tmp_path / 'kroonika.db'}")
    upgrade(engine)
    counting = CountingStore(store)
    eraser = Eraser(engine, keys, [FP], cast(SqlAuditStore, counting))
    try:
        yield Setup(store, counting, eraser, keys, writers)
    finally:
        engine.dispose()
        store.close()


def _login(trail: AuditTrail, flow: str, subject: str = SUBJECT) -> None:
    """A login: an anonymous step (under the flow's key), then the person's auth.login."""
    trail.emit_sync(
        events.auth_flow_transition(
            actor=Actor(ActorType.ANONYMOUS),
            source=Source(ip="198.51.100.77"),
            correlation=Correlation(flow_id=flow),
            from_state="none",
            to_state="started",
        )
    )
    trail.emit_sync(
        events.auth_login(
            actor=Actor(ActorType.USER, subject=subject),
            source=Source(ip="198.51.100.77"),
            correlation=Correlation(flow_id=flow),
        )
    )


def _has_key(keys: SqlSubjectKeys, flow: str) -> bool:
    return keys.count_many([flow_subject(flow)]) > 0


def test_a_login_between_plan_and_deletion_is_reached_reading_only_the_blocks_since(
    setup: Setup,
) -> None:
    """The person logs in on one stream, the plan reads the whole trail, they log in
    again on the other stream: the deletion erases both flows' keys (not a stranger's)
    and reads only the blocks stored after the plan's pass."""
    first, second = setup.writers
    _login(first, "flow-before")
    for n in range(6):
        _login(second, f"flow-stranger-{n}", subject="EE60001017716")
    person = setup.eraser.person(personal_code=SUBJECT, pseudonym=None)
    planned = setup.eraser.plan(person)
    assert planned.flow_keys == 1
    read_by_plan = setup.counting.read
    _login(second, "flow-between")
    setup.counting.read = 0
    done = setup.eraser.apply(person, planned=planned)
    assert done.flow_keys == 2
    assert not _has_key(setup.keys, "flow-before")
    assert not _has_key(setup.keys, "flow-between")
    assert _has_key(setup.keys, "flow-stranger-0")
    assert 0 < setup.counting.read < read_by_plan
    assert setup.counting.read <= 2  # the two blocks of the login since


def test_without_the_plan_the_deletion_reads_the_whole_trail(setup: Setup) -> None:
    """An apply given no plan falls back to a pass over every block."""
    _login(setup.writers[0], "flow-before")
    person = setup.eraser.person(personal_code=SUBJECT, pseudonym=None)
    done = setup.eraser.apply(person)
    assert done.flow_keys == 1
    assert setup.counting.read == len(list(setup.store.blocks()))


@pytest.mark.postgres
def test_a_block_drawn_before_the_plan_and_committed_after_it_is_reached(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    """PostgreSQL draws a block's id at insert: a block whose insert is still open while
    a later one commits gets the lower id and commits after the plan's pass. The plan's
    bound does not pass over it (the lock is not granted while it is open: no bound),
    and the deletion's pass finds the person's flow in it."""
    store = SqlAuditStore(fresh_postgres_url)
    store.upgrade()
    keys = SqlSubjectKeys(store, b"m" * 32)
    trail = _writer(store, keys, KeyRing.open(tmp_path / "keys", create=True), "service-1")
    engine = make_engine(f"sqlite:///{tmp_path / 'kroonika.db'}")
    upgrade(engine)
    eraser = Eraser(engine, keys, [FP], store)
    try:
        _login(trail, "flow-before")
        with store.engine.connect() as conn:
            template = conn.execute(select(blocks).limit(1)).mappings().one()
        record = orjson.dumps(
            {
                "actor": {"pseudonym": FP.pseudonym(SUBJECT)},
                "correlation": {"flow_id": "flow-late"},
            }
        )
        row = dict(template) | {"stream": "service-9", "data": encode_records([record])}
        del row["id"]
        late = store.engine.connect()
        late.begin()
        late_id = late.execute(insert(blocks).values(row).returning(blocks.c.id)).scalar_one()
        _login(trail, "flow-after")  # commits blocks with higher ids first
        person = eraser.person(personal_code=SUBJECT, pseudonym=None)
        planned = eraser.plan(person)
        assert planned.seen is not None
        assert planned.seen.upto_id < late_id
        late.commit()
        late.close()
        seen = eraser.flows(person, since=planned.seen)
        assert flow_subject("flow-late") in seen.subjects
        assert flow_subject("flow-after") in seen.subjects
    finally:
        engine.dispose()
        store.close()


def test_the_settled_id_is_the_highest_block_once_nothing_is_in_flight(
    setup: Setup,
) -> None:
    """With no insert open, the bound is the highest row id stored."""
    _login(setup.writers[0], "flow-before")
    top = max(b.rowid for b in setup.store.blocks())
    assert setup.store.settled_id() == top
