"""What the HTTP sinks share: one httpx client, status codes mapped to retry or not, and
no ``http://`` to a host that is not loopback unless ``allow_cleartext`` (decision 0020)."""

from __future__ import annotations

import ssl
from collections.abc import Mapping

import httpx

from kroonika.audit.sinks._base import PermanentSinkError, TransientSinkError, refuse_cleartext

#: Statuses that refuse what was sent (a bad event, a batch too large): permanent, so
#: the runner narrows the batch down and dead-letters the event at fault. Every other
#: failure (busy, down, a redirect, a missing route, a wrong credential) concerns the
#: endpoint, not an event, and is retried until it, or an operator, fixes it.
REFUSES_CONTENT = frozenset({400, 413, 422})


class HttpPoster:
    """POSTs to one URL; reads at most ``max_answer`` bytes of a 2xx answer (and none of
    another), so a collector cannot make the sink hold an answer of any size. Plain
    ``http://`` only to loopback, or with ``allow_cleartext``, and never through a
    proxy from the environment."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        verify: bool | ssl.SSLContext = True,
        client: httpx.AsyncClient | None = None,
        max_answer: int = 1024 * 1024,
        allow_cleartext: bool = False,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("sink URL must be http:// or https://")
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            raise ValueError("sink URL is not a valid URL") from None
        if parsed.scheme == "http":
            refuse_cleartext(parsed.host, allow_cleartext, use="https://")
        if max_answer < 1:
            raise ValueError("max_answer must be positive")
        self.url = url
        self.max_answer = max_answer
        self._own = client is None
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            verify=verify,
            follow_redirects=False,
            # A proxy from the environment (HTTP_PROXY) would carry plain http:// in clear
            # to wherever it is, past the loopback check; https:// keeps TLS to the end.
            trust_env=parsed.scheme == "https",
        )

    async def post(
        self, content: bytes, headers: Mapping[str, str], *, auth_is_transient: bool = True
    ) -> bytes:
        """POST and return the 2xx answer's body; raise on anything else: 400, 413 and
        422 (and 401/403 when ``auth_is_transient`` is False) are permanent; every
        other status, connection errors, timeouts, an undecodable answer and one
        longer than ``max_answer`` are transient."""
        try:
            async with self._client.stream(
                "POST", self.url, content=content, headers=dict(headers)
            ) as resp:
                code = resp.status_code
                if 200 <= code < 300:
                    return await self._read(resp)
        except httpx.TimeoutException as exc:
            raise TransientSinkError(f"timeout posting to {self.host}") from exc
        except httpx.TransportError as exc:
            raise TransientSinkError(f"cannot reach {self.host}: {type(exc).__name__}") from exc
        except httpx.DecodingError as exc:  # a broken Content-Encoding
            raise TransientSinkError(f"{self.host} sent an undecodable answer") from exc
        message = f"{self.host} answered HTTP {code}"
        if code in REFUSES_CONTENT or (not auth_is_transient and code in (401, 403)):
            raise PermanentSinkError(message)
        raise TransientSinkError(message)

    async def _read(self, resp: httpx.Response) -> bytes:
        body = bytearray()
        async for chunk in resp.aiter_bytes():  # decoded: a compressed bomb is counted too
            body += chunk
            if len(body) > self.max_answer:
                raise TransientSinkError(f"{self.host} answered more than {self.max_answer} bytes")
        return bytes(body)

    @property
    def host(self) -> str:
        return httpx.URL(self.url).host

    async def close(self) -> None:
        if self._own:
            await self._client.aclose()
