"""enrich: the hook where geo and threat-intelligence enrichers plug in."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kroonika.audit._model import AuditEvent

Enricher = Callable[[AuditEvent], None]


class Enrich:
    """Run each enricher on the event in order. Enrichers read ``source.raw_ip``
    and set ``source.geo``, ``source.asn`` or append to ``threat``."""

    def __init__(self, enrichers: Sequence[Enricher] = ()) -> None:
        self._enrichers = tuple(enrichers)

    def __call__(self, event: AuditEvent) -> AuditEvent:
        for enricher in self._enrichers:
            enricher(event)
        return event
