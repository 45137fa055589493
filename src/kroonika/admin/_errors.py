"""Errors of the administration package::

AdminError                 base; ``status`` and ``code`` say how the API answers
├── NotAuthenticated       401: no or bad credentials
├── Forbidden              403: authenticated, but the role does not allow it
├── JustificationMissing   400: a mutating call without a valid justification
├── PersonalCodeInText     400: free text (a justification, a reason, a name) that holds a
│                          personal code (decision 0033)
├── ConfigInvalid          422: a runtime configuration change that does not validate
├── RequestInvalid         422: a request that names nothing it can act on (privacy tools,
│                          a search filter value no event can have)
├── RoleChangeRefused      409: separation of duties (self-grant, same approver, ...)
├── ChangeConflict         409: an approved change whose keys changed since it was asked
├── JobAlreadyRunning      409: the job runs here or on another instance, or this slot ran
├── JobRunFailed           500 job_failed, 503 job_unavailable (database or trail down),
│                          503 job_locked / job_timed_out (the database gave the run up:
│                          a lock held elsewhere, a statement too slow; Retry-After),
│                          409 job_interrupted; carries the run (id, outcome, counts)
├── TooLarge               413: more items than one call may carry (e.g. a list import)
└── NotFound               404: fixed text naming what was sought, never the id asked for
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args


class AdminError(Exception):
    status = 400
    code = "admin_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class NotAuthenticated(AdminError):
    status = 401
    code = "not_authenticated"


class Forbidden(AdminError):
    status = 403
    code = "forbidden"


class JustificationMissing(AdminError):
    status = 400
    code = "justification_required"


class PersonalCodeInText(AdminError):
    """Free text that would be stored or recorded holds a personal code. The message
    names the field, never the value."""

    status = 400
    code = "personal_code_in_text"

    def __init__(self, field: str) -> None:
        super().__init__(
            f"the {field} holds a personal code: name the person by their pseudonym "
            "(subject_ref) instead; a personal code is never stored or recorded in free text"
        )


class ConfigInvalid(AdminError):
    status = 422
    code = "invalid_config"


class RequestInvalid(AdminError):
    """``fields`` says where, as a malformed request's 422 does (``query.type``)."""

    status = 422
    code = "invalid_request"

    def __init__(self, message: str, *, fields: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.fields = list(fields)


class RoleChangeRefused(AdminError):
    status = 409
    code = "role_change_refused"


class ChangeConflict(AdminError):
    status = 409
    code = "stale"


class JobAlreadyRunning(AdminError):
    status = 409
    code = "job_busy"


#: the code of a run the database gave up, by the run's ``error`` (a timeout: not a bug of
#: the service, and another attempt later may well succeed)
JOB_TIMED_OUT: dict[str, str] = {"lock_timeout": "job_locked", "statement_timeout": "job_timed_out"}


class JobRunFailed(AdminError):
    """A manual run that ran and did not succeed; ``run`` is its public record. A run
    the database gave up carries ``retry_after`` (seconds, the scheduler's backoff),
    sent as ``Retry-After``."""

    status = 500
    code = "job_failed"

    def __init__(
        self,
        message: str,
        run: dict[str, Any],
        *,
        cause: str | None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.run = run
        self.retry_after: int | None = None
        timed_out = JOB_TIMED_OUT.get(str(run.get("error")))
        if run.get("outcome") == "interrupted":
            self.status, self.code = 409, "job_interrupted"
        elif cause is not None:
            self.status, self.code = 503, "job_unavailable"
        elif timed_out is not None and run.get("outcome") == "failure":
            self.status, self.code = 503, timed_out
            self.retry_after = max(1, retry_after or 1)


class TooLarge(AdminError):
    status = 413
    code = "too_large"


#: What a 404 can say was not found. The message is fixed text built from one of these:
#: the id a caller asked for is never repeated (a token or a personal code pasted as an
#: id would be sent back and shown in logs of proxies and clients; decision 0037).
Missing = Literal[
    "active token",
    "active session",
    "list entry",
    "client",
    "configuration request",
    "job",
    "role request",
    "API key",
    "alert",
    "event",
]
_MISSING: frozenset[str] = frozenset(get_args(Missing))


class NotFound(AdminError):
    """404 ``not_found``: ``no <what> has this id``, whatever the route was asked. Only a
    :data:`Missing` name (a type checker refuses any other string, an f-string with the
    id included; at run time another falls back to "resource"), and the only hint is
    where a role request is decided, which names no id either."""

    status = 404
    code = "not_found"

    def __init__(self, what: Missing, *, role_request_hint: bool = False) -> None:
        noun = what if what in _MISSING else "resource"
        message = f"no {noun} has this id"
        if role_request_hint:
            message += "; a role request is decided at POST /admin/roles/requests/{request_id}"
        super().__init__(message)
