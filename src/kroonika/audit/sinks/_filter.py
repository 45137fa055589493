"""``OnlyTypes``: a sink that passes on only the events of some types (``types`` of a
configured sink, e.g. ``["alert."]`` for a webhook that carries alerts only).

The cursor still moves over everything: what is left out is delivered to nobody through
this sink, on purpose. A prefix ending in a dot (``alert.``) matches the types under it;
any other entry matches one type exactly. Checkpoints are events of type
``audit.checkpoint`` here."""

from __future__ import annotations

from collections.abc import Sequence

from kroonika.audit.catalogue import CATALOGUE
from kroonika.audit.sinks._base import CheckpointRecord, Item, Sink, SinkError


def type_of(item: Item) -> str:
    if isinstance(item, CheckpointRecord):
        return "audit.checkpoint"
    return str(item.doc.get("type", ""))


def check_types(types: Sequence[str]) -> tuple[str, ...]:
    """The entries, checked: non-empty, lowercase ``area.object.action`` characters, each a
    type of the catalogue (or ``audit.checkpoint``) or a prefix of one ending in a dot."""
    out = tuple(types)
    if not out:
        raise ValueError("types must name at least one event type or prefix")
    known = CATALOGUE.keys() | {"audit.checkpoint"}
    for t in out:
        if not t or not all(c.islower() or c.isdigit() or c in "._" for c in t):
            raise ValueError("types are event types or prefixes ending in '.' (e.g. 'alert.')")
        # An entry nothing matches would make the sink deliver nothing, without a word.
        if t not in known and not (t.endswith(".") and any(k.startswith(t) for k in known)):
            raise ValueError(
                f"{t!r} is neither an event type nor a prefix of one ending in '.' "
                "(e.g. 'alert.' or 'alert.raise')"
            )
    return out


class OnlyTypes:
    """Wraps ``inner`` (keeping its name, so its cursor) and sends it the matching items."""

    def __init__(self, inner: Sink, types: Sequence[str]) -> None:
        self.inner = inner
        self.name = inner.name
        self.types = check_types(types)

    def wants(self, item: Item) -> bool:
        etype = type_of(item)
        return any(etype.startswith(t) if t.endswith(".") else etype == t for t in self.types)

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
