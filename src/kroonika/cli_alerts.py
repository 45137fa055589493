"""``kroonika alerts list|ack``: the alerts of the trail from the command line (decision
0036). ``list`` is a read of the trail, recorded as ``audit.access`` (action ``alerts``)
before anything is shown is lost; ``ack`` records ``alert.acknowledge`` with the
justification (the rule of every justification), refused with exit 1 for an alert that
was never raised or was acknowledged before. Both work on the configured store."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
import typer

alerts_app = typer.Typer(no_args_is_help=True, help="Alerts raised by the alert rules.")

State = Literal["open", "acknowledged", "all"]


@alerts_app.command("list")
def list_cmd(
    state: Annotated[str, typer.Option(help="open, acknowledged or all")] = "open",
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines")] = False,
) -> None:
    """The alerts, newest first (summaries hold pseudonyms and networks only). With
    --json, ``repeats`` is what the acknowledgement recorded (the acknowledging
    instance's count of throttled firings): 0 for an open alert, whose repeats only a
    running instance counts (``GET /admin/alerts``)."""
    from kroonika.audit.alerting import read_book
    from kroonika.audit.formats._text import clean
    from kroonika.cli import (
        _access_trail,
        _fail,
        _open_read_only,
        _reading,
        _record_access,
        _settings,
    )

    if state not in ("open", "acknowledged", "all"):
        raise _fail("--state must be open, acknowledged or all")
    settings = _settings()
    source = _open_read_only(settings, None)
    with _access_trail(settings) as comps:
        try:
            with _reading(source):
                book = read_book(source)
        finally:
            source.close()
        shown = [
            a
            for a in reversed(book.alerts.values())
            if state == "all" or a.open == (state == "open")
        ]
        _record_access(comps, "alerts", query=f"state={state}", returned=len(shown))
    for a in shown:
        if as_json:
            typer.echo(orjson.dumps(a.public()).decode())
        else:
            typer.echo(
                clean(
                    f"{a.raised_at}  {a.alert_id}  {a.severity:<8}  "
                    f"{'open' if a.open else 'acked'}  {a.summary}"
                    + (f"  [response: {a.responses_text()}]" if a.responses else "")
                )
            )


@alerts_app.command("ack")
def ack_cmd(
    alert_id: Annotated[str, typer.Argument(help="alr_... as listed")],
    justification: Annotated[
        str, typer.Option("--justification", "-j", help="Why (recorded in the audit trail)")
    ],
    note: Annotated[str | None, typer.Option(help="A note for the record")] = None,
) -> None:
    """Acknowledge an open alert (``alert.acknowledge`` by the command line)."""
    from kroonika.audit import AuditError
    from kroonika.audit.alerting import ALERT_ID, AckArbiter
    from kroonika.cli import _access_trail, _fail, _settings
    from kroonika.cli_tokens import _justification, _no_personal_code

    settings = _settings()
    why = _justification(settings, justification)
    if note is not None:
        _no_personal_code(note, "note", "'--note'")
        if not note.strip() or not note.isprintable() or len(note) > 2048:
            raise _fail("--note must be printable text of 1..2048 characters")
    if not ALERT_ID.fullmatch(alert_id):
        raise _fail("an alert id is alr_ and 32 hexadecimal digits")
    with _access_trail(settings, purpose="record the acknowledgement") as comps:
        arbiter = AckArbiter(comps.store.engine)
        try:
            # the service's lock too: of the CLI and an instance acknowledging at once,
            # the second finds the first's alert.acknowledge in the trail
            with arbiter.held(alert_id):
                _acknowledge(comps, alert_id, why, note)
        except AuditError as exc:
            raise _fail(f"cannot record alert.acknowledge in the audit trail: {exc}") from None
        finally:
            arbiter.close()
    typer.echo(f"acknowledged: {alert_id}")


def _acknowledge(comps: Any, alert_id: str, why: str, note: str | None) -> None:
    """Check the alert is open in the trail and record ``alert.acknowledge`` (under the
    alert's arbiter lock); exit 1 for an unknown or acknowledged alert."""
    from kroonika.audit import Actor, ActorType, Target, events
    from kroonika.audit.alerting import read_book

    alert = read_book(comps.store).alerts.get(alert_id)
    if alert is None:
        typer.echo(f"error: no alert {alert_id}", err=True)
        raise typer.Exit(1)
    if not alert.open:
        typer.echo(f"error: {alert_id} was acknowledged at {alert.acknowledged_at}", err=True)
        raise typer.Exit(1)
    event = events.alert_acknowledge(
        actor=Actor(ActorType.ADMIN, roles=("cli",)),
        target=Target("alert", alert_id),
        alert_id=alert_id,
        justification=why,
        repeats=0,
    )
    if note is not None:
        event.details["note"] = note
    comps.trail.emit_sync(event)


def register_alerts(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts")
