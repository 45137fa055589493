"""The ``kroonika`` command line (Typer)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Final

import orjson
import typer
from cryptography.exceptions import UnsupportedAlgorithm
from sqlalchemy.exc import SQLAlchemyError

from kroonika.audit import (
    Actor,
    ActorType,
    AuditError,
    PublicKeys,
    Query,
    QueryInvalid,
    SqlAuditStore,
    StoreError,
    events,
    run_query,
    verify_store,
)
from kroonika.audit._model import DetailValue
from kroonika.audit.formats._text import _json_escape, clean, escape_unprintable
from kroonika.audit.query import time_bound
from kroonika.audit.store._types import Checkpoint
from kroonika.auditing import AuditComponents, build_audit, cli_stream_name
from kroonika.cli_admin import register_admin_commands
from kroonika.cli_privacy import register_privacy
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
#: Standard output was closed early (``| head``): exit quietly, as click does for EPIPE.
EXIT_BROKEN_PIPE: Final = 1

StoreOpt = Annotated[
    str | None, typer.Option("--store", help="Store URL or SQLite path (default: configured)")
]


def _fail(message: str) -> typer.Exit:
    """A usage or access error: one line on standard error, exit 2. The message is display
    text (:func:`clean`) with any URL password masked; values the user gave should be
    passed through :func:`_shown` first so that they stay readable."""
    typer.echo(f"error: {clean(_mask_passwords(message))}", err=True)
    return typer.Exit(EXIT_USAGE)


def _shown(value: object) -> str:
    """User-given text (a path, a stream name, an option value) for a message: every
    character that :func:`clean` would drop or blank is escaped as ``repr`` does (``\\n``,
    ``\\x1b``, ``\\udcff``), so it can neither forge a line nor send a terminal escape and
    still reads as what was given."""
    return escape_unprintable(str(value), lambda ch: ascii(ch)[1:-1])


#: ``scheme://user:password@`` (SQLAlchemy's URL syntax: the password ends at the first
#: ``@``) and a libpq ``password=`` parameter.
_URL_PASSWORD: Final = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_PARAM_PASSWORD: Final = re.compile(r"([?&]password=)[^&\s]*", re.IGNORECASE)


def _mask_passwords(text: str) -> str:
    """``text`` with the password of every database URL in it replaced by ``***``."""
    return _PARAM_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", text))


def _first_line(exc: BaseException) -> str:
    """A driver error's first line, without SQL or parameters (they may hold data)."""
    text = str(getattr(exc, "orig", None) or exc) or type(exc).__name__
    return text.splitlines()[0][:200] if text.strip() else type(exc).__name__


def _settings() -> Settings:
    try:
        return load_settings()
    except (SettingsError, ValueError) as exc:
        raise _fail(str(exc)) from None


#: What opening a store, a key ring or the trail can raise for a bad URL, path, driver or
#: file, as opposed to a bug: each becomes a one-line usage error.
_OPEN_ERRORS: Final = (
    AuditError,
    SettingsError,
    SQLAlchemyError,
    sqlite3.Error,
    OSError,
    ValueError,  # a URL SQLAlchemy cannot parse (a port that is not a number), a bad key file
    UnsupportedAlgorithm,
    ImportError,  # the URL names a database driver that is not installed
)


def _open_error(exc: BaseException) -> str:
    if isinstance(exc, ImportError):
        return f"the database driver is not installed ({_shown(exc.name or exc)})"
    if isinstance(exc, AuditError | SettingsError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {_shown(exc.filename)}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _store_option(url: str | None) -> None:
    if url is not None and not url.strip():
        raise _fail("--store is empty: give a store URL or an SQLite path, or leave it out")


def _open_read_only(
    settings: Settings, url: str | None, *, follow: bool = False, may_be_empty: bool = False
) -> SqlAuditStore:
    """The store to read (``--store`` or the configured one), checked to be an audit store.
    ``follow=True`` (``tail -f``) also sees what a writer commits later.
    ``may_be_empty=True`` (verify against a checkpoint file) lets a file with no tables
    at all through: measured against a witness it is a store emptied of everything."""
    _store_option(url)
    target = settings.resolved_audit_store_url() if url is None else url
    name = _shown(_redact_url(target))
    try:
        source = SqlAuditStore(target, read_only=True, follow=follow)
    except AuditError as exc:
        raise _fail(str(exc)) from None
    except _OPEN_ERRORS as exc:
        raise _fail(f"cannot open the audit store {name}: {_open_error(exc)}") from None
    try:
        _check_audit_store(source, name, may_be_empty=may_be_empty)
    except BaseException:
        source.close()
        raise
    return source


_AUDIT_TABLES: Final = ("audit_blocks", "audit_checkpoints")


def _check_audit_store(source: SqlAuditStore, name: str, *, may_be_empty: bool = False) -> None:
    """Refuse anything that is not an audit store (an empty or foreign file, another
    database) before reading: its tables must be there and its first block readable."""
    from sqlalchemy import inspect, select

    from kroonika.audit.store._schema import blocks

    try:
        with source.engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            if set(_AUDIT_TABLES) <= tables:
                conn.execute(select(blocks.c.id).order_by(blocks.c.id).limit(1)).all()
    except (SQLAlchemyError, sqlite3.Error) as exc:
        raise _fail(f"cannot read the audit store {name}: {_first_line(exc)}") from None
    missing = [t for t in _AUDIT_TABLES if t not in tables]
    if missing and not (may_be_empty and not tables):
        raise _fail(f"{name} is not an audit store (no table {', '.join(missing)})")


@contextmanager
def _reading(source: SqlAuditStore) -> Iterator[None]:
    """Errors while reading ``source`` as one-line usage errors: a damaged file (a
    truncated database) may be found on any page, not only when it is opened."""
    try:
        yield
    except (AuditError, SQLAlchemyError, sqlite3.Error, orjson.JSONDecodeError) as exc:
        raise _fail(
            f"cannot read the audit store {_shown(_redact_url(source.url))}: {_first_line(exc)}"
        ) from None


@contextmanager
def _access_trail(
    settings: Settings, *, purpose: str = "record this access"
) -> Iterator[AuditComponents]:
    """The configured trail, open for recording ``audit.access`` by this command, with
    ``audit.log.start`` recorded (so it is known to be writable). Reading the trail
    without recording the read is refused (fail closed)."""
    try:
        comps = build_audit(settings, stream=cli_stream_name())
    except _OPEN_ERRORS as exc:
        raise _fail(f"cannot {purpose} in the audit trail: {_open_error(exc)}") from None
    try:
        comps.trail.log_start_sync()
    except AuditError as exc:
        comps.store.close()
        raise _fail(f"cannot {purpose} in the audit trail: {exc}") from None
    try:
        yield comps
    finally:
        comps.stop_sync()


def _record_access(
    comps: AuditComponents,
    action: str,
    source: SqlAuditStore | None = None,
    **details: DetailValue,
) -> None:
    """Record this command's read as ``audit.access``, naming the store it read (its
    password masked)."""
    event = events.audit_access(
        actor=Actor(ActorType.ADMIN, roles=("cli",)), action=action, interface="cli"
    )
    if source is not None:
        event.details["store"] = _redact_url(source.url)
    event.details.update(details)
    try:
        comps.trail.emit_sync(event)
    except AuditError as exc:
        raise _fail(f"cannot record this access in the audit trail: {exc}") from None


def _public_keys(settings: Settings, keys_file: Path | None) -> PublicKeys:
    if keys_file is not None:
        try:
            keys = PublicKeys.from_json(keys_file.read_bytes())
        except (OSError, AuditError) as exc:
            raise _fail(f"cannot read public keys from {_shown(keys_file)}: {exc}") from None
        if not keys.kids():
            raise _fail(f"{_shown(keys_file)} holds no public keys: nothing could be verified")
        return keys
    keys = _directory_keys(settings.resolved_audit_keys_dir())
    if not keys.kids():
        raise _fail(
            f"no public keys in {_shown(settings.resolved_audit_keys_dir())}; pass --keys FILE "
            "(from `kroonika audit keys export`)"
        )
    return keys


def _directory_keys(directory: Path) -> PublicKeys:
    """The ``*.pub`` keys of a key directory; a file that is not a key is a usage error."""
    try:
        return PublicKeys.from_directory(directory)
    except (OSError, ValueError) as exc:  # binascii.Error and UnicodeDecodeError too
        raise _fail(
            f"a *.pub file in {_shown(directory)} is not an Ed25519 public key: {_first_line(exc)}"
        ) from None


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
    source = _open_read_only(settings, store, may_be_empty=bool(external))
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
            source,
            result="intact" if report.intact else "damaged",
            returned=report.records,
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
    return _mask_passwords(url)


@audit_app.command("generate")
def generate_cmd(
    count: Annotated[int, typer.Option("--count", min=1, help="Number of events")] = 1000,
    store: StoreOpt = None,
    seed: Annotated[int, typer.Option(help="Random seed")] = 1,
) -> None:
    """Write COUNT realistic synthetic events through the full pipeline."""
    from kroonika.audit.synthetic import generate_events

    _store_option(store)
    settings = _settings()
    if store is not None:
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
    except _OPEN_ERRORS as exc:
        raise _fail(f"cannot write the audit trail: {_open_error(exc)}") from None
    typer.echo(f"wrote {written} events")


def _query(
    from_: str | None,
    to: str | None,
    types: list[str] | None,
    categories: list[str] | None,
    outcome: str | None,
    actors: list[str] | None,
    correlation: str | None,
    ip: str | None,
    stream: str | None = None,
) -> Query:
    """The filters of ``query`` and ``export``; a bound or prefix that cannot be meant as
    given is a usage error (it would otherwise match nothing, or the wrong events)."""
    start = _time_option("--from", from_, end=False)
    end = _time_option("--to", to, end=True)
    if start is not None and end is not None and start > end:
        raise _fail(f"--from {_shown(from_)} is after --to {_shown(to)}")
    query = Query(
        from_time=start,
        to_time=end,
        types=tuple(types or ()),
        categories=tuple(categories or ()),
        outcome=outcome,
        actors=tuple(actors or ()),
        correlation=correlation,
        ip_prefix=_ip_option(ip),
        stream=stream,
    )
    try:  # a value no event can have: refused before the trail is read (decision 0027)
        query.check()
    except QueryInvalid as exc:
        raise _fail(f"--{exc}") from None
    return query


def _time_option(name: str, value: str | None, *, end: bool) -> str | None:
    """An RFC 3339 bound in the stored form (UTC, microseconds, ``Z``)."""
    if value is None:
        return None
    try:
        return time_bound(value, end=end)
    except ValueError as exc:
        raise _fail(f"{name} {_shown(value)}: {exc}") from None


def _ip_option(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise _fail(
            f"--ip {_shown(value)} is not an IP address or prefix (e.g. 192.0.2.0/24)"
        ) from None


FromOpt = Annotated[str | None, typer.Option("--from", help="RFC 3339 start time")]
ToOpt = Annotated[str | None, typer.Option("--to", help="RFC 3339 end time")]
TypeOpt = Annotated[list[str] | None, typer.Option("--type", help="Event type or prefix")]
CatOpt = Annotated[list[str] | None, typer.Option("--category")]
OutcomeOpt = Annotated[str | None, typer.Option("--outcome")]
ActorOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--actor",
        help="Actor pseudonym (repeatable: any of them; one person under several keys)",
    ),
]
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
    cut_short = False
    with _access_trail(settings) as comps:
        out = sys.stdout.buffer
        try:
            with _reading(source):
                for body in run_query(source, q, limit=limit):
                    line = render(body) + b"\n"
                    n += 1  # handed to the output: if the reader goes away, an upper bound
                    out.write(line)
                out.flush()
        except BrokenPipeError:
            cut_short = True  # `| head`: what was written still has to be recorded
        finally:
            source.close()
        extra: dict[str, DetailValue] = {"result": "incomplete"} if cut_short else {}
        if limit is not None:
            extra["limit"] = limit
        _record_access(
            comps,
            action,
            source,
            query=q.describe(),
            returned=n,
            format=fmt,
            **extra,
        )
    if cut_short:
        _silence_stdout()
        raise typer.Exit(EXIT_BROKEN_PIPE)


def _silence_stdout() -> None:
    """Standard output's reader went away: point it at /dev/null, so that flushing what
    is still buffered at exit does not fail a second time."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


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
    interval: Annotated[
        float, typer.Option(min=0.05, help="Poll interval (seconds) with --follow")
    ] = 1.0,
) -> None:
    """Show the most recent events (and follow new ones)."""
    import collections

    settings = _settings()
    # following: open as a live store even if it had no -wal file yet (else new commits
    # would never be seen)
    source = _open_read_only(settings, store, follow=follow)
    with _access_trail(settings) as comps:
        what = f"last {lines}" + (" follow" if follow else "")
        _record_access(comps, "tail", source, query=what, format="table")
        try:
            with _reading(source):
                recent: collections.deque[bytes] = collections.deque(maxlen=lines)
                last_row = 0
                for block in source.blocks():
                    recent.extend(block.records())
                    last_row = block.rowid
                for body in recent:
                    typer.echo(_table_row(orjson.loads(body)))
                with _until_interrupted() as stopped:
                    while follow and not stopped.wait(interval):
                        for block in source.blocks(after_id=last_row):
                            for body in block.records():
                                typer.echo(_table_row(orjson.loads(body)))
                            last_row = block.rowid
        except KeyboardInterrupt:
            pass
        finally:
            source.close()


class _Interrupted:
    """Set by Ctrl-C (SIGINT) or SIGTERM. A plain flag, not a ``threading.Event``: the
    handler runs in the main thread between two bytecodes, possibly inside
    ``Event.wait`` while that holds the event's lock, and ``Event.set`` would then wait
    for the same lock for ever (seen: ``tail -f`` hung on SIGTERM about once in 25)."""

    def __init__(self) -> None:
        self.flag = False

    def set(self, _signum: int = 0, _frame: object = None) -> None:
        self.flag = True

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` in short steps; whether the flag is set."""
        deadline = time.monotonic() + seconds
        while not self.flag and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))
        return self.flag


@contextmanager
def _until_interrupted() -> Iterator[_Interrupted]:
    """A flag set by Ctrl-C (SIGINT) or SIGTERM, instead of a KeyboardInterrupt raised
    wherever the signal lands: raised inside a database pool's lock, it left the lock
    held and the command hung on its way out (recording audit.log.stop)."""
    stopped = _Interrupted()
    previous = {sig: signal.signal(sig, stopped.set) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopped
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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
        known = sorted({"json", *formats.RENDERERS})
        raise _fail(f"unknown format {fmt!r}; one of {', '.join(known)}")
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
        try:
            with _reading(source):
                if stream is None:
                    streams = source.streams()
                    candidates = [s for s in streams if not s.startswith("cli-")]
                    if len(candidates) != 1:
                        raise _fail(f"name a --stream; the store has {len(streams)} streams")
                    stream = candidates[0]
                proof = _proof(source, stream, seq)
        finally:
            source.close()
        _record_access(comps, "proof", source, query=f"stream={stream} seq={seq}", returned=1)
    typer.echo(_json_display(proof))


def _proof(source: SqlAuditStore, stream: str, seq: int) -> dict[str, Any]:
    """The inclusion proof of record ``seq`` of ``stream`` against its latest signed head
    and the record itself (:func:`kroonika.audit.proofs.event_proof`, which the read API
    answers too); exit 2 with one line saying why when there is none."""
    from kroonika.audit.proofs import ProofUnavailable, event_proof

    try:
        proof, record = event_proof(source, stream, seq)
    except ProofUnavailable as exc:
        raise _fail(str(exc)) from None
    return {**proof, "record": orjson.loads(record)}


def _json_display(doc: Any) -> str:
    """Indented JSON for a terminal: characters that JSON may hold raw but a terminal
    would act on (C1 controls, U+2028, bidi and invisible characters) are escaped too.
    orjson escapes C0 controls, so a raw newline in its output is layout only."""
    text = orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()
    return "\n".join(escape_unprintable(line, _json_escape) for line in text.split("\n"))


_KEY_ERRORS: Final = (AuditError, OSError, ValueError, UnsupportedAlgorithm)


@keys_app.command("list")
def keys_list() -> None:
    """List the checkpoint signing keys (the active one is marked)."""
    from kroonika.audit import KeyRing

    settings = _settings()
    keys_dir = settings.resolved_audit_keys_dir()
    try:
        ring = KeyRing.open(keys_dir)
    except _KEY_ERRORS as exc:
        raise _fail(
            f"cannot open the signing keys in {_shown(keys_dir)}: {_open_error(exc)}"
        ) from None
    for kid in ring.public_keys().kids():
        typer.echo(f"{clean(kid)}{'  (active)' if kid == ring.active_kid else ''}")


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Add a new signing key and make it active; old public keys stay for verification.
    The trail is opened first: a rotation that cannot be recorded is not made."""
    from kroonika.audit import KeyRing

    settings = _settings()
    keys_dir = settings.resolved_audit_keys_dir()
    with _access_trail(settings, purpose="record the key rotation") as comps:
        try:
            ring = KeyRing.open(keys_dir, create=not settings.production)
            old, new = ring.active_kid, ring.stage()
        except _KEY_ERRORS as exc:
            raise _fail(
                f"cannot rotate the keys in {_shown(keys_dir)}: {_open_error(exc)}"
            ) from None
        try:
            comps.trail.emit_sync(
                events.key_rotate(
                    actor=Actor(ActorType.ADMIN, roles=("cli",)),
                    purpose="audit_checkpoint",
                    old_kid=old,
                    new_kid=new,
                )
            )
        except AuditError as exc:
            ring.discard(new)  # staged, so it signed nothing
            raise _fail(
                f"cannot record key.rotate in the audit trail: {exc}; the rotation was not "
                f"made ({clean(old)} is still active)"
            ) from None
        try:
            ring.activate(new)
        except OSError as exc:
            raise _fail(
                f"key.rotate is recorded, but {clean(new)} could not be made active "
                f"({exc.strerror}); run the rotation again"
            ) from None
    typer.echo(f"rotated: {clean(old)} -> {clean(new)}")


@keys_app.command("export")
def keys_export(
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
) -> None:
    """Write the public keys (JSON) that verifiers need."""
    settings = _settings()
    keys_dir = settings.resolved_audit_keys_dir()
    keys = _directory_keys(keys_dir)
    if not keys.kids():
        raise _fail(f"no public keys in {_shown(keys_dir)}: nothing to export")
    data = keys.to_json()
    if output:
        _write_file(output, data)
    else:
        typer.echo(data.decode())


def _write_file(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise _fail(f"cannot write {_shown(path)}: {exc.strerror or exc}") from None


@checkpoint_app.command("export")
def checkpoint_export(
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write")],
    store: StoreOpt = None,
) -> None:
    """Write the latest checkpoint of every stream to a file for an outside witness."""
    settings = _settings()
    source = _open_read_only(settings, store)
    with _access_trail(settings) as comps:
        try:
            with _reading(source):
                checkpoints = source.checkpoints()
        finally:
            source.close()
        latest: dict[str, Checkpoint] = {}
        for cp in checkpoints:
            if cp.stream not in latest or cp.size >= latest[cp.stream].size:
                latest[cp.stream] = cp
        docs = [orjson.loads(cp.to_json()) for cp in latest.values()]
        _write_file(output, orjson.dumps({"checkpoints": docs}, option=orjson.OPT_INDENT_2))
        _record_access(
            comps,
            "checkpoint_export",
            source,
            query=f"output={output.name}",
            returned=len(docs),
        )
    typer.echo(f"wrote {len(docs)} checkpoints to {_shown(output)}")


from kroonika.cli_alerts import register_alerts  # noqa: E402  (its commands use the helpers above)
from kroonika.cli_audit_ops import register_ops  # noqa: E402  (its commands use the helpers above)

register_ops(audit_app)
register_alerts(app)
register_privacy(audit_app, app)


def main() -> None:
    """The console entry point. No command ends in a traceback: arguments that are not
    valid UTF-8 are refused, and an unexpected exception is one line on standard error with
    exit 2 (``KROONIKA_DEBUG=1`` shows the traceback)."""
    for i, arg in enumerate(sys.argv[1:], 1):
        if _undecodable(arg):
            typer.echo(f"error: argument {i} is not valid UTF-8: {_shown(arg)}", err=True)
            sys.exit(EXIT_USAGE)
    try:
        app()
    except SettingsError as exc:
        typer.echo(f"error: {clean(_mask_passwords(str(exc)))}", err=True)
        sys.exit(EXIT_USAGE)
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(EXIT_BROKEN_PIPE)
    except Exception as exc:  # last resort, not validation: the type is shown, not hidden
        if os.environ.get("KROONIKA_DEBUG") == "1":
            raise
        message = clean(_mask_passwords(_shown(_first_line(exc))))
        typer.echo(f"error: {type(exc).__name__}: {message}", err=True)
        sys.exit(EXIT_USAGE)


def _undecodable(arg: str) -> bool:
    """Whether a command-line argument held bytes that are not UTF-8 (Python keeps them
    as lone surrogates, which no audit record, query or path can carry)."""
    try:
        arg.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
