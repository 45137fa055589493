"""``kroonika admins add|list``: bootstrap administrators from the command line (the first
one cannot be granted through the API, which needs an administrator)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

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


@admins_app.command("add")
def add(
    personal_code: Annotated[str, typer.Argument(help="Personal code, e.g. 38001085718")],
    role: Annotated[str, typer.Option(help="admin, auditor, security or privacy")] = "admin",
) -> None:
    """Give a person a role (recorded as granted by the command line)."""
    from kroonika.admin import parse_roles

    try:
        (parsed,) = parse_roles([role])
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    store, engine = _roles_store()
    try:
        new = store.grant(personal_code, parsed, by="cli")
    finally:
        engine.dispose()
    typer.echo(f"role {parsed} {'granted' if new else 'was already held'}")


@admins_app.command("list")
def list_() -> None:
    """Role holders."""
    store, engine = _roles_store()
    try:
        for subject, role, by, _ in store.holders():
            typer.echo(f"{subject}\t{role}\t{by}")
    finally:
        engine.dispose()


def register_admin_commands(app: typer.Typer) -> None:
    app.add_typer(admins_app, name="admins")
