"""RFC 8785 (JCS) canonical JSON: RFC examples, the reference package, refusals."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import uuid
from collections import OrderedDict
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from kroonika.audit.integrity import CanonicalisationError, IntegrityError, canonical
from kroonika.audit.integrity.rfc8785 import MAX_DEPTH

SAFE = 2**53 - 1

# Characters that stress escaping and the UTF-16 key order: controls, DEL, line and paragraph
# separators, quote and backslash, Estonian letters, U+E000..U+FFFF and astral characters.
TRICKY = st.sampled_from(
    [
        "\x00", "\x08", "\t", "\n", "\x0b", "\x0c", "\r", "\x1f", '"', "\\", "/", "\x7f",
        "\x80", "õ", "Ä", "\u2028", "\u2029", "€", "\ue000", "\ufb33", "\ufeff", "\uffff",
        "\U00010000", "\U0001f600", "\U0010ffff", "a", "A", "1",
    ]
)  # fmt: skip
TEXT = st.text(alphabet=st.one_of(st.characters(exclude_categories=["Cs"]), TRICKY), max_size=12)
SCALARS = st.none() | st.booleans() | st.integers(-SAFE, SAFE) | TEXT
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(TEXT, children, max_size=6),
    max_leaves=40,
)


def test_rfc8785_section_3_2_3_sorting_example() -> None:
    """Keys sort by UTF-16 code units: U+1F600 (a surrogate pair) before U+FB33 (§3.2.3)."""
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    expected = (
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
        '"ö":"Latin Small Letter O With Diaeresis","€":"Euro Sign",'
        '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    )
    assert canonical(value) == expected.encode()


def test_rfc8785_section_3_2_2_example_without_numbers() -> None:
    """The §3.2.2 example, minus its float array, canonicalises as the RFC shows."""
    value = json.loads(
        '{"string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = '{"literals":[null,true,false],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    assert canonical(value) == expected.encode()


def test_escapes_like_ecmascript() -> None:
    """Controls use short escapes or lower-case \\u00xx; DEL, U+2028/9 and / stay raw."""
    value = '\b\t\n\f\r\x00\x1f\x7f\u2028\u2029/"\\'
    expected = '"\\b\\t\\n\\f\\r\\u0000\\u001f\x7f\u2028\u2029/\\"\\\\"'
    assert canonical(value) == expected.encode()


def test_nested_objects_sort_at_every_level() -> None:
    """Members are sorted in every object, arrays keep their order, no whitespace."""
    value = {"b": [{"z": 1, "a": None}, True], "a": {"y": "x", "x": -5}}
    assert canonical(value) == b'{"a":{"x":-5,"y":"x"},"b":[{"a":null,"z":1},true]}'


def test_tuple_is_an_array() -> None:
    """A tuple serialises as a JSON array."""
    assert canonical({"t": (1, "a", None)}) == b'{"t":[1,"a",null]}'


def test_safe_integer_bounds_accepted() -> None:
    """±(2**53 - 1) are the largest integers accepted (RFC 7493 §2.2)."""
    assert canonical([SAFE, -SAFE, 0]) == b"[9007199254740991,-9007199254740991,0]"


def test_utf16_order_applies_inside_nested_objects() -> None:
    """The UTF-16 fallback also orders objects nested under ASCII-keyed ones."""
    value: Any = {"b": [{"\ufb33": 1, "\U0001f600": 2, "a": 3}], "a": {"z": 1, "y": 2}}
    assert canonical(value) == (
        '{"a":{"y":2,"z":1},"b":[{"a":3,"\U0001f600":2,"\ufb33":1}]}'.encode()
    )
    assert canonical(value) == rfc8785.dumps(value)


@given(JSON_VALUES)
def test_matches_reference_implementation(value: Any) -> None:
    """Any accepted value canonicalises exactly as the rfc8785 reference package does."""
    assert canonical(value) == rfc8785.dumps(value)


@given(st.dictionaries(TEXT, SCALARS, max_size=8))
def test_key_order_matches_reference(value: dict[str, Any]) -> None:
    """Flat objects with arbitrary Unicode keys sort exactly as the reference does."""
    assert canonical(value) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    "value",
    [1.0, 0.5, float("nan"), float("inf"), -0.0, {"a": 1.5}, [1, [2.0]]],
    ids=repr,
)
def test_floats_refused(value: object) -> None:
    """Floats are refused anywhere in the value (§3.2.2.3 formatting is never relied on)."""
    with pytest.raises(CanonicalisationError):
        canonical(value)


@pytest.mark.parametrize(
    "value", [SAFE + 1, -SAFE - 1, 2**63, 2**64, -(2**64), 10**100, {"n": [2**53]}], ids=repr
)
def test_unsafe_integers_refused(value: object) -> None:
    """Integers beyond ±(2**53 - 1) are refused (RFC 7493 §2.2)."""
    with pytest.raises(CanonicalisationError):
        canonical(value)


class _Key(str):
    pass


@pytest.mark.parametrize(
    "value",
    [{1: "a"}, {None: 1}, {b"k": 1}, {("a",): 1}, {"ok": {2: 3}}, {_Key("k"): 1}],
    ids=repr,
)
def test_non_str_keys_refused(value: object) -> None:
    """Object keys must be exactly str."""
    with pytest.raises(CanonicalisationError):
        canonical(value)


class _Colour(enum.Enum):
    RED = "red"


class _Level(enum.IntEnum):
    HIGH = 3


class _Text(str):
    pass


@dataclasses.dataclass
class _Point:
    x: int


@pytest.mark.parametrize(
    "value",
    [
        b"bytes",
        bytearray(b"x"),
        {1, 2},
        frozenset(),
        object(),
        _Colour.RED,
        _Level.HIGH,
        _Text("x"),
        OrderedDict(a=1),
        _Point(1),
        uuid.UUID(int=0),
        datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC),
        datetime.date(2025, 1, 1),
        {"a": [1, {"b": b"x"}]},
        [_Level.HIGH],
    ],
    ids=repr,
)
def test_other_types_refused(value: object) -> None:
    """Only dict, list, tuple, str, int, bool and None are accepted, subclasses refused."""
    with pytest.raises(CanonicalisationError):
        canonical(value)


@pytest.mark.parametrize(
    "value", ["\ud800", "a\udfffb", {"k": ["\udc00"]}, {"\ud83d": 1}, {"\U0001f600\ud800": 1}]
)
def test_lone_surrogates_refused(value: object) -> None:
    """Strings and keys with lone surrogates are not I-JSON (RFC 7493 §2.1) and are refused."""
    with pytest.raises(CanonicalisationError):
        canonical(value)


def test_nesting_limit() -> None:
    """MAX_DEPTH levels of nesting are accepted, one more is refused."""
    value: Any = []
    for _ in range(MAX_DEPTH - 1):
        value = [value]
    assert canonical(value) == b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    with pytest.raises(CanonicalisationError):
        canonical([value])


def test_cycle_refused() -> None:
    """A cyclic structure is refused, not looped over."""
    value: list[object] = []
    value.append(value)
    with pytest.raises(CanonicalisationError):
        canonical(value)


def test_error_is_value_error_and_integrity_error() -> None:
    """CanonicalisationError is both a ValueError and an IntegrityError."""
    with pytest.raises(ValueError, match="float") as caught:
        canonical(1.5)
    assert isinstance(caught.value, IntegrityError)
