"""``kroonika audit erase|reveal|pseudonyms``: the privacy officer's erasure (GDPR art. 17,
by crypto-shredding), audited re-identification and look-up of a person's pseudonyms under
every pseudonymisation key from the command line; ``kroonika privacy scan-free-text``:
personal codes typed into stored free text before decision 0033, found and redacted
(decision 0038).

The command line has the keys of the host it runs on, so it checks no role (as
``kroonika admins add``); it records who acted as ``admin``/``cli`` with the mandatory
justification, and like the API it records before it deletes or answers: if the trail
cannot record, nothing is deleted or shown (exit 2). See decisions 0012 and 0028.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kroonika.audit.formats._text import dumps

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from kroonika.admin._privacy import Eraser, Person
    from kroonika.admin._stored_text import Finding, RowRedaction
    from kroonika.audit import Actor, AuditEvent, AuditTrail, SealedEvent
    from kroonika.auditing import AuditComponents
    from kroonika.settings import Settings


privacy_app = typer.Typer(
    no_args_is_help=True, help="The privacy officer's checks of the business database."
)


def register_privacy(audit_app: typer.Typer, app: typer.Typer) -> None:
    audit_app.command("erase")(erase_cmd)
    audit_app.command("reveal")(reveal_cmd)
    audit_app.command("pseudonyms")(pseudonyms_cmd)
    privacy_app.command("scan-free-text")(scan_free_text_cmd)
    app.add_typer(privacy_app, name="privacy")


WhyOpt = Annotated[
    str,
    typer.Option("--justification", "-j", help="Why (required; recorded in the audit trail)"),
]


CodeFileOpt = Annotated[
    str | None,
    typer.Option(
        "--personal-code-file",
        help="File holding the person's personal code; - reads standard input",
    ),
]


def _justification(text: str) -> str:
    from kroonika.admin import JustificationMissing, PersonalCodeInText, check_justification
    from kroonika.cli import _settings

    settings = _settings()
    try:
        return check_justification(
            text,
            minimum=settings.admin_justification_min,
            pattern=settings.admin_ticket_pattern,
            where="-j/--justification",
        )
    except (JustificationMissing, PersonalCodeInText) as exc:
        raise typer.BadParameter(str(exc), param_hint="'--justification'") from None


def erase_cmd(
    justification: WhyOpt,
    personal_code: Annotated[
        str | None,
        typer.Option(
            "--personal-code",
            help="Deprecated, refused in production: the person's personal code, seen in "
            "ps and kept in shell history; use --personal-code-file (- for standard input)",
        ),
    ] = None,
    personal_code_file: CodeFileOpt = None,
    pseudonym: Annotated[
        str | None, typer.Option("--pseudonym", help="Or their pseudonym (p1:...)")
    ] = None,
) -> None:
    """Erase a person: delete their audit data keys under every pseudonym (their events
    stay and verify, their personal data becomes unreadable), their security profile, their
    sessions and the clear subject of their tokens; active sessions are ended (reason
    erasure) and active tokens revoked first, each recorded. Refused while the person holds
    an administrator role. Records audit.erasure first; prints the pseudonym and what was
    done, never the personal code."""
    from kroonika.admin._privacy import HoldsRoles, erasure_event
    from kroonika.audit import Actor, ActorType, AuditError
    from kroonika.cli import _OPEN_ERRORS, _access_trail, _fail, _open_error, _settings

    if personal_code is not None:
        _code_on_argv(_settings())
    why = _justification(justification)
    if personal_code_file is not None:
        if personal_code is not None or pseudonym is not None:
            raise typer.BadParameter("name the person by a personal code or by a pseudonym")
        personal_code = _read_personal_code(personal_code_file)
    settings = _settings()
    with (
        _access_trail(settings, purpose="record this erasure") as comps,
        _eraser(settings, comps) as (engine, eraser),
    ):
        person = _person(eraser, personal_code=personal_code, pseudonym=pseudonym)
        held = eraser.roles(person)
        if held:
            raise _fail(f"nothing erased: {HoldsRoles(held)}")
        actor = Actor(ActorType.ADMIN, roles=("cli",))
        try:
            planned = eraser.plan(person)
            comps.trail.emit_sync(
                erasure_event(person, planned, actor=actor, justification=why, interface="cli")
            )
        except _OPEN_ERRORS as exc:
            raise _fail(f"nothing erased: {_open_error(exc)}") from None
        try:
            ended, revoked = asyncio.run(_end_active(settings, engine, comps, person, actor))
            done = eraser.apply(person, ended=ended, revoked=revoked, planned=planned)
        except _OPEN_ERRORS as exc:
            with contextlib.suppress(AuditError):
                comps.trail.emit_sync(
                    erasure_event(
                        person,
                        planned,
                        actor=actor,
                        justification=why,
                        interface="cli",
                        failed="incomplete",
                    )
                )
            raise _fail(
                f"erasure recorded but not completed (run it again): {_open_error(exc)}"
            ) from None
    if settings.redis_url:  # the running instances' shared detector windows (decision 0018)
        from kroonika.security.windows import RedisWindows

        windows = RedisWindows(settings.redis_url)
        try:
            windows.forget(person.pseudonyms)
        finally:
            windows.close()
    counts = " ".join(f"{k}={v}" for k, v in done.as_dict().items())
    state = "erased" if done.deleted_any else "nothing found to erase for"
    typer.echo(f"{state} {person.pseudonyms[0]}: {counts}")
    for other in person.pseudonyms[1:]:
        typer.echo(f"also under {other}")


def _code_on_argv(settings: Settings, given_as: str = "--personal-code") -> None:
    """A personal code given as an argument (``given_as``) is where every user of the
    host sees it (``ps``) and the shell keeps it (history): refused in production, a
    warning elsewhere. Neither repeats the code (decision 0034)."""
    from kroonika.cli import _fail

    instead = (
        "give it on standard input (--personal-code-file -) or in a file "
        "(--personal-code-file PATH)"
    )
    if settings.production:
        raise _fail(
            f"{given_as} is refused in production (KROONIKA_ENV=production): a code on "
            f"the command line is seen in ps and kept in shell history; {instead}"
        )
    typer.echo(
        f"warning: {given_as} is deprecated: a code on the command line is seen in ps "
        f"and kept in shell history; {instead}",
        err=True,
    )


def code_argument(settings: Settings, personal_code: str | None, code_file: str | None) -> str:
    """The personal code of a command that names one person: ``--personal-code-file``
    (a file, or ``-``: standard input), or the argument ``-`` (standard input too), or,
    deprecated and refused in production, the code itself as the argument."""
    if code_file is not None:
        if personal_code is not None:
            raise typer.BadParameter("give PERSONAL_CODE or --personal-code-file, not both")
        return _read_personal_code(code_file)
    if personal_code is None:
        raise typer.BadParameter(
            "name the person: --personal-code-file PATH, or - to read standard input"
        )
    if personal_code == "-":
        return _read_personal_code("-")
    _code_on_argv(settings, "PERSONAL_CODE as an argument")
    return personal_code


class _SyncEmitter:
    """The command's writer (synchronous: no writer task runs in a CLI command) seen
    through the async ``emit`` the session manager and the token service await."""

    def __init__(self, trail: AuditTrail) -> None:
        self._trail = trail

    async def emit(self, event: AuditEvent) -> SealedEvent | None:
        return self._trail.emit_sync(event)

    async def emit_many(self, batch: Iterable[AuditEvent]) -> list[SealedEvent]:
        return self._trail.emit_many_sync(batch)


async def _end_active(
    settings: Settings, engine: Engine, comps: AuditComponents, person: Person, actor: Actor
) -> tuple[int, int]:
    """End the person's sessions and revoke their tokens as the API does (each recorded,
    a refused step undone): the session manager and token service over this engine."""
    import time

    from kroonika.admin._privacy import end_active
    from kroonika.sessions import RequestContext, SessionManager, SessionPolicy, SessionStore
    from kroonika.tokens import RequestContext as TokenContext
    from kroonika.tokens import build_tokens

    emitter = _SyncEmitter(comps.trail)
    policy = SessionPolicy(
        idle_s=settings.session_idle_s,
        absolute_s=settings.session_absolute_s,
        max_per_person=settings.session_max_per_person,
    )
    sessions = SessionManager(
        SessionStore(engine), policy, emitter, comps.fingerprinter, clock=time.time
    )
    tokens = build_tokens(
        settings, engine=engine, trail=emitter, fingerprinter=comps.fingerprinter, create=False
    )
    try:
        return await end_active(
            person,
            sessions,
            tokens.service,
            actor=actor,
            why="erasure",
            sctx=RequestContext(),
            tctx=TokenContext(),
        )
    finally:
        await tokens.aclose()


def reveal_cmd(
    justification: WhyOpt,
    event: Annotated[
        list[str] | None, typer.Option("--event", help="Event id (repeatable)")
    ] = None,
    stream: Annotated[str | None, typer.Option("--stream", help="Stream of --seq")] = None,
    seq: Annotated[
        list[int] | None, typer.Option("--seq", min=1, help="Sequence number (repeatable)")
    ] = None,
) -> None:
    """Re-identify: decrypt the personal data of up to 50 events of the configured store
    (by --event id, or --stream with --seq). Records audit.access (action re-identify,
    the justification, the event ids and field names, never the values) before printing
    one JSON line per event; an erased person's event says "erased"."""
    from kroonika.admin._privacy import (
        PrivacyRequestInvalid,
        decrypt_events,
        reidentify_event,
        reveal_refs,
    )
    from kroonika.audit import Actor, ActorType, AuditError
    from kroonika.cli import _access_trail, _fail, _open_read_only, _reading, _settings

    why = _justification(justification)
    if seq and not stream:
        raise typer.BadParameter("--seq needs --stream")
    try:
        ids, positions = reveal_refs(event or (), [(stream or "", n) for n in seq or ()])
    except PrivacyRequestInvalid as exc:
        raise typer.BadParameter(str(exc)) from None
    settings = _settings()
    source = _open_read_only(settings, None)
    with _access_trail(settings, purpose="record this re-identification") as comps:
        try:
            with _reading(source):
                revealed = decrypt_events(source, comps.subject_keys, ids, positions)
        finally:
            source.close()
        record = reidentify_event(
            revealed,
            ids,
            positions,
            actor=Actor(ActorType.ADMIN, roles=("cli",)),
            justification=why,
            interface="cli",
        )
        try:
            comps.trail.emit_sync(record)
        except AuditError as exc:
            raise _fail(f"nothing revealed: the audit trail refused the record ({exc})") from None
    for item in revealed.items:
        typer.echo(dumps(item))


@contextlib.contextmanager
def _eraser(settings: Settings, comps: AuditComponents) -> Iterator[tuple[Engine, Eraser]]:
    """The business database (migrated) and the person finder over it, with the current
    pseudonymisation key first and every retired one after it."""
    from kroonika.admin._privacy import Eraser

    with _business_db(settings) as engine:
        known = (comps.fingerprinter, *comps.retired)  # the current key first
        yield engine, Eraser(engine, comps.subject_keys, known, comps.store)


def _person(eraser: Eraser, *, personal_code: str | None, pseudonym: str | None) -> Person:
    from kroonika.admin._privacy import PrivacyRequestInvalid

    try:
        return eraser.person(personal_code=personal_code, pseudonym=pseudonym)
    except PrivacyRequestInvalid as exc:
        raise typer.BadParameter(str(exc)) from None


#: More than this is not a personal code (nor a line holding one).
_CODE_READ_MAX = 4096


def _read_personal_code(source: str) -> str:
    """The one personal code in ``source`` (a file, or ``-``: standard input, asked for
    without echo on a terminal). Never an argument: argv is visible to every user of the
    host (``ps``) and kept in shell history. Errors never show what was read."""
    param = "'--personal-code-file'"
    if source == "-":
        if sys.stdin.isatty():
            text = str(typer.prompt("Personal code", hide_input=True, err=True))
        else:
            text = sys.stdin.read(_CODE_READ_MAX + 1)
    else:
        try:
            with Path(source).open(encoding="utf-8") as f:
                text = f.read(_CODE_READ_MAX + 1)
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise typer.BadParameter(f"cannot read it: {reason}", param_hint=param) from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(text) > _CODE_READ_MAX or len(lines) != 1:
        raise typer.BadParameter("give exactly one personal code, on one line", param_hint=param)
    return lines[0]


def pseudonyms_cmd(
    justification: WhyOpt,
    personal_code_file: CodeFileOpt = None,
    pseudonym: Annotated[
        str | None, typer.Option("--pseudonym", help="Or one of their pseudonyms (p1:...)")
    ] = None,
) -> None:
    """Print a person's pseudonym under the current pseudonymisation key and under every
    retired one (KROONIKA_PSEUDONYM_PREVIOUS_KEYS), one per line with the key's standing,
    current first: the --actor values that follow them across key rotations. The personal
    code is read from standard input (the default) or --personal-code-file, never from
    the command line. Records
    audit.access (action pseudonymise: the justification and the current pseudonym, never
    the code) before printing."""
    from kroonika.admin._privacy import pseudonymise_event
    from kroonika.audit import Actor, ActorType, AuditError
    from kroonika.cli import _access_trail, _fail, _settings

    why = _justification(justification)
    if pseudonym is not None and personal_code_file is not None:
        raise typer.BadParameter("name the person by a personal code or by a pseudonym")
    code = None if pseudonym is not None else _read_personal_code(personal_code_file or "-")
    settings = _settings()
    with (
        _access_trail(settings, purpose="record this look-up") as comps,
        _eraser(settings, comps) as (_, eraser),
    ):
        person = _person(eraser, personal_code=code, pseudonym=pseudonym)
        record = pseudonymise_event(
            person,
            actor=Actor(ActorType.ADMIN, roles=("cli",)),
            justification=why,
            interface="cli",
        )
        try:
            comps.trail.emit_sync(record)
        except AuditError as exc:
            raise _fail(f"nothing shown: the audit trail refused the record ({exc})") from None
        found = eraser.standing(person)
    for name, standing in found:
        typer.echo(f"{name}\t{standing}")


#: Exit status of ``scan-free-text``: nothing found (or all of it redacted), something
#: found (a cron job alerts on it); 2 is a usage error, as everywhere.
EXIT_CLEAN, EXIT_FOUND = 0, 1


def scan_free_text_cmd(
    justification: WhyOpt,
    redact: Annotated[
        bool,
        typer.Option(
            "--redact",
            help="Replace each code found by [REDACTED:personal_code], recording each "
            "changed row (admin.text.redact)",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document")] = False,
) -> None:
    """Find personal codes typed into free text before they were refused (decision
    0033): justifications, list reasons, client and API key names, token change reasons,
    configuration request changes, job errors. Prints table, column, row id and the
    person's pseudonym (subject_ref) per value, never the code or the text; records
    audit.access (action scan-free-text) first. Exit 0 when nothing is found, 1 when
    something is. --redact replaces each code, one transaction per table, recording one
    admin.text.redact per changed row before it commits (if the trail refuses, the
    table stays as it was: exit 2); exit 0 when everything found was redacted."""
    from kroonika.admin._stored_text import StoredText, redaction_events, scan_event
    from kroonika.audit import Actor, ActorType, AuditError
    from kroonika.cli import _OPEN_ERRORS, _access_trail, _fail, _open_error, _settings

    why = _justification(justification)
    settings = _settings()
    actor = Actor(ActorType.ADMIN, roles=("cli",))
    with (
        _access_trail(settings, purpose="record this scan") as comps,
        _business_db(settings) as engine,
    ):
        stored = StoredText(engine, comps.fingerprinter.pseudonym)
        try:
            findings = stored.scan()
        except _OPEN_ERRORS as exc:
            raise _fail(f"cannot read the database: {_open_error(exc)}") from None
        try:
            comps.trail.emit_sync(
                scan_event(findings, redact=redact, actor=actor, justification=why, interface="cli")
            )
        except AuditError as exc:
            raise _fail(f"nothing shown: the audit trail refused the record ({exc})") from None

        def record(rows: list[RowRedaction]) -> None:
            comps.trail.emit_many_sync(
                redaction_events(rows, actor=actor, justification=why, interface="cli")
            )

        def failed(rows: list[RowRedaction]) -> None:
            with contextlib.suppress(AuditError):
                comps.trail.emit_many_sync(
                    redaction_events(
                        rows, actor=actor, justification=why, interface="cli", failed="incomplete"
                    )
                )

        redacted: list[RowRedaction] = []
        left = findings
        if redact and findings:
            try:
                for rows in stored.redact(record, failed):
                    redacted += rows
            except _OPEN_ERRORS as exc:
                raise _fail(
                    f"nothing redacted from here on ({len(redacted)} row(s) of the tables "
                    f"before were, each recorded): {_open_error(exc)}"
                ) from None
            left = stored.scan()
    _print_findings(findings, len(redacted), as_json=as_json)
    if redact and left:
        typer.echo(f"{len(left)} value(s) changed meanwhile: run it again", err=True)
    raise typer.Exit(EXIT_FOUND if left else EXIT_CLEAN)


def _print_findings(findings: list[Finding], redacted: int, *, as_json: bool) -> None:
    from kroonika.cli import _shown

    if as_json:
        doc = {"findings": [f.public() for f in findings], "redacted": redacted}
        typer.echo(dumps(doc))
        return
    for f in findings:
        typer.echo(f"{f.table}\t{f.column}\t{_shown(f.row_id)}\t{','.join(f.subject_refs)}")
    if redacted:
        typer.echo(f"redacted {redacted} row(s)", err=True)


@contextlib.contextmanager
def _business_db(settings: Settings) -> Iterator[Engine]:
    """The business database, migrated."""
    from kroonika.cli import _OPEN_ERRORS, _fail, _open_error
    from kroonika.db import make_engine
    from kroonika.db.migrate import upgrade

    try:
        engine = make_engine(settings.resolved_database_url())
        upgrade(engine)
    except _OPEN_ERRORS as exc:
        raise _fail(f"cannot open the database: {_open_error(exc)}") from None
    try:
        yield engine
    finally:
        engine.dispose()
