"""The ``kroonika`` command line (Typer)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from kroonika.audit import (
    Actor,
    ActorType,
    AuditError,
    PublicKeys,
    Query,
    SqlAuditStore,
    StoreError,
    events,
    run_query,
    verify_store,
)
from kroonika.audit._model import DetailValue
from kroonika.audit.formats._text import clean
from kroonika.audit.integrity import inclusion_proof, leaf_hash
from kroonika.audit.store._types import Checkpoint
from kroonika.auditing import AuditComponents, build_audit
from kroonika.cli_admin import register_admin_commands
from kroonika.cli_service import register_service_commands
from kroonika.cli_tokens import register as register_token_commands
from kroonika.settings import Settings, SettingsError, load_settings

app = typer.Typer(no_args_is_help=True, help="Kroonika: token identity manager and audit trail.")
audit_app = typer.Typer(no_args_is_help=True, help="Query, verify and export the audit trail.")
keys_app = typer.Typer(no_args_is_help=True, help="Audit signing (checkpoint) keys.")
checkpoint_app = typer.Typer(no_args_is_help=True, help="Checkpoints for outside witnesses.")
app.add_typer(audit_app, name="audit")
register_service_commands(app)
register_token_commands(app)
register_admin_commands(app)
audit_app.add_typer(keys_app, name="keys")
audit_app.add_typer(checkpoint_app, name="checkpoint")

EXIT_INTACT, EXIT_DAMAGED, EXIT_USAGE = 0, 1, 2

StoreOpt = Annotated[
    str | None, typer.Option("--store", help="Store URL or SQLite path (default: configured)")
]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_USAGE)


def _settings() -> Settings:
    try:
        return load_settings()
    except (SettingsError, ValueError) as exc:
        raise _fail(str(exc)) from None


def _open_read_only(settings: Settings, url: str | None) -> SqlAuditStore:
    try:
        return SqlAuditStore(url or settings.resolved_audit_store_url(), read_only=True)
    except AuditError as exc:
        raise _fail(str(exc)) from None


@contextmanager
def _access_trail(settings: Settings) -> Iterator[AuditComponents]:
    """The configured trail, open for recording ``audit.access`` by this command.
    Reading the trail without recording the read is refused (fail closed)."""
    try:
        comps = build_audit(settings, stream=f"cli-{_short_stream()}")
        comps.trail.log_start_sync()
    except (AuditError, SettingsError) as exc:
        raise _fail(f"cannot record this access in the audit trail: {exc}") from None
    try:
        yield comps
    finally:
        comps.stop_sync()


def _short_stream() -> str:
    import os
    import socket

    return f"{socket.gethostname().split('.')[0][:40]}-{os.getpid()}-{os.urandom(2).hex()}"


def _record_access(comps: AuditComponents, action: str, **details: DetailValue) -> None:
    event = events.audit_access(
        actor=Actor(ActorType.ADMIN, roles=("cli",)), action=action, interface="cli"
    )
    event.details.update(details)
    try:
        comps.trail.emit_sync(event)
    except AuditError as exc:
        raise _fail(f"cannot record this access in the audit trail: {exc}") from None


def _public_keys(settings: Settings, keys_file: Path | None) -> PublicKeys:
    if keys_file is not None:
        try:
            return PublicKeys.from_json(keys_file.read_bytes())
        except (OSError, AuditError) as exc:
            raise _fail(f"cannot read public keys from {keys_file}: {exc}") from None
    keys = PublicKeys.from_directory(settings.resolved_audit_keys_dir())
    if not keys.kids():
        raise _fail(
            f"no public keys in {settings.resolved_audit_keys_dir()}; pass --keys FILE "
            "(from `kroonika audit keys export`)"
        )
    return keys


def _load_checkpoint(path: Path) -> list[Checkpoint]:
    """The checkpoints of an exported file; anything malformed is a usage error."""
    from kroonika.audit.verify import load_checkpoints

    try:
        return load_checkpoints(path.read_bytes())
    except (OSError, ValueError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise _fail(f"cannot read checkpoint file {path}: {exc}") from None


@audit_app.command("verify")
def verify_cmd(
    store: StoreOpt = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="An exported checkpoint file (detects truncation)")
    ] = None,
    keys: Annotated[Path | None, typer.Option(help="Public keys JSON file")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable report")] = False,
    archive: Annotated[
        Path | None,
        typer.Option("--archive", help="Verify a retention archive (.jsonl.gz) on its own"),
    ] = None,
) -> None:
    """Recompute hashes, chain, Merkle roots and signatures. Exit 0 intact, 1 damaged,
    2 usage or access error."""
    if archive is not None:
        from kroonika.cli_audit_ops import archive_verify

        archive_verify(archive, keys, as_json)  # raises typer.Exit(0|1|2)
    settings = _settings()
    public = _public_keys(settings, keys)
    external = _load_checkpoint(checkpoint) if checkpoint else []
    source = _open_read_only(settings, store)
    with _access_trail(settings) as comps:
        try:
            report = verify_store(source, public, external=external)
        except (AuditError, StoreError) as exc:
            raise _fail(str(exc)) from None
        finally:
            source.close()
        _record_access(
            comps,
            "verify",
            result="intact" if report.intact else "damaged",
            returned=report.records,
            query=f"store={_redact_url(source.url)}",
        )
    if as_json:
        typer.echo(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        for s in report.streams:
            typer.echo(
                f"stream {s.stream}: {s.records} records, {s.blocks} blocks, "
                f"signed to {s.signed_size}, root {s.root[:16]}…"
            )
        if report.intact:
            typer.echo(f"intact: {report.records} records verified")
        for f in report.findings:
            typer.echo(f"DAMAGE {f.kind} stream={f.stream} seq={f.seq}: {f.detail}")
    raise typer.Exit(EXIT_INTACT if report.intact else EXIT_DAMAGED)


def _redact_url(url: str) -> str:
    """A store URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}"
    return url


@audit_app.command("generate")
def generate_cmd(
    count: Annotated[int, typer.Option("--count", min=1, help="Number of events")] = 1000,
    store: StoreOpt = None,
    seed: Annotated[int, typer.Option(help="Random seed")] = 1,
) -> None:
    """Write COUNT realistic synthetic events through the full pipeline."""
    from kroonika.audit.synthetic import generate_events

    settings = _settings()
    if store:
        settings = settings.model_copy(update={"audit_store_url": store})

    async def run() -> int:
        comps = build_audit(settings)
        await comps.trail.start()
        written = 0
        try:
            batch = []
            for event in generate_events(count, seed=seed):
                batch.append(event)
                if len(batch) == 1000:
                    written += len(await comps.trail.emit_many(batch))
                    batch = []
            if batch:
                written += len(await comps.trail.emit_many(batch))
        finally:
            await comps.trail.stop()
            comps.store.close()
        return written

    try:
        written = asyncio.run(run())
    except (AuditError, SettingsError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"wrote {written} events")


def _query(
    from_: str | None,
    to: str | None,
    types: list[str] | None,
    categories: list[str] | None,
    outcome: str | None,
    actor: str | None,
    correlation: str | None,
    ip: str | None,
    stream: str | None = None,
) -> Query:
    return Query(
        from_time=from_,
        to_time=to,
        types=tuple(types or ()),
        categories=tuple(categories or ()),
        outcome=outcome,
        actor=actor,
        correlation=correlation,
        ip_prefix=ip,
        stream=stream,
    )


FromOpt = Annotated[str | None, typer.Option("--from", help="RFC 3339 start time")]
ToOpt = Annotated[str | None, typer.Option("--to", help="RFC 3339 end time")]
TypeOpt = Annotated[list[str] | None, typer.Option("--type", help="Event type or prefix")]
CatOpt = Annotated[list[str] | None, typer.Option("--category")]
OutcomeOpt = Annotated[str | None, typer.Option("--outcome")]
ActorOpt = Annotated[str | None, typer.Option("--actor", help="Actor pseudonym")]
CorrOpt = Annotated[str | None, typer.Option("--correlation", help="request/flow/trace id")]
IpOpt = Annotated[str | None, typer.Option("--ip", help="Source IP prefix, e.g. 192.0.2.0/24")]


@audit_app.command("query")
def query_cmd(
    store: StoreOpt = None,
    from_: FromOpt = None,
    to: ToOpt = None,
    type_: TypeOpt = None,
    category: CatOpt = None,
    outcome: OutcomeOpt = None,
    actor: ActorOpt = None,
    correlation: CorrOpt = None,
    ip: IpOpt = None,
    limit: Annotated[int | None, typer.Option(min=1)] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table or jsonl")] = "table",
) -> None:
    """Search the trail (streamed; works on read-only copies)."""
    if output not in ("table", "jsonl"):
        raise _fail("--output must be table or jsonl")
    q = _query(from_, to, type_, category, outcome, actor, correlation, ip)
    if output == "jsonl":
        _stream_records(store, q, "query", output, lambda body: body, limit=limit)
    else:
        _stream_records(
            store, q, "query", output, lambda b: _table_row(orjson.loads(b)).encode(), limit=limit
        )


def _stream_records(
    store: str | None,
    q: Query,
    action: str,
    fmt: str,
    render: Callable[[bytes], bytes],
    *,
    limit: int | None = None,
) -> None:
    """Write the matching records to standard output, one rendered line each, then
    record the read as ``audit.access`` (streamed: memory does not grow)."""
    settings = _settings()
    source = _open_read_only(settings, store)
    n = 0
    with _access_trail(settings) as comps:
        out = sys.stdout.buffer
        try:
            for body in run_query(source, q, limit=limit):
                n += 1
                out.write(render(body) + b"\n")
            out.flush()
        except (AuditError, StoreError) as exc:
            raise _fail(str(exc)) from None
        finally:
            source.close()
        _record_access(comps, action, query=q.describe(), returned=n, format=fmt)


def _table_row(doc: dict[str, Any]) -> str:
    """One line of the ``query`` / ``tail`` table. Every value is display text
    (:func:`clean`): a stored value cannot start a forged row, send a terminal escape or
    hide text in invisible characters."""
    actor = doc.get("actor") or {}
    source = doc.get("source") or {}
    return "  ".join(
        [
            clean(str(doc.get("time", "")))[:26],
            clean(f"{doc.get('stream')}#{doc.get('seq')}"),
            f"{clean(str(doc.get('type', ''))):<26}",
            f"{clean(str(doc.get('outcome', ''))):<7}",
            clean(
                str(actor.get("pseudonym") or actor.get("client_id") or actor.get("type") or "-")
            ),
            clean(str(source.get("ip") or "-")),
            clean(str(doc.get("reason") or "")),
        ]
    )


@audit_app.command("tail")
def tail_cmd(
    store: StoreOpt = None,
    lines: Annotated[int, typer.Option("-n", min=1, help="How many recent events")] = 20,
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
    interval: Annotated[float, typer.Option(help="Poll interval with --follow")] = 1.0,
) -> None:
    """Show the most recent events (and follow new ones)."""
    import collections
    import time as _time

    settings = _settings()
    source = _open_read_only(settings, store)
    with _access_trail(settings) as comps:
        _record_access(comps, "tail", query=f"last {lines}", format="table")
        recent: collections.deque[bytes] = collections.deque(maxlen=lines)
        last_row = 0
        for block in source.blocks():
            recent.extend(block.records())
            last_row = block.rowid
        for body in recent:
            typer.echo(_table_row(orjson.loads(body)))
        try:
            while follow:
                _time.sleep(interval)
                for block in source.blocks():
                    if block.rowid > last_row:
                        for body in block.records():
                            typer.echo(_table_row(orjson.loads(body)))
                        last_row = block.rowid
        except KeyboardInterrupt:
            pass
        finally:
            source.close()


@audit_app.command("export")
def export_cmd(
    store: StoreOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="json|ecs|ocsf|cef|leef")] = "json",
    from_: FromOpt = None,
    to: ToOpt = None,
    type_: TypeOpt = None,
    category: CatOpt = None,
    outcome: OutcomeOpt = None,
    actor: ActorOpt = None,
    correlation: CorrOpt = None,
    ip: IpOpt = None,
) -> None:
    """Stream a range of the trail in a SIEM format to standard output."""
    from kroonika.audit import formats

    if fmt != "json" and fmt not in formats.RENDERERS:
        raise _fail(f"unknown format {fmt!r}; one of json, {', '.join(sorted(formats.RENDERERS))}")
    q = _query(from_, to, type_, category, outcome, actor, correlation, ip)
    if fmt == "json":
        _stream_records(store, q, "export", fmt, lambda body: body)
    else:
        _stream_records(
            store, q, "export", fmt, lambda b: formats.render(fmt, orjson.loads(b)).encode()
        )


@audit_app.command("proof")
def proof_cmd(
    seq: Annotated[int, typer.Option("--seq", min=1, help="Sequence number of the event")],
    stream: Annotated[str | None, typer.Option(help="Stream (default: the only one)")] = None,
    store: StoreOpt = None,
) -> None:
    """Print an RFC 9162 inclusion proof of one event against the latest signed head."""
    settings = _settings()
    source = _open_read_only(settings, store)
    with _access_trail(settings) as comps:
        streams = source.streams()
        if stream is None:
            candidates = [s for s in streams if not s.startswith("cli-")]
            if len(candidates) != 1:
                raise _fail(f"name a --stream; the store has {len(streams)} streams")
            stream = candidates[0]
        leaves: list[bytes] = []
        head = None
        record = None
        for block in source.blocks(stream):
            for body in block.records():
                leaves.append(leaf_hash(body))
                if len(leaves) == seq:
                    record = body
            head = block.head
        source.close()
        if head is None or record is None or seq > head.size:
            raise _fail(f"stream {stream} has no signed record {seq}")
        proof = inclusion_proof(seq - 1, head.size, leaves.__getitem__)
        _record_access(comps, "proof", query=f"stream={stream} seq={seq}", returned=1)
    typer.echo(
        orjson.dumps(
            {
                "stream": stream,
                "seq": seq,
                "leaf_index": seq - 1,
                "leaf_hash": leaves[seq - 1].hex(),
                "tree_size": head.size,
                "root": head.root.hex(),
                "head": {"time": head.time, "kid": head.kid, "signature": head.signature.hex()},
                "proof": [h.hex() for h in proof],
                "record": orjson.loads(record),
            },
            option=orjson.OPT_INDENT_2,
        ).decode()
    )


@keys_app.command("list")
def keys_list() -> None:
    """List the checkpoint signing keys (the active one is marked)."""
    from kroonika.audit import KeyRing

    settings = _settings()
    try:
        ring = KeyRing.open(settings.resolved_audit_keys_dir())
    except AuditError as exc:
        raise _fail(str(exc)) from None
    for kid in ring.public_keys().kids():
        typer.echo(f"{kid}{'  (active)' if kid == ring.active_kid else ''}")


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Add a new signing key and make it active; old public keys stay for verification."""
    from kroonika.audit import KeyRing

    settings = _settings()
    ring = KeyRing.open(settings.resolved_audit_keys_dir(), create=not settings.production)
    old, new = ring.rotate()
    with _access_trail(settings) as comps:
        comps.trail.emit_sync(
            events.key_rotate(
                actor=Actor(ActorType.ADMIN, roles=("cli",)),
                purpose="audit_checkpoint",
                old_kid=old,
                new_kid=new,
            )
        )
    typer.echo(f"rotated: {old} -> {new}")


@keys_app.command("export")
def keys_export(
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
) -> None:
    """Write the public keys (JSON) that verifiers need."""
    settings = _settings()
    keys = PublicKeys.from_directory(settings.resolved_audit_keys_dir())
    data = keys.to_json()
    if output:
        output.write_bytes(data)
    else:
        typer.echo(data.decode())


@checkpoint_app.command("export")
def checkpoint_export(
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write")],
    store: StoreOpt = None,
) -> None:
    """Write the latest checkpoint of every stream to a file for an outside witness."""
    settings = _settings()
    source = _open_read_only(settings, store)
    with _access_trail(settings) as comps:
        latest: dict[str, Checkpoint] = {}
        for cp in source.checkpoints():
            if cp.stream not in latest or cp.size >= latest[cp.stream].size:
                latest[cp.stream] = cp
        source.close()
        docs = [orjson.loads(cp.to_json()) for cp in latest.values()]
        output.write_bytes(orjson.dumps({"checkpoints": docs}, option=orjson.OPT_INDENT_2))
        _record_access(comps, "checkpoint_export", query=str(output.name), returned=len(docs))
    typer.echo(f"wrote {len(docs)} checkpoints to {output}")


from kroonika.cli_audit_ops import register_ops  # noqa: E402  (its commands use the helpers above)

register_ops(audit_app)


def main() -> None:
    try:
        app()
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
