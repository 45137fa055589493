"""Errors of the jobs package::

JobError            base
├── UnknownJob      no job of that name
├── JobBusy         another run holds the job's lease (here or on another instance)
├── LeaseLost       the lease expired and another instance took the job over
├── JobStopped      the service is stopping: the run ended after its last whole batch
└── RunUnrecorded   the run ended but its job.run could not be written (also an
                    AuditUnavailable); carries the run
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kroonika.audit import AuditUnavailable

if TYPE_CHECKING:
    from kroonika.jobs._scheduler import RunResult


class JobError(Exception):
    pass


class UnknownJob(JobError):
    pass


class JobBusy(JobError):
    pass


class LeaseLost(JobError):
    pass


class JobStopped(JobError):
    """Raised by :meth:`JobContext.batch_done` once the scheduler is stopping."""


class RunUnrecorded(JobError, AuditUnavailable):
    """The run ended (``result``) but its ``job.run`` event could not be written."""

    def __init__(self, result: RunResult) -> None:
        super().__init__(f"job {result.job} run {result.run_id} ended but could not be recorded")
        self.result = result
