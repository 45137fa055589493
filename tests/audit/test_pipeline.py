"""emit(): durable before it returns, group commit, fail closed, back-pressure."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import orjson
import pytest
import rfc8785
from audit_kit import TrailKit
from hypothesis import given, settings
from hypothesis import strategies as st

from kroonika.audit import (
    Actor,
    ActorType,
    AuditUnavailable,
    Correlation,
    Outcome,
    PersonalData,
    Query,
    Source,
    Target,
    events,
    run_query,
    verify_store,
)
from kroonika.audit._sealer import canonical_record


def _login(i: int) -> object:
    return events.auth_login(
        actor=Actor(ActorType.USER, subject=f"EE3800108571{i % 10}"),
        source=Source(ip=f"203.0.113.{i % 250}"),
        method="mID",
    )


@pytest.mark.asyncio
async def test_emit_returns_after_the_event_is_stored(kit: TrailKit) -> None:
    """When emit() returns, the record is in the store with its seq."""
    await kit.trail.start()
    sealed = await kit.trail.emit(_login(1))  # type: ignore[arg-type]
    assert sealed is not None
    found = [orjson.loads(b) for b in run_query(kit.store, Query(types=("auth.login",)))]
    assert [(d["seq"], d["id"]) for d in found] == [(sealed.seq, sealed.id)]
    await kit.trail.stop()


@pytest.mark.asyncio
async def test_concurrent_emits_share_commits(kit: TrailKit) -> None:
    """500 concurrent emits are committed in far fewer blocks than events."""
    await kit.trail.start()
    results = await asyncio.gather(*(kit.trail.emit(_login(i)) for i in range(500)))  # type: ignore[arg-type]
    await kit.trail.stop()
    seqs = sorted(r.seq for r in results if r is not None)
    assert seqs == list(range(2, 502))  # seq 1 is audit.log.start
    blocks = list(kit.store.blocks())
    assert len(blocks) < 100
    assert verify_store(kit.store, kit.keyring.public_keys()).intact


@pytest.mark.asyncio
async def test_start_and_stop_are_recorded(kit: TrailKit) -> None:
    """Starting and stopping the writer records audit.log.start and audit.log.stop."""
    await kit.trail.start()
    await kit.trail.emit(_login(1))  # type: ignore[arg-type]
    await kit.trail.stop()
    types = [orjson.loads(b)["type"] for b in run_query(kit.store, Query())]
    assert types == ["audit.log.start", "auth.login", "audit.log.stop"]
    (stop_body,) = run_query(kit.store, Query(types=("audit.log.stop",)))
    stop = orjson.loads(stop_body)
    assert stop["details"]["events"] == 2


class BrokenStore:
    """Wraps a store; append fails while ``broken`` is set."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.broken = False

    def append(self, *args: object) -> None:
        if self.broken:
            raise AuditUnavailable("database is gone")
        self.inner.append(*args)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


@pytest.mark.asyncio
async def test_store_failure_fails_closed_and_recovers(
    kit_factory: Callable[..., TrailKit],
) -> None:
    """While the store cannot be written, emit raises AuditUnavailable; afterwards
    the chain continues without a gap and verifies."""
    kit = kit_factory()
    broken = BrokenStore(kit.store)
    kit.trail.store = broken  # type: ignore[assignment]
    kit.trail._sealer.store = broken  # type: ignore[assignment]
    await kit.trail.start()
    broken.broken = True
    with pytest.raises(AuditUnavailable):
        await kit.trail.emit(_login(1))  # type: ignore[arg-type]
    results = await asyncio.gather(
        *(kit.trail.emit(_login(i)) for i in range(5)),  # type: ignore[arg-type]
        return_exceptions=True,
    )
    assert all(isinstance(r, AuditUnavailable) for r in results)
    broken.broken = False
    sealed = await kit.trail.emit(_login(2))  # type: ignore[arg-type]
    assert sealed is not None
    assert sealed.seq == 2
    await kit.trail.stop()
    assert verify_store(kit.store, kit.keyring.public_keys()).intact
    assert kit.counters.get("writer.failed_events") == 6


@pytest.mark.asyncio
async def test_emit_without_a_running_writer_fails_closed(kit: TrailKit) -> None:
    """emit() before start() raises instead of dropping the event."""
    with pytest.raises(AuditUnavailable):
        await kit.trail.emit(_login(1))  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_full_queue_applies_back_pressure(kit_factory: Callable[..., TrailKit]) -> None:
    """With a queue of 2, many concurrent emits still all complete, in order."""
    kit = kit_factory()
    kit.trail._queue_size = 2
    await kit.trail.start()
    results = await asyncio.gather(*(kit.trail.emit(_login(i)) for i in range(50)))  # type: ignore[arg-type]
    await kit.trail.stop()
    assert len({r.seq for r in results if r is not None}) == 50


@pytest.mark.asyncio
async def test_restart_continues_the_stream(kit_factory: Callable[..., TrailKit]) -> None:
    """A new writer on an existing stream continues its seq and chain."""
    kit = kit_factory()
    await kit.trail.start()
    await kit.trail.emit(_login(1))  # type: ignore[arg-type]
    await kit.trail.stop()
    again = kit_factory()
    await again.trail.start()
    sealed = await again.trail.emit(_login(2))  # type: ignore[arg-type]
    await again.trail.stop()
    assert sealed is not None
    assert sealed.seq == 5
    assert verify_store(kit.store, kit.keyring.public_keys()).intact


_text = st.text(max_size=40)
_opt = st.none() | _text


@settings(max_examples=300, deadline=None)
@given(
    subject=_opt,
    ip=st.none() | st.ip_addresses().map(str) | _text,
    ua=_opt,
    reason=_opt,
    target=_opt,
    method=_opt,
    amr=st.lists(_text, max_size=3),
    given_name=_opt,
    outcome=st.sampled_from(list(Outcome)),
    client=_opt,
    request_id=_opt,
    n=st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
)
def test_fast_canonical_matches_rfc8785_reference_on_events(
    subject: str | None, ip: str | None, ua: str | None, reason: str | None,
    target: str | None, method: str | None, amr: list[str], given_name: str | None,
    outcome: Outcome, client: str | None, request_id: str | None, n: int,
) -> None:  # fmt: skip
    """The sealer's sorted-key orjson is byte-identical to RFC 8785 on generated events."""
    from kroonika.audit import Counters, Fingerprinter, MemorySubjectKeys, Pipeline

    pipeline = Pipeline.standard(
        fingerprinter=Fingerprinter(b"k" * 32, "p1"), subject_keys=MemorySubjectKeys(),
        counters=Counters(), strict=True,
    )  # fmt: skip
    event = events.token_issue(
        outcome=outcome, reason=reason,
        actor=Actor(ActorType.CLIENT, subject=subject, client_id=client, roles=("r",)),
        source=Source(ip=ip, user_agent=ua, port=443),
        target=None if target is None else Target("token", target),
        correlation=Correlation(request_id=request_id),
        personal=PersonalData(personal_code=given_name),
        jti=method, audience=amr, issued_at=n,
    )  # fmt: skip
    event.id, event.time = "0192f3c1-7d2e-7abc-8def-0123456789ab", "2026-11-27T00:00:00.000000Z"
    record = pipeline(event).to_record()
    record.update(stream="s", seq=1, integrity={"prev": "00" * 32})
    assert canonical_record(record) == rfc8785.dumps(record)


@pytest.mark.asyncio
async def test_stop_answers_every_queued_emit(kit: TrailKit) -> None:
    """Emits queued when stop() begins are committed and answered; later ones fail closed."""
    await kit.trail.start()
    pending = [asyncio.ensure_future(kit.trail.emit(_login(i))) for i in range(200)]  # type: ignore[arg-type]
    await asyncio.sleep(0)
    await kit.trail.stop()
    results = await asyncio.gather(*pending, return_exceptions=True)
    committed = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(f, AuditUnavailable) for f in failed)
    assert len(committed) + len(failed) == 200
    stored = list(run_query(kit.store, Query(types=("auth.login",))))
    assert len(stored) == len(committed)
    with pytest.raises(AuditUnavailable):
        await kit.trail.emit(_login(1))  # type: ignore[arg-type]


class _Crash(BaseException):
    """Escapes the writer's ``except Exception``: the writer task itself dies."""


@pytest.mark.asyncio
@pytest.mark.parametrize("ending", ["cancelled", "crashed"])
async def test_a_writer_task_that_dies_answers_its_callers_and_stop_returns(
    kit: TrailKit, ending: str
) -> None:
    """The writer task dies during a commit (cancelled, or an exception it does not
    catch) with callers waiting behind it: each of them gets AuditUnavailable instead of
    waiting forever, later emits fail closed, ``stop()`` returns without raising, and
    the store still verifies (the orphaned commit and stop's checkpoint do not race)."""
    await kit.trail.start()
    entered, release = threading.Event(), threading.Event()
    commit = kit.trail._commit

    def stuck(records: list[dict[str, object]]) -> object:
        entered.set()
        release.wait(10)
        if ending == "crashed":
            raise _Crash
        return commit(records)

    kit.trail._commit = stuck  # type: ignore[assignment,method-assign]
    first = asyncio.ensure_future(kit.trail.emit(_login(1)))  # type: ignore[arg-type]
    assert await asyncio.to_thread(entered.wait, 10)
    queued = [asyncio.ensure_future(kit.trail.emit(_login(i))) for i in range(2, 6)]  # type: ignore[arg-type]
    await asyncio.sleep(0)
    task = kit.trail._task
    assert task is not None
    if ending == "cancelled":
        task.cancel()
    release.set()
    done, pending = await asyncio.wait([first, *queued], timeout=10)
    for p in pending:
        p.cancel()
    assert not pending, "callers still waiting on a dead writer"
    assert all(isinstance(f.exception(), AuditUnavailable) for f in done)
    with pytest.raises(AuditUnavailable):
        await kit.trail.emit(_login(9))  # type: ignore[arg-type]
    kit.trail._commit = commit  # type: ignore[method-assign]
    await kit.trail.stop()
    assert kit.trail._task is None
    assert verify_store(kit.store, kit.keyring.public_keys()).intact
