"""A ``planned`` retention record left alone is settled by the next run (decision 0001,
2026-11-28 (review ops)): a real child process runs the purge or the shredding and is
killed (SIGKILL, from its own recorder) just after the ``planned`` record is stored or
just before the ``done`` record would be; the next run records ``phase`` ``reconciled``
naming the planned record, ``settled`` ``done`` or ``not_done`` as the store's signed
retained base and keys show, then carries on. SQLite and the real PostgreSQL."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import update

sys.path.insert(0, str(Path(__file__).parent / "sinks"))

from sink_kit import Kit, make_kit, write_events
from test_retention import _three_kinds_of_key

from kroonika.audit import Query, run_query, verify_store
from kroonika.audit.retention import (
    RetentionJob,
    RetentionPolicy,
    retention_event,
    shredded_event,
)
from kroonika.audit.store._schema import subject_keys
from kroonika.audit.verify import stored_bases

DAY = 86400.0
SINKS = Path(__file__).parent / "sinks"

#: The child: a retention run recording through its own trail (stream ``cli-1``), that
#: kills itself at the crash point, as a power cut or an OOM kill would.
CHILD = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, sys.argv[4])
    from sink_kit import make_kit
    from kroonika.audit.retention import (
        PurgePhase, RetentionJob, RetentionPolicy, retention_event, shredded_event,
    )

    url, keys, crash = sys.argv[1], sys.argv[2], sys.argv[3]
    kit = make_kit(url, __import__("pathlib").Path(keys), stream="cli-1")
    what, at = crash.split("-")

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def record(event, phase, kind):
        if kind == what and at == "done" and phase is PurgePhase.DONE:
            die()  # committed; the done record is never written
        kit.trail.emit_sync(event)
        if kind == what and at == "planned" and phase is PurgePhase.PLANNED:
            die()  # planned stored; nothing deleted yet

    job = RetentionJob(
        kit.store,
        RetentionPolicy(),
        keyring=kit.keyring,
        on_purged=lambda r: record(retention_event(r), r.phase, "purge"),
        on_shredded=lambda n, b, p: record(shredded_event(n, b, p), p, "shred"),
    )
    job.run()
    job.shred_keys()
    sys.exit(3)  # never reached: the crash point is always met
    """
)


#: What the next run does after settling, by crash point: the purge and the shredding
#: that had not happened yet, each with its own pair of records.
NEXT = {
    "purge-planned": [
        ("planned", "purge"),
        ("done", "purge"),
        ("planned", "shred"),
        ("done", "shred"),
    ],
    "purge-done": [("planned", "shred"), ("done", "shred")],
    "shred-planned": [("planned", "shred"), ("done", "shred")],
    "shred-done": [],
}


def _old_data(url: str, keys: Path) -> None:
    """Twelve events of 500 days ago in ``web-1`` (checkpointed at 5 and 10) and two
    keys of subjects that are no person (a login flow's, an anonymous month's) made as
    long ago: every one of them is due."""
    kit = make_kit(url, keys, checkpoint_every=5)
    then = time.time_ns() - int(500 * DAY * 1e9)
    kit.trail._clock = lambda: then
    kit.trail._sealer._clock = lambda: then
    try:
        _three_kinds_of_key(kit)  # seqs 1..3: a login flow's key, a month's, a person's
        write_events(kit, 9, start=1)
        with kit.store.engine.begin() as conn:
            conn.execute(update(subject_keys).values(created="2020-01-01T00:00:00Z"))
        assert _keyless_left(kit) == 2  # (the test is not vacuous)
    finally:
        kit.store.close()


def _crash(url: str, keys: Path, at: str) -> None:
    child = subprocess.run(
        [sys.executable, "-c", CHILD, url, str(keys), at, str(SINKS)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]


def _job(kit: Kit) -> RetentionJob:
    """The next run, as the service's job and the CLI make it (the real clock)."""
    return RetentionJob(
        kit.store,
        RetentionPolicy(),
        keyring=kit.keyring,
        on_purged=lambda r: kit.trail.emit_sync(retention_event(r)),
        on_shredded=lambda n, b, p: kit.trail.emit_sync(shredded_event(n, b, p)),
        on_reconciled=kit.trail.emit_sync,
    )


def _records(kit: Kit) -> list[dict[str, Any]]:
    docs = [orjson.loads(b) for b in run_query(kit.store, Query(types=("audit.retention",)))]
    return sorted(docs, key=lambda d: d["time"])


def _keyless_left(kit: Kit) -> int:
    """Keys left of subjects that are no person (the people's keys stay)."""
    with kit.store.engine.connect() as conn:
        subjects = conn.execute(subject_keys.select()).all()
    return sum(1 for row in subjects if row.subject.startswith(("anon:", "flow:")))


@pytest.mark.parametrize(
    ("crash", "settled"),
    [
        ("purge-planned", "not_done"),
        ("purge-done", "done"),
        ("shred-planned", "not_done"),
        ("shred-done", "done"),
    ],
)
def test_a_run_killed_between_its_two_records_is_settled_by_the_next_run(
    store_url: str, tmp_path: Path, crash: str, settled: str
) -> None:
    """The lone planned record gets one ``reconciled`` record that names it and says
    what the store shows; what did not happen is then done (with its own pair of
    records), what did is not done twice; a further run settles nothing again."""
    keys = tmp_path / "keys"
    _old_data(store_url, keys)
    _crash(store_url, keys, crash)
    kit = make_kit(store_url, keys, stream="job-1")
    try:
        [lone] = [r for r in _records(kit) if r["stream"] == "cli-1"][-1:]
        assert lone["details"]["phase"] == "planned"
        job = _job(kit)
        job.run()
        job.shred_keys()

        [reconciled] = [r for r in _records(kit) if r["details"]["phase"] == "reconciled"]
        assert reconciled["details"]["planned_id"] == lone["id"]
        assert reconciled["details"]["settled"] == settled
        kind = crash.split("-")[0]
        if settled == "done":
            assert (reconciled["outcome"], reconciled.get("reason")) == ("success", None)
        else:
            assert (reconciled["outcome"], reconciled["reason"]) == (
                "failure",
                f"{kind}_not_done",
            )
        for field in ("stream_purged", "first_seq", "last_seq", "keys_made_before"):
            assert reconciled["details"].get(field) == lone["details"].get(field)
        # after it, the store holds what the policy wants, whichever way it was settled
        assert stored_bases(kit.store)["web-1"].size == 10
        assert _keyless_left(kit) == 0
        after = [
            (r["details"]["phase"], "purge" if "stream_purged" in r["details"] else "shred")
            for r in _records(kit)
            if r["stream"] == "job-1"
        ]
        assert after == [("reconciled", kind), *NEXT[crash]]
        assert verify_store(kit.store, kit.keyring.public_keys()).intact

        again = _job(kit)
        assert again.reconcile() == []
    finally:
        kit.store.close()


def test_a_full_batch_of_keys_is_bounded_by_the_second_after_its_newest_key(
    store_url: str, tmp_path: Path
) -> None:
    """A shredding in batches records, per batch, the bound that alone says which keys
    it covers (every such key made before it), so a lone planned batch can be settled."""
    keys = tmp_path / "keys"
    _old_data(store_url, keys)
    kit = make_kit(store_url, keys, stream="job-1")
    try:
        with kit.store.engine.begin() as conn:
            c = subject_keys.c
            conn.execute(
                update(subject_keys)
                .where(c.subject.startswith("anon:"))
                .values(created="2020-01-01T00:00:05Z")
            )
        shredded: list[tuple[int, str]] = []
        job = RetentionJob(
            kit.store,
            RetentionPolicy(),
            keyring=kit.keyring,
            max_blocks=1,
            on_shredded=lambda n, before, phase: shredded.append((n, before, phase.value)),
        )
        assert job.shred_keys() == 2
        assert shredded == [
            (1, "2020-01-01T00:00:01Z", "planned"),  # the flow's key, made at 00:00:00
            (1, "2020-01-01T00:00:01Z", "done"),
            (1, "2020-01-01T00:00:06Z", "planned"),  # the month's, at 00:00:05 (full too)
            (1, "2020-01-01T00:00:06Z", "done"),
        ]
    finally:
        kit.store.close()
