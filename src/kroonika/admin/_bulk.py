"""Bulk operations as one unit: per-item outcomes, a summary, one ``admin.bulk`` event whose
digest (SHA-256 over the canonical per-item outcomes) lets an auditor check the answer; the
per-item events (``token.revoke``, ``access_list.add``, ``session.terminate``) share the
request's correlation id.

Allow/deny-list import accepts CSV (header ``list,kind,value,reason,expires_at``) or JSON (a
list of objects with the same fields) of at most :data:`IMPORT_MAX` entries; every line is
validated first, and errors name the line. The default export names a person on a list
by pseudonym only, so its subject lines are refused by line (decision 0031).
A CSV export puts an apostrophe before any cell a spreadsheet would run as a formula; a CSV
import takes it off again, so the round trip is exact.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from kroonika.admin._errors import PersonalCodeInText, TooLarge
from kroonika.admin._free_text import refuse_personal_code
from kroonika.admin._roles import country_of, normalise_subject
from kroonika.tokens._lists import KINDS, LISTS, normalise

FIELDS = ("list", "kind", "value", "reason", "expires_at")
#: Why a subject line of the default export is refused: it has no code (decision 0031).
PSEUDONYMISED = (
    "a pseudonymised subject entry (subject_ref, no value) cannot be imported: the"
    " default export leaves out personal codes; the privacy officer's clear export"
    " (POST /admin/privacy/lists/export) has them"
)
#: First characters that make a spreadsheet run a cell as a formula (OWASP "CSV
#: injection"); such cells are exported behind an apostrophe, which the import removes.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _defuse(cell: str) -> str:
    """A cell as exported: a formula-like value (or one starting with an apostrophe) gets a
    leading apostrophe, so the round trip through the import is exact."""
    return "'" + cell if cell.startswith((*FORMULA_START, "'")) else cell


def _restore(cell: Any) -> Any:
    """The import's inverse of :func:`_defuse`."""
    if (
        isinstance(cell, str)
        and cell.startswith("'")
        and cell[1:].startswith((*FORMULA_START, "'"))
    ):
        return cell[1:]
    return cell


#: Entries one import may carry (ADR 0008): each is its own insert and audit event in the
#: one request, like the items of the other bulk calls (also at most 1000).
IMPORT_MAX = 1000


def _too_many(limit: int) -> TooLarge:
    return TooLarge(f"at most {limit} entries per import", code="too_many_entries")


#: The last second any expiry may name (9999-12-31T23:59:59Z): every database column and
#: date library holds it.
EPOCH_MAX = 253_402_300_799


@dataclass
class Outcomes:
    items: list[dict[str, Any]] = field(default_factory=list)

    def add(self, index: int, status: str, **extra: Any) -> None:
        self.items.append({"index": index, "status": status, **extra})

    def summary(self) -> dict[str, int]:
        ok = sum(1 for i in self.items if i["status"] == "ok")
        return {"requested": len(self.items), "succeeded": ok, "failed": len(self.items) - ok}

    def digest(self) -> str:
        canon = orjson.dumps(
            [{"index": i["index"], "status": i["status"]} for i in self.items],
            option=orjson.OPT_SORT_KEYS,
        )
        return hashlib.sha256(canon).hexdigest()


@dataclass(frozen=True, slots=True)
class ListLine:
    line: int
    list: str
    kind: str
    value: str
    reason: str
    expires_at: int | None


def _check(line: int, row: dict[str, Any], check_expiry: Callable[[int | None], None]) -> ListLine:
    if any(isinstance(row.get(name), dict | list) for name in FIELDS):
        raise ValueError(f"{', '.join(FIELDS)} are texts (expires_at a number)")
    lst = str(row.get("list") or "").strip().lower()
    kind = str(row.get("kind") or "").strip().lower()
    if lst not in LISTS:
        raise ValueError(f"list must be one of {LISTS}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    if kind == "subject" and not str(row.get("value") or "").strip() and row.get("subject_ref"):
        raise ValueError(PSEUDONYMISED)
    value = normalise(kind, str(row.get("value") or ""))
    if kind == "subject":  # "38001085718" is TARA's "EE38001085718"
        value = normalise_subject(value)
    reason = str(row.get("reason") or "").strip()
    if not 3 <= len(reason) <= 500:
        raise ValueError("reason must be 3..500 characters")
    if not (value.isprintable() and reason.isprintable()):  # NUL is a 500 in PostgreSQL
        raise ValueError("value and reason are printable characters only")
    try:
        refuse_personal_code(reason, "reason")
    except PersonalCodeInText as exc:  # a line's error, as every other (decision 0033)
        raise ValueError(str(exc)) from None
    raw_exp = row.get("expires_at")
    expires: int | None = None
    if raw_exp not in (None, ""):
        try:
            expires = int(str(raw_exp))
        except ValueError:
            raise ValueError("expires_at must be epoch seconds") from None
        if not 0 <= expires <= EPOCH_MAX:
            raise ValueError(f"expires_at must be epoch seconds in 0..{EPOCH_MAX}")
        check_expiry(expires)
    return ListLine(line, lst, kind, value, reason, expires)


def parse_list_import(
    data: bytes,
    fmt: str,
    *,
    limit: int = IMPORT_MAX,
    check_expiry: Callable[[int | None], None] = lambda _: None,
) -> tuple[list[ListLine], list[dict[str, Any]]]:
    """(valid lines, errors by line number). Line numbers are 1-based data lines (CSV: the
    header is line 1, so data starts at 2; JSON: the array position + 1). More than
    ``limit`` entries, valid or not, raise :class:`TooLarge` (CSV: as soon as one is
    read past the limit). ``check_expiry`` raises for an expiry the list store would
    refuse (one in the past), which makes it that line's error."""
    from kroonika.tokens import AccessListError

    rows: list[tuple[int, Any]] = []
    if fmt == "csv":
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            return [], [{"line": 0, "error": "not UTF-8"}]
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None or not {"list", "kind", "value", "reason"} <= set(
            reader.fieldnames
        ):
            return [], [{"line": 1, "error": f"header must name {', '.join(FIELDS)}"}]
        rows = []
        while True:
            if len(rows) > limit:
                raise _too_many(limit)
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:  # e.g. a field over csv.field_size_limit()
                rows.append((reader.line_num + 1, f"not readable as CSV: {exc}"))
                continue
            rows.append((reader.line_num, {k: _restore(v) for k, v in row.items()}))
    elif fmt == "json":
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            return [], [{"line": 0, "error": f"not JSON: {exc.msg}"}]
        if isinstance(doc, dict):
            doc = doc.get("entries")
        if not isinstance(doc, list):
            return [], [{"line": 0, "error": "a JSON array of entries (or {entries: [...]})"}]
        if len(doc) > limit:
            raise _too_many(limit)
        rows = list(enumerate(doc, start=1))
    else:
        return [], [{"line": 0, "error": "format is csv or json"}]
    good: list[ListLine] = []
    errors: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str]] = set()
    for line, row in rows:
        if isinstance(row, str) and fmt == "csv":
            errors.append({"line": line, "error": row})
            continue
        if not isinstance(row, dict):
            errors.append({"line": line, "error": "an object per entry"})
            continue
        try:
            item = _check(line, row, check_expiry)
        except (ValueError, AccessListError) as exc:
            errors.append({"line": line, "error": str(exc)})
            continue
        key = (item.list, item.kind, item.value)
        if key in seen:
            errors.append({"line": line, "error": "duplicate of an earlier line"})
            continue
        seen.add(key)
        good.append(item)
    return good, errors


#: The media type of each export format.
EXPORT_MEDIA = {"csv": "text/csv", "json": "application/json"}
#: Export columns: the import's, then what the import ignores.
EXPORT_FIELDS = (*FIELDS, "subject_ref", "country", "id", "created_by", "created_at")


def export_lists(
    entries: list[Any], fmt: str, *, pseudonymise: Callable[[str], str] | None = None
) -> bytes:
    """Entries as CSV or JSON. With ``pseudonymise`` (the default export) a subject
    entry's ``value`` is empty and the person is ``subject_ref`` and ``country`` only;
    without it (the privacy officer's export) ``value`` is the code, and an import
    takes every line (decision 0031)."""
    rows = []
    for e in entries:
        person = e.kind == "subject"
        hidden = pseudonymise if person else None
        rows.append(
            {
                "id": e.id,
                "list": e.list,
                "kind": e.kind,
                "value": "" if hidden else e.value,
                "subject_ref": hidden(e.value) if hidden else None,
                "country": country_of(e.value) if person else None,
                "reason": e.reason,
                "created_by": e.created_by,
                "created_at": e.created_at,
                "expires_at": e.expires_at,
            }
        )
    if fmt == "json":
        return orjson.dumps(rows)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow(
            {k: "" if v is None else _defuse(v) if isinstance(v, str) else v for k, v in r.items()}
        )
    return out.getvalue().encode()
