"""``kroonika audit sinks|retention|archive``: operate shipping and retention."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer

sinks_app = typer.Typer(no_args_is_help=True, help="Sink cursors, lag and dead letters.")
retention_app = typer.Typer(no_args_is_help=True, help="Purge old audit blocks by policy.")
archive_app = typer.Typer(no_args_is_help=True, help="Retention archives.")

StoreOpt = Annotated[
    str | None, typer.Option("--store", help="Store URL or SQLite path (default: configured)")
]


def register_ops(audit_app: typer.Typer) -> None:
    audit_app.add_typer(sinks_app, name="sinks")
    audit_app.add_typer(retention_app, name="retention")
    audit_app.add_typer(archive_app, name="archive")


@sinks_app.command("status")
def sinks_status(store: StoreOpt = None) -> None:
    """Each sink's cursor per stream and how many events it is behind."""
    from sqlalchemy import func, select

    from kroonika.audit.sinks import CursorStore
    from kroonika.audit.store._schema import blocks
    from kroonika.cli import _open_read_only, _settings

    source = _open_read_only(_settings(), store)
    try:
        cursors = CursorStore(source.engine).all()
        with source.engine.connect() as conn:
            heads = dict(
                conn.execute(
                    select(blocks.c.stream, func.max(blocks.c.last_seq)).group_by(blocks.c.stream)
                ).all()
            )
        for (sink, stream), seq in sorted(cursors.items()):
            lag = max(0, int(heads.get(stream, 0) or 0) - seq) if "@" not in sink else 0
            typer.echo(f"{sink}  {stream}  delivered_to={seq}  lag_events={lag}")
    finally:
        source.close()


@sinks_app.command("dead-letters")
def sinks_dead_letters(
    sink: Annotated[str | None, typer.Option(help="Only this sink")] = None,
    store: StoreOpt = None,
) -> None:
    """Items sinks refused permanently (the events themselves stay in the store)."""
    from kroonika.audit.sinks import CursorStore
    from kroonika.cli import _access_trail, _open_read_only, _record_access, _settings

    settings = _settings()
    source = _open_read_only(settings, store)
    with _access_trail(settings) as comps:
        n = 0
        try:
            for row in CursorStore(source.engine).dead_letters(sink):
                typer.echo(orjson.dumps(row).decode())
                n += 1
        finally:
            source.close()
        _record_access(comps, "dead_letters", query=f"sink={sink or 'all'}", returned=n)


@retention_app.command("run")
def retention_run(
    archive_dir: Annotated[
        Path | None, typer.Option(help="Archive each range (gzip JSONL) before purging")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would go")] = False,
    legal_hold: Annotated[bool, typer.Option("--legal-hold", help="Refuse to purge")] = False,
) -> None:
    """Purge whole checkpointed ranges past their retention; records audit.retention."""
    from kroonika.audit import Actor, ActorType, AuditError, events
    from kroonika.audit.retention import (
        PurgeResult,
        RetentionJob,
        RetentionPolicy,
        retention_event_details,
    )
    from kroonika.cli import _access_trail, _fail, _settings

    settings = _settings()
    with _access_trail(settings) as comps:

        def record(result: PurgeResult) -> None:
            event = events.audit_retention(actor=Actor(ActorType.SYSTEM))
            event.details.update(retention_event_details(result))
            comps.trail.emit_sync(event)

        job = RetentionJob(
            comps.store,
            RetentionPolicy(legal_hold=legal_hold),
            archive_dir=archive_dir,
            on_purged=None if dry_run else record,
            keyring=comps.keyring,
        )
        try:
            results = job.run(dry_run=dry_run)
        except AuditError as exc:
            raise _fail(str(exc)) from None
    for r in results:
        verb = "would purge" if dry_run else "purged"
        extra = f" archive={r.archive}" if r.archive else ""
        typer.echo(f"{verb} {r.stream} {r.first_seq}..{r.last_seq} ({r.count} events){extra}")
    if not results:
        typer.echo("nothing to purge")


@archive_app.command("verify")
def archive_verify(
    archive: Annotated[Path, typer.Argument(help="A .jsonl.gz archive segment")],
    keys: Annotated[Path | None, typer.Option(help="Public keys JSON file")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Verify an archive on its own. Exit 0 intact, 1 damaged, 2 usage error."""
    from kroonika.audit.retention import verify_archive
    from kroonika.cli import _access_trail, _fail, _public_keys, _record_access, _settings

    if not archive.is_file():
        raise _fail(f"no archive at {archive}")
    settings = _settings()
    with _access_trail(settings) as comps:
        report = verify_archive(archive, _public_keys(settings, keys))
        _record_access(
            comps,
            "verify",
            query=f"archive={archive.name}",
            returned=report.records,
            result="intact" if report.intact else "damaged",
        )
    if as_json:
        typer.echo(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        for f in report.findings:
            typer.echo(f"DAMAGE {f.kind} stream={f.stream} seq={f.seq}: {f.detail}")
        if report.intact:
            typer.echo(f"intact: {report.records} archived records verified")
    raise typer.Exit(0 if report.intact else 1)
