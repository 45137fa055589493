"""Personal codes typed into free text before decision 0033 refused them, found and
removed in the business database (decision 0038).

:data:`FREE_TEXT_COLUMNS` names every column that holds text someone typed or an error
wrote: justifications, reasons, names, a token's change reason, a configuration
request's changes (a client's new name) and a job's error. A value holds a code when
:func:`~kroonika.audit.personal_codes.contains_personal_code` (the edge's check) finds
one; the person is then named by their pseudonym (``subject_ref``), as the admin
listings name them, never by the code or the text.

:meth:`StoredText.redact` replaces each code (with its prefix) by redact's marker, one
transaction per table, and hands the changed rows to a ``record`` callable before the
transaction commits: if recording fails, nothing of that table is changed (fail
closed). Like :mod:`kroonika.admin._privacy`, this module reads and writes, it never
records; the caller (the CLI command) emits the events built here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
from sqlalchemy import Column, Connection, Engine, Table, select, update

from kroonika.audit import Actor, AuditEvent, Correlation, Outcome, Source, Target
from kroonika.audit import events as ev
from kroonika.audit.personal_codes import contains_personal_code, redact_personal_codes
from kroonika.audit.store.sql import flush_deleted, secure_delete
from kroonika.db.admin import admin_api_key, admin_config_request, admin_role_request, job_run
from kroonika.db.tokens import access_list, clients, tokens

#: Every free-text column of the business database, by table. Not here: columns that
#: name a person on purpose (a subject, a list entry's value), who acted (labels such
#: as ``person:p1:...``), identifiers, and values a program writes in a fixed shape.
FREE_TEXT_COLUMNS: Final[tuple[tuple[Table, tuple[str, ...]], ...]] = (
    (admin_role_request, ("justification",)),
    (admin_config_request, ("justification", "changes", "expected")),
    (access_list, ("reason",)),
    (clients, ("name",)),
    (admin_api_key, ("name",)),
    (tokens, ("change_reason",)),
    (job_run, ("error",)),
)
#: Columns holding JSON (``{key: value}``): only their strings are searched and changed,
#: so that the value stays valid JSON (a number is never turned into the marker).
_JSON_COLUMNS: Final = frozenset({"admin_config_request.changes", "admin_config_request.expected"})
#: Rows read at a time (a table such as tokens may be large).
_BATCH: Final = 1000


@dataclass(frozen=True, slots=True)
class Finding:
    """One value holding personal codes: where, and whose (pseudonyms, in order)."""

    table: str
    column: str
    row_id: str
    subject_refs: tuple[str, ...]

    def public(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "column": self.column,
            "row_id": self.row_id,
            "subject_refs": list(self.subject_refs),
        }


@dataclass(frozen=True, slots=True)
class RowRedaction:
    """One changed row: its table and id, the columns changed, whose codes, how many."""

    table: str
    row_id: str
    columns: tuple[str, ...]
    subject_refs: tuple[str, ...]
    codes: int


def shown_id(row_id: str) -> str:
    """A row id as answers and records show it: an id an administrator chose (a client
    id) is free text too, so a code in it is replaced by the marker."""
    return redact_personal_codes(row_id)[0]


class StoredText:
    """The scan and the redaction over one business database; ``pseudonymise`` names
    a subject (``EE`` and the code) as the trail and the admin listings do."""

    def __init__(self, engine: Engine, pseudonymise: Callable[[str], str]) -> None:
        self._engine = engine
        self._pseudonymise = pseudonymise

    def _refs(self, codes: Sequence[str]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self._pseudonymise("EE" + c) for c in codes))

    def scan(self) -> list[Finding]:
        """Every value of :data:`FREE_TEXT_COLUMNS` that holds a valid personal code."""
        found: list[Finding] = []
        with self._engine.connect() as conn:
            for table, names in FREE_TEXT_COLUMNS:
                for row_id, column, value in _values(conn, table, names):
                    codes = _redacted(table, column, value)[1]
                    if codes:
                        refs = self._refs(codes)
                        found.append(Finding(str(table.name), column, shown_id(row_id), refs))
        return found

    def redact(
        self,
        record: Callable[[list[RowRedaction]], None],
        failed: Callable[[list[RowRedaction]], None],
    ) -> Iterator[list[RowRedaction]]:
        """Replace every code in :data:`FREE_TEXT_COLUMNS` by the marker, one transaction
        per table, yielding each table's changed rows once committed. ``record`` gets
        them before the commit; whatever it raises rolls the table back and propagates
        (tables done before stay done and recorded). If the commit fails after
        ``record`` returned, ``failed`` gets the same rows (to record that they were
        not changed after all) and the error propagates. A value changed since it was
        read is left for the next run. SQLite: the old text is overwritten, not left in
        free pages or the write-ahead log."""
        try:
            for table, names in FREE_TEXT_COLUMNS:
                recorded: list[RowRedaction] = []
                try:
                    with self._engine.begin() as conn:
                        secure_delete(conn)
                        changed = self._redact_table(conn, table, names)
                        if changed:
                            record(changed)
                            recorded = changed
                except BaseException:
                    if recorded:
                        failed(recorded)
                    raise
                yield changed
        finally:
            flush_deleted(self._engine)

    def _redact_table(
        self, conn: Connection, table: Table, names: Sequence[str]
    ) -> list[RowRedaction]:
        key = _key(table)
        rows: dict[str, dict[str, tuple[str, str]]] = {}
        codes: dict[str, list[str]] = {}
        for row_id, column, value in list(_values(conn, table, names)):
            text, found = _redacted(table, column, value)
            if found:
                rows.setdefault(row_id, {})[column] = (value, text)
                codes.setdefault(row_id, []).extend(found)
        changed: list[RowRedaction] = []
        for row_id, columns in rows.items():
            same = [table.c[c] == old for c, (old, _) in columns.items()]
            new = {c: text for c, (_, text) in columns.items()}
            if conn.execute(update(table).where(key == row_id, *same).values(**new)).rowcount:
                changed.append(
                    RowRedaction(
                        str(table.name),  # a quoted_name: the trail takes only a str
                        shown_id(row_id),
                        tuple(columns),
                        self._refs(codes[row_id]),
                        len(codes[row_id]),
                    )
                )
        return changed


def _redacted(table: Table, column: str, value: str) -> tuple[str, tuple[str, ...]]:
    """``value`` without its personal codes, and the codes (none: ``value`` itself).
    Plain text is searched with the edge's check (decision 0033); a JSON column's
    strings each are, and the document is written back as orjson writes it."""
    if f"{table.name}.{column}" in _JSON_COLUMNS:
        try:
            return _redacted_json(orjson.loads(value), value)
        except orjson.JSONDecodeError:
            pass  # not JSON after all: searched as text
    if not contains_personal_code(value):  # the edge's check, and the fast path
        return value, ()
    text, codes = redact_personal_codes(value)
    return _fitted(text, getattr(table.c[column].type, "length", None)), codes


def _redacted_json(doc: Any, value: str) -> tuple[str, tuple[str, ...]]:
    found: list[str] = []

    def strings(item: Any) -> Any:
        if isinstance(item, str):
            text, codes = redact_personal_codes(item)
            found.extend(codes)
            return text
        if isinstance(item, list):
            return [strings(v) for v in item]
        if isinstance(item, dict):
            return {strings(k): strings(v) for k, v in item.items()}
        return item

    new = strings(doc)
    return (orjson.dumps(new).decode(), tuple(found)) if found else (value, ())


def _fitted(text: str, limit: int | None) -> str:
    """``text`` cut to the column's length, ending in an ellipsis: the marker is longer
    than a code, and PostgreSQL refuses a value longer than ``VARCHAR(n)`` (which would
    stop every later redaction of the table at that row)."""
    if limit is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "\u2026"


def _key(table: Table) -> Column[Any]:
    (key,) = table.primary_key.columns
    return key


def _values(conn: Connection, table: Table, names: Sequence[str]) -> Iterator[tuple[str, str, str]]:
    """(row id, column, value) of every non-empty value of ``names``, read in batches."""
    key = _key(table)
    cols = [table.c[n] for n in names]
    # per statement: a connection's own options would stream its updates too
    result = conn.execute(select(key, *cols), execution_options={"yield_per": _BATCH})
    for row in result:
        for name, value in zip(names, row[1:], strict=True):
            if value:
                yield str(row[0]), name, str(value)


def scan_event(
    findings: Sequence[Finding],
    *,
    redact: bool,
    actor: Actor,
    justification: str,
    interface: str,
    source: Source | None = None,
    correlation: Correlation | None = None,
) -> AuditEvent:
    """The ``audit.access`` record of a scan (action ``scan-free-text``): how many columns
    were read, whether a redaction follows, how many values were found; neither a code
    nor a text."""
    columns = sum(len(names) for _, names in FREE_TEXT_COLUMNS)
    return ev.audit_access(
        actor=actor,
        source=source,
        correlation=correlation,
        action="scan-free-text",
        query=f"columns={columns} redact={'yes' if redact else 'no'}",
        returned=len(findings),
        result="ok",
        interface=interface,
        justification=justification,
    )


def redaction_events(
    rows: Sequence[RowRedaction],
    *,
    actor: Actor,
    justification: str,
    interface: str,
    failed: str | None = None,
    source: Source | None = None,
    correlation: Correlation | None = None,
) -> list[AuditEvent]:
    """One ``admin.text.redact`` per changed row: the row (target: table and id), the
    columns changed, the pseudonyms of the people whose codes were removed and how many
    codes; never a code or the text before or after. ``failed`` (a reason code) makes
    them the failure records that follow recorded changes whose commit failed."""
    return [
        ev.admin_text_redact(
            outcome=Outcome.FAILURE if failed else Outcome.SUCCESS,
            reason=failed,
            actor=actor,
            source=source,
            target=Target(r.table, r.row_id),
            correlation=correlation,
            columns=list(r.columns),
            pseudonyms=list(r.subject_refs),
            codes=r.codes,
            justification=justification,
            interface=interface,
        )
        for r in rows
    ]
