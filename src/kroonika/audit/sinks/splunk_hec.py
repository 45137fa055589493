"""Splunk HTTP Event Collector: ``POST /services/collector/event``.

Body: the batch as JSON event objects back to back (HEC's batch format), each
``{"event": <native event>, "host": .., "source": .., "sourcetype": .., "time":
<epoch seconds with microseconds>}`` (plus ``index`` when configured). Header
``Authorization: Splunk <token>``. A 400 refuses the data: permanent, and the
runner re-sends the batch one event at a time to find the event at fault;
429/503 (busy), 5xx and auth errors are retried.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence

import httpx
import orjson
from pydantic import SecretStr

from kroonika.audit.sinks._base import (
    CheckpointRecord,
    Item,
    rfc3339_to_epoch,
)
from kroonika.audit.sinks._http import HttpPoster


class SplunkHecSink:
    def __init__(
        self,
        name: str,
        url: str,
        token: SecretStr,
        *,
        index: str | None = None,
        source: str = "kroonika",
        sourcetype: str = "kroonika:audit",
        host: str | None = None,
        timeout: float = 10.0,
        verify: bool | ssl.SSLContext = True,
        client: httpx.AsyncClient | None = None,
        allow_cleartext: bool = False,
        proxy: str | None = None,
    ) -> None:
        if not token.get_secret_value():
            raise ValueError("a HEC token is required")
        endpoint = url.rstrip("/")
        if not endpoint.endswith("/services/collector/event"):
            endpoint += "/services/collector/event"
        self.name = name
        self._http = HttpPoster(
            endpoint,
            timeout=timeout,
            verify=verify,
            client=client,
            allow_cleartext=allow_cleartext,
            proxy=proxy,
        )
        self._token = token
        meta: dict[str, str] = {
            "host": host or socket.gethostname().split(".")[0] or "-",
            "source": source,
            "sourcetype": sourcetype,
        }
        if index is not None:
            meta["index"] = index
        self._meta = meta

    async def open(self) -> None:
        """Nothing to open: one HTTP client is reused."""

    def encode(self, item: Item) -> bytes:
        if isinstance(item, CheckpointRecord):
            event = orjson.dumps(item.doc(), option=orjson.OPT_SORT_KEYS)
        else:
            event = item.canonical
        meta = orjson.dumps(self._meta, option=orjson.OPT_SORT_KEYS)
        # {"event":<raw>,<meta...>,"time":<epoch>} with keys in sorted order
        return (
            b'{"event":'
            + event
            + b","
            + meta[1:-1]
            + b',"time":'
            + rfc3339_to_epoch(item.time).encode()
            + b"}"
        )

    async def send(self, batch: Sequence[Item]) -> None:
        headers = {
            "Authorization": f"Splunk {self._token.get_secret_value()}",
            "Content-Type": "application/json",
        }
        await self._http.post(b"".join(self.encode(i) for i in batch), headers)

    async def close(self) -> None:
        await self._http.close()
