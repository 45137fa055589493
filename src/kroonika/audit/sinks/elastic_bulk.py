"""Elasticsearch / OpenSearch ``_bulk`` with ECS documents.

Body (``application/x-ndjson``, newline-terminated): per event a ``create`` action
naming the index or data stream and ``_id`` = event id, then the ECS document.
``create`` with the event id makes a re-sent event a 409 conflict, which counts as
delivered, so at-least-once becomes exactly-once in the index. A 200 answer with
``"errors": true`` is read item by item: the first item that failed stops the
cursor there (429 and 5xx items are retried; other refusals are permanent and end
as dead letters); items after it are sent again and conflict harmlessly.

Elasticsearch and OpenSearch refuse an ``_id`` over 512 bytes (UTF-8). Event ids
(UUIDs) are far below; a checkpoint id holds its stream name (128 letters of up to
four bytes each), so it can be over. Such an id is sent as ``_id``
``sha256:<64 lowercase hex>``, the SHA-256 of the id's UTF-8 bytes (decision 0032):
stable, so a re-send still conflicts, and never the form of another id (event ids
are UUIDs, checkpoint ids start ``checkpoint:``). The document keeps the whole id in
``event.id``.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Sequence

import httpx
import orjson
from pydantic import SecretStr

from kroonika.audit.formats import ecs_document
from kroonika.audit.sinks._base import (
    CheckpointRecord,
    Item,
    PermanentSinkError,
    TransientSinkError,
)
from kroonika.audit.sinks._http import HttpPoster

#: The longest ``_id`` Elasticsearch and OpenSearch take, in bytes of UTF-8.
MAX_ID_BYTES = 512


def document_id(item_id: str) -> str:
    """The ``_id`` of an item: its id, or ``sha256:<hex>`` of it when over 512 bytes."""
    raw = item_id.encode()
    if len(raw) <= MAX_ID_BYTES:
        return item_id
    return "sha256:" + hashlib.sha256(raw).hexdigest()


class ElasticBulkSink:
    def __init__(
        self,
        name: str,
        url: str,
        *,
        index: str = "logs-kroonika.audit-default",
        api_key: SecretStr | None = None,
        timeout: float = 30.0,
        verify: bool | ssl.SSLContext = True,
        client: httpx.AsyncClient | None = None,
        allow_cleartext: bool = False,
        proxy: str | None = None,
    ) -> None:
        self.name = name
        endpoint = url.rstrip("/")
        if not endpoint.endswith("/_bulk"):
            endpoint += "/_bulk"
        # An _bulk answer lists every item (a few hundred bytes each), so it may be long.
        self._http = HttpPoster(
            endpoint,
            timeout=timeout,
            verify=verify,
            client=client,
            max_answer=64 * 1024 * 1024,
            allow_cleartext=allow_cleartext,
            proxy=proxy,
        )
        self.index = index
        self._api_key = api_key

    async def open(self) -> None:
        """Nothing to open: one HTTP client is reused."""

    def encode(self, item: Item) -> bytes:
        if isinstance(item, CheckpointRecord):
            doc = ecs_document(item.doc())
            doc.setdefault("kroonika", {})["checkpoint"] = item.doc()["checkpoint"]
        else:
            doc = ecs_document(item.doc)
        action = {"create": {"_id": document_id(item.id), "_index": self.index}}
        return (
            orjson.dumps(action, option=orjson.OPT_SORT_KEYS)
            + b"\n"
            + orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
            + b"\n"
        )

    async def send(self, batch: Sequence[Item]) -> None:
        headers = {"Content-Type": "application/x-ndjson"}
        if self._api_key is not None:
            headers["Authorization"] = f"ApiKey {self._api_key.get_secret_value()}"
        body = await self._http.post(b"".join(self.encode(i) for i in batch), headers)
        try:
            answer: object = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise TransientSinkError("_bulk answer is not JSON") from exc
        if not isinstance(answer, dict):
            raise TransientSinkError("_bulk answer is not a JSON object")
        if not answer.get("errors"):
            return
        items = answer.get("items")
        if not isinstance(items, list) or len(items) != len(batch):
            raise TransientSinkError("_bulk answer does not list every item")
        for pos, entry in enumerate(items):
            result = entry.get("create") if isinstance(entry, dict) else None
            status = result.get("status") if isinstance(result, dict) else None
            if not isinstance(status, int):
                raise TransientSinkError(f"_bulk item {pos} has no status", delivered=pos)
            if 200 <= status < 300 or status == 409:
                continue
            error = result.get("error") if isinstance(result, dict) else None
            reason = error.get("type", "") if isinstance(error, dict) else ""
            message = f"_bulk item refused: HTTP {status} {reason}".strip()
            if status == 429 or status >= 500:
                raise TransientSinkError(message, delivered=pos)
            raise PermanentSinkError(message, delivered=pos)

    async def close(self) -> None:
        await self._http.close()
