"""A TARA identity provider for development and tests: Kroonika's own mock of RIA's TARA.

Build it with :func:`create_app` from a :class:`MockConfig`, or serve it with :func:`run`
(``python -m kroonika.tara.mock --clients clients.toml``). It checks every request the way
TARA.md describes, reproduces TARA's quirks unless ``strict=True``, and has switches for
negative tests (:class:`Misbehaviour`), changeable at run time through ``/mock/config`` when
``control_api=True`` (with a bearer ``control_token``, or from loopback only without one; the
commands take the token from ``KROONIKA_MOCK_TARA_CONTROL_TOKEN``, see
:func:`control_token_from_env`).

Errors: :class:`InvalidMockConfig` (a ``ValueError``) for an unusable configuration or clients
file. Protocol errors are HTTP answers, never exceptions.
"""

from kroonika.tara.mock._app import create_app
from kroonika.tara.mock._identities import PUBLIC_IDENTITIES, PublicIdentity
from kroonika.tara.mock._server import config_from_options, control_token_from_env, run
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
    "control_token_from_env",
    "create_app",
    "load_clients",
    "run",
]
