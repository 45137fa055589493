"""The smtp sink against a real SMTP server (aiosmtpd): STARTTLS and implicit TLS with a
test CA, a login, one message per event, neutralised headers, a stable Message-ID; and
the ``OnlyTypes`` filter that keeps a sink to alerts."""

from __future__ import annotations

import email
import email.policy
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr
from sink_kit import HOSTILE, Kit, free_port, make_ca, write_events

from kroonika.audit import Actor, ActorType, Target, events
from kroonika.audit.sinks import (
    CapturingSink,
    OnlyTypes,
    PermanentSinkError,
    Record,
    SmtpSink,
    TransientSinkError,
    tls_context,
)

PASSWORD = "smtp-pass-0123456789"


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), bytes(envelope.original_content)))
        return "250 OK"

    def parsed(self) -> list[email.message.EmailMessage]:
        return [
            email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[misc]
            for _, raw in self.messages
        ]


def _auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.password == PASSWORD.encode()
    return AuthResult(success=ok)


@pytest.fixture
def ca(tmp_path: Path) -> tuple[Path, Path, Path]:
    return make_ca(tmp_path / "tls")


def _server_ctx(ca: tuple[Path, Path, Path]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(ca[1]), str(ca[2]))
    return ctx


def _serve(inbox: Inbox, **kw: Any) -> Iterator[Controller]:
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), **kw)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


@pytest.fixture
def starttls(ca: tuple[Path, Path, Path]) -> Iterator[tuple[Inbox, Controller]]:
    inbox = Inbox()
    for c in _serve(
        inbox,
        tls_context=_server_ctx(ca),
        require_starttls=True,
        authenticator=_auth,
        auth_required=False,
    ):
        yield inbox, c


def alert_records(kit: Kit, summary: str = "security_anomaly: security.anomaly") -> list[Record]:
    for n in range(2):
        kit.trail.emit_sync(
            events.alert_raise(
                actor=Actor(ActorType.SYSTEM),
                target=Target("alert", f"alr_{n}"),
                rule="security_anomaly",
                summary=summary,
                alert_id=f"alr_{n}",
            )
        )
    return [
        Record(blk.stream, blk.first_seq + i, body)
        for blk in kit.store.blocks()
        for i, body in enumerate(blk.records())
        if b'"alert.raise"' in body
    ]


def sink(port: int, ca: tuple[Path, Path, Path], **kw: Any) -> SmtpSink:
    kw.setdefault("security", "starttls")
    kw.setdefault("tls", tls_context(str(ca[0])))
    return SmtpSink(
        "mail",
        "127.0.0.1",
        port,
        mail_from="kroonika@example.org",
        mail_to=["soc@example.org", "oncall@example.org"],
        timeout=5,
        **kw,
    )


@pytest.mark.asyncio
async def test_each_alert_is_one_message_over_starttls(
    kit: Kit, starttls: tuple[Inbox, Controller], ca: tuple[Path, Path, Path]
) -> None:
    """Two alerts: two messages to every recipient, Message-ID from the event id."""
    inbox, server = starttls
    records = alert_records(kit)
    await sink(server.port, ca).send(records)
    assert len(inbox.messages) == 2
    assert inbox.messages[0][0] == ["soc@example.org", "oncall@example.org"]
    msgs = inbox.parsed()
    assert [m["Message-ID"] for m in msgs] == [f"<{r.id}@example.org>" for r in records]
    assert msgs[0]["Subject"].startswith("[Kroonika] alert security_anomaly: ")
    assert msgs[0]["Auto-Submitted"] == "auto-generated"


@pytest.mark.asyncio
async def test_a_hostile_summary_injects_no_header_and_no_terminal_code(
    kit: Kit, starttls: tuple[Inbox, Controller], ca: tuple[Path, Path, Path]
) -> None:
    """CR/LF and ANSI in a summary: no Bcc header appears, the subject is one clean line."""
    inbox, server = starttls
    hostile = "x\r\nBcc: evil@example.net\r\n\r\nforged body " + HOSTILE
    records = alert_records(kit, summary=hostile)[:1]
    await sink(server.port, ca).send(records)
    ((rcpts, raw),) = inbox.messages
    assert rcpts == ["soc@example.org", "oncall@example.org"]
    msg = inbox.parsed()[0]
    assert msg["Bcc"] is None
    assert b"\x1b" not in raw
    subject = msg["Subject"]
    assert "\n" not in subject
    assert "\r" not in subject
    assert "Bcc: evil@example.net" in subject  # shown, harmless, on the one line
    body = msg.get_content()
    summary_line = next(line for line in body.splitlines() if line.startswith("Summary:"))
    assert "forged body" in summary_line
    assert "\x1b" not in body


@pytest.mark.asyncio
async def test_implicit_tls(kit: Kit, ca: tuple[Path, Path, Path]) -> None:
    """security tls: TLS from the first byte (RFC 8314)."""
    inbox = Inbox()
    for server in _serve(inbox, ssl_context=_server_ctx(ca)):
        await sink(server.port, ca, security="tls").send(alert_records(kit)[:1])
    assert len(inbox.messages) == 1


@pytest.mark.asyncio
async def test_login_over_starttls_and_a_refused_login_is_retried(
    kit: Kit, starttls: tuple[Inbox, Controller], ca: tuple[Path, Path, Path]
) -> None:
    """The right password sends; a wrong one is a transient error that does not echo it."""
    inbox, server = starttls
    records = alert_records(kit)[:1]
    await sink(server.port, ca, username="kroonika", password=SecretStr(PASSWORD)).send(records)
    assert len(inbox.messages) == 1
    wrong = "wrong-pass-0123456789"
    bad = sink(server.port, ca, username="kroonika", password=SecretStr(wrong))
    with pytest.raises(TransientSinkError) as err:
        await bad.send(records)
    assert err.value.delivered == 0
    assert wrong not in str(err.value)
    assert len(inbox.messages) == 1


@pytest.mark.asyncio
async def test_a_server_without_starttls_gets_nothing(
    kit: Kit, ca: tuple[Path, Path, Path]
) -> None:
    """STARTTLS asked, not offered: the session ends before any message, in clear."""
    inbox = Inbox()
    for server in _serve(inbox):
        with pytest.raises(TransientSinkError, match="does not offer STARTTLS"):
            await sink(server.port, ca).send(alert_records(kit))
    assert inbox.messages == []


@pytest.mark.asyncio
async def test_an_unknown_certificate_is_refused(
    kit: Kit, starttls: tuple[Inbox, Controller], tmp_path: Path
) -> None:
    """A server certificate from another CA: transient failure, nothing sent."""
    inbox, server = starttls
    other = make_ca(tmp_path / "other")
    with pytest.raises(TransientSinkError, match="SSL"):
        await sink(server.port, other).send(alert_records(kit))
    assert inbox.messages == []


def test_cleartext_to_another_host_is_refused() -> None:
    """security none: loopback only, unless allow_cleartext; a login needs its own opt-out."""
    with pytest.raises(ValueError, match="in clear"):
        SmtpSink("m", "192.0.2.1", 25, mail_from="a@b.org", mail_to=["c@d.org"], security="none")
    with pytest.raises(ValueError, match="login would travel in clear"):
        SmtpSink(
            "m",
            "192.0.2.1",
            25,
            mail_from="a@b.org",
            mail_to=["c@d.org"],
            security="none",
            allow_cleartext=True,
            username="u",
            password=SecretStr(PASSWORD),
        )
    with pytest.raises(ValueError, match="plain local@domain"):
        SmtpSink("m", "127.0.0.1", 25, mail_from="a@b.org\r\nBcc: x@y.org", mail_to=["c@d.org"])


@pytest.mark.asyncio
async def test_only_types_passes_on_alerts_and_maps_what_was_delivered(kit: Kit) -> None:
    """OnlyTypes sends the alert events only; a refusal's position counts the whole batch."""
    write_events(kit, 2)
    alert_records(kit)
    items = [
        Record(blk.stream, blk.first_seq + i, body)
        for blk in kit.store.blocks()
        for i, body in enumerate(blk.records())
    ]
    inner = CapturingSink("c")
    only = OnlyTypes(inner, ["alert."])
    await only.send(items)
    assert {r.doc["type"] for r in inner.records()} == {"alert.raise"}
    inner.items.clear()
    inner.fail_with, inner.fail_times = PermanentSinkError("no", delivered=1), 1
    with pytest.raises(PermanentSinkError) as err:
        await only.send(items)
    second_alert = [i for i, r in enumerate(items) if r.doc["type"] == "alert.raise"][1]
    assert err.value.delivered == second_alert
    with pytest.raises(ValueError, match="at least one"):
        OnlyTypes(inner, [])


# --- built from settings ----------------------------------------------------------------

SMTP = {
    "kind": "smtp",
    "name": "mail",
    "host": "127.0.0.1",
    "port": 2525,
    "mail_from": "kroonika@example.org",
    "mail_to": ["soc@example.org"],
}


def test_an_smtp_sink_carries_alerts_unless_its_types_say_otherwise() -> None:
    """From settings: wrapped to alert.raise by default; types replace that."""
    from test_sink_credentials import build

    default = build(SMTP)
    assert isinstance(default, OnlyTypes)
    assert default.types == ("alert.raise",)
    assert isinstance(default.inner, SmtpSink)
    told = build({**SMTP, "types": ["alert.", "audit.sink"]})
    assert isinstance(told, OnlyTypes)
    assert told.types == ("alert", "audit.sink")


def test_a_webhook_with_types_carries_only_those() -> None:
    """types on any sink: a webhook for alerts only; without types every event."""
    from test_sink_credentials import build

    hook = {"kind": "webhook", "name": "hook", "url": "http://127.0.0.1:9/x", "secret": "k" * 20}
    assert not isinstance(build(hook), OnlyTypes)
    assert isinstance(build({**hook, "types": ["alert."]}), OnlyTypes)


def test_smtp_settings_that_cannot_work_are_refused_without_echo() -> None:
    """No recipients, cleartext to another host, a login in clear, a half login, bad types."""
    from test_sink_credentials import SECRET, refusal

    assert "mail_from and mail_to are required" in refusal({**SMTP, "mail_to": []})
    remote = {**SMTP, "host": "mail.example", "security": "none"}
    assert "allow_cleartext=true" in refusal(remote)
    text = refusal({**remote, "allow_cleartext": True, "user": "u", "secret": SECRET})
    assert "allow_cleartext_credentials=true" in text
    assert "needs both user and secret" in refusal({**SMTP, "user": "u"})
    assert "types" in refusal({**SMTP, "types": ["Alert!"]})
    assert "'url' has no effect" in refusal({**SMTP, "url": "http://x"})


@pytest.mark.parametrize("entry", ["alert.raised", "alerts.", "alerts", "aler", ".", "alert.."])
def test_types_that_match_no_event_type_are_refused(entry: str) -> None:
    """A type that is not in the catalogue, or a prefix of none, would make the sink
    deliver nothing, silently: the service refuses it, naming the entry."""
    from test_sink_credentials import refusal

    text = refusal({**SMTP, "types": ["alert.raise", entry]})
    assert "types" in text
    assert repr(entry) in text


def test_types_of_the_catalogue_and_its_prefixes_are_taken() -> None:
    """Each catalogue type, an area prefix, a two-level prefix and audit.checkpoint."""
    from kroonika.audit.catalogue import CATALOGUE
    from kroonika.audit.sinks._filter import check_types

    assert check_types([*CATALOGUE, "alert.", "auth.flow.", "audit.checkpoint"])


@pytest.mark.parametrize("spelling", ["alert", "alert."])
def test_a_sink_prefix_means_the_same_with_or_without_its_final_dot(spelling: str) -> None:
    """`alert` and `alert.` both take alert.raise and alert.acknowledge, a whole segment
    at a time: never a type that only starts with the same letters (alerting.x)."""
    inner = CapturingSink("c")
    only = OnlyTypes(inner, [spelling])

    def item(etype: str) -> Record:
        return Record("s", 1, b'{"type":"' + etype.encode() + b'"}')

    assert only.wants(item("alert.raise"))
    assert only.wants(item("alert.acknowledge"))
    assert not only.wants(item("alerting.x"))
    assert not only.wants(item("audit.sink"))


@pytest.mark.parametrize("spelling", ["audit.sink", "audit.sink."])
def test_a_sink_type_with_a_final_dot_is_that_type(spelling: str) -> None:
    """A whole type written with a final dot takes that type, as without it."""
    only = OnlyTypes(CapturingSink("c"), [spelling])
    assert only.wants(Record("s", 1, b'{"type":"audit.sink"}'))
    assert not only.wants(Record("s", 1, b'{"type":"audit.sinking"}'))
