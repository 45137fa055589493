"""``kroonika admins add|list|show``: bootstrap administrators from the command line (the
first one cannot be granted through the API, which needs an administrator). Listings name
people by the pseudonym the audit trail uses for them, never by personal code
(decision 0025)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from kroonika.cli_privacy import CodeFileOpt, code_argument

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from kroonika.admin import RoleStore

admins_app = typer.Typer(no_args_is_help=True, help="Administrators and their roles.")


def _roles_store() -> tuple[RoleStore, Engine]:
    from kroonika.admin import RoleStore
    from kroonika.db import make_engine
    from kroonika.db.migrate import upgrade
    from kroonika.settings import load_settings

    engine = make_engine(load_settings().resolved_database_url())
    upgrade(engine)
    return RoleStore(engine, clock=time.time), engine


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


#: The person named by a command: ``-`` reads the code from standard input.
CodeArg = Annotated[
    str | None,
    typer.Argument(
        help="- to read the personal code from standard input; the code itself here is "
        "deprecated (seen in ps, kept in shell history) and refused in production"
    ),
]


@admins_app.command("add")
def add(
    personal_code: CodeArg = None,
    role: Annotated[str, typer.Option(help="admin, auditor, security or privacy")] = "admin",
    justification: Annotated[
        str, typer.Option("--justification", "-j", help="Why (recorded in the audit trail)")
    ] = "bootstrap from the command line",
    personal_code_file: CodeFileOpt = None,
) -> None:
    """Give a person a role (recorded as granted by the command line). The grant is audited
    as ``config.change`` of ``admin.roles`` by the actor system/cli; if the trail cannot
    record it, the grant is undone."""
    import orjson

    from kroonika.admin import (
        JustificationMissing,
        PersonalCodeInText,
        check_justification,
        parse_roles,
    )
    from kroonika.admin._roles import checked_subject
    from kroonika.audit import Actor, ActorType, AuditError, Target
    from kroonika.audit import events as ev
    from kroonika.auditing import build_audit, cli_stream_name
    from kroonika.settings import SettingsError, load_settings

    try:
        (parsed,) = parse_roles([role])
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        settings = load_settings()
    except (SettingsError, ValueError) as exc:
        raise _fail(f"the audit trail cannot be opened: {exc}") from None
    try:
        subject = checked_subject(code_argument(settings, personal_code, personal_code_file))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:  # the same rule as the API's: recorded as plain text, never CR or terminal codes
        why = check_justification(
            justification,
            minimum=settings.admin_justification_min,
            pattern=settings.admin_ticket_pattern,
            where="-j/--justification",
        )
    except (JustificationMissing, PersonalCodeInText) as exc:
        raise typer.BadParameter(str(exc), param_hint="'--justification'") from None
    try:
        comps = build_audit(settings, stream=cli_stream_name())
    except (SettingsError, ValueError, AuditError) as exc:
        raise _fail(f"the audit trail cannot be opened: {exc}") from None
    store, engine = _roles_store()
    try:
        before = store.roles_of(subject)
        new = store.grant(subject, parsed, by="cli")
        if new:
            event = ev.config_change(
                actor=Actor(ActorType.SYSTEM, client_id="cli"),
                target=Target("admin_roles", comps.fingerprinter.pseudonym(subject)),
                key="admin.roles",
                before=orjson.dumps(list(before)).decode(),
                after=orjson.dumps(list(store.roles_of(subject))).decode(),
                justification=why,
            )
            try:
                comps.trail.log_start_sync()
                comps.trail.emit_sync(event)
            except AuditError as exc:
                store.revoke(subject, parsed)
                raise _fail(f"not granted: the audit trail refused the record ({exc})") from None
    finally:
        engine.dispose()
        comps.stop_sync()
    typer.echo(f"role {parsed} {'granted' if new else 'was already held'}")


def _pseudonymise() -> Callable[[str], str]:
    from kroonika.auditing import pseudonymiser
    from kroonika.settings import SettingsError, load_settings

    try:
        return pseudonymiser(load_settings()).pseudonym
    except (SettingsError, ValueError) as exc:
        raise _fail(f"the pseudonymisation key cannot be read: {exc}") from None


def _shown(value: str) -> str:
    """``value`` with the characters a terminal would act on escaped (rows written before
    subjects were checked can hold them)."""
    from kroonika.audit.formats._text import escape_unprintable

    return escape_unprintable(value, lambda ch: ascii(ch)[1:-1])


@admins_app.command("list")
def list_() -> None:
    """Role holders, one grant per line: pseudonym (as the audit trail names the person),
    country, role, granted by. No personal code: ``kroonika admins show CODE`` answers
    for a person you name."""
    from kroonika.admin._roles import country_of

    pseudonymise = _pseudonymise()
    store, engine = _roles_store()
    try:
        for subject, role, by, _ in store.holders():
            shown = (pseudonymise(subject), country_of(subject) or "", role, by)
            typer.echo("\t".join(_shown(v) for v in shown))
    finally:
        engine.dispose()


@admins_app.command("show")
def show(
    personal_code: CodeArg = None,
    personal_code_file: CodeFileOpt = None,
) -> None:
    """The pseudonym and roles (comma-separated, empty if none) of the person named."""
    from kroonika.admin._roles import checked_subject
    from kroonika.cli import _settings

    try:
        subject = checked_subject(code_argument(_settings(), personal_code, personal_code_file))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    pseudonymise = _pseudonymise()
    store, engine = _roles_store()
    try:
        roles = store.roles_of(subject)
    finally:
        engine.dispose()
    typer.echo(f"{pseudonymise(subject)}\t{','.join(roles)}")


def register_admin_commands(app: typer.Typer) -> None:
    app.add_typer(admins_app, name="admins")
