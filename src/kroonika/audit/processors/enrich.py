"""enrich: the hook where geo and threat-intelligence enrichers plug in."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kroonika.audit._counters import Counters
from kroonika.audit._model import AuditEvent
from kroonika.audit.processors._shape import clean_threat
from kroonika.audit.processors.validate import clean_enrichment

Enricher = Callable[[AuditEvent], None]


class Enrich:
    """Run each enricher on the event in order. Enrichers read ``source.raw_ip``
    and set ``source.geo``, ``source.asn`` or append to ``threat``.

    Enrichers run after ``validate``, on data from outside (a feed, a geo
    database), so what they added is brought into shape here the same way:
    strings neutralised and bounded, ill-formed entries dropped and counted under
    ``enrich.dropped_field``.
    """

    def __init__(self, enrichers: Sequence[Enricher] = (), counters: Counters | None = None):
        self._enrichers = tuple(enrichers)
        self._counters = counters or Counters()

    def __call__(self, event: AuditEvent) -> AuditEvent:
        if not self._enrichers:
            return event
        for enricher in self._enrichers:
            enricher(event)
        src = event.source
        if src is not None and (src.geo is not None or src.asn is not None):
            clean_enrichment(src, self._dropped)
        if event.threat:
            event.threat, dropped = clean_threat(event.threat)
            if dropped:
                self._dropped("threat", dropped)
        return event

    def _dropped(self, _what: str, count: int) -> None:
        self._counters.add("enrich.dropped_field", count)
