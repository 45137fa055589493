"""A generic webhook: ``POST`` the batch as JSON lines, signed.

Body (``application/x-ndjson``): each event's canonical JSON and ``\\n``.
Headers: ``X-Kroonika-Timestamp: <unix seconds>`` and
``X-Kroonika-Signature: v1=<hex HMAC-SHA256(key, timestamp + "." + body)>``;
the receiver recomputes it with the shared key, compares in constant time and
refuses stale timestamps (replay). ``Idempotency-Key`` is the first and last
event id of the batch, ``<first>..<last>``, percent-encoded (UTF-8) where an id
is not plain ASCII (a checkpoint's id holds its stream name).
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
import time
from collections.abc import Callable, Sequence
from urllib.parse import quote

import httpx
import orjson
from pydantic import SecretStr

from kroonika.audit.sinks._base import CheckpointRecord, Item
from kroonika.audit.sinks._http import HttpPoster

#: Printable ASCII left as is in ``Idempotency-Key`` (besides letters, digits and ``_.-~``).
_KEY_SAFE = ":@!$&'()*+,;=[]"


def sign(key: bytes, timestamp: str, body: bytes) -> str:
    mac = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


def check_signature(key: bytes, timestamp: str, body: bytes, header: str) -> bool:
    """For receivers (and tests): constant-time comparison."""
    return hmac.compare_digest(sign(key, timestamp, body), header)


class WebhookSink:
    def __init__(
        self,
        name: str,
        url: str,
        key: SecretStr,
        *,
        timeout: float = 10.0,
        verify: bool | ssl.SSLContext = True,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        allow_cleartext: bool = False,
        proxy: str | None = None,
    ) -> None:
        secret = key.get_secret_value().encode()
        if len(secret) < 16:
            raise ValueError("the webhook signing key must be at least 16 bytes")
        self.name = name
        self._key = secret
        self._http = HttpPoster(
            url,
            timeout=timeout,
            verify=verify,
            client=client,
            allow_cleartext=allow_cleartext,
            proxy=proxy,
        )
        self._clock = clock

    async def open(self) -> None:
        """Nothing to open: one HTTP client is reused."""

    @staticmethod
    def encode(item: Item) -> bytes:
        if isinstance(item, CheckpointRecord):
            return orjson.dumps(item.doc(), option=orjson.OPT_SORT_KEYS) + b"\n"
        return item.canonical + b"\n"

    async def send(self, batch: Sequence[Item]) -> None:
        body = b"".join(self.encode(i) for i in batch)
        timestamp = str(int(self._clock()))
        headers = {
            "Content-Type": "application/x-ndjson",
            "X-Kroonika-Timestamp": timestamp,
            "X-Kroonika-Signature": sign(self._key, timestamp, body),
            # A checkpoint's id holds the stream name, which may be any text: a header
            # value must be printable ASCII.
            "Idempotency-Key": quote(f"{batch[0].id}..{batch[-1].id}", safe=_KEY_SAFE),
        }
        await self._http.post(body, headers, auth_is_transient=True)

    async def close(self) -> None:
        await self._http.close()
