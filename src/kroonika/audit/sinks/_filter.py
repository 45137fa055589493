"""``OnlyTypes``: a sink that passes on only the events of some types (``types`` of a
configured sink, e.g. ``["alert"]`` for a webhook that carries alerts only).

The cursor still moves over everything: what is left out is delivered to nobody through
this sink, on purpose. An entry is a type or a prefix of types, a whole dotted segment at
a time, with or without a final dot (``alert`` and ``alert.`` take ``alert.raise``, never
``alerting.x``), as an alert rule's ``types`` (decision 0034, 2026-11-28). Checkpoints
are events of type ``audit.checkpoint`` here."""

from __future__ import annotations

from collections.abc import Sequence

from kroonika.audit.catalogue import type_filter, type_matches
from kroonika.audit.sinks._base import CheckpointRecord, Item, Sink, SinkError


def type_of(item: Item) -> str:
    if isinstance(item, CheckpointRecord):
        return "audit.checkpoint"
    return str(item.doc.get("type", ""))


def check_types(types: Sequence[str]) -> tuple[str, ...]:
    """The entries, checked and in one form (no final dot): non-empty, each a type of
    the catalogue or a prefix of one (:func:`~kroonika.audit.catalogue.type_filter`)."""
    if not types:
        raise ValueError("types must name at least one event type or prefix")
    # An entry nothing matches would make the sink deliver nothing, without a word.
    return tuple(type_filter(t) for t in types)


class OnlyTypes:
    """Wraps ``inner`` (keeping its name, so its cursor) and sends it the matching items."""

    def __init__(self, inner: Sink, types: Sequence[str]) -> None:
        self.inner = inner
        self.name = inner.name
        self.types = check_types(types)

    def wants(self, item: Item) -> bool:
        return type_matches(type_of(item), self.types)

    async def open(self) -> None:
        await self.inner.open()

    async def send(self, batch: Sequence[Item]) -> None:
        positions = [i for i, item in enumerate(batch) if self.wants(item)]
        if not positions:
            return
        try:
            await self.inner.send([batch[i] for i in positions])
        except SinkError as exc:
            # ``delivered`` counts the inner batch: the items before the one refused, in
            # the whole batch, are those before its position (the skipped ones are done).
            exc.delivered = (
                positions[exc.delivered] if exc.delivered < len(positions) else len(batch)
            )
            raise

    async def close(self) -> None:
        await self.inner.close()
