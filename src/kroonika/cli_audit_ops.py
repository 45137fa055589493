"""``kroonika audit sinks|retention|archive``: operate shipping and retention."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import orjson
import typer

from kroonika.audit.formats._text import clean, dumps
from kroonika.audit.integrity import CompactRange

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
    from kroonika.cli import _open_read_only, _reading, _settings

    source = _open_read_only(_settings(), store)
    try:
        with _reading(source):
            cursors = CursorStore(source.engine).all()
            with source.engine.connect() as conn:
                heads = dict(
                    conn.execute(
                        select(blocks.c.stream, func.max(blocks.c.last_seq)).group_by(
                            blocks.c.stream
                        )
                    ).all()
                )
    finally:
        source.close()
    for (sink, stream), seq in sorted(cursors.items()):
        lag = max(0, int(heads.get(stream, 0) or 0) - seq) if "@" not in sink else 0
        typer.echo(f"{clean(sink)}  {clean(stream)}  delivered_to={seq}  lag_events={lag}")


@sinks_app.command("dead-letters")
def sinks_dead_letters(
    sink: Annotated[str | None, typer.Option(help="Only this sink")] = None,
    store: StoreOpt = None,
) -> None:
    """Items sinks refused permanently (the events themselves stay in the store)."""
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
                rows = CursorStore(source.engine).dead_letters(sink)
            for row in rows:
                typer.echo(dumps(row))  # JSON with nothing a terminal would act on
                n += 1
        finally:
            source.close()
        _record_access(comps, "dead_letters", source, query=f"sink={sink or 'all'}", returned=n)


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
        extra = f" archive={clean(str(r.archive))}" if r.archive else ""
        typer.echo(
            f"{verb} {clean(r.stream)} {r.first_seq}..{r.last_seq} ({r.count} events){extra}"
        )
    if not results:
        typer.echo("nothing to purge")


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


def inclusion_proof_after_base(
    index: int, size: int, base: CompactRange, leaf_at: Callable[[int], bytes]
) -> list[bytes]:
    """``PATH(index, D[size])`` of RFC 9162 section 2.1.3.1, bottom-up, when the leaves
    ``[0, base.size)`` are gone (purged by retention) and only their Merkle frontier
    ``base`` is kept; ``leaf_at(i)`` gives the kept leaf hashes, ``i >= base.size``.

    For a leaf at or after the base this is always possible: a subtree of the path that is
    right of the leaf holds only kept leaves; one left of it is aligned and perfect, and
    either lies inside ``[0, base.size)`` (then it is a node of the frontier) or ends after
    it (then it starts at a frontier node, and the frontier's remaining nodes with the kept
    leaves after them make it). ``ValueError`` for a purged leaf.
    """
    k = base.size
    if not k <= index < size:
        raise ValueError(f"leaf {index} is not kept in a tree of size {size} based at {k}")
    spans: list[tuple[int, int, bytes]] = []  # (start, width, root) of the frontier's nodes
    start = 0
    widths = [1 << b for b in range(k.bit_length() - 1, -1, -1) if k >> b & 1]
    for width, node in zip(widths, base.hashes, strict=True):
        spans.append((start, width, node))
        start += width

    def subtree(lo: int, hi: int) -> bytes:
        if lo >= k:
            tree = CompactRange()
            for i in range(lo, hi):
                tree.append(leaf_at(i))
            return tree.root()
        tail = [(s, w, h) for s, w, h in spans if s >= lo]
        if not tail or tail[0][0] != lo:
            raise ValueError(f"subtree [{lo}, {hi}) is not made of frontier nodes")
        if hi <= k:
            if tail[0][1] != hi - lo:
                raise ValueError(f"subtree [{lo}, {hi}) is not a frontier node")
            return tail[0][2]
        tree = CompactRange.from_bytes((k - lo).to_bytes(8, "big") + b"".join(h for *_, h in tail))
        for i in range(k, hi):
            tree.append(leaf_at(i))
        return tree.root()

    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + (1 << ((hi - lo - 1).bit_length() - 1))  # the largest power of 2 < hi - lo
        if index < mid:
            path.append(subtree(mid, hi))
            hi = mid
        else:
            path.append(subtree(lo, mid))
            lo = mid
    path.reverse()
    return path
