"""NATS JetStream: one message per event on ``<prefix>.<category>``.

Header ``Nats-Msg-Id`` is the event id (``checkpoint:<stream>:<size>`` for a
checkpoint, published on ``<prefix>.checkpoint``), so within the stream's
duplicate window the server drops a re-sent event: at-least-once delivery
becomes exactly-once in the stream. Each publish waits for the server's
acknowledgement before the next, so order per stream is kept; ``delivered`` on
a failure says how many were acknowledged.

What the server will never take is a :class:`PermanentSinkError`, so the runner
dead-letters that item and delivers the rest (decision 0032): a message (payload and
headers) over the server's ``max_payload``, a message the stream refuses as a bad
request (over its ``max_msg_size``), and a subject these credentials may not publish
to while they may publish to another of the sink's subjects. No connection, a
timeout, no responders (no stream bound to the subject) and a stream that is
unavailable are transient: retried.

A permissions violation (``-ERR``, which nats-py passes only to its error callback;
the sink watches for it rather than wait for the publish to time out) is judged by a
probe (decision 0032, 2026-11-27): an empty request carrying ``Nats-Expected-Stream``
with a name no stream can have (a dot), which JetStream answers without storing it, to
the sink's other subjects (``<prefix>.<category>`` for each category,
``<prefix>.checkpoint``; those acknowledged before first), one at a time until the
server lets one through. One through: the denial is the item's (its subject), a
:class:`PermanentSinkError`. None: the credentials have lost every publish right, an
outage no item is at fault for, a :class:`TransientSinkError`; the runner retries with
its back-off and resumes in order once the rights are back. A denied probe is a
``Publish Violation`` in the server's log, as the item is: once the probes found every
subject denied, that stands (no new probes) until something is acknowledged or
``reprobe_after`` (five minutes) has passed (decision 0030, 2026-11-28), and the item
itself is published again only once ``denied_retry_after`` (a minute) has passed since
its last denial: the runner's attempts in between fail at once without reaching the
server, so an outage costs one violation a minute, not one per retry (2026-11-28
(review ops)). A subscription
the server removed (the one answers come back on, dropped by a reload that took the subscribe
right) makes the sink connect afresh on its next send.

The sink does not create the JetStream stream (its retention, storage and replicas
are the operator's, and creating one needs JetStream API rights a publisher should
not hold); it expects one bound to its subjects. The first acknowledgement from a
stream names it: the sink then reads the stream's duplicate window, once, and
warns when it is shorter than ``duplicate_window`` (default two hours, decision
0030): a re-send can come that late (a restart, a take-over by another instance)
and would then be stored twice. Reading it needs
``$JS.API.STREAM.INFO.<stream>``; without that right the server logs one ``Publish
Violation`` for it, and the sink warns once (per stream and start) that the right is
missing and delivers all the same; ``check_duplicate_window=False`` makes no such
request. Nothing else tells the window: the acknowledgement does not carry it, and
asking the server for the user's permissions (``$SYS.REQ.USER.INFO``, which
nats-server 2.9 does not answer) is a publish needing a right of its own.

Transport security: nats-py switches to TLS only when the server's ``INFO`` asks for
it (``tls_required``), whatever the URL scheme, so a server that does not, or a man
in the middle who strips the flag, would get the CONNECT line (and its credential)
and every event in clear. This sink checks the connection itself just before nats-py
writes CONNECT, its first byte: a ``tls://`` server that did not start TLS gets
nothing; a connection that is not TLS to a host that is not loopback gets nothing
unless ``allow_cleartext`` (the events) and, with a ``token``,
``allow_cleartext_credentials`` (the credential) say so (decisions 0013, 0020).
``nats://`` servers listed that are not loopback are refused when the sink is built,
without ``allow_cleartext``. A server that starts TLS before it sends ``INFO``
(nats-server's ``handshake_first``, a TLS-terminating load balancer) needs
``tls_handshake_first`` (``tls://`` servers only): nats-py then starts TLS as soon as
the socket is open, and the check above sees it. A refused connection is a
:class:`TransientSinkError` (the server or the configuration is at fault, never an
event), so the runner retries and reports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson
from pydantic import SecretStr

from kroonika.audit._model import Category
from kroonika.audit._tls import client_context, without_key_log
from kroonika.audit.sinks._base import (
    CheckpointRecord,
    Item,
    PermanentSinkError,
    SinkError,
    TransientSinkError,
    is_loopback,
    refuse_cleartext,
)

log = logging.getLogger("kroonika.audit.sinks")

_T = TypeVar("_T")

#: The duplicate window the sink expects of its stream unless told (decision 0030).
DEFAULT_DUPLICATE_WINDOW = 7200.0

#: Seconds a probe that found every subject of the sink denied stands for later
#: denials before the sink probes again (decision 0030, 2026-11-28).
DEFAULT_REPROBE_AFTER = 300.0

#: Seconds between two publishes during an outage of every publish right: the runner's
#: attempts in between fail at once without reaching the server (decision 0030,
#: 2026-11-28 (review ops)).
DEFAULT_DENIED_RETRY_AFTER = 60.0

_TOKEN = re.compile(r"[^A-Za-z0-9_-]")

#: nats-server's ``-ERR 'Permissions Violation for Publish to "<subject>"'``.
_PUBLISH_DENIED = re.compile(r'Permissions Violation for Publish to "?([^"\s]+)', re.IGNORECASE)

#: ``-ERR 'Permissions Violation for Subscription to "..."'``: also sent when a reload
#: removes a subscription the connection held (the one replies come back on).
_SUBSCRIBE_DENIED = re.compile(r"Permissions Violation for Subscription to", re.IGNORECASE)

#: What a probe of the publish permissions carries (and no payload): JetStream stores
#: no message whose expected stream is another (a stream name never holds a dot).
_PROBE_HEADERS = {"Nats-Expected-Stream": "kroonika.publish-probe", "Kroonika-Probe": "publish"}

#: nats-py options that carry a credential or decide TLS: given only through this
#: sink's own arguments, so the transport check cannot be bypassed.
_GUARDED_OPTIONS = frozenset(
    {
        "token",
        "user",
        "password",
        "tls",
        "tls_hostname",
        "tls_handshake_first",
        "nkeys_seed",
        "nkeys_seed_str",
        "user_credentials",
        "signature_cb",
        "user_jwt_cb",
    }
)


class _ChannelRefused(Exception):
    """Raised inside nats-py's connect, before CONNECT is written."""


class _Denied(Exception):
    """The server refused these credentials a publish to the subject."""


class NatsPyUnsupported(ValueError):
    """The installed nats-py no longer has what the transport check hooks into (see
    :func:`check_nats_py`): the sink is not built, so nothing is ever sent unchecked."""


def check_nats_py() -> None:
    """Raise :class:`NatsPyUnsupported` unless nats-py still works the way the
    transport check relies on, none of it nats-py's public API (it has no hook before
    CONNECT, and tells nothing about TLS): ``Client._connect_command(self)``, called by
    ``Client._process_connect_init`` to make the CONNECT line; the client's
    ``_current_server`` and ``_transport``; the TCP transport's ``_io_writer``. Were the
    hook gone, the check would run only after CONNECT (and its credential) had been
    written; were the attributes gone, it would refuse every server but a
    ``nats://`` loopback one (decision 0030, 2026-11-28)."""
    from nats.aio import client, transport

    problems: list[str] = []
    hook = client.Client.__dict__.get("_connect_command")
    if not callable(hook) or list(inspect.signature(hook).parameters) != ["self"]:
        problems.append("Client._connect_command(self) is gone or changed")
    elif "_connect_command" not in _names(client.Client, "_process_connect_init"):
        problems.append("Client._process_connect_init no longer calls _connect_command")
    for owner, attribute in (
        (client.Client, "_current_server"),
        (client.Client, "_transport"),
        (transport.TcpTransport, "_io_writer"),
    ):
        if attribute not in _names(owner, "__init__"):
            problems.append(f"{owner.__name__} no longer keeps {attribute}")
    if problems:
        raise NatsPyUnsupported(
            f"nats-py {client.__version__}: {'; '.join(problems)}: the sink cannot check "
            "the connection before it sends anything; use the nats-py version of the lock "
            "file, or review kroonika.audit.sinks.jetstream"
        )


def _names(owner: type, method: str) -> tuple[str, ...]:
    """The names the code of ``owner.method`` uses (attributes among them)."""
    code = getattr(owner.__dict__.get(method), "__code__", None)
    return tuple(code.co_names) if code is not None else ()


@functools.cache
def _guarded_client() -> type[Any]:
    """nats-py's client, checking the connection before it writes CONNECT (its first
    byte, after any TLS upgrade), with or without a credential."""
    from nats.aio.client import Client

    class GuardedClient(Client):
        def __init__(self, check: Callable[[Any], None]) -> None:
            super().__init__()
            self._kroonika_check = check

        def _connect_command(self) -> bytes:
            self._kroonika_check(self)
            command: bytes = super()._connect_command()
            return command

    return GuardedClient


class JetStreamSink:
    def __init__(
        self,
        name: str,
        servers: str | list[str] = "nats://127.0.0.1:4222",
        *,
        subject_prefix: str = "kroonika.audit",
        timeout: float = 5.0,
        token: SecretStr | None = None,
        tls: ssl.SSLContext | None = None,
        allow_cleartext_credentials: bool = False,
        allow_cleartext: bool = False,
        connect_options: dict[str, Any] | None = None,
        duplicate_window: float = DEFAULT_DUPLICATE_WINDOW,
        tls_handshake_first: bool = False,
        check_duplicate_window: bool = True,
        reprobe_after: float = DEFAULT_REPROBE_AFTER,
        clock: Callable[[], float] = time.monotonic,
        denied_retry_after: float = DEFAULT_DENIED_RETRY_AFTER,
    ) -> None:
        if not duplicate_window > 0:
            raise ValueError("duplicate_window must be positive (seconds)")
        if not reprobe_after >= 0:
            raise ValueError("reprobe_after must not be negative (seconds)")
        if not denied_retry_after >= 0:
            raise ValueError("denied_retry_after must not be negative (seconds)")
        if not subject_prefix or any(c in subject_prefix for c in " *>\t\r\n"):
            raise ValueError("subject_prefix must be a plain NATS subject")
        guarded = sorted(_GUARDED_OPTIONS & set(connect_options or {}))
        if guarded:
            raise ValueError(f"connect_options may not set {guarded}: use token= and tls=")
        if tls is not None and tls.verify_mode != ssl.CERT_REQUIRED:
            raise ValueError("the TLS context must verify the server certificate")
        check_nats_py()
        self.name = name
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        for server in self.servers:
            uri = urlsplit(server.strip())
            if uri.scheme == "nats":
                if tls_handshake_first:
                    raise ValueError("tls_handshake_first needs every server listed as tls://")
                refuse_cleartext(uri.hostname, allow_cleartext, use="tls://")
        self.tls_handshake_first = tls_handshake_first
        self.prefix = subject_prefix
        self.timeout = timeout
        self._token = token
        self._tls = without_key_log(tls) if tls is not None else None
        self.allow_cleartext_credentials = allow_cleartext_credentials
        self.allow_cleartext = allow_cleartext
        self._options = connect_options or {}
        self._nc: Any = None
        self._js: Any = None
        self.duplicates = 0
        #: Publishes waiting for an answer, by subject (lower case, as nats-py passes
        #: the server's error text): nats-py's error callback resolves the future when
        #: the server refuses that subject.
        self._watched: dict[str, asyncio.Future[None]] = {}
        #: Every subject the sink publishes to, and those acknowledged at least once:
        #: where a probe looks for a right the credentials still have.
        self._subjects = {f"{subject_prefix}.{c.value}" for c in Category}
        self._subjects.add(f"{subject_prefix}.checkpoint")
        self._acknowledged: set[str] = set()
        #: The server removed a subscription of this connection: replies may be lost.
        self._reply_lost = False
        self.duplicate_window = duplicate_window
        #: Whether to read the duplicate window of each stream (``$JS.API.STREAM.INFO``).
        self.check_duplicate_window = check_duplicate_window
        #: The duplicate window (seconds) of each stream that acknowledged an item, read
        #: once (0 when it could not be read).
        self.duplicate_windows: dict[str, float] = {}
        #: How long a probe that found every subject denied stands for later denials.
        self.reprobe_after = reprobe_after
        self._clock = clock
        #: When (``clock``) the probes last found every other subject denied; None once
        #: anything is acknowledged since.
        self._all_denied_at: float | None = None
        #: During such an outage, how long after a denied publish the next one waits,
        #: and when (``clock``) the last one was denied, with what was said then.
        self.denied_retry_after = denied_retry_after
        self._denied_publish: tuple[float, str] | None = None

    def subject(self, item: Item) -> str:
        if isinstance(item, CheckpointRecord):
            return f"{self.prefix}.checkpoint"
        return f"{self.prefix}.{_TOKEN.sub('_', item.category) or 'unknown'}"

    @staticmethod
    def payload(item: Item) -> bytes:
        if isinstance(item, CheckpointRecord):
            return orjson.dumps(item.doc(), option=orjson.OPT_SORT_KEYS)
        return item.canonical

    async def open(self) -> None:
        """Connected lazily, on the first send."""

    async def _connect(self) -> Any:
        from nats.errors import Error as NatsError

        if self._nc is not None and self._nc.is_connected and not self._reply_lost:
            return self._js
        await self.close()
        self._reply_lost = False
        nc = _guarded_client()(self._check_channel)
        # (connect_timeout is typed int in nats-py but used as a float by asyncio)
        options: dict[str, Any] = {**self._options, "connect_timeout": self.timeout}
        # Always a context of ours: given none, nats-py would make a default one (which
        # logs its keys under SSLKEYLOGFILE) for a nats:// server that asks for TLS.
        if self._tls is None:
            self._tls = client_context()  # the process's trust store, as nats-py's own
        options["tls"] = self._tls
        options["tls_handshake_first"] = self.tls_handshake_first
        if self._token is not None:
            options["token"] = self._token.get_secret_value
        try:
            await asyncio.wait_for(
                nc.connect(
                    servers=self.servers,
                    max_reconnect_attempts=1,
                    allow_reconnect=False,
                    error_cb=self._on_error,
                    **options,
                ),
                self.timeout * 2,
            )
            self._check_channel(nc)  # again, should nats-py stop calling the check
        except _ChannelRefused as exc:
            await _close_quietly(nc)
            raise TransientSinkError(str(exc)) from None
        except (OSError, TimeoutError, NatsError) as exc:
            await _close_quietly(nc)
            raise TransientSinkError(f"cannot connect to NATS: {type(exc).__name__}") from exc
        self._nc = nc
        self._js = nc.jetstream(timeout=self.timeout)
        return self._js

    async def _check_stream(self, js: Any, stream: object) -> None:
        """Read the duplicate window of ``stream`` (once per sink) and warn when
        a re-send could come after it; never fails the delivery. The request needs
        ``$JS.API.STREAM.INFO.<stream>``: a publisher without that right gets one
        ``Publish Violation`` in the server's log (per stream and start) and one warning
        here saying how to avoid it."""
        from nats.errors import Error as NatsError

        if (
            not self.check_duplicate_window
            or not isinstance(stream, str)
            or stream in self.duplicate_windows
        ):
            return
        self.duplicate_windows[stream] = 0.0
        api = f"$JS.API.STREAM.INFO.{stream}"
        try:
            info = await self._unless_denied(api, js.stream_info(stream))
            window = float(info.config.duplicate_window or 0)
        except _Denied:
            log.warning(
                "sink %r cannot read the duplicate window of JetStream stream %r: these "
                "credentials may not publish to %s (the server logs that as a Publish "
                "Violation, once per start); grant it, or set check_duplicate_window = "
                "false for this sink. Events are delivered all the same.",
                self.name,
                stream,
                api,
            )
            return
        except (OSError, TimeoutError, NatsError, AttributeError, TypeError, ValueError) as exc:
            log.debug("sink %r cannot read JetStream stream %r: %s", self.name, stream, exc)
            return
        self.duplicate_windows[stream] = window
        if window < self.duplicate_window:
            log.warning(
                "sink %r: JetStream stream %r drops a re-sent event only within %.0f s "
                "(its duplicate window); a re-send after a restart or a take-over can come "
                "later and would be stored twice: set the window to at least %.0f s "
                "(nats stream edit %s --dupe-window %.0fs)",
                self.name,
                stream,
                window,
                self.duplicate_window,
                stream,
                self.duplicate_window,
            )

    def _check_channel(self, nc: Any) -> None:
        """Refuse a connection that is not TLS where TLS is due: always on a ``tls://``
        server; on any host but loopback unless the sink opted out of the events and
        (with a token) of the credential in clear. Reads nats-py's connection state;
        what it cannot read counts as not TLS (fail closed)."""
        server = getattr(nc, "_current_server", None)
        uri = getattr(server, "uri", None)
        host = getattr(uri, "hostname", None)
        scheme = getattr(uri, "scheme", None)
        writer = getattr(getattr(nc, "_transport", None), "_io_writer", None)
        encrypted = writer is not None and writer.get_extra_info("ssl_object") is not None
        if encrypted:
            return
        where = f"{scheme}://{host}" if host else "the NATS server"
        if scheme == "tls":
            raise _ChannelRefused(
                f"{where} did not start TLS: nothing sent (the server must require TLS)"
            )
        if is_loopback(host):
            return
        missing = [] if self.allow_cleartext else ["the events (allow_cleartext)"]
        if self._token is not None and not self.allow_cleartext_credentials:
            missing.append("the credential (allow_cleartext_credentials)")
        if missing:
            raise _ChannelRefused(
                f"{where} is not TLS and not loopback: nothing sent, as "
                f"{' and '.join(missing)} may not travel in clear (use tls://)"
            )

    async def send(self, batch: Sequence[Item]) -> None:
        from nats.errors import Error as NatsError

        self._hold_while_denied()
        js = await self._connect()
        for pos, item in enumerate(batch):
            subject, payload, headers = self.subject(item), self.payload(item), self.headers(item)
            self._refuse_oversized(subject, payload, headers, pos)
            try:
                ack = await self._unless_denied(
                    subject, js.publish(subject, payload, timeout=self.timeout, headers=headers)
                )
            except _Denied:
                judged = await self._judge_denial(subject, pos)
                if isinstance(judged, TransientSinkError) and self._all_denied_at is not None:
                    self._denied_publish = (self._clock(), str(judged))
                else:  # another subject goes through: no outage to hold back for
                    self._all_denied_at = self._denied_publish = None
                raise judged from None
            except (OSError, TimeoutError, NatsError) as exc:
                raise self._classify(exc, subject, pos) from exc
            self._acknowledged.add(subject)
            self._all_denied_at = self._denied_publish = None
            if getattr(ack, "duplicate", False):
                self.duplicates += 1
            await self._check_stream(js, getattr(ack, "stream", None))

    def _hold_while_denied(self) -> None:
        """During an outage of every publish right (the probes found every subject
        denied), publish at most once per ``denied_retry_after``: each publish is a
        ``Publish Violation`` in the server's log (and, with the subscribe right gone
        too, a new connection and a ``Subscription Violation``), so the runner's faster
        attempts in between fail here, transient, sending nothing. Nothing is lost: the
        runner keeps the items and sends them once a publish goes through."""
        held = self._denied_publish
        if held is None or self._all_denied_at is None:
            return
        at, said = held
        wait = self.denied_retry_after - (self._clock() - at)
        if wait > 0:
            raise TransientSinkError(f"{said} (next publish in {wait:.0f} s)", delivered=0)

    @staticmethod
    def headers(item: Item) -> dict[str, str]:
        return {"Nats-Msg-Id": item.id}

    def _refuse_oversized(
        self, subject: str, payload: bytes, headers: dict[str, str], pos: int
    ) -> None:
        """The server takes a message (headers and payload) of at most its
        ``max_payload`` bytes; a larger one it never takes (nats-py refuses the payload
        alone, the server closes the connection over the rest), so it is permanent."""
        limit = getattr(self._nc, "max_payload", None)
        if not isinstance(limit, int) or limit <= 0:
            return
        size = len(payload) + len(_header_block(headers))
        if size > limit:
            raise PermanentSinkError(
                f"JetStream publish refused: the message on {subject!r} is {size} bytes, "
                f"more than the server's max_payload ({limit} bytes)",
                delivered=pos,
            )

    def _classify(self, exc: BaseException, subject: str, pos: int) -> SinkError:
        """Permanent: what the server will never take however often it is sent (a
        payload over ``max_payload``, a message the stream refuses as a bad request,
        e.g. over its ``max_msg_size``). Everything else (no connection, a timeout, no
        responders or no stream bound to the subject, the stream unavailable) is
        fixable on the server side without touching the item: transient, retried.
        A permissions violation is judged apart (:meth:`_judge_denial`)."""
        from nats.errors import MaxPayloadError
        from nats.js.errors import BadRequestError

        name = type(exc).__name__
        if isinstance(exc, MaxPayloadError):
            why = f"the message on {subject!r} is larger than the server's max_payload"
        elif isinstance(exc, BadRequestError):
            why = f"the stream refuses the message on {subject!r}: {exc.description or name}"
        else:
            return TransientSinkError(f"JetStream publish failed: {name}: {exc}", delivered=pos)
        return PermanentSinkError(f"JetStream publish refused: {why}", delivered=pos)

    async def _judge_denial(self, subject: str, pos: int) -> SinkError:
        """``subject`` was denied: the item's fault (permanent) only if these
        credentials may publish to another of the sink's subjects right now, else an
        outage (transient): the sink waits for the rights to come back."""
        other = await self._publishable_other(subject)
        if other is not None:
            return PermanentSinkError(
                "JetStream publish refused: permissions violation: these credentials may "
                f"not publish to {subject!r} (they may publish to {other!r})",
                delivered=pos,
            )
        return TransientSinkError(
            "JetStream publish refused: permissions violation: these credentials may not "
            f"publish to {subject!r} nor to any other subject of the sink "
            f"({self.prefix}.>): waiting for the publish permissions to be restored",
            delivered=pos,
        )

    async def _publishable_other(self, denied: str) -> str | None:
        """The first subject of the sink but ``denied`` that the server lets these
        credentials publish to, probed one at a time (those acknowledged before
        first) with a request JetStream answers without storing anything; None when
        there is none, or when the connection cannot tell (then nothing is judged the
        item's fault). Every denied probe is a ``Publish Violation`` in the server's
        log, so once the probes found every subject denied, that answer stands for
        ``reprobe_after`` seconds (or until something is acknowledged) without new
        probes: the outage it found holds up every item alike."""
        from nats.errors import Error as NatsError
        from nats.errors import NoRespondersError

        nc = self._nc
        if nc is None:
            return None
        if (
            self._all_denied_at is not None
            and self._clock() - self._all_denied_at < self.reprobe_after
        ):
            return None
        others = sorted(
            (self._subjects | self._acknowledged) - {denied},
            key=lambda s: (s not in self._acknowledged, s),
        )
        for other in others:
            try:
                await self._unless_denied(
                    other, nc.request(other, b"", timeout=self.timeout, headers=_PROBE_HEADERS)
                )
            except _Denied:
                continue
            except NoRespondersError:
                return other  # routed, to nobody: the publish was allowed
            except (OSError, TimeoutError, NatsError) as exc:
                log.debug("sink %r: publish permission probe failed: %s", self.name, exc)
                return None
            return other  # answered (JetStream refuses the probe): allowed
        self._all_denied_at = self._clock()
        return None

    async def _unless_denied(self, subject: str, call: Awaitable[_T]) -> _T:
        """``call``, a publish to ``subject`` that waits for its answer, cut short by
        :class:`_Denied` once the server reports a permissions violation for
        ``subject`` (nats-py only passes that to the error callback; the call itself
        would wait until its timeout)."""
        key = subject.lower()  # nats-py lower-cases the server's error text
        denied: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watched[key] = denied
        task = asyncio.ensure_future(call)
        try:
            await asyncio.wait((task, denied), return_when=asyncio.FIRST_COMPLETED)
            answered = task.done()
        finally:
            if self._watched.get(key) is denied:
                del self._watched[key]
            if not task.done():
                task.cancel()
        if not answered:
            raise _Denied(subject)
        return task.result()

    async def _on_error(self, exc: Exception) -> None:
        """nats-py's error callback: a permissions violation names the subject the
        server refused (the publish itself would only time out); a subscription
        refused or removed (by a reload) may be the one answers come back on, so the
        next send connects afresh. Every other error nats-py logs itself; the runner
        reports failures."""
        text = str(exc)
        match = _PUBLISH_DENIED.search(text)
        if match:
            denied = self._watched.get(match.group(1).lower())
            if denied is not None and not denied.done():
                denied.set_result(None)
        elif _SUBSCRIBE_DENIED.search(text):
            self._reply_lost = True

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            await _close_quietly(nc)


def _header_block(headers: dict[str, str]) -> bytes:
    """The header block nats-py writes before the payload (HPUB)."""
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"NATS/1.0\r\n{lines}\r\n".encode()


async def _close_quietly(nc: Any) -> None:
    with contextlib.suppress(Exception):  # closing a broken or half-open connection
        await nc.close()
    transport = getattr(nc, "_transport", None)
    if transport is not None:  # a connect refused before CONNECT leaves the socket open
        with contextlib.suppress(Exception):
            transport.close()
