"""filter: the configurable level/category filter.

Security, admin, config, audit and alert events are never filtered, whatever the
configuration says (the catalogue marks them ``filterable=False``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from kroonika.audit._counters import Counters
from kroonika.audit._errors import EventFiltered
from kroonika.audit._model import AuditEvent, Category, Severity
from kroonika.audit.catalogue import CATALOGUE


class Filter:
    def __init__(
        self,
        *,
        counters: Counters,
        min_severity: Severity = Severity.DEBUG,
        per_category: Mapping[Category, Severity] | None = None,
        drop_types: Iterable[str] = (),
    ) -> None:
        for t in drop_types:
            if t not in CATALOGUE:
                raise ValueError(f"filter names unknown event type {t!r}")
        self._counters = counters
        self._default = min_severity.number
        self._per_category = {c: s.number for c, s in (per_category or {}).items()}
        self._drop = frozenset(t for t in drop_types if CATALOGUE[t].filterable)

    def __call__(self, event: AuditEvent) -> AuditEvent:
        if not CATALOGUE[event.type].filterable:
            return event
        limit = self._per_category.get(event.category, self._default)
        if event.type in self._drop or event.severity.number > limit:
            self._counters.add("filter.dropped")
            raise EventFiltered(event.type)
        return event
