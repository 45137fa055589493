"""``kroonika audit sinks|retention|archive``: operate shipping and retention."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer

from kroonika.audit.formats._text import clean, dumps

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
    """Each sink's cursor per stream and how many events it is behind: the configured
    sinks (also those that delivered nothing yet), cursors of sinks no longer configured,
    corrupted cursors and pending dead letters. Exit 1 when a configured sink cannot be
    built (the service would refuse to start: one line per such sink) or a cursor is
    corrupted."""
    from sqlalchemy import func, select

    from kroonika.audit.alerting import EVALUATOR_NAME
    from kroonika.audit.sinks import CursorStore
    from kroonika.audit.sinks._runner import CHECKPOINT_CURSOR_SUFFIX
    from kroonika.audit.store._schema import blocks
    from kroonika.cli import _open_read_only, _reading, _settings
    from kroonika.shipping import checked_sinks

    settings = _settings()
    built, refusals = checked_sinks(settings)
    configured = None if refusals else {s.name for s in built}
    source = _open_read_only(settings, store)
    try:
        with _reading(source):
            state = CursorStore(source.engine)
            cursors, broken = state.all(), state.corrupted()
            pending = state.pending_counts()
            with source.engine.connect() as conn:
                heads = {
                    str(stream): int(head or 0)
                    for stream, head in conn.execute(
                        select(blocks.c.stream, func.max(blocks.c.last_seq)).group_by(
                            blocks.c.stream
                        )
                    ).all()
                }
    finally:
        source.close()
    rows = dict(cursors)
    for name in configured or ():
        for stream in heads:
            rows.setdefault((name, stream), 0)
    for (sink, stream), seq in sorted(rows.items()):
        base = sink.removesuffix(CHECKPOINT_CURSOR_SUFFIX)
        lag = max(0, heads.get(stream, 0) - seq) if base == sink else 0
        if base == EVALUATOR_NAME and settings.alerts_enabled:
            stale = "  (alert rules)"
        elif configured is not None and base not in configured:
            stale = "  (not configured)"
        else:
            stale = ""
        typer.echo(f"{clean(sink)}  {clean(stream)}  delivered_to={seq}  lag_events={lag}{stale}")
    for sink, stream in broken:
        typer.echo(f"{clean(sink)}  {clean(stream)}  cursor corrupted: not a sequence number")
    for name in configured or ():
        pending.setdefault(name, 0)  # "none", not "not looked at" (as /metrics says)
    for sink, n in sorted(pending.items()):
        typer.echo(f"{clean(sink)}  dead_letters_pending={n}")
    for refusal in refusals:
        typer.echo(f"error: {clean(str(refusal))}", err=True)
    if refusals or broken:
        raise typer.Exit(1)


@sinks_app.command("dead-letters")
def sinks_dead_letters(
    sink: Annotated[str | None, typer.Option(help="Only this sink")] = None,
    pending: Annotated[
        bool, typer.Option("--pending", help="Only those no replay has delivered")
    ] = False,
    store: StoreOpt = None,
) -> None:
    """Items sinks refused permanently (the events themselves stay in the store);
    ``replayed`` is when ``sinks replay`` delivered one (null: still pending)."""
    from kroonika.audit.sinks import CursorStore
    from kroonika.cli import (
        _access_trail,
        _open_read_only,
        _reading,
        _record_access,
        _settings,
    )

    settings = _settings()
    source = _open_read_only(settings, store)
    with _access_trail(settings) as comps:
        n = 0
        try:
            with _reading(source):
                rows = CursorStore(source.engine).dead_letters(sink, pending=pending)
            for row in rows:
                typer.echo(dumps(row))  # JSON with nothing a terminal would act on
                n += 1
        finally:
            source.close()
        query = f"sink={sink or 'all'}" + (" pending" if pending else "")
        _record_access(comps, "dead_letters", source, query=query, returned=n)


@sinks_app.command("replay")
def sinks_replay(
    sink: Annotated[str, typer.Option("--sink", help="The configured sink to deliver through")],
    all_: Annotated[
        bool, typer.Option("--all", help="Every pending dead letter of the sink")
    ] = False,
    seq: Annotated[
        list[str] | None,
        typer.Option(
            "--seq",
            help="STREAM:SEQ: the pending dead letters at that position, the event and a "
            "checkpoint of that size (repeatable)",
        ),
    ] = None,
    justification: Annotated[
        str | None,
        typer.Option("--justification", "-j", help="Why (recorded in the audit trail)"),
    ] = None,
) -> None:
    """Re-deliver dead letters through their sink once its destination is fixed: in
    order, one item at a time, each marked replayed (the rows stay). Recorded as
    audit.access (with the justification) before anything is sent, and one audit.sink
    per item. Exit 0 when all went, 1 when the destination refused again (the rest stay
    pending), 2 on a usage error."""
    import asyncio

    from kroonika.admin import JustificationMissing, PersonalCodeInText, check_justification
    from kroonika.audit import Actor, ActorType, AuditError
    from kroonika.audit.sinks import CursorStore, DeadLetterReplay, SinkEvent, audit_sink_event
    from kroonika.cli import _access_trail, _fail, _reading, _record_access, _settings, _shown
    from kroonika.settings import SettingsError
    from kroonika.shipping import build_sinks

    if all_ == bool(seq):
        raise _fail("give --all or --seq STREAM:SEQ (one of them)")
    wanted = {_stream_seq(value) for value in seq or []}
    settings = _settings()
    try:
        why = check_justification(
            justification,
            minimum=settings.admin_justification_min,
            pattern=settings.admin_ticket_pattern,
            where="-j/--justification",
        )
    except (JustificationMissing, PersonalCodeInText) as exc:
        raise _fail(f"--justification: {exc}") from None
    try:
        configured = {s.name: s for s in build_sinks(settings)}
    except SettingsError as exc:
        raise _fail(str(exc)) from None
    if sink not in configured:
        names = ", ".join(sorted(configured)) or "none"
        raise _fail(f"no sink named '{_shown(sink)}' is configured (configured: {names})")
    with _access_trail(settings, purpose="record this replay") as comps:
        with _reading(comps.store):
            rows = CursorStore(comps.store.engine).dead_letters(sink, pending=True)
            if wanted:
                rows = [r for r in rows if (str(r["stream"]), int(r["seq"])) in wanted]
                absent = sorted(wanted - {(str(r["stream"]), int(r["seq"])) for r in rows})
                if absent:
                    where = ", ".join(f"{_shown(st)}:{n}" for st, n in absent)
                    raise _fail(f"no pending dead letter of sink '{_shown(sink)}' at {where}")
            actor = Actor(ActorType.ADMIN, roles=("cli",))

            async def record(ev: SinkEvent) -> None:
                comps.trail.emit_sync(audit_sink_event(ev, actor, why))

            replay = DeadLetterReplay(comps.store, configured[sink], rows, on_event=record)
        selection = "all" if all_ else ",".join(f"{st}:{n}" for st, n in sorted(wanted))
        _record_access(
            comps,
            "sink_replay",
            comps.store,
            query=f"sink={sink} seq={selection}",
            returned=replay.count,
            justification=why,
        )
        try:
            if replay.count:
                asyncio.run(replay.run())
        except AuditError as exc:
            raise _fail(
                f"replay stopped: the audit trail could not record it ({exc}); "
                f"{len(replay.replayed)} dead letters were re-delivered and marked"
            ) from None
    for row in replay.replayed:
        typer.echo(
            f"replayed {clean(str(row['stream']))}#{row['seq']} {clean(str(row['item_id']))}"
        )
    done = len({(r["stream"], r["seq"], r["item_id"]) for r in replay.replayed})
    problems = []
    if replay.failed is not None:
        problems.append(
            f"stopped at {_shown(str(replay.failed['stream']))}#{replay.failed['seq']}: "
            + replay.error
        )
    if replay.missing:
        gone = ", ".join(
            f"{_shown(str(r['stream']))}#{r['seq']} ({why_})" for r, why_ in replay.missing
        )
        problems.append(f"not in the store: {gone}")
    if problems:
        typer.echo(
            "error: "
            + clean(
                f"replay of sink '{_shown(sink)}': {'; '.join(problems)}; "
                f"{done} of {replay.count} replayed, the other dead letters stay pending"
            ),
            err=True,
        )
        raise typer.Exit(1)
    if not replay.count:
        typer.echo(f"nothing to replay for sink '{clean(sink)}'")
        return
    typer.echo(f"replayed {done} of {replay.count} dead letters of sink '{clean(sink)}'")


def _stream_seq(value: str) -> tuple[str, int]:
    from kroonika.cli import _fail, _shown

    stream, _, number = value.rpartition(":")
    if not stream or not number.isdigit() or int(number) < 1:
        raise _fail(f"--seq takes STREAM:SEQ (e.g. web-1:42), not '{_shown(value)}'")
    return stream, int(number)


@retention_app.command("run")
def retention_run(
    archive_dir: Annotated[
        Path | None,
        typer.Option(
            help="Archive each range (gzip JSONL) before purging "
            "(default: KROONIKA_AUDIT_ARCHIVE_DIR)"
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would go")] = False,
    legal_hold: Annotated[
        bool,
        typer.Option("--legal-hold", help="Refuse to purge (as KROONIKA_AUDIT_LEGAL_HOLD does)"),
    ] = False,
) -> None:
    """Purge whole checkpointed ranges past their retention and shred the data keys of
    anonymous months and login flows no retained event needs; records audit.retention.
    The policy is the service's: KROONIKA_AUDIT_RETENTION_DEFAULT_DAYS,
    KROONIKA_AUDIT_RETENTION_DAYS and KROONIKA_AUDIT_LEGAL_HOLD."""
    import dataclasses

    from kroonika.audit import AuditError, AuditUnavailable
    from kroonika.audit.retention import RetentionJob, retention_event, shredded_event
    from kroonika.cli import _access_trail, _fail, _settings
    from kroonika.shipping import retention_policy

    settings = _settings()
    policy = retention_policy(settings)
    if legal_hold:
        policy = dataclasses.replace(policy, legal_hold=True)
    with _access_trail(settings) as comps:
        # Each purge and each shredding is recorded before anything goes (planned) and
        # after (done or failed); a refused record stops it: no action without its record.
        job = RetentionJob(
            comps.store,
            policy,
            archive_dir=archive_dir if archive_dir is not None else settings.audit_archive_dir,
            on_purged=lambda result: comps.trail.emit_sync(retention_event(result)),
            keyring=comps.keyring,
            on_shredded=lambda n, before, phase: comps.trail.emit_sync(
                shredded_event(n, before, phase)
            ),
            # a planned record an earlier run left alone is settled first (reconciled)
            on_reconciled=lambda event: settled.append(comps.trail.emit_sync(event)),
        )
        settled: list[object] = []
        try:
            results = job.run(dry_run=dry_run)
            shredded = job.shred_keys(dry_run=dry_run)
        except AuditUnavailable as exc:
            raise _fail(
                f"retention stopped, the audit trail refused a record ({exc}); nothing is "
                "purged or shredded before its planned record is stored"
            ) from None
        except AuditError as exc:
            raise _fail(str(exc)) from None
    if settled:
        typer.echo(
            f"settled {len(settled)} planned record(s) an earlier run left alone "
            "(audit.retention phase reconciled)"
        )
    for r in results:
        verb = "would purge" if dry_run else "purged"
        extra = f" archive={clean(str(r.archive))}" if r.archive else ""
        typer.echo(
            f"{verb} {clean(r.stream)} {r.first_seq}..{r.last_seq} ({r.count} events){extra}"
        )
    if not results:
        typer.echo("nothing to purge")
    if shredded:
        verb = "would shred" if dry_run else "shredded"
        typer.echo(f"{verb} {shredded} data keys of anonymous months and login flows")


@archive_app.command("verify")
def archive_verify(
    archive: Annotated[Path, typer.Argument(help="A .jsonl.gz archive segment")],
    keys: Annotated[Path | None, typer.Option(help="Public keys JSON file")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Verify an archive on its own. Exit 0 intact, 1 damaged, 2 usage error."""
    from kroonika.audit.retention import ArchiveUnreadable, verify_archive
    from kroonika.cli import _access_trail, _fail, _public_keys, _record_access, _settings

    if not archive.is_file():
        raise _fail(f"no archive at {archive}")
    settings = _settings()
    with _access_trail(settings) as comps:
        try:
            report = verify_archive(archive, _public_keys(settings, keys))
        except ArchiveUnreadable as exc:
            raise _fail(str(exc)) from None
        _record_access(
            comps,
            "verify",
            store=f"archive:{archive}",
            returned=report.records,
            result="intact" if report.intact else "damaged",
        )
    if as_json:
        typer.echo(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        for f in report.findings:
            typer.echo(
                f"DAMAGE {f.kind} stream={clean(str(f.stream))} seq={f.seq}: {clean(f.detail)}"
            )
        if report.intact:
            typer.echo(f"intact: {report.records} archived records verified")
    raise typer.Exit(0 if report.intact else 1)
