"""``kroonika keys rotate|list`` (token signing keys) and ``kroonika clients add|list``.
Registered on the main app by :func:`register`. Every change is audited."""

from __future__ import annotations

from typing import Annotated

import typer

from kroonika.audit import Actor, ActorType, AuditError, AuditEvent, events
from kroonika.audit.formats._text import escape_unprintable
from kroonika.auditing import build_audit, cli_stream_name
from kroonika.db import make_engine
from kroonika.db.migrate import upgrade
from kroonika.settings import Settings, SettingsError, load_settings
from kroonika.tokens import ClientError, ClientRegistry, KeyRingError, SystemClock, TokenError
from kroonika.tokens._build import key_ring

keys_app = typer.Typer(no_args_is_help=True, help="Token signing keys (JWKS).")
clients_app = typer.Typer(no_args_is_help=True, help="Registered clients (relying services).")
CLI_ACTOR = Actor(ActorType.ADMIN, roles=("cli",))


def _shown(value: object) -> str:
    """Stored or user-given text for the terminal: every character that could break a
    line or send a terminal escape (CR, LF, ESC, bidi controls ...) is shown escaped."""
    return escape_unprintable(str(value), lambda ch: ascii(ch)[1:-1])


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {_shown(message)}", err=True)
    return typer.Exit(2)


def _no_personal_code(text: str, field: str, param_hint: str) -> None:
    """Free text that is stored or recorded holds no personal code (decision 0033): a
    usage error (exit 2) that names the option, never the value."""
    from kroonika.admin import PersonalCodeInText, refuse_personal_code

    try:
        refuse_personal_code(text, field)
    except PersonalCodeInText as exc:
        raise typer.BadParameter(str(exc), param_hint=param_hint) from None


def _justification(settings: Settings, text: str) -> str:
    """The rule of every justification (the API's and the other commands'): at least
    ``admin_justification_min`` characters, the ticket pattern if one is set, plain text
    of at most 2000 characters, no personal code; a usage error (exit 2) otherwise."""
    from kroonika.admin import JustificationMissing, PersonalCodeInText, check_justification

    try:
        return check_justification(
            text,
            minimum=settings.admin_justification_min,
            pattern=settings.admin_ticket_pattern,
            where="-j/--justification",
        )
    except (JustificationMissing, PersonalCodeInText) as exc:
        raise typer.BadParameter(str(exc), param_hint="'--justification'") from None


def _settings() -> Settings:
    try:
        return load_settings()
    except (SettingsError, ValueError) as exc:
        raise _fail(str(exc)) from None


def _audit(settings: Settings, event: AuditEvent) -> None:
    comps = build_audit(settings, stream=cli_stream_name())
    try:
        comps.trail.log_start_sync()
        comps.trail.emit_sync(event)
    finally:
        comps.stop_sync()


@keys_app.command("rotate")
def keys_rotate(
    now: Annotated[
        bool, typer.Option("--now", help="Sign with the new key at once (emergency only)")
    ] = False,
    justification: Annotated[str, typer.Option("--justification", "-j")] = "manual rotation",
) -> None:
    """Create a new token signing key. It is published in the JWKS at once and signs
    after the publish lead; the old key stays until its last token expires. The key
    signs nothing until its rotation is recorded, and is removed if it cannot be."""
    settings = _settings()
    justification = _justification(settings, justification)
    engine = make_engine(settings.resolved_database_url())
    try:
        if settings.db_auto_upgrade:
            upgrade(engine)
        ring = key_ring(settings, engine, SystemClock())
        old, new = ring.rotate(staged=True)
        try:
            _audit(
                settings,
                events.key_rotate(
                    actor=CLI_ACTOR,
                    purpose="token_signing",
                    old_kid=old,
                    new_kid=new,
                    justification=justification,
                ),
            )
        except BaseException:
            ring.discard(new)  # staged, so it never signed: no unrecorded key stays
            raise
        ring.activate(new, immediate=now or old is None)
        retired = ring.retire_expired()
    except (KeyRingError, SettingsError, AuditError) as exc:
        raise _fail(str(exc)) from None
    finally:
        engine.dispose()
    lead = 0 if now or old is None else settings.token_key_publish_lead_s
    typer.echo(f"rotated: {old} -> {new} (signs in {lead}s)")
    for kid in retired:
        typer.echo(f"retired: {kid}")


@keys_app.command("list")
def keys_list() -> None:
    """The published token signing keys (the one signing now is marked)."""
    settings = _settings()
    engine = make_engine(settings.resolved_database_url())
    try:
        ring = key_ring(settings, engine, SystemClock())
        try:
            current = ring.current().kid
        except KeyRingError:
            current = None
        for key in ring.published():
            mark = "  (signing)" if key.kid == current else ""
            typer.echo(f"{_shown(key.kid)}  {key.alg}  activates_at={key.activates_at}{mark}")
    finally:
        engine.dispose()


@clients_app.command("add")
def clients_add(
    name: Annotated[str, typer.Argument(help="A name for the relying service")],
    audience: Annotated[
        list[str] | None, typer.Option("--audience", "-a", help="Allowed audience (repeat)")
    ] = None,
    claim: Annotated[
        list[str] | None, typer.Option("--claim", "-c", help="Allowed custom claim (repeat)")
    ] = None,
    max_ttl: Annotated[int, typer.Option("--max-ttl", min=1)] = 3600,
    rate_limit: Annotated[str | None, typer.Option("--rate-limit")] = None,
) -> None:
    """Register a client; prints its id and secret once (only a hash is stored)."""
    _no_personal_code(name, "name", "'NAME'")
    settings = _settings()
    engine = make_engine(settings.resolved_database_url())
    try:
        if settings.db_auto_upgrade:
            upgrade(engine)
        registry = ClientRegistry(
            engine, clock=SystemClock(), scrypt_n=settings.token_client_scrypt_n
        )
        new = registry.register(
            name,
            allowed_audiences=audience or [],
            allowed_claims=claim or [],
            max_ttl_s=max_ttl,
            rate_limit=rate_limit,
        )
        try:
            _audit(
                settings,
                events.config_change(
                    actor=CLI_ACTOR,
                    key=f"clients.{new.client.client_id}",
                    before="",
                    after=f"registered {name[:100]!r} audiences={audience or []} max_ttl={max_ttl}",
                ),
            )
        except Exception:
            registry.remove(new.client.client_id)  # no unaudited client stays registered
            raise
    except (ClientError, TokenError, SettingsError, AuditError) as exc:
        raise _fail(str(exc)) from None
    finally:
        engine.dispose()
    typer.echo(f"client_id: {new.client.client_id}")
    typer.echo(f"client_secret: {new.secret}")
    typer.echo("The secret is shown only now; store it safely.", err=True)


@clients_app.command("list")
def clients_list() -> None:
    """Registered clients (never their secrets)."""
    settings = _settings()
    engine = make_engine(settings.resolved_database_url())
    try:
        for c in ClientRegistry(engine, clock=SystemClock()).list():
            state = "disabled" if c.disabled else "active"
            # names and audiences come from the database (and from the admin API):
            # escaped, so that no stored value can forge a line or a terminal escape
            typer.echo(
                f"{_shown(c.client_id)}  {_shown(c.name)}  "
                f"aud={_shown(','.join(c.allowed_audiences))}  max_ttl={c.max_ttl_s}  {state}"
            )
    finally:
        engine.dispose()


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
    app.add_typer(clients_app, name="clients")
