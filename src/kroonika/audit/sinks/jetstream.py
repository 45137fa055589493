"""NATS JetStream: one message per event on ``<prefix>.<category>``.

Header ``Nats-Msg-Id`` is the event id (``checkpoint:<stream>:<size>`` for a
checkpoint, published on ``<prefix>.checkpoint``), so within the stream's
duplicate window the server drops a re-sent event: at-least-once delivery
becomes exactly-once in the stream. Each publish waits for the server's
acknowledgement before the next, so order per stream is kept; ``delivered`` on
a failure says how many were acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from typing import Any

import orjson

from kroonika.audit.sinks._base import CheckpointRecord, Item, TransientSinkError

_TOKEN = re.compile(r"[^A-Za-z0-9_-]")


async def _quiet(exc: Exception) -> None:
    """nats-py logs every connection error itself; the runner reports failures."""
    del exc


class JetStreamSink:
    def __init__(
        self,
        name: str,
        servers: str | list[str] = "nats://127.0.0.1:4222",
        *,
        subject_prefix: str = "kroonika.audit",
        timeout: float = 5.0,
        connect_options: dict[str, Any] | None = None,
    ) -> None:
        if not subject_prefix or any(c in subject_prefix for c in " *>\t\r\n"):
            raise ValueError("subject_prefix must be a plain NATS subject")
        self.name = name
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        self.prefix = subject_prefix
        self.timeout = timeout
        self._options = connect_options or {}
        self._nc: Any = None
        self._js: Any = None
        self.duplicates = 0

    def subject(self, item: Item) -> str:
        if isinstance(item, CheckpointRecord):
            return f"{self.prefix}.checkpoint"
        return f"{self.prefix}.{_TOKEN.sub('_', item.category) or 'unknown'}"

    @staticmethod
    def payload(item: Item) -> bytes:
        if isinstance(item, CheckpointRecord):
            return orjson.dumps(item.doc(), option=orjson.OPT_SORT_KEYS)
        return item.canonical

    async def open(self) -> None:
        """Connected lazily, on the first send."""

    async def _connect(self) -> Any:
        import nats
        from nats.errors import Error as NatsError

        if self._nc is not None and self._nc.is_connected:
            return self._js
        await self.close()
        try:
            self._nc = await asyncio.wait_for(
                nats.connect(
                    servers=self.servers,
                    connect_timeout=self.timeout,
                    max_reconnect_attempts=1,
                    allow_reconnect=False,
                    error_cb=_quiet,
                    **self._options,
                ),
                self.timeout * 2,
            )
        except (OSError, TimeoutError, NatsError) as exc:
            self._nc = None
            raise TransientSinkError(f"cannot connect to NATS: {type(exc).__name__}") from exc
        self._js = self._nc.jetstream(timeout=self.timeout)
        return self._js

    async def send(self, batch: Sequence[Item]) -> None:
        from nats.errors import Error as NatsError

        js = await self._connect()
        for pos, item in enumerate(batch):
            try:
                ack = await js.publish(
                    self.subject(item),
                    self.payload(item),
                    timeout=self.timeout,
                    headers={"Nats-Msg-Id": item.id},
                )
            except (OSError, TimeoutError, NatsError) as exc:
                # No stream bound to the subject, no responders or a timeout: all
                # fixable on the server side, so retried rather than dead-lettered.
                raise TransientSinkError(
                    f"JetStream publish failed: {type(exc).__name__}: {exc}", delivered=pos
                ) from exc
            if getattr(ack, "duplicate", False):
                self.duplicates += 1

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                await nc.close()
