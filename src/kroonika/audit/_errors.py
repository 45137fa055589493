"""Errors of the audit library.

    AuditError
    ├── AuditUnavailable        the store cannot be written: the caller must fail closed
    ├── EventRejected           an event breaks the catalogue (strict mode) or is unknown
    │   └── UndeclaredField     a ``details`` field the catalogue does not declare
    ├── EventFiltered           a deliberate drop by the level/category filter (counted)
    ├── StoreError              the store is malformed, read-only or unreachable for reads
    ├── QueryInvalid            a query filter asks for a value no event can have
    └── KeyError_               signing or subject keys missing or unusable

Integrity failures found by the verifier are not exceptions: they are findings in
a :class:`~kroonika.audit.verify.Report`.
"""

from __future__ import annotations


class AuditError(Exception):
    """Base of every audit library error."""


class AuditUnavailable(AuditError):
    """The event could not be stored durably; nothing was acknowledged."""


class EventRejected(AuditError):
    """The event does not fit the catalogue."""


class UndeclaredField(EventRejected):
    def __init__(self, event_type: str, field: str) -> None:
        super().__init__(f"{event_type}: details field {field!r} is not in the catalogue")
        self.event_type = event_type
        self.field = field


class EventFiltered(AuditError):
    """The level/category filter dropped the event on purpose."""


class StoreError(AuditError):
    """The audit store could not be read or is not an audit store."""


class QueryInvalid(AuditError, ValueError):
    """A query filter (``param``: type, category, outcome) names a value that no event
    can have. The message shows the value (``shown``: quoted, cut short, controls
    escaped); :attr:`without_value` says the same without it."""

    def __init__(self, param: str, shown: str, expected: str, position: int) -> None:
        super().__init__(f"{param} {shown} is not {expected}")
        self.param = param
        self.without_value = f"{param}: value {position} is not {expected}"


class AuditKeyError(AuditError):
    """A signing or subject key is missing, malformed or placeholder."""
