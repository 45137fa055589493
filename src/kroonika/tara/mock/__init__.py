"""A TARA identity provider for development and tests: Kroonika's own mock of RIA's TARA.

Build it with :func:`create_app` from a :class:`MockConfig`, or serve it with :func:`run`
(``python -m kroonika.tara.mock --clients clients.toml``). It checks every request the way
TARA.md describes, reproduces TARA's quirks unless ``strict=True``, and has switches for
negative tests (:class:`Misbehaviour`), changeable at run time through ``/mock/config`` when
``control_api=True``.

Errors: :class:`InvalidMockConfig` (a ``ValueError``) for an unusable configuration or clients
file. Protocol errors are HTTP answers, never exceptions.
"""

from kroonika.tara.mock._app import create_app
from kroonika.tara.mock._identities import PUBLIC_IDENTITIES, PublicIdentity
from kroonika.tara.mock._server import config_from_options, run
from kroonika.tara.mock.config import (
    AuthMethod,
    Clock,
    InvalidMockConfig,
    Misbehaviour,
    MockConfig,
    RegisteredClient,
    load_clients,
)

__all__ = [
    "PUBLIC_IDENTITIES",
    "AuthMethod",
    "Clock",
    "InvalidMockConfig",
    "Misbehaviour",
    "MockConfig",
    "PublicIdentity",
    "RegisteredClient",
    "config_from_options",
    "create_app",
    "load_clients",
    "run",
]
