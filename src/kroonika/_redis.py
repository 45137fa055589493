"""Redis clients whose TLS writes no session keys (decision 0034).

redis-py makes the context of a ``rediss://`` connection itself, with
:func:`ssl.create_default_context`, which opens the file named by ``SSLKEYLOGFILE`` and
appends every connection's secrets to it; its synchronous client takes no context from
the caller. The connection classes here make that context with
:func:`kroonika.audit._tls.client_context` instead, from the same ``ssl_*`` options (the
URL's query parameters: ``ssl_ca_certs``, ``ssl_cert_reqs``, ``ssl_check_hostname``,
...), so that a URL means what it meant with redis-py's own classes. OCSP checking
(``ssl_validate_ocsp*``), which needs redis-py's own handshake, is refused.

Every Redis client of Kroonika is made here: :func:`redis_client` (the list notices, the
shared detector windows) and :func:`async_redis_options` (the rate limiter's storage,
made by limits).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import redis
import redis.asyncio.connection as async_connection
import redis.connection as sync_connection

from kroonika.audit._tls import client_context

if TYPE_CHECKING:
    import socket

#: the URL schemes of Redis over TLS (``async+`` is the rate limiter's, for limits)
TLS_SCHEMES = frozenset({"rediss", "async+rediss"})


def uses_tls(url: str) -> bool:
    return urlsplit(url).scheme.lower() in TLS_SCHEMES


def tls_context(
    *,
    cert_reqs: ssl.VerifyMode | int,
    check_hostname: bool,
    certfile: str | None = None,
    keyfile: str | None = None,
    password: Any = None,
    ca_certs: str | None = None,
    ca_path: str | None = None,
    ca_data: Any = None,
    include_flags: Iterable[ssl.VerifyFlags] | None = None,
    exclude_flags: Iterable[ssl.VerifyFlags] | None = None,
    min_version: ssl.TLSVersion | int | None = None,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    """What redis-py builds from its ``ssl_*`` options (the process's trust store plus
    any CA given, the client certificate, the verify mode and flags), without a key log."""
    ctx = client_context()
    if ca_certs is not None or ca_path is not None or ca_data is not None:
        ctx.load_verify_locations(cafile=ca_certs, capath=ca_path, cadata=ca_data)
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.VerifyMode(cert_reqs)
    for flag in include_flags or ():
        ctx.verify_flags |= flag
    for flag in exclude_flags or ():
        ctx.verify_flags &= ~flag
    if certfile or keyfile:
        ctx.load_cert_chain(certfile=certfile or "", keyfile=keyfile, password=password)
    if min_version is not None:
        ctx.minimum_version = ssl.TLSVersion(min_version)
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


class KeylessSSLConnection(sync_connection.SSLConnection):
    """redis-py's TLS connection with the context made by :func:`tls_context`."""

    def _wrap_socket_with_ssl(self, sock: socket.socket) -> ssl.SSLSocket:
        if self.ssl_validate_ocsp or self.ssl_validate_ocsp_stapled:
            raise redis.RedisError("OCSP checking of the Redis server is not supported")
        ctx = tls_context(
            cert_reqs=self.cert_reqs,
            check_hostname=self.check_hostname,
            certfile=self.certfile,
            keyfile=self.keyfile,
            password=self.certificate_password,
            ca_certs=self.ca_certs,
            ca_path=self.ca_path,
            ca_data=self.ca_data,
            include_flags=self.ssl_include_verify_flags,
            exclude_flags=self.ssl_exclude_verify_flags,
            min_version=self.ssl_min_version,
            ciphers=self.ssl_ciphers,
        )
        return ctx.wrap_socket(sock, server_hostname=self.host)


class _KeylessContext(async_connection.RedisSSLContext):
    __slots__ = ()

    def get(self) -> ssl.SSLContext:
        if self.context is None:
            self.context = tls_context(
                cert_reqs=self.cert_reqs,
                check_hostname=self.check_hostname,
                certfile=self.certfile,
                keyfile=self.keyfile,
                password=self.password,
                ca_certs=self.ca_certs,
                ca_path=self.ca_path,
                ca_data=self.ca_data,
                include_flags=self.include_verify_flags,
                exclude_flags=self.exclude_verify_flags,
                min_version=self.min_version,
                ciphers=self.ciphers,
            )
        return self.context


class AsyncKeylessSSLConnection(async_connection.SSLConnection):
    """redis-py's asyncio TLS connection with the context made by :func:`tls_context`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # the options as redis-py read them (cert_reqs already a VerifyMode), in our class
        keyless = _KeylessContext.__new__(_KeylessContext)
        for name in async_connection.RedisSSLContext.__slots__:
            setattr(keyless, name, getattr(self.ssl_context, name))
        self.ssl_context = keyless


def redis_client(url: str, **options: Any) -> redis.Redis:
    """``redis.Redis.from_url(url, **options)``; over TLS (``rediss://``) with
    :class:`KeylessSSLConnection`. Any other scheme keeps redis-py's own class (a
    ``connection_class`` given to ``from_url`` replaces the one the URL implies)."""
    if uses_tls(url):
        options["connection_class"] = KeylessSSLConnection
    return redis.Redis.from_url(url, **options)


def async_redis_options(url: str, **options: Any) -> dict[str, Any]:
    """The options of an asyncio client made from ``url`` (limits passes them to
    ``redis.asyncio.Redis.from_url``): ``options`` as given, or over TLS a connection pool
    of :class:`AsyncKeylessSSLConnection` made with them (the asyncio ``from_url`` lets
    the URL's class win over a ``connection_class`` option; a pool it takes as it is)."""
    if not uses_tls(url):
        return options
    kwargs = {**options, **async_connection.parse_url(url.removeprefix("async+"))}
    kwargs["connection_class"] = AsyncKeylessSSLConnection
    return {"connection_pool": async_connection.ConnectionPool(**kwargs)}
