"""validate: the catalogue's deny-by-default check, with text neutralisation."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from enum import StrEnum
from operator import attrgetter
from typing import Any, Final, TypeVar

from kroonika.audit._counters import Counters
from kroonika.audit._errors import EventRejected, UndeclaredField
from kroonika.audit._model import (
    Actor,
    ActorType,
    AuditEvent,
    Correlation,
    DetailValue,
    Outcome,
    PersonalData,
    Severity,
    Source,
    Target,
)
from kroonika.audit.catalogue import CATALOGUE, FieldSpec
from kroonika.audit.processors._shape import clean_object, clean_threat
from kroonika.audit.processors._text import neutralise

_SHORT: Final = 128
_UA: Final = 512
_LIST_MAX: Final = 64


class Validate:
    """Check an event against the catalogue.

    ``strict=True`` (tests, development) raises :class:`UndeclaredField` for an
    undeclared or ill-typed ``details`` field; ``strict=False`` (production) drops the
    field and counts it under ``validate.dropped_field``. An unknown event type is
    always an error. Every string that can carry user input is neutralised and
    length-bounded.

    The rest of the event is checked as strictly, since the sealer trusts what
    leaves this step: enum fields must be members (or their values, ``"failure"``),
    strings strings, a port a port, a pseudonym a Fingerprinter pseudonym (never a
    clear identifier), an ``ip_prefix`` given by the caller must describe a network
    address, roles a tuple of at most 64, ``geo``/``as``/``threat`` flat and
    bounded. An ill-formed part raises :class:`EventRejected` (strict) or is dropped
    and counted under ``validate.dropped_field``; the event itself is never lost.
    """

    def __init__(self, *, strict: bool, counters: Counters) -> None:
        self._strict = strict
        self._counters = counters

    def __call__(self, event: AuditEvent) -> AuditEvent:
        spec = CATALOGUE.get(event.type)
        if spec is None:
            raise EventRejected(f"unknown event type {event.type!r}")
        details = event.details
        if details:
            fields = spec.details
            clean: dict[str, DetailValue] = {}
            for name, value in details.items():
                if value is None:
                    continue
                fs = fields.get(name)
                if fs is not None and fs.kind == "str" and type(value) is str:
                    # the common case, inline: printable and short enough passes as is
                    clean[name] = (
                        value
                        if value.isprintable() and len(value) <= fs.max_len
                        else neutralise(value, fs.max_len)
                    )
                    continue
                if (
                    fs is not None
                    and type(value) is list
                    and fs.kind == "str_list"
                    and len(value) <= _LIST_MAX
                ):
                    # the common list, inline: short printable strings, copied as is
                    max_len = fs.max_len
                    for item in value:
                        if not (type(item) is str and item.isprintable() and len(item) <= max_len):
                            break
                    else:
                        clean[name] = value.copy()
                        continue
                checked = _check(fs, value) if fs is not None else _INVALID
                if checked is _INVALID:
                    if self._strict:
                        raise UndeclaredField(event.type, name)
                    self._counters.add("validate.dropped_field")
                    continue
                clean[name] = checked  # type: ignore[assignment]
            event.details = clean
        if type(event.outcome) is not Outcome:
            event.outcome = self._member(event, "outcome", event.outcome, Outcome.UNKNOWN)
        if type(event.severity) is not Severity:
            event.severity = self._member(event, "severity", event.severity, spec.severity)
        v = event.reason
        if v is not None and not (type(v) is str and v.isprintable() and len(v) <= _SHORT):
            event.reason = self._string(event, "reason", v, _SHORT)
        actor = event.actor
        if type(actor) is not Actor:
            self._bad(event, "actor is not an Actor")
            actor = event.actor = Actor()
        if type(actor.type) is not ActorType:
            actor.type = self._member(event, "actor.type", actor.type, ActorType.ANONYMOUS)
        v = actor.subject
        if v is not None and not (type(v) is str and v.isprintable() and len(v) <= _SHORT):
            actor.subject = self._string(event, "actor.subject", v, _SHORT)
        v = actor.pseudonym
        if v is not None and (type(v) is not str or _PSEUDONYM.fullmatch(v) is None):
            # only Fingerprinter output belongs here: never a clear identifier
            self._bad(event, "actor.pseudonym is not a pseudonym")
            actor.pseudonym = None
        v = actor.client_id
        if v is not None and not (type(v) is str and v.isprintable() and len(v) <= _SHORT):
            actor.client_id = self._string(event, "actor.client_id", v, _SHORT)
        if actor.roles:
            actor.roles = self._roles(event, actor.roles)
        src = event.source
        if src is not None:
            if type(src) is not Source:
                self._bad(event, "source is not a Source")
                src = event.source = None
            else:
                self._source(event, src)
        target = event.target
        if target is not None:
            if type(target) is not Target or type(target.type) is not str:
                self._bad(event, "target is not a Target with a type")
                event.target = None
            else:
                target.type = neutralise(target.type, _SHORT)
                if target.id is not None:
                    target.id = self._string(event, "target.id", target.id, 256)
        corr = event.correlation
        if corr is not None:
            if type(corr) is not Correlation:
                self._bad(event, "correlation is not a Correlation")
                event.correlation = None
            else:
                for v in (corr.request_id, corr.trace_id, corr.flow_id, corr.session_ref):
                    if v is not None and not (
                        type(v) is str and v.isprintable() and len(v) <= _SHORT
                    ):
                        self._correlation(event, corr)  # the rare path, field by field
                        break
        personal = event.personal
        if personal is not None:
            if type(personal) is not PersonalData:
                self._bad(event, "personal is not PersonalData")
                event.personal = None
            else:
                self._personal(event, spec.personal, personal)
        if event.threat:
            threat, dropped = clean_threat(event.threat)
            if dropped:
                self._bad(event, "threat holds ill-formed matches", dropped)
            event.threat = threat
        return event

    # --- the rare paths: wrong types, odd text ---------------------------------------

    def _bad(self, event: AuditEvent, what: str, count: int = 1) -> None:
        """Raise (strict) or count (production) one ill-formed part of an event."""
        if self._strict:
            raise EventRejected(f"{event.type}: {what}")
        self._counters.add("validate.dropped_field", count)

    def _string(self, event: AuditEvent, name: str, value: object, max_len: int) -> Any:
        if type(value) is not str:
            self._bad(event, f"{name} is not a string")
            return None
        if value.isprintable() and len(value) <= max_len:
            return value
        return neutralise(value, max_len)

    def _member(self, event: AuditEvent, name: str, value: object, default: _E) -> _E:
        """An enum member from itself or its value (``"failure"``), else ``default``."""
        cls = type(default)
        if isinstance(value, str):
            try:
                return cls(value)
            except ValueError:
                pass
        self._bad(event, f"{name} {value!r:.40} is not a {cls.__name__}")
        return default

    def _correlation(self, event: AuditEvent, corr: Correlation) -> None:
        for name in _CORRELATION_FIELDS:
            v = getattr(corr, name)
            if v is not None and not (type(v) is str and v.isprintable() and len(v) <= _SHORT):
                setattr(corr, name, self._string(event, f"correlation.{name}", v, _SHORT))

    def _roles(self, event: AuditEvent, roles: object) -> tuple[str, ...]:
        if not isinstance(roles, tuple | list):  # a bare string would become letters
            self._bad(event, "actor.roles is not a tuple of strings")
            return ()
        out = tuple(neutralise(r, _SHORT) for r in roles if type(r) is str)
        dropped = len(roles) - len(out)
        if len(out) > _LIST_MAX:
            dropped += len(out) - _LIST_MAX
            out = out[:_LIST_MAX]
        if dropped:
            self._bad(event, f"actor.roles: {dropped} not kept", dropped)
        return out

    def _source(self, event: AuditEvent, src: Source) -> None:
        v = src.ip
        if v is not None and not (type(v) is str and v.isprintable() and len(v) <= _IP_TEXT):
            src.ip = self._string(event, "source.ip", v, _IP_TEXT)
        if src.ip_prefix is not None:
            # the caller says the address is already a network: check that it is one
            prefix = src.ip_prefix
            if not (type(prefix) is int and src.ip is not None and _network_ok(src.ip, prefix)):
                self._bad(event, "source.ip / ip_prefix is not a network address")
                src.ip = src.ip_prefix = None
        port = src.port
        if port is not None and not (type(port) is int and 0 <= port <= 65535):
            self._bad(event, "source.port is not a port number")
            src.port = None
        v = src.user_agent
        if v is not None and not (type(v) is str and v.isprintable() and len(v) <= _UA):
            src.user_agent = self._string(event, "source.user_agent", v, _UA)
        if src.geo is not None or src.asn is not None or src.proxy is not None:
            clean_enrichment(src, lambda what, n: self._bad(event, what, n))

    def _personal(self, event: AuditEvent, allowed: frozenset[str], p: PersonalData) -> None:
        for name, v in zip(_PERSONAL_FIELDS, _personal_values(p), strict=True):
            if v is not None and not (
                name in allowed and type(v) is str and v.isprintable() and len(v) <= 256
            ):
                break
        else:
            return  # the common case: nothing to drop or neutralise
        for name in _PERSONAL_FIELDS:
            v = getattr(p, name)
            if v is None:
                continue
            if name not in allowed:
                if self._strict:
                    raise EventRejected(f"{event.type} may not carry personal data {name}")
                self._counters.add("validate.dropped_personal")
                setattr(p, name, None)
            elif not (type(v) is str and v.isprintable() and len(v) <= 256):
                setattr(p, name, self._string(event, f"personal.{name}", v, 256))


def clean_enrichment(src: Source, bad: Callable[[str, int], None]) -> None:
    """Bring ``source.geo``, ``source.as`` and ``source.proxy`` into shape, reporting
    what had to go through ``bad(what, count)``."""
    geo, dropped = clean_object(src.geo, ints=False)
    if dropped:
        bad("source.geo holds ill-formed entries", dropped)
    src.geo = geo
    asn, dropped = clean_object(src.asn, ints=True)
    if dropped:
        bad("source.as holds ill-formed entries", dropped)
    src.asn = asn
    if src.proxy is not None and type(src.proxy) is not bool:
        bad("source.proxy is not a boolean", 1)
        src.proxy = None


def _network_ok(ip: str, prefix: int) -> bool:
    """``ip`` is the network address of a ``/prefix`` (or anonymise_ip's mark for an
    unparsable address, re-emitted from a stored record)."""
    if ip == "invalid":
        return prefix == 0
    try:
        return ipaddress.ip_network(f"{ip}/{prefix}", strict=True).prefixlen == prefix
    except ValueError:
        return False


_E = TypeVar("_E", bound=StrEnum)
_IP_TEXT: Final = 64
_PSEUDONYM: Final = re.compile(r"[A-Za-z0-9._-]{1,32}:[A-Za-z0-9_-]{8,86}")
_PERSONAL_FIELDS: Final = ("personal_code", "given_name", "family_name", "email", "phone", "ip")
_personal_values: Final = attrgetter(*_PERSONAL_FIELDS)


_CORRELATION_FIELDS: Final = ("request_id", "trace_id", "flow_id", "session_ref")
_INVALID: Final = object()


def _check(fs: FieldSpec, value: object) -> object:
    kind = fs.kind
    if kind == "str":
        if type(value) is not str:
            return _INVALID
        if value.isprintable() and len(value) <= fs.max_len:
            return value
        return neutralise(value, fs.max_len)
    if kind == "int":
        return value if type(value) is int and -(2**53) < value < 2**53 else _INVALID
    if kind == "bool":
        return value if type(value) is bool else _INVALID
    if not isinstance(value, list | tuple) or len(value) > _LIST_MAX:
        return _INVALID
    if kind == "str_list":
        max_len = fs.max_len
        out: list[str] = []
        for v in value:
            if type(v) is not str:
                return _INVALID
            out.append(v if v.isprintable() and len(v) <= max_len else neutralise(v, max_len))
        return out
    if all(type(v) is int and -(2**53) < v < 2**53 for v in value):
        return list(value)
    return _INVALID
