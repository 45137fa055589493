"""What the job tests give a job: its dependencies and its context, with only what a
test cares about named (the rest is what no job under test reads)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from kroonika.jobs import JobContext, JobDeps


def job_deps(
    engine: Any = None,
    trail: Any = None,
    *,
    sessions: Any = None,
    tokens: Any = None,
    flow_retention_s: int = 3600,
    token_retention_s: int = 3600,
    **retention: int,
) -> JobDeps:
    """:class:`JobDeps` for a test: ``trail`` and ``sessions`` may be fakes, ``tokens``
    is what the job's ``deps.tokens()`` answers, ``retention`` the other ``*_retention_s``."""
    return JobDeps(
        engine=engine,
        trail=trail,
        sessions=sessions,
        tokens=lambda: tokens,
        flow_retention_s=flow_retention_s,
        token_retention_s=token_retention_s,
        **retention,
    )


async def _no_progress() -> None:
    return None


def job_context(now: Callable[[], int], batch_size: int, counts: Counter[str]) -> JobContext:
    """A :class:`JobContext` at ``now`` whose lease renewal does nothing."""
    return JobContext(now=now, batch_size=batch_size, counts=counts, progress=_no_progress)
