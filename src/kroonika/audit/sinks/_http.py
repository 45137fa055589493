"""What the HTTP sinks share: one httpx client, status codes mapped to retry or not,
no ``http://`` to a host that is not loopback unless ``allow_cleartext`` (decision 0020),
and nothing from the environment deciding where the events go (decision 0030)."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping

import httpx

from kroonika.audit._tls import trust_store_context, without_key_log
from kroonika.audit.sinks._base import PermanentSinkError, TransientSinkError, refuse_cleartext

#: Statuses that refuse what was sent (a bad event, a batch too large): permanent, so
#: the runner narrows the batch down and dead-letters the event at fault. Every other
#: failure (busy, down, a redirect, a missing route, a wrong credential) concerns the
#: endpoint, not an event, and is retried until it, or an operator, fixes it.
REFUSES_CONTENT = frozenset({400, 413, 422})


class HttpPoster:
    """POSTs to one URL; reads at most ``max_answer`` bytes of a 2xx answer (and none of
    another), so a collector cannot make the sink hold an answer of any size. Plain
    ``http://`` only to loopback, or with ``allow_cleartext``.

    The process environment decides nothing but whom TLS trusts: no proxy from
    ``HTTPS_PROXY``/``ALL_PROXY`` (it would route the events wherever the process
    inherited it to), no ``.netrc`` credential (httpx 0.28 no longer reads it, and
    ``trust_env`` off keeps it so). A proxy is given by name, ``proxy`` (``http://`` or
    ``https://``, without a credential), for an ``https://`` URL only: it tunnels TLS
    to the collector (``CONNECT``), where for plain ``http://`` it would read every
    event. With ``verify=True`` the trust store is the process's, as for every TLS
    client of this service: ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set (OpenSSL
    reads them too), else the bundled one."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        verify: bool | ssl.SSLContext = True,
        client: httpx.AsyncClient | None = None,
        max_answer: int = 1024 * 1024,
        allow_cleartext: bool = False,
        proxy: str | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("sink URL must be http:// or https://")
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            raise ValueError("sink URL is not a valid URL") from None
        if parsed.scheme == "http":
            refuse_cleartext(parsed.host, allow_cleartext, use="https://")
        if proxy is not None:
            check_proxy(proxy, parsed)
        if max_answer < 1:
            raise ValueError("max_answer must be positive")
        self.url = url
        self.max_answer = max_answer
        self._own = client is None
        self._client = client or _client(parsed, timeout, verify, proxy)

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


def _client(
    url: httpx.URL, timeout: float, verify: bool | ssl.SSLContext, proxy: str | None
) -> httpx.AsyncClient:
    if verify is True and url.scheme == "https":
        # The trust store httpx would pick with trust_env (SSL_CERT_FILE, SSL_CERT_DIR,
        # else certifi's bundle): not reading proxies must not change whom TLS trusts.
        try:
            verify = trust_store_context(os.environ)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(
                f"the trust store named by SSL_CERT_FILE or SSL_CERT_DIR cannot be used "
                f"({type(exc).__name__}): fix it, or give the sink a ca_file"
            ) from None
    elif verify is True:  # plain http://: never used (no redirects are followed)
        verify = trust_store_context({})
    elif verify is False:  # tls_verify=false (development only)
        verify = httpx.create_ssl_context(verify=False)
    # Whoever made the context, it logs no session keys (SSLKEYLOGFILE, decision 0032).
    verify = without_key_log(verify)
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        verify=verify,
        follow_redirects=False,
        # No proxy from the environment: HTTP_PROXY would carry plain http:// in clear
        # past the loopback check, HTTPS_PROXY route the events to a host nobody
        # configured for them. A proxy is named in the sink's settings (decision 0030).
        trust_env=False,
        proxy=proxy,
    )


def check_proxy(proxy: str, target: httpx.URL) -> None:
    """:class:`ValueError` for a proxy that cannot be used safely; never quotes it."""
    if target.scheme != "https":
        raise ValueError(
            "a proxy would read the events of a plain http:// URL: use https:// with a proxy"
        )
    try:
        url = httpx.URL(proxy)
    except httpx.InvalidURL:
        raise ValueError("proxy is not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("proxy must be http:// or https:// and name a host")
    if url.userinfo:
        raise ValueError(
            "proxy must not hold a credential (proxy authentication is not supported: "
            "let the proxy allow this service's address)"
        )
