"""Redis clients whose TLS writes no session keys (decision 0034).

redis-py makes the context of a ``rediss://`` connection itself, with
:func:`ssl.create_default_context`, which opens the file named by ``SSLKEYLOGFILE`` and
appends every connection's secrets to it; neither of its clients takes a context from
the caller (redis-py 8.1; upstream's ``ssl_context`` option is not released). The
connection classes here make that context with
:func:`kroonika.audit._tls.client_context` instead, from the same ``ssl_*`` options (the
URL's query parameters: ``ssl_ca_certs``, ``ssl_cert_reqs``, ``ssl_check_hostname``,
...), so that a URL means what it meant with redis-py's own classes. OCSP checking
(``ssl_validate_ocsp*``), which needs redis-py's own handshake, is refused.

What this leans on that is not redis-py's public API (decision 0034, 2026-11-28): the
synchronous class overrides the private ``SSLConnection._wrap_socket_with_ssl(sock)``;
the asyncio class replaces the ``RedisSSLContext`` its connection keeps in
``ssl_context`` with one whose public ``get()`` builds the context; and both read every
``ssl_*`` option themselves, so an option a later release adds would be dropped.
:func:`check_redis_py` checks all three before a TLS client is made and raises
:class:`RedisTlsUnsupported` naming what changed, so an upgrade fails loudly (in the
tests and at start) rather than quietly going back to redis-py's own context.

Every Redis client of Kroonika is made here: :func:`redis_client` (the list notices, the
shared detector windows) and :func:`async_redis_options` (the rate limiter's storage,
made by limits).
"""

from __future__ import annotations

import inspect
import ssl
from collections.abc import Callable, Iterable
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


#: The ``ssl_*`` options of redis-py's asyncio TLS connection, each of which
#: :func:`tls_context` honours (as the ``RedisSSLContext`` field without ``ssl_``).
ASYNC_SSL_OPTIONS = frozenset(
    {
        "ssl_keyfile",
        "ssl_certfile",
        "ssl_cert_reqs",
        "ssl_include_verify_flags",
        "ssl_exclude_verify_flags",
        "ssl_ca_certs",
        "ssl_ca_data",
        "ssl_ca_path",
        "ssl_check_hostname",
        "ssl_min_version",
        "ssl_ciphers",
        "ssl_password",
    }
)
#: Those of the synchronous one: the same, and OCSP checking, which is refused.
SYNC_SSL_OPTIONS = ASYNC_SSL_OPTIONS | {
    "ssl_validate_ocsp",
    "ssl_validate_ocsp_stapled",
    "ssl_ocsp_context",
    "ssl_ocsp_expected_cert",
}
_CONTEXT_FIELDS = tuple(sorted(name.removeprefix("ssl_") for name in ASYNC_SSL_OPTIONS))


class RedisTlsUnsupported(RuntimeError):
    """The installed redis-py no longer works the way :mod:`kroonika._redis` builds its
    TLS context into: no Redis client over TLS is made (see :func:`check_redis_py`)."""


def uses_tls(url: str) -> bool:
    return urlsplit(url).scheme.lower() in TLS_SCHEMES


def check_redis_py() -> None:
    """Raise :class:`RedisTlsUnsupported` unless redis-py still (1) has
    ``SSLConnection._wrap_socket_with_ssl(self, sock)`` and calls it from ``_connect``,
    and (2) takes exactly the ``ssl_*`` options the classes here translate, in both
    clients and in the asyncio ``RedisSSLContext``."""
    problems: list[str] = []
    sync_class = sync_connection.SSLConnection
    hook = sync_class.__dict__.get("_wrap_socket_with_ssl")
    if not callable(hook) or _parameters(hook) != ["self", "sock"]:
        problems.append("SSLConnection._wrap_socket_with_ssl(self, sock) is gone or changed")
    else:
        connect = getattr(sync_class.__dict__.get("_connect"), "__code__", None)
        if connect is None or "_wrap_socket_with_ssl" not in connect.co_names:
            problems.append("SSLConnection._connect no longer calls _wrap_socket_with_ssl")
    inits = (
        ("redis.connection.SSLConnection", sync_class.__init__, SYNC_SSL_OPTIONS, ""),
        (
            "redis.asyncio.connection.SSLConnection",
            async_connection.SSLConnection.__init__,
            ASYNC_SSL_OPTIONS,
            "",
        ),
        (
            "redis.asyncio.connection.RedisSSLContext",
            async_connection.RedisSSLContext.__init__,
            ASYNC_SSL_OPTIONS,
            "ssl_",
        ),
    )
    for where, init, known, prefix in inits:
        taken = {prefix + p for p in _parameters(init)[1:]}
        differ = {p for p in taken if p.startswith("ssl_")} ^ known
        if differ:
            names = ", ".join(sorted(differ))
            problems.append(f"{where} takes other ssl options than Kroonika translates ({names})")
    if problems:
        raise RedisTlsUnsupported(
            f"redis-py {redis.__version__}: {'; '.join(problems)}: Kroonika cannot build "
            "its own TLS context for Redis (no session key log, decision 0034); use the "
            "redis-py version of its lock file, or review kroonika._redis"
        )


def _parameters(function: Callable[..., Any]) -> list[str]:
    return [
        p.name
        for p in inspect.signature(function).parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


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
    """redis-py's TLS connection with the context made by :func:`tls_context`: it
    overrides the private method redis-py wraps its socket in (there is no public way to
    give it a context), which :func:`check_redis_py` checks is still there and called."""

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
    """redis-py's asyncio TLS options, whose ``get()`` (what the connection calls for
    its context) builds the context with :func:`tls_context`."""

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
        # the options as redis-py read them (defaults applied, cert_reqs a VerifyMode),
        # given to the constructor of ours (the fields are ASYNC_SSL_OPTIONS, checked)
        theirs = self.ssl_context
        self.ssl_context = _KeylessContext(
            **{name: getattr(theirs, name) for name in _CONTEXT_FIELDS}
        )


def redis_client(url: str, **options: Any) -> redis.Redis:
    """``redis.Redis.from_url(url, **options)``; over TLS (``rediss://``) with
    :class:`KeylessSSLConnection`. Any other scheme keeps redis-py's own class (a
    ``connection_class`` given to ``from_url`` replaces the one the URL implies)."""
    if uses_tls(url):
        check_redis_py()
        options["connection_class"] = KeylessSSLConnection
    return redis.Redis.from_url(url, **options)


def async_redis_options(url: str, **options: Any) -> dict[str, Any]:
    """The options of an asyncio client made from ``url`` (limits passes them to
    ``redis.asyncio.Redis.from_url``): ``options`` as given, or over TLS a connection pool
    of :class:`AsyncKeylessSSLConnection` made with them (the asyncio ``from_url`` lets
    the URL's class win over a ``connection_class`` option; a pool it takes as it is)."""
    if not uses_tls(url):
        return options
    check_redis_py()
    kwargs = {**options, **async_connection.parse_url(url.removeprefix("async+"))}
    kwargs["connection_class"] = AsyncKeylessSSLConnection
    return {"connection_pool": async_connection.ConnectionPool(**kwargs)}
