"""E-mail over SMTP (RFC 5321), one message (RFC 5322) per event: for alerts.

Transport: ``starttls`` (RFC 3207; the session is refused, never continued in clear,
when the server does not offer it), ``tls`` (implicit TLS, RFC 8314) or ``none``, which
only a loopback server gets unless ``allow_cleartext`` (decisions 0019, 0020); a login
(user and secret) over ``none`` to another host needs ``allow_cleartext_credentials``
besides (decision 0013). The server certificate and its name are always verified.

Each message: ``Subject: [Kroonika] <severity> <rule or type>: <summary>`` and a plain
text body naming the alert and quoting the event's JSON. Every text taken from the
event is neutralised first (:func:`~kroonika.audit.formats._text.clean`: CR, LF and
other line breaks become a space, ANSI sequences and invisible characters go), so a
summary cannot add a header or paint a terminal; the quoted JSON escapes controls.
``Message-ID`` is ``<event id@sender's domain>``: a message sent again after a crash
(delivery is at least once) is recognisably the same message.

Failures: connection, TLS, timeouts, 4xx answers, a refused login or a refused sender or
recipient concern the server and are transient (retried); a 5xx answer to the message
itself is permanent (dead-lettered after the runner's attempts). Error texts give the
reply code, never the server's text (it may quote what was sent) or the credential.
"""

from __future__ import annotations

import asyncio
import email.policy
import email.utils
import re
import smtplib
import socket
import ssl
from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Literal

import orjson
from pydantic import SecretStr

from kroonika.audit._tls import client_context
from kroonika.audit.formats._text import clean
from kroonika.audit.sinks._base import (
    Item,
    PermanentSinkError,
    Record,
    TransientSinkError,
    is_loopback,
    refuse_cleartext,
)

Security = Literal["starttls", "tls", "none"]
_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+\.?[A-Za-z0-9-]*$")
_SUBJECT_MAX = 200


def check_address(value: str) -> str:
    """A plain ``local@domain`` address (no display name, no comments, ASCII)."""
    if not _ADDRESS.fullmatch(value) or len(value) > 254:
        raise ValueError("an e-mail address must be a plain local@domain (ASCII)")
    return value


def subject_of(doc: dict[str, Any]) -> str:
    details = doc.get("details") or {}
    what = details.get("rule") or doc.get("type", "event")
    text = f"[Kroonika] {doc.get('severity', '')} {what}"
    if details.get("summary"):
        text += f": {details['summary']}"
    return clean(text)[:_SUBJECT_MAX]


def body_of(doc: dict[str, Any]) -> str:
    details = doc.get("details") or {}
    lines = [
        f"Alert:    {details.get('alert_id', '-')}",
        f"Rule:     {details.get('rule', '-')}",
        f"Severity: {doc.get('severity', '-')}",
        f"Summary:  {details.get('summary', '-')}",
        f"Type:     {doc.get('type', '-')}",
        f"Time:     {doc.get('time', '-')}",
        f"Event:    {doc.get('id', '-')} ({doc.get('stream', '-')}#{doc.get('seq', '-')})",
    ]
    shown = [clean(str(line)) for line in lines]
    quoted = orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    return "\n".join([*shown, "", "The event as recorded:", "", quoted, ""])


class SmtpSink:
    """Sends each event of a batch as its own message, in one SMTP session."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        *,
        mail_from: str,
        mail_to: Sequence[str],
        security: Security = "starttls",
        tls: ssl.SSLContext | None = None,
        username: str | None = None,
        password: SecretStr | None = None,
        timeout: float = 10.0,
        allow_cleartext: bool = False,
        allow_cleartext_credentials: bool = False,
        local_hostname: str | None = None,
    ) -> None:
        if security not in ("starttls", "tls", "none"):
            raise ValueError("security must be starttls, tls or none")
        if not mail_to:
            raise ValueError("mail_to must name at least one recipient")
        self.name = name
        self.host = host
        self.port = port
        self.mail_from = check_address(mail_from)
        self.mail_to = [check_address(a) for a in mail_to]
        self.security: Security = security
        if (username is None) != (password is None):
            raise ValueError("give both user and secret for a login, or neither")
        if security == "none":
            refuse_cleartext(host, allow_cleartext, use="security starttls or tls")
            if username is not None and not allow_cleartext_credentials and not is_loopback(host):
                raise ValueError(
                    "the login would travel in clear: use starttls or tls, or set "
                    "allow_cleartext_credentials if the path is protected otherwise"
                )
        self._tls = tls
        self._username = username
        self._password = password
        self.timeout = timeout
        self._local = local_hostname or socket.gethostname().split(".")[0] or "kroonika"
        self._domain = self.mail_from.rsplit("@", 1)[1]

    async def open(self) -> None:
        """Nothing to open: each batch has its own session."""

    async def close(self) -> None:
        """Nothing to close."""

    def message(self, item: Record) -> EmailMessage:
        doc = item.doc
        msg = EmailMessage(policy=email.policy.SMTP)
        msg["From"] = self.mail_from
        msg["To"] = ", ".join(self.mail_to)
        msg["Subject"] = subject_of(doc)
        msg["Message-ID"] = f"<{clean(item.id)}@{self._domain}>"
        try:
            when = datetime.fromisoformat(item.time.replace("Z", "+00:00"))
            msg["Date"] = email.utils.format_datetime(when)
        except ValueError:
            msg["Date"] = email.utils.formatdate(usegmt=True)
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies
        msg.set_content(body_of(doc), charset="utf-8")
        return msg

    async def send(self, batch: Sequence[Item]) -> None:
        records = [i for i in batch if isinstance(i, Record)]
        if not records:
            return
        messages = [self.message(r) for r in records]
        sent = await asyncio.to_thread(self._send_all, messages)
        if sent.error is not None:
            # positions in the batch: checkpoints are never mailed (and count as done)
            done = [i for i, item in enumerate(batch) if isinstance(item, Record)]
            sent.error.delivered = done[sent.count] if sent.count < len(done) else len(batch)
            raise sent.error

    def _connect(self) -> smtplib.SMTP:
        context = self._tls if self._tls is not None else client_context()
        if self.security == "tls":
            return smtplib.SMTP_SSL(
                self.host,
                self.port,
                local_hostname=self._local,
                timeout=self.timeout,
                context=context,
            )
        client = smtplib.SMTP(
            self.host, self.port, local_hostname=self._local, timeout=self.timeout
        )
        try:
            client.ehlo()
            if self.security == "starttls":
                if not client.has_extn("starttls"):
                    raise TransientSinkError(f"{self.host} does not offer STARTTLS")
                client.starttls(context=context)
                client.ehlo()
        except BaseException:
            client.close()
            raise
        return client

    def _send_all(self, messages: list[EmailMessage]) -> _Sent:
        count = 0
        try:
            client = self._connect()
            try:
                if self._username is not None and self._password is not None:
                    client.login(self._username, self._password.get_secret_value())
                for msg in messages:
                    client.send_message(msg, self.mail_from, self.mail_to)
                    count += 1
                client.quit()
            finally:
                client.close()
        except TransientSinkError as exc:
            return _Sent(count, exc)
        except smtplib.SMTPAuthenticationError as exc:
            return _Sent(
                count, TransientSinkError(f"{self.host} refused the login ({exc.smtp_code})")
            )
        except smtplib.SMTPRecipientsRefused:
            return _Sent(count, TransientSinkError(f"{self.host} refused the recipients"))
        except smtplib.SMTPSenderRefused as exc:
            return _Sent(
                count, TransientSinkError(f"{self.host} refused the sender ({exc.smtp_code})")
            )
        except smtplib.SMTPResponseException as exc:
            message = f"{self.host} answered SMTP {exc.smtp_code}"
            if 500 <= exc.smtp_code < 600 and isinstance(exc, smtplib.SMTPDataError):
                return _Sent(count, PermanentSinkError(message))
            return _Sent(count, TransientSinkError(message))
        except (smtplib.SMTPException, OSError) as exc:  # ssl.SSLError is an OSError
            return _Sent(
                count, TransientSinkError(f"cannot send to {self.host}: {type(exc).__name__}")
            )
        return _Sent(count, None)


class _Sent:
    __slots__ = ("count", "error")

    def __init__(self, count: int, error: TransientSinkError | PermanentSinkError | None) -> None:
        self.count = count
        self.error = error


__all__ = ["SmtpSink", "body_of", "check_address", "subject_of"]
