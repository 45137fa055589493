"""JSON Canonicalization Scheme (JCS), RFC 8785, for the values audit events are made of.

:func:`canonical` turns a JSON-like value into the exact bytes that get hashed into a Merkle
leaf (DESIGN §4). It is on the hot path, so it is built on ``orjson`` and checks by itself only
what orjson would get wrong or let through.

Accepted input: ``dict`` with ``str`` keys, ``list`` (and ``tuple``, serialised as an array),
``str``, ``int`` within ±(2**53 - 1), ``bool`` and ``None`` -- exact types, no subclasses (an
``IntEnum`` or a ``str`` subclass is refused rather than silently serialised by value).
Anything else raises :class:`CanonicalisationError` (a ``ValueError``).

How each RFC 8785 rule is met:

- §3.1 / RFC 7493 (I-JSON): input must be representable in I-JSON. A Python ``str`` can hold
  a lone surrogate (U+D800..U+DFFF); orjson refuses it and we report that as
  :class:`CanonicalisationError`. Integers outside the IEEE 754 exact range ±(2**53 - 1)
  are refused (``orjson.OPT_STRICT_INTEGER`` gives exactly that bound).
- §3.2.1 whitespace: orjson emits none.
- §3.2.2.1 literals: ``null``, ``true``, ``false`` as orjson writes them.
- §3.2.2.2 strings: orjson escapes exactly as ECMAScript ``JSON.stringify`` does: ``\\"``,
  ``\\\\``, ``\\b \\t \\n \\f \\r`` and other code points below U+0020 as ``\\u00xx`` with
  lower-case hex; everything else, including U+007F (DEL), U+2028 and U+2029, is written as
  raw UTF-8, and ``/`` is not escaped. (Checked against the ``rfc8785`` reference package by
  a Hypothesis property test.)
- §3.2.2.3 numbers: floats are refused outright. Events carry no floats, and refusing them
  means we never depend on orjson's float formatting matching ECMAScript's
  ``Number.prototype.toString``. Integers in the safe range print as plain decimals, which is
  what §3.2.2.3 gives for them.
- §3.2.3 property sorting: keys are sorted by their UTF-16 code units. orjson's
  ``OPT_SORT_KEYS`` sorts by code point (UTF-8 byte order). The two orders agree except when
  one key has, at the first position where they differ, a character in U+E000..U+FFFF and the
  other an astral character (U+10000 and up, a surrogate pair in UTF-16): code point order
  puts U+FFFF first, UTF-16 order puts the astral one first (RFC 8785's own example: U+1F600
  before U+FB33). Decision: such keys are *handled*, not refused. The type check notes
  whether any key has a character at or above U+E000 (tested only for non-ASCII keys, with
  ``str.isascii`` and ``max``, both C calls); only then is the value copied with every
  object's members in UTF-16 order and written without ``OPT_SORT_KEYS`` (orjson keeps
  insertion order). ASCII and e.g. Estonian keys (``õ``, ``ä``) take the fast path.
- §3.2.4 output encoding: UTF-8, as orjson always writes.

Arrays and objects nested more than :data:`MAX_DEPTH` levels deep (the outermost counts as
one level), and so any cyclic structure, are refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import orjson

from kroonika.audit.integrity._errors import CanonicalisationError

__all__ = ["MAX_DEPTH", "CanonicalisationError", "canonical"]

MAX_DEPTH: Final = 64
"""Deepest nesting of arrays and objects accepted (orjson's own limit is 254)."""
_LAST_NESTING_DEPTH: Final = MAX_DEPTH - 1

# OPT_STRICT_INTEGER: refuse |int| > 2**53 - 1 (RFC 7493 §2.2). The passthrough options make
# orjson refuse, rather than serialise, subclasses, dataclasses and datetimes; our own type
# check refuses them first anyway, so these are a second line.
_BASE_OPTIONS: Final = (
    orjson.OPT_STRICT_INTEGER
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)
_SORTED_OPTIONS: Final = _BASE_OPTIONS | orjson.OPT_SORT_KEYS

_SCALARS: Final = frozenset({str, int, bool, type(None)})

# Below U+E000, UTF-16 code unit order and code point order agree (RFC 8785 §3.2.3).
_FIRST_DIVERGENT: Final = "\ue000"


def canonical(value: object) -> bytes:
    """Return the RFC 8785 canonical UTF-8 JSON of ``value``.

    Raises :class:`CanonicalisationError` for values outside the accepted domain (see the
    module docstring).
    """
    needs_utf16_order = _check(value, 0)
    try:
        if needs_utf16_order:
            return orjson.dumps(_utf16_ordered(value), option=_BASE_OPTIONS)
        return orjson.dumps(value, option=_SORTED_OPTIONS)
    except orjson.JSONEncodeError as exc:
        # Lone surrogates and out-of-range integers end up here.
        raise CanonicalisationError(f"cannot canonicalise: {exc}") from exc


def _check(value: object, depth: int) -> bool:
    """Refuse anything outside the accepted types; return whether some object has a key with
    a character at or above U+E000 (the only case where UTF-16 and code point order differ).

    This walk is most of the cost of :func:`canonical` (orjson cannot be told to refuse
    floats), so it is kept tight: scalars are checked inline with one set lookup, and the keys
    of an object are type-checked and scanned by one C-level ``str.join``. ``str`` subclasses
    as keys pass the join but orjson refuses them (``OPT_PASSTHROUGH_SUBCLASS``).
    """
    kind = type(value)
    if kind is dict:
        mapping: dict[str, object] = value  # type: ignore[assignment]  # narrowed by `kind`
        try:
            keys = "".join(mapping)
        except TypeError:
            bad = next(key for key in mapping if not isinstance(key, str))
            raise CanonicalisationError(
                f"object keys must be str, not {type(bad).__name__}: {bad!r}"
            ) from None
        needs_utf16_order = not keys.isascii() and max(keys) >= _FIRST_DIVERGENT
        members: Iterable[object] = mapping.values()
    elif kind is list or kind is tuple:
        needs_utf16_order = False
        members = value  # type: ignore[assignment]  # narrowed by `kind`
    elif kind in _SCALARS:
        return False
    else:
        raise CanonicalisationError(f"type {kind.__name__} has no canonical JSON form here")
    for item in members:
        if type(item) not in _SCALARS:
            if depth >= _LAST_NESTING_DEPTH:
                raise CanonicalisationError(f"nesting deeper than {MAX_DEPTH} levels")
            if _check(item, depth + 1):
                needs_utf16_order = True
    return needs_utf16_order


def _utf16_key(key: str) -> bytes:
    try:
        return key.encode("utf-16-be")
    except UnicodeEncodeError as exc:  # a lone surrogate
        raise CanonicalisationError(f"object key is not valid Unicode: {key!r}") from exc


def _utf16_ordered(value: object) -> object:
    """Copy ``value`` (already type-checked) with object members in UTF-16 key order."""
    if type(value) is dict:
        return {key: _utf16_ordered(value[key]) for key in sorted(value, key=_utf16_key)}
    if type(value) is list or type(value) is tuple:
        return [_utf16_ordered(item) for item in value]
    return value
