"""Log shipping, metrics and retention of this service, built from its settings (the audit
library knows nothing about Kroonika's configuration).

- :func:`build_sinks` turns ``KROONIKA_AUDIT_SINKS`` (and ``KROONIKA_AUDIT_JSONL_DIR``) into
  sinks, checking everything when the app is built: a bad sink refuses to start the
  service (:class:`~kroonika.settings.SettingsError`), naming the sink and the setting but
  never echoing a value. A key that does nothing for the sink's kind is refused too.
  Nothing travels in clear to a host that is not loopback unless the sink says so by
  name: the events need ``allow_cleartext`` (decisions 0019, 0020), a credential
  ``allow_cleartext_credentials`` besides (decision 0013); neither implies the other.
- :class:`LogShipping` runs one :class:`~kroonika.audit.sinks.SinkRunner` for all sinks,
  woken by the trail's commits (chained with any other ``on_commit`` listener) and
  reporting failures and recoveries as ``audit.sink``; it renders Prometheus metrics.
- :func:`retention_policy` is the policy from settings; the scheduled job is in
  :mod:`kroonika.jobs.retention`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr
from sqlalchemy import func, select

from kroonika.audit import AuditTrail, SealedEvent
from kroonika.audit.formats import Rfc5424Renderer
from kroonika.audit.pipeline import TRAIL_COUNTERS
from kroonika.audit.retention import DEFAULT_CATEGORY_DAYS, DEFAULT_TYPE_DAYS, RetentionPolicy
from kroonika.audit.sinks import (
    CursorStore,
    ElasticBulkSink,
    JetStreamSink,
    JsonlFileSink,
    OnlyTypes,
    RetryPolicy,
    Sink,
    SinkRunner,
    SmtpSink,
    SplunkHecSink,
    SyslogTcpSink,
    SyslogUdpSink,
    WebhookSink,
    is_loopback,
    tls_context,
    trail_reporter,
)
from kroonika.audit.store._schema import blocks
from kroonika.audit.store.sql import SqlAuditStore
from kroonika.settings import AuditSinkSettings, Settings, SettingsError

log = logging.getLogger("kroonika.shipping")

JSONL_SINK_NAME = "jsonl"
_PLACEHOLDERS = {"", "changeme", "change-me", "secret", "placeholder", "xxx", "todo"}
_NEEDS_ADDRESS = {"syslog_tcp", "syslog_tls", "syslog_udp", "smtp"}
_NEEDS_URL = {"splunk_hec", "elastic_bulk", "webhook"}
_NEEDS_SECRET = {"splunk_hec", "webhook"}
_SECRET_IN_HEADER = {"splunk_hec", "elastic_bulk"}  # sent as is in Authorization
_TOKEN_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F))

_SYSLOG = {"host", "port", "body", "app_name", "hostname"}
#: The opt-out for a credential in clear (decision 0013).
_CLEARTEXT_OPT_OUT = "allow_cleartext_credentials"
#: The opt-out for the events in clear (decisions 0019, 0020): a separate risk.
_EVENTS_OPT_OUT = "allow_cleartext"
_IN_CLEAR = {_CLEARTEXT_OPT_OUT, _EVENTS_OPT_OUT}
_HTTP = {"url", "secret", "secret_file", "ca_file", "tls_verify", "timeout_s", "proxy"} | _IN_CLEAR
#: The optional keys that do something, per kind (``kind`` and ``name`` always do).
_APPLIES: dict[str, set[str]] = {
    "syslog_tcp": _SYSLOG | {"timeout_s", _EVENTS_OPT_OUT},
    "syslog_tls": _SYSLOG
    | {"timeout_s", "ca_file", "cert_file", "key_file", "server_hostname", "tls_verify"},
    "syslog_udp": _SYSLOG | {"max_size", _EVENTS_OPT_OUT},
    "splunk_hec": _HTTP | {"index", "source", "sourcetype", "hostname"},
    "elastic_bulk": _HTTP | {"index"},
    "webhook": _HTTP,
    "nats": {
        "url",
        "secret",
        "secret_file",
        "ca_file",
        "cert_file",
        "key_file",
        "subject_prefix",
        "duplicate_window_s",
        "check_duplicate_window",
        "tls_handshake_first",
        "timeout_s",
        "tls_verify",  # true only: checked in _check_keys
    }
    | _IN_CLEAR,
    "jsonl": {"directory", "basename", "max_bytes", "max_age_s", "keep", "fsync"},
    "smtp": {
        "host",
        "port",
        "security",
        "user",
        "secret",
        "secret_file",
        "ca_file",
        "mail_from",
        "mail_to",
        "timeout_s",
    }
    | _IN_CLEAR,
}
#: What an e-mail sink sends unless its ``types`` say otherwise: one message per alert
#: raised (an acknowledgement is news for a dashboard or a webhook, not for a pager).
SMTP_DEFAULT_TYPES = ("alert.raise",)


def _fail(spec: AuditSinkSettings, what: str) -> SettingsError:
    return SettingsError(f"KROONIKA_AUDIT_SINKS: sink {spec.name!r} ({spec.kind}): {what}")


def _check_keys(spec: AuditSinkSettings) -> None:
    """Refuse a key the kind ignores: the operator believes it is in effect (a
    ``ca_file`` on plain ``syslog_tcp`` does not make it TLS)."""
    idle = sorted(spec.model_fields_set - _APPLIES[spec.kind] - {"kind", "name", "types"})
    if spec.kind == "nats" and not spec.tls_verify:
        idle.append("tls_verify")
    if not idle:
        return
    hint = ""
    plain_syslog = spec.kind in ("syslog_tcp", "syslog_udp")
    if plain_syslog and {"ca_file", "cert_file", "key_file"} & set(idle):
        hint = " (use kind syslog_tls for TLS)"
    elif plain_syslog and _CLEARTEXT_OPT_OUT in idle:
        hint = f" (syslog carries no credential: the opt-out for events is {_EVENTS_OPT_OUT}=true)"
    elif spec.kind == "nats" and "tls_verify" in idle:
        hint = " (NATS always verifies the server certificate)"
    raise _fail(spec, f"{', '.join(map(repr, idle))} has no effect on this kind{hint}")


def _in_clear(
    spec: AuditSinkSettings, setting: str, where: str, tls: str, *, credential: bool
) -> None:
    """The sink would send over a connection that is not TLS to a host that is not
    loopback: the events always, a credential if it has one. Each risk has its own
    opt-out and neither implies the other (decision 0020): refused, naming what is
    missing, unless all are given; then logged (at every start)."""
    risks = {_CLEARTEXT_OPT_OUT: "the credential"} if credential else {}
    risks[_EVENTS_OPT_OUT] = "the events"
    what = " and ".join(risks.values())
    missing = [key for key in risks if not getattr(spec, key)]
    if missing:
        given = [f"{key}=true covers {risks[key]} only" for key in risks if key not in missing]
        raise _fail(
            spec,
            f"{setting}: {what} would travel in clear ({where}): use {tls}, or set "
            f"{' and '.join(f'{key}=true' for key in missing)} if the network path is "
            "protected otherwise" + (f" ({given[0]})" if given else ""),
        )
    log.warning(
        "sink %r (%s) sends %s in clear (%s) because %s",
        spec.name,
        spec.kind,
        what,
        where,
        " and ".join(f"{key}=true" for key in risks),
    )


def _plain_syslog(spec: AuditSinkSettings) -> bool:
    """Whether a ``syslog_tcp``/``syslog_udp`` sink may send in clear: to loopback, or to
    another host only with ``allow_cleartext`` (logged); else refused (decision 0019)."""
    if is_loopback(spec.host):
        return False
    _in_clear(spec, "host", "to a host that is not loopback", "kind syslog_tls", credential=False)
    return True


def _secret(spec: AuditSinkSettings, settings: Settings) -> SecretStr | None:
    if spec.secret is not None and spec.secret_file is not None:
        raise _fail(spec, "give secret or secret_file, not both")
    value = spec.secret
    if spec.secret_file is not None:
        try:
            value = SecretStr(spec.secret_file.read_text().strip())
        except OSError as exc:
            raise _fail(spec, f"cannot read secret_file: {exc.strerror}") from None
    if value is not None and value.get_secret_value().strip().lower() in _PLACEHOLDERS:
        raise _fail(spec, "the secret is empty or a placeholder")
    if value is None and spec.kind in _NEEDS_SECRET:
        raise _fail(spec, "a secret (or secret_file) is required")
    if (
        value is not None
        and spec.kind in _SECRET_IN_HEADER
        and not set(value.get_secret_value()) <= _TOKEN_CHARS
    ):
        # A space, a line break or a non-ASCII letter (a pasted no-break space) would
        # fail every request at run time, or split the header.
        raise _fail(spec, "the secret must be printable ASCII without spaces")
    return value


def _http_verify(spec: AuditSinkSettings, settings: Settings) -> bool | ssl.SSLContext:
    if not spec.tls_verify:
        if settings.production:
            raise _fail(spec, "tls_verify=false is refused in production")
        log.warning(
            "sink %r (%s) does not verify the server's TLS certificate (tls_verify=false): "
            "anyone on the path can read and alter what it ships",
            spec.name,
            spec.kind,
        )
        return False
    if spec.ca_file is None:
        return True
    try:
        return tls_context(str(spec.ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise _fail(spec, f"ca_file: {type(exc).__name__}") from None


def _check_url(spec: AuditSinkSettings, secret: SecretStr | None) -> str:
    url = spec.url or ""
    if not url.startswith(("http://", "https://")):
        raise _fail(spec, "url must be http:// or https://")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise _fail(spec, "url is not a valid URL") from None
    if not parsed.host:
        raise _fail(spec, "url has no host")
    credential = secret is not None or bool(parsed.userinfo)  # user:password@ is one too
    if parsed.scheme == "http" and not is_loopback(parsed.host):
        where = "plain http:// to a host that is not loopback"
        _in_clear(spec, "url", where, "https://", credential=credential)
    return url


def _nats_servers(spec: AuditSinkSettings, secret: SecretStr | None) -> list[str]:
    servers = [s.strip() for s in (spec.url or "nats://127.0.0.1:4222").split(",")]
    if not all(s.startswith(("nats://", "tls://")) for s in servers):
        raise _fail(spec, "url must list nats:// or tls:// servers")
    parsed = [urlsplit(s) for s in servers]
    if any("@" in p.netloc for p in parsed):
        # nats-py would send it before this service could check the connection
        raise _fail(spec, "url must not hold a credential: give it as secret or secret_file")
    tls_files = [k for k in ("ca_file", "cert_file", "key_file") if getattr(spec, k) is not None]
    if tls_files and any(p.scheme == "nats" for p in parsed):
        # nats-py would talk in clear to a server that does not ask for TLS
        raise _fail(spec, f"{', '.join(tls_files)} given: list the servers as tls://, not nats://")
    if any(p.scheme == "nats" and not is_loopback(p.hostname) for p in parsed):
        where = "a nats:// server that is not loopback"
        _in_clear(spec, "url", where, "tls:// servers", credential=secret is not None)
    return servers


def _renderer(spec: AuditSinkSettings) -> Rfc5424Renderer:
    import socket

    try:
        return Rfc5424Renderer(
            hostname=spec.hostname or socket.gethostname().split(".")[0] or "-",
            app_name=spec.app_name,
            body=spec.body,
        )
    except (TypeError, ValueError) as exc:
        raise _fail(spec, str(exc)) from None


def build_sink(spec: AuditSinkSettings, settings: Settings) -> Sink:
    """One sink from its settings, keeping to its ``types`` when it has them (an
    ``smtp`` sink to raised alerts unless told otherwise); :class:`SettingsError` if it cannot
    work."""
    sink = _build_sink(spec, settings)
    types = spec.types if spec.types is not None else None
    if types is None and spec.kind == "smtp":
        types = list(SMTP_DEFAULT_TYPES)
    if types is None:
        return sink
    try:
        return OnlyTypes(sink, types)
    except ValueError as exc:
        raise _fail(spec, f"types: {exc}") from None


def _smtp(spec: AuditSinkSettings, secret: SecretStr | None) -> SmtpSink:
    """An e-mail sink: TLS verified always; in clear only as decisions 0019/0020 allow."""
    if spec.mail_from is None or not spec.mail_to:
        raise _fail(spec, "mail_from and mail_to are required")
    if (spec.user is None) != (secret is None):
        raise _fail(spec, "a login needs both user and secret (or secret_file)")
    if spec.security == "none" and not is_loopback(spec.host):
        where = "security none to a host that is not loopback"
        _in_clear(spec, "security", where, "starttls or tls", credential=secret is not None)
    ctx: ssl.SSLContext | None = None
    if spec.security != "none":
        try:
            ctx = tls_context(str(spec.ca_file) if spec.ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise _fail(spec, f"ca_file: {type(exc).__name__}") from None
    elif spec.ca_file is not None:
        raise _fail(spec, "'ca_file' has no effect with security none")
    return SmtpSink(
        spec.name,
        str(spec.host),
        int(spec.port or 0),
        mail_from=spec.mail_from,
        mail_to=spec.mail_to,
        security=spec.security,
        tls=ctx,
        username=spec.user,
        password=secret,
        timeout=spec.timeout_s,
        allow_cleartext=spec.allow_cleartext,
        allow_cleartext_credentials=spec.allow_cleartext_credentials,
    )


def _build_sink(spec: AuditSinkSettings, settings: Settings) -> Sink:
    extra = sorted((spec.model_extra or {}).keys())
    if extra:
        raise _fail(spec, f"unknown keys {extra}")
    _check_keys(spec)
    secret = _secret(spec, settings)
    kind = spec.kind
    if kind in _NEEDS_ADDRESS and (not spec.host or spec.port is None):
        raise _fail(spec, "host and port are required")
    if kind in _NEEDS_URL and not spec.url:
        raise _fail(spec, "url is required")
    try:
        if kind == "syslog_tcp":
            return SyslogTcpSink(
                spec.name,
                str(spec.host),
                int(spec.port or 0),
                renderer=_renderer(spec),
                connect_timeout=spec.timeout_s,
                allow_cleartext=_plain_syslog(spec),
            )
        if kind == "syslog_tls":
            if not spec.tls_verify:
                raise _fail(spec, "syslog over TLS always verifies the server (RFC 5425)")
            try:
                ctx = tls_context(
                    str(spec.ca_file) if spec.ca_file else None,
                    certfile=str(spec.cert_file) if spec.cert_file else None,
                    keyfile=str(spec.key_file) if spec.key_file else None,
                )
            except (OSError, ssl.SSLError) as exc:
                raise _fail(spec, f"TLS files: {type(exc).__name__}") from None
            return SyslogTcpSink(
                spec.name,
                str(spec.host),
                int(spec.port or 0),
                renderer=_renderer(spec),
                tls=ctx,
                server_hostname=spec.server_hostname,
                connect_timeout=spec.timeout_s,
            )
        if kind == "syslog_udp":
            return SyslogUdpSink(
                spec.name,
                str(spec.host),
                int(spec.port or 0),
                renderer=_renderer(spec),
                max_size=spec.max_size,
                allow_cleartext=_plain_syslog(spec),
            )
        if kind == "splunk_hec":
            if secret is None:  # checked by _secret; keeps mypy informed
                raise _fail(spec, "a secret is required")
            return SplunkHecSink(
                spec.name,
                _check_url(spec, secret),
                secret,
                index=spec.index,
                source=spec.source,
                sourcetype=spec.sourcetype,
                host=spec.hostname,
                timeout=spec.timeout_s,
                verify=_http_verify(spec, settings),
                allow_cleartext=spec.allow_cleartext,
                proxy=spec.proxy,
            )
        if kind == "elastic_bulk":
            return ElasticBulkSink(
                spec.name,
                _check_url(spec, secret),
                index=spec.index or "logs-kroonika.audit-default",
                api_key=secret,
                timeout=spec.timeout_s,
                verify=_http_verify(spec, settings),
                allow_cleartext=spec.allow_cleartext,
                proxy=spec.proxy,
            )
        if kind == "webhook":
            if secret is None:
                raise _fail(spec, "a secret is required")
            return WebhookSink(
                spec.name,
                _check_url(spec, secret),
                secret,
                timeout=spec.timeout_s,
                verify=_http_verify(spec, settings),
                allow_cleartext=spec.allow_cleartext,
                proxy=spec.proxy,
            )
        if kind == "nats":
            servers = _nats_servers(spec, secret)
            tls: ssl.SSLContext | None = None
            if any(s.startswith("tls://") for s in servers):
                try:
                    tls = tls_context(
                        str(spec.ca_file) if spec.ca_file else None,
                        certfile=str(spec.cert_file) if spec.cert_file else None,
                        keyfile=str(spec.key_file) if spec.key_file else None,
                    )
                except (OSError, ssl.SSLError) as exc:
                    raise _fail(spec, f"TLS files: {type(exc).__name__}") from None
            return JetStreamSink(
                spec.name,
                servers,
                subject_prefix=spec.subject_prefix,
                timeout=spec.timeout_s,
                token=secret,
                tls=tls,
                allow_cleartext_credentials=spec.allow_cleartext_credentials,
                allow_cleartext=spec.allow_cleartext,
                duplicate_window=spec.duplicate_window_s,
                tls_handshake_first=spec.tls_handshake_first,
                check_duplicate_window=spec.check_duplicate_window,
            )
        if kind == "smtp":
            return _smtp(spec, secret)
        if kind == "jsonl":
            if spec.directory is None:
                raise _fail(spec, "directory is required")
            return JsonlFileSink(
                spec.name,
                spec.directory,
                basename=spec.basename,
                max_bytes=spec.max_bytes,
                max_age=spec.max_age_s,
                keep=spec.keep,
                fsync=spec.fsync,
            )
    except ValueError as exc:
        raise _fail(spec, str(exc)) from None
    raise _fail(spec, "unknown kind")  # pragma: no cover (Literal-checked)


def build_sinks(settings: Settings) -> list[Sink]:
    """Every configured sink, the JSONL segment output (``audit_jsonl_dir``) included;
    :class:`SettingsError` for the first that cannot work."""
    sinks, refusals = checked_sinks(settings)
    if refusals:
        raise refusals[0]
    return sinks


def checked_sinks(settings: Settings) -> tuple[list[Sink], list[SettingsError]]:
    """The sinks that build and every refusal, one per sink that does not (for
    ``kroonika audit sinks status``: an operator fixes them all in one go)."""
    sinks: list[Sink] = []
    refusals: list[SettingsError] = []
    for spec in settings.audit_sinks:
        try:
            sinks.append(build_sink(spec, settings))
        except SettingsError as exc:
            refusals.append(exc)
    if settings.audit_jsonl_dir is not None:
        try:
            sinks.append(
                JsonlFileSink(
                    JSONL_SINK_NAME,
                    settings.audit_jsonl_dir,
                    max_bytes=settings.audit_jsonl_max_bytes,
                    max_age=settings.audit_jsonl_max_age_s,
                    keep=settings.audit_jsonl_keep,
                )
            )
        except ValueError as exc:
            refusals.append(SettingsError(f"KROONIKA_AUDIT_JSONL_DIR: {exc}"))
    names = [s.name for s in sinks]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        refusals.append(SettingsError(f"KROONIKA_AUDIT_SINKS: sink names must be unique: {dupes}"))
    return sinks, refusals


def retention_policy(settings: Settings) -> RetentionPolicy:
    """Per-type and per-category days from ``KROONIKA_AUDIT_RETENTION_DAYS`` (a key with a
    dot is an event type, otherwise a category) over the defaults; the legal hold."""
    categories = dict(DEFAULT_CATEGORY_DAYS)
    types = dict(DEFAULT_TYPE_DAYS)
    for key, days in settings.audit_retention_days.items():
        (types if "." in key else categories)[key] = days
    try:
        return RetentionPolicy(
            default_days=settings.audit_retention_default_days,
            categories=categories,
            types=types,
            legal_hold=settings.audit_legal_hold,
        )
    except ValueError as exc:
        raise SettingsError(f"KROONIKA_AUDIT_RETENTION_DAYS: {exc}") from None


@dataclass(frozen=True, slots=True)
class SinkStatus:
    """One sink as the dashboard shows it (see :meth:`LogShipping.sink_status`)."""

    sink: str
    failing: bool
    failures: int
    dead_letters_pending: int
    lag_events: int
    lag_seconds: float
    last_error: str


class CommitWakeup:
    """Chains ``notify`` onto ``trail.on_commit``, keeping the listener that was there;
    ``detach`` puts that one back unless another chained on after (listeners compose
    LIFO: the log shipping, the alert evaluator, the security monitor)."""

    def __init__(self, trail: AuditTrail, notify: Callable[[], None]) -> None:
        self.trail = trail
        self.notify = notify
        self._previous: Callable[[list[SealedEvent]], None] | None = None
        self._listener: Callable[[list[SealedEvent]], None] | None = None

    def attach(self) -> None:
        previous, notify = self.trail.on_commit, self.notify

        def on_commit(sealed: list[SealedEvent]) -> None:
            if previous is not None:
                previous(sealed)
            notify()

        self._previous, self._listener = previous, on_commit
        self.trail.on_commit = on_commit

    def detach(self) -> None:
        if self._listener is not None and self.trail.on_commit is self._listener:
            self.trail.on_commit = self._previous
        self._listener = None


class LogShipping:
    """One :class:`SinkRunner` for the service's sinks (or none when none is configured).

    ``start()`` chains ``runner.notify`` onto ``trail.on_commit`` (keeping the listener that
    was there) and ``stop()`` puts it back, so listeners compose LIFO with the security
    monitor. Delivery fails open: a sink outage never blocks the writer."""

    def __init__(
        self,
        trail: AuditTrail,
        store: SqlAuditStore,
        sinks: list[Sink],
        *,
        batch_size: int = 500,
        poll_interval: float = 0.5,
        retry: RetryPolicy | None = None,
        stop_drain_s: float = 5.0,
    ) -> None:
        self.trail = trail
        self.store = store
        self.stop_drain_s = stop_drain_s
        self.runner: SinkRunner | None = None
        if sinks:
            self.runner = SinkRunner(
                store,
                sinks,
                batch_size=batch_size,
                poll_interval=poll_interval,
                retry=retry,
                on_event=trail_reporter(trail),
            )
        self._wakeup: CommitWakeup | None = None
        self._started = False

    @classmethod
    def from_settings(
        cls, settings: Settings, trail: AuditTrail, store: SqlAuditStore
    ) -> LogShipping:
        return cls(
            trail,
            store,
            build_sinks(settings),
            batch_size=settings.audit_sink_batch_size,
            poll_interval=settings.audit_sink_poll_s,
            retry=RetryPolicy(maximum=max(0.5, settings.audit_sink_retry_max_s)),
        )

    async def start(self) -> None:
        runner = self.runner
        if runner is None or self._started:
            return
        self._wakeup = CommitWakeup(self.trail, runner.notify)
        self._wakeup.attach()
        self.trail.checkpoint_listeners.append(runner.notify)
        await runner.start()
        self._started = True

    async def stop(self) -> None:
        """Stop delivering: a last bounded catch-up (so ``audit.log.stop`` usually leaves
        with us), then release ownership so another instance takes over."""
        runner = self.runner
        if runner is None or not self._started:
            return
        self._started = False
        if self._wakeup is not None:
            self._wakeup.detach()
        if runner.notify in self.trail.checkpoint_listeners:
            self.trail.checkpoint_listeners.remove(runner.notify)
        await runner.stop(drain=self.stop_drain_s)

    # --- metrics ------------------------------------------------------------------

    def _pending_dead_letters(self) -> list[tuple[str, int]]:
        """(sink, dead letters no replay has delivered yet) from the database."""
        if self.runner is None:
            return []
        pending = CursorStore(self.store.engine).pending_counts()
        return [(s.name, pending.get(s.name, 0)) for s in sorted(self.runner.sinks, key=_name)]

    def _store_lag(self) -> list[tuple[str, str, int, int]]:
        """(sink, stream, delivered seq, head seq) from the database: the lag of every
        stream, whichever instance delivers it."""
        if self.runner is None:
            return []
        names = {s.name for s in self.runner.sinks}
        cursors = CursorStore(self.store.engine).all()
        with self.store.engine.connect() as conn:
            heads = {
                str(stream): int(head or 0)
                for stream, head in conn.execute(
                    select(blocks.c.stream, func.max(blocks.c.last_seq)).group_by(blocks.c.stream)
                ).all()
            }
        return [
            (sink, stream, cursors.get((sink, stream), 0), head)
            for sink in sorted(names)
            for stream, head in sorted(heads.items())
        ]

    def sink_status(self) -> list[SinkStatus]:
        """Each sink's state for the dashboard (reads the database: call it in a thread):
        the events stored but not yet delivered by any instance, the age of the oldest
        undelivered one and the failures seen by this instance, the dead letters no
        replay has delivered yet."""
        runner = self.runner
        if runner is None:
            return []
        lag: dict[str, int] = {}
        for sink, _, seq, head in self._store_lag():
            lag[sink] = lag.get(sink, 0) + max(0, head - seq)
        pending = dict(self._pending_dead_letters())
        return [
            SinkStatus(
                sink=name,
                failing=bool(m["failing"]),
                failures=int(m["failures"]),
                dead_letters_pending=pending.get(name, 0),
                lag_events=lag.get(name, 0),
                lag_seconds=float(m["lag_seconds_max"]),
                last_error=str(m["last_error"]),
            )
            for name, m in sorted(runner.metrics().items())
        ]

    async def prometheus(self) -> str:
        """The sink metrics in the Prometheus text exposition format (0.0.4)."""
        lines: list[str] = []

        def family(name: str, kind: str, doc: str) -> None:
            lines.append(f"# HELP {name} {doc}")
            lines.append(f"# TYPE {name} {kind}")

        runner = self.runner
        metrics = runner.metrics() if runner is not None else {}
        counters = (
            ("delivered", "Events delivered by this instance since it started."),
            ("checkpoints", "Checkpoints delivered by this instance since it started."),
            ("batches", "Batches delivered by this instance since it started."),
            ("failures", "Failed delivery attempts."),
            ("retries", "Retries after a failed attempt."),
            ("dead_letters", "Items refused permanently and dead-lettered."),
        )
        for key, doc in counters:
            family(f"kroonika_audit_sink_{key}_total", "counter", doc)
            for sink, m in sorted(metrics.items()):
                lines.append(f'kroonika_audit_sink_{key}_total{{sink="{_label(sink)}"}} {m[key]}')
        family("kroonika_audit_sink_failing", "gauge", "1 while the sink is failing.")
        for sink, m in sorted(metrics.items()):
            lines.append(
                f'kroonika_audit_sink_failing{{sink="{_label(sink)}"}} {int(m["failing"])}'
            )
        family(
            "kroonika_audit_sink_lag_seconds",
            "gauge",
            "Age of the oldest undelivered event, per stream this instance delivers.",
        )
        for sink, m in sorted(metrics.items()):
            for stream, secs in sorted(m["lag_seconds"].items()):
                lines.append(
                    f'kroonika_audit_sink_lag_seconds{{sink="{_label(sink)}",'
                    f'stream="{_label(stream)}"}} {float(secs):.3f}'
                )
        family(
            "kroonika_audit_sink_lag_events",
            "gauge",
            "Events stored but not yet delivered, per sink and stream (any instance).",
        )
        rows = await asyncio.to_thread(self._store_lag) if runner is not None else []
        for sink, stream, seq, head in rows:
            lines.append(
                f'kroonika_audit_sink_lag_events{{sink="{_label(sink)}",'
                f'stream="{_label(stream)}"}} {max(0, head - seq)}'
            )
        family(
            "kroonika_audit_sink_cursor",
            "gauge",
            "Last delivered sequence number per sink and stream.",
        )
        for sink, stream, seq, _ in rows:
            lines.append(
                f'kroonika_audit_sink_cursor{{sink="{_label(sink)}",'
                f'stream="{_label(stream)}"}} {seq}'
            )
        family(
            "kroonika_audit_sink_dead_letters_pending",
            "gauge",
            "Dead letters no replay has delivered yet, per sink (any instance).",
        )
        pending = await asyncio.to_thread(self._pending_dead_letters) if runner else []
        for sink, n in pending:
            lines.append(f'kroonika_audit_sink_dead_letters_pending{{sink="{_label(sink)}"}} {n}')
        family("kroonika_audit_events_total", "counter", "Audit trail counters of this instance.")
        # every known counter from the start (0), so rate() and absent() see the series
        trail = dict.fromkeys(TRAIL_COUNTERS, 0) | self.trail.counters.snapshot()
        for key, value in sorted(trail.items()):
            lines.append(f'kroonika_audit_events_total{{counter="{_label(key)}"}} {value}')
        return "\n".join(lines) + "\n"


def _name(sink: Sink) -> str:
    return sink.name


def _label(value: str) -> str:
    """A Prometheus label value: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


__all__ = [
    "JSONL_SINK_NAME",
    "SMTP_DEFAULT_TYPES",
    "CommitWakeup",
    "LogShipping",
    "SinkStatus",
    "build_sink",
    "build_sinks",
    "checked_sinks",
    "retention_policy",
]
