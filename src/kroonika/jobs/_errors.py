"""Errors of the jobs package::

JobError            base
├── UnknownJob      no job of that name
├── JobBusy         another run holds the job's lease (here or on another instance)
└── LeaseLost       the lease expired and another instance took the job over
"""

from __future__ import annotations


class JobError(Exception):
    pass


class UnknownJob(JobError):
    pass


class JobBusy(JobError):
    pass


class LeaseLost(JobError):
    pass
