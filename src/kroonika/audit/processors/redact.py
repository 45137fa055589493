"""redact: the second safety net that removes secret-shaped strings.

The first line of defence is the catalogue (no field exists for a secret). This
step scans every string that could still carry one by mistake (details, reason,
target id, user agent, client id, roles, request and trace ids) for JWT-, key-,
secret- and personal-code-shaped content, replaces what it finds with
``[REDACTED:<kind>]`` and counts it under ``redact.<kind>``. Personal codes have
their place: ``Actor.subject`` (pseudonymised) and ``PersonalData`` (encrypted).
"""

from __future__ import annotations

import re
from typing import Final

from kroonika.audit._counters import Counters
from kroonika.audit._model import AuditEvent

_SECRET_SHAPES: Final = re.compile(
    r"(?P<jwt>eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*)"
    r"|(?P<private_key>-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END[^-]*-----|$))"
    r"|(?P<authorization>(?i:\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{8,})"
    r"|(?P<assignment>(?i:\b(?:password|passwd|secret|client_secret|token|access_token|id_token"
    r"|refresh_token|code|state|nonce|session|sid|cookie|api_key|apikey)\s*[=:]\s*)[^\s&;,]{4,})"
    r"|(?P<personal_code>\b(?:[A-Z]{2})?[1-6]\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{4}\b)"
    r"|(?P<secret>[A-Za-z0-9_-]{32,})"
)
_MIN_LEN: Final = 12
# What every shape above needs, cheap to look for: "eyJ" (JWT), five dashes (PEM), a
# space after bearer/basic, "=" or ":" (assignments), eleven digits in a row (personal
# code); only the bare random secret needs nothing but 32 characters. A string shorter
# than that without any of these cannot match, and skips the full pattern (2 µs on
# a 14-character request id, against 0.5 µs for this one). A property test keeps the
# two in step.
_MAYBE_SECRET: Final = re.compile(r"eyJ|-----|[=:\s]|\d{11}")
_SECRET_MIN: Final = 32


def _looks_random(token: str) -> bool:
    """32+ URL-safe characters mixing upper case, lower case and digits: a random
    secret (``secrets.token_urlsafe``), not a word, a hex digest or a UUID."""
    return (
        not token.islower()
        and not token.isupper()
        and any(c.isdigit() for c in token)
        and not token.isdigit()
    )


class Redact:
    """Replace secret-shaped substrings; count each removal by kind."""

    def __init__(self, counters: Counters, *, cache_size: int = 8192) -> None:
        self._counters = counters
        # Values already found clean (user agents, reason codes repeat a lot). Only
        # clean values are remembered, so no secret is ever kept here.
        self._clean: set[str] = set()
        self._cache_size = cache_size

    def scrub(self, value: str) -> str:
        if len(value) < _MIN_LEN or value in self._clean:
            return value
        if len(value) < _SECRET_MIN and _MAYBE_SECRET.search(value) is None:
            return value  # unique values such as request ids: not worth caching
        if _SECRET_SHAPES.search(value) is None:
            if len(self._clean) >= self._cache_size:
                self._clean.clear()
            self._clean.add(value)
            return value
        return _SECRET_SHAPES.sub(self._replace, value)

    def _replace(self, match: re.Match[str]) -> str:
        kind = match.lastgroup or "secret"
        if kind == "secret" and not _looks_random(match.group()):
            return match.group()
        self._counters.add(f"redact.{kind}")
        return f"[REDACTED:{kind}]"

    def __call__(self, event: AuditEvent) -> AuditEvent:
        scrub = self.scrub
        details = event.details
        for name, value in details.items():
            if type(value) is str:
                if len(value) >= _MIN_LEN:
                    details[name] = scrub(value)
            elif type(value) is list and value and type(value[0]) is str:
                details[name] = [scrub(v) for v in value if type(v) is str]
        if event.reason is not None:
            event.reason = scrub(event.reason)
        if event.target is not None and event.target.id is not None:
            event.target.id = scrub(event.target.id)
        if event.source is not None and event.source.user_agent is not None:
            event.source.user_agent = scrub(event.source.user_agent)
        actor = event.actor
        if actor.client_id is not None:
            actor.client_id = scrub(actor.client_id)
        if actor.roles:
            actor.roles = tuple(scrub(r) for r in actor.roles)
        corr = event.correlation
        if corr is not None:  # request ids come from request headers
            if corr.request_id is not None:
                corr.request_id = scrub(corr.request_id)
            if corr.trace_id is not None:
                corr.trace_id = scrub(corr.trace_id)
        return event
