"""Waiting for something to happen, not for a fixed time.

A test that sleeps a fixed time and then asserts that a background task, a thread or a
process has got somewhere fails on a loaded machine (CI is a noisy 2-core box), however
long the sleep. Poll the condition instead, with a bound far above what it needs, and
follow the poll with the test's own assert: the poll only waits, the assert judges.
(A sleep that checks that something does *not* happen may stay: load cannot make it
fail, only miss.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

#: Long enough for a process to start on a loaded machine; a bound, not an expectation.
PATIENCE = 30.0


async def eventually(
    check: Callable[[], bool], *, within: float = PATIENCE, interval: float = 0.01
) -> bool:
    """Await until ``check()`` is true (True) or ``within`` seconds have passed (False),
    letting the event loop run in between."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)
    return True


def wait_until(
    check: Callable[[], bool], *, within: float = PATIENCE, interval: float = 0.02
) -> bool:
    """Block until ``check()`` is true (True) or ``within`` seconds have passed (False)."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True
