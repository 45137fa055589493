"""Crash safety: a writer killed with SIGKILL loses no acknowledged event."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson
import pytest

from kroonika.audit import KeyRing, Query, SqlAuditStore, run_query, verify_store

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {tests!r})
    from audit_kit import make_kit
    from kroonika.audit import Actor, ActorType, Source, events
    from pathlib import Path

    async def main():
        kit = make_kit({url!r}, Path({keys!r}), stream="crash")
        await kit.trail.start()
        async def caller(k):
            i = 0
            while True:
                i += 1
                sealed = await kit.trail.emit(events.auth_login(
                    actor=Actor(ActorType.USER, subject="EE38001085718"),
                    source=Source(ip="192.0.2.7"), method="idcard", acr=str(k)))
                print(sealed.id, flush=True)
        await asyncio.gather(*(caller(k) for k in range(8)))

    asyncio.run(main())
    """
)


@pytest.mark.slow
def test_sigkill_mid_run_loses_no_acknowledged_event(tmp_path: Path) -> None:
    """Every event whose emit() returned before SIGKILL is stored; the store verifies."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    script = CHILD.format(tests=str(Path(__file__).parent), url=url, keys=str(tmp_path / "keys"))
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    acknowledged: list[str] = []
    deadline = time.monotonic() + 60
    while len(acknowledged) < 3000 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acknowledged.append(line.decode().strip())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # the pipe may hold acknowledgements printed just before the kill
    acknowledged += [x for x in proc.stdout.read().decode().split() if x]
    proc.stdout.close()
    errors = proc.stderr.read().decode() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    assert len(acknowledged) >= 3000, errors

    store = SqlAuditStore(url, read_only=True)
    stored = {orjson.loads(b)["id"] for b in run_query(store, Query(types=("auth.login",)))}
    missing = [a for a in acknowledged if a not in stored]
    assert missing == []
    report = verify_store(store, KeyRing.open(tmp_path / "keys").public_keys())
    assert report.intact, report.findings[:3]
    store.close()
