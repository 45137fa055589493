"""validate: the catalogue's deny-by-default check, with text neutralisation."""

from __future__ import annotations

from typing import Final

from kroonika.audit._counters import Counters
from kroonika.audit._errors import EventRejected, UndeclaredField
from kroonika.audit._model import AuditEvent, DetailValue
from kroonika.audit.catalogue import CATALOGUE, FieldSpec
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
                checked = _check(fs, value) if fs is not None else _INVALID
                if checked is _INVALID:
                    if self._strict:
                        raise UndeclaredField(event.type, name)
                    self._counters.add("validate.dropped_field")
                    continue
                clean[name] = checked  # type: ignore[assignment]
            event.details = clean
        v = event.reason
        if v is not None and not (v.isprintable() and len(v) <= _SHORT):
            event.reason = neutralise(v, _SHORT)
        actor = event.actor
        v = actor.client_id
        if v is not None and not (v.isprintable() and len(v) <= _SHORT):
            actor.client_id = neutralise(v, _SHORT)
        if actor.roles:
            actor.roles = tuple(neutralise(r, _SHORT) for r in actor.roles[:_LIST_MAX])
        src = event.source
        if src is not None:
            v = src.user_agent
            if v is not None and not (v.isprintable() and len(v) <= _UA):
                src.user_agent = neutralise(v, _UA)
        target = event.target
        if target is not None:
            target.type = neutralise(target.type, _SHORT)
            if target.id is not None:
                target.id = neutralise(target.id, 256)
        corr = event.correlation
        if corr is not None:
            for name in _CORRELATION_FIELDS:
                v = getattr(corr, name)
                if v is not None and not (v.isprintable() and len(v) <= _SHORT):
                    setattr(corr, name, neutralise(v, _SHORT))
        personal = event.personal
        if personal is not None:
            allowed = spec.personal
            for name, v in personal.as_dict().items():
                if name not in allowed:
                    if self._strict:
                        raise EventRejected(f"{event.type} may not carry personal data {name}")
                    self._counters.add("validate.dropped_personal")
                    setattr(personal, name, None)
                elif not (v.isprintable() and len(v) <= 256):
                    setattr(personal, name, neutralise(v, 256))
        return event


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
