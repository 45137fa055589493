"""What a sink receives, the Sink protocol, its errors, and an in-memory sink.

Errors::

    SinkError                 delivery of a batch failed
    ├── TransientSinkError    the destination is down, slow or busy: retry (backoff)
    └── PermanentSinkError    the destination refuses these items: retry a few times,
                              then dead-letter them

Both carry ``delivered``: how many leading items of the batch the destination did
accept before the failure (``_bulk`` answers per item), so the cursor can move past
them and only the rest is sent again.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from kroonika.audit.store._types import Checkpoint


class SinkError(Exception):
    """A batch was not (fully) delivered."""

    def __init__(self, message: str, *, delivered: int = 0) -> None:
        super().__init__(message)
        self.delivered = delivered


class TransientSinkError(SinkError):
    """Worth retrying as is: connection refused, timeout, 429, 5xx."""


class PermanentSinkError(SinkError):
    """The destination refuses the item at position ``delivered``."""


@dataclass(frozen=True, slots=True)
class Record:
    """One sealed event as stored: its canonical bytes are what was hashed."""

    stream: str
    seq: int
    canonical: bytes
    _doc: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def doc(self) -> dict[str, Any]:
        """The decoded event (decoded once, on first use)."""
        if not self._doc:
            self._doc.update(orjson.loads(self.canonical))
        return self._doc

    @property
    def id(self) -> str:
        return str(self.doc["id"])

    @property
    def category(self) -> str:
        return str(self.doc.get("category", "unknown"))

    @property
    def time(self) -> str:
        return str(self.doc.get("time", ""))


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    """A signed checkpoint, shipped so a copy of the signed state lives outside."""

    checkpoint: Checkpoint

    @property
    def stream(self) -> str:
        return self.checkpoint.stream

    @property
    def id(self) -> str:
        """A stable id, so idempotent destinations de-duplicate a re-sent checkpoint."""
        return f"checkpoint:{self.checkpoint.stream}:{self.checkpoint.size}"

    @property
    def time(self) -> str:
        return self.checkpoint.time

    def doc(self) -> dict[str, Any]:
        """The checkpoint as an event-shaped document (for syslog, ECS, HEC)."""
        cp: dict[str, Any] = orjson.loads(self.checkpoint.to_json())
        return {
            "schema": "kroonika.audit/1",
            "id": self.id,
            "stream": self.checkpoint.stream,
            "seq": self.checkpoint.size,
            "time": self.checkpoint.time,
            "type": "audit.checkpoint",
            "category": "audit",
            "outcome": "success",
            "severity": "info",
            "details": {"size": cp["size"], "root": cp["root"], "kid": cp["kid"]},
            "checkpoint": cp,
        }


Item = Record | CheckpointRecord


class Sink(Protocol):
    """A destination fed from the store. ``send`` delivers the batch in order or
    raises a :class:`SinkError`; it must be safe to call again with the same items
    (delivery is at least once)."""

    name: str

    async def open(self) -> None: ...

    async def send(self, batch: Sequence[Item]) -> None: ...

    async def close(self) -> None: ...


class CapturingSink:
    """An in-memory sink for tests; ``fail_with`` makes the next sends fail."""

    def __init__(self, name: str = "capture") -> None:
        self.name = name
        self.items: list[Item] = []
        self.fail_with: SinkError | None = None
        self.fail_times = 0
        self.opened = False

    async def open(self) -> None:
        self.opened = True

    async def send(self, batch: Sequence[Item]) -> None:
        if self.fail_with is not None and self.fail_times != 0:
            self.fail_times -= 1
            err = self.fail_with
            accepted = list(batch[: err.delivered])
            self.items.extend(accepted)
            raise type(err)(str(err), delivered=err.delivered)
        self.items.extend(batch)

    async def close(self) -> None:
        self.opened = False

    def records(self) -> list[Record]:
        return [i for i in self.items if isinstance(i, Record)]

    def checkpoints(self) -> list[CheckpointRecord]:
        return [i for i in self.items if isinstance(i, CheckpointRecord)]


def is_loopback(host: str | None) -> bool:
    """``localhost`` or a loopback IP literal (127.0.0.0/8, ::1): a name that merely
    resolves to one is not trusted (DNS can change)."""
    if not host:
        return False
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refuse_cleartext(host: str | None, allow_cleartext: bool, *, use: str) -> None:
    """The events go over a connection that is not TLS only to loopback, or when the
    caller says ``allow_cleartext`` (decisions 0019, 0020): :class:`ValueError` else."""
    if not allow_cleartext and not is_loopback(host):
        raise ValueError(
            f"{host!r} is not loopback: the events would travel in clear; use {use}, or "
            "allow_cleartext if the network path is protected otherwise"
        )


def rfc3339_to_epoch(value: str) -> str:
    """``2026-11-27T05:23:23.123456Z`` -> ``"1795757003.123456"`` exactly (no float)."""
    from datetime import datetime

    main, _, frac = value.rstrip("Z").partition(".")
    whole = int(datetime.fromisoformat(main + "+00:00").timestamp())
    return f"{whole}.{(frac or '0')[:6].ljust(6, '0')}"


def rfc3339_to_epoch_ms(value: str) -> int:
    sec, _, frac = rfc3339_to_epoch(value).partition(".")
    return int(sec) * 1000 + int(frac[:3])
