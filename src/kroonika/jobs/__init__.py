"""Cleanup jobs and their scheduler (cron per job, a database lease so one instance runs a
job at a time, every run audited as ``job.run``)::

    scheduler = Scheduler(JOBS, deps, clock=time.time, schedule=lambda n: ("* * * * *", True))
    await scheduler.start()            # ticks every tick_s
    await scheduler.run("sessions", trigger="admin:...")   # manual run
"""

from kroonika.jobs._errors import (
    JobBusy,
    JobError,
    JobStopped,
    LeaseLost,
    RunUnrecorded,
    UnknownJob,
)
from kroonika.jobs._lease import Lease, Leases
from kroonika.jobs._scheduler import (
    BACKOFF_BASE_S,
    BACKOFF_MAX_S,
    TIMEOUTS,
    Backoff,
    RunResult,
    Scheduler,
    backoff_delay,
    default_owner,
)
from kroonika.jobs.cleanup import JOBS, Job, JobContext, JobDeps

__all__ = [
    "BACKOFF_BASE_S",
    "BACKOFF_MAX_S",
    "JOBS",
    "TIMEOUTS",
    "Backoff",
    "Job",
    "JobBusy",
    "JobContext",
    "JobDeps",
    "JobError",
    "JobStopped",
    "Lease",
    "LeaseLost",
    "Leases",
    "RunResult",
    "RunUnrecorded",
    "Scheduler",
    "UnknownJob",
    "backoff_delay",
    "default_owner",
]
