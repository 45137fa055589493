"""TLS client contexts that never write their session keys (decision 0032).

Python's :func:`ssl.create_default_context` (which httpx uses too) sets
``keylog_filename`` from the ``SSLKEYLOGFILE`` environment variable: every
connection then appends its secrets to that file, and anyone holding the file and a
capture of the traffic can read the events, tokens and credentials that went over
it. Every context Kroonika makes goes through :func:`without_key_log`; the service
also refuses to start in production with the variable set (it cannot reach the
contexts libraries make for themselves) and warns once in development.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping

#: The variable OpenSSL-based tools (and Python's ssl) read to log TLS secrets.
KEY_LOG_VARIABLE = "SSLKEYLOGFILE"


def without_key_log(ctx: ssl.SSLContext) -> ssl.SSLContext:
    """``ctx`` with key logging off (whatever the environment said when it was made)."""
    # typeshed types the attribute str; CPython takes None to turn logging off.
    ctx.keylog_filename = None  # type: ignore[assignment]
    return ctx


def client_context(cafile: str | None = None, capath: str | None = None) -> ssl.SSLContext:
    """A client context that verifies the server and its name, trusting ``cafile`` /
    ``capath`` or else the process's store (OpenSSL's default paths, which
    ``SSL_CERT_FILE``/``SSL_CERT_DIR`` name when set): what
    :func:`ssl.create_default_context` makes, without ever opening a key log file
    (that function creates the file named by ``SSLKEYLOGFILE`` as it builds)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname
    if cafile is not None or capath is not None:
        ctx.load_verify_locations(cafile, capath)
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    return without_key_log(ctx)


def trust_store_context(environ: Mapping[str, str]) -> ssl.SSLContext:
    """:func:`client_context` on the trust store httpx picks when it reads the
    environment: ``SSL_CERT_FILE``, else ``SSL_CERT_DIR``, else certifi's bundle."""
    import certifi

    if environ.get("SSL_CERT_FILE"):
        return client_context(cafile=environ["SSL_CERT_FILE"])
    if environ.get("SSL_CERT_DIR"):
        return client_context(capath=environ["SSL_CERT_DIR"])
    return client_context(cafile=certifi.where())


def key_log_requested(environ: Mapping[str, str]) -> bool:
    """Whether ``environ`` asks TLS libraries to log their session keys."""
    return bool(environ.get(KEY_LOG_VARIABLE, "").strip())
