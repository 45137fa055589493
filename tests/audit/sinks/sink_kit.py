"""Helpers for the sink tests: a trail on a real store, events with hostile strings,
and a real rsyslogd run as an ordinary process."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kroonika.audit import (
    Actor,
    ActorType,
    AuditEvent,
    AuditTrail,
    Correlation,
    Counters,
    Fingerprinter,
    KeyRing,
    Outcome,
    Pipeline,
    Source,
    SqlAuditStore,
    SqlSubjectKeys,
    Target,
    events,
)
from kroonika.audit.alerting import AlertEvaluator, AlertRule
from kroonika.audit.sinks import CursorStore, RetryPolicy, SinkRunner

REQUIRE_SERVICES = os.environ.get("KROONIKA_REQUIRE_SERVICES") == "1"

HOSTILE = 'quote" back\\slash ]bracket |pipe =eq\r\nCRLF \x1b[31mANSI Õunapuu ÄÖÜ 🦊'


def anomaly(ip: str = "81.2.69.142", kind: str = "brute_force") -> AuditEvent:
    """A detector's finding about one source address (what the alert rules watch)."""
    return events.security_anomaly(
        outcome=Outcome.FAILURE,
        reason="anomaly",
        actor=Actor(ActorType.SYSTEM),
        source=Source(ip=ip),
        kind=kind,
        key_kind="ip",
        evidence="12 failed logins in 300s",
        confidence=90,
    )


@dataclass
class Kit:
    trail: AuditTrail
    store: SqlAuditStore
    keyring: KeyRing
    url: str
    keys_dir: Path


def make_kit(
    url: str,
    keys_dir: Path,
    *,
    stream: str = "web-1",
    checkpoint_every: int = 5,
    clock: Callable[[], int] = time.time_ns,
) -> Kit:
    """A trail on ``url``; ``clock`` (nanoseconds) gives its events their time."""
    store = SqlAuditStore(url)
    store.upgrade()
    keyring = KeyRing.open(keys_dir, create=True)
    counters = Counters()
    subject_keys = SqlSubjectKeys(store, b"m" * 32)
    pipeline = Pipeline.standard(
        fingerprinter=Fingerprinter(b"k" * 32, "p1"),
        subject_keys=subject_keys,
        counters=counters,
        strict=True,
    )
    trail = AuditTrail(
        pipeline,
        store,
        keyring,
        stream=stream,
        counters=counters,
        subject_keys=subject_keys,
        checkpoint_every=checkpoint_every,
        checkpoint_interval=3600,
        clock=clock,
    )
    return Kit(trail, store, keyring, url, keys_dir)


def login_event(n: int, *, hostile: bool = False) -> AuditEvent:
    """A failed login with a distinct request id (and hostile strings if asked)."""
    return events.auth_login(
        outcome=Outcome.FAILURE,
        reason="id_token.nonce_mismatch",
        actor=Actor(ActorType.USER, subject=f"EE3800108571{n % 10}"),
        source=Source(ip="192.0.2.17", user_agent=HOSTILE if hostile else "Firefox/133.0"),
        target=Target("session", f"s1:{n}"),
        correlation=Correlation(request_id=f"req-{n}" + (HOSTILE if hostile else "")),
        method="idcard",
    )


def write_events(kit: Kit, count: int, *, start: int = 0, hostile: bool = False) -> None:
    """``count`` events, each its own block (so cursors move block by block)."""
    for n in range(start, start + count):
        kit.trail.emit_sync(login_event(n, hostile=hostile))


# --- rsyslog ------------------------------------------------------------------------

RSYSLOGD = "/usr/sbin/rsyslogd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Rsyslog:
    port: int
    output: Path
    proc: subprocess.Popen[bytes]
    ca_file: Path | None = None

    def lines(self) -> list[str]:
        if not self.output.exists():
            return []
        return self.output.read_bytes().decode("utf-8").splitlines()

    def wait_lines(self, n: int, timeout: float = 30.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.lines()
            if len(lines) >= n:
                return lines
            time.sleep(0.05)
        return self.lines()


def require_rsyslog() -> None:
    if shutil.which(RSYSLOGD) is None and not Path(RSYSLOGD).exists():
        if REQUIRE_SERVICES:
            pytest.fail("rsyslogd is not installed and KROONIKA_REQUIRE_SERVICES=1")
        pytest.skip("rsyslogd is not installed (apt-get install rsyslog rsyslog-openssl)")


# The raw message as received, one per line: the property that proves the whole
# RFC 5424 message (header, structured data, body) arrived intact.
_TEMPLATE = 'template(name="raw" type="string" string="%rawmsg%\\n")'


def start_rsyslog(
    workdir: Path, *, tls: tuple[Path, Path, Path] | None = None, address: str = "127.0.0.1"
) -> Rsyslog:
    """rsyslogd -n as an ordinary process: imtcp on a free port of ``address`` (loopback
    unless told), omfile."""
    require_rsyslog()
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    output = workdir / "received.log"
    if tls is None:
        inputs = (
            'module(load="imtcp" MaxSessions="100")\n'
            f'input(type="imtcp" address="{address}" port="{port}" '
            'SupportOctetCountedFraming="on")\n'
        )
    else:
        ca, cert, key = tls
        inputs = (
            f'global(DefaultNetstreamDriver="ossl" DefaultNetstreamDriverCAFile="{ca}" '
            f'DefaultNetstreamDriverCertFile="{cert}" DefaultNetstreamDriverKeyFile="{key}")\n'
            'module(load="imtcp" StreamDriver.Name="ossl" StreamDriver.Mode="1" '
            'StreamDriver.AuthMode="anon")\n'
            f'input(type="imtcp" address="{address}" port="{port}" '
            'SupportOctetCountedFraming="on")\n'
        )
    conf = workdir / "rsyslog.conf"
    conf.write_text(
        f'global(workDirectory="{workdir}" maxMessageSize="64k")\n'
        + inputs
        + _TEMPLATE
        + "\n"
        + f'action(type="omfile" file="{output}" template="raw" flushOnTXEnd="on" '
        'asyncWriting="off")\n'
    )
    pidfile = workdir / "rsyslogd.pid"
    proc = subprocess.Popen(
        [RSYSLOGD, "-n", "-f", str(conf), "-i", str(pidfile)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "RSYSLOG_MODDIR": "/usr/lib/x86_64-linux-gnu/rsyslog/"},
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise RuntimeError(f"rsyslogd exited: {out}")
        try:
            with socket.create_connection((address, port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        raise RuntimeError("rsyslogd did not start listening")
    return Rsyslog(port, output, proc, tls[0] if tls else None)


def stop_rsyslog(r: Rsyslog) -> None:
    r.proc.terminate()
    try:
        r.proc.wait(10)
    except subprocess.TimeoutExpired:
        r.proc.kill()
        r.proc.wait(5)
    if r.proc.stdout is not None:
        r.proc.stdout.close()


# --- TLS ----------------------------------------------------------------------------


@dataclass
class OwnCa:
    """A CA of the test's own (a day long), which issues certificates into ``tmp``."""

    tmp: Path
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def make(cls, tmp: Path) -> OwnCa:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kroonika test CA")])
        cert = (
            _validity(x509.CertificateBuilder())
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(tmp, key, cert)

    @property
    def path(self) -> Path:
        return self.tmp / "ca.pem"

    def issue(
        self, stem: str, names: Sequence[str] = ("localhost", "127.0.0.1")
    ) -> tuple[Path, Path]:
        """A certificate for ``names`` (DNS names or IP addresses) and its key, as
        ``<stem>.pem`` and ``<stem>-key.pem``: a server's, or a client's."""
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for name in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        cert = (
            _validity(x509.CertificateBuilder())
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        paths = (self.tmp / f"{stem}.pem", self.tmp / f"{stem}-key.pem")
        paths[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths[1].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return paths


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        builder.serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def make_ca(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for localhost and 127.0.0.1: (ca, cert, key) files."""
    ca = OwnCa.make(tmp)
    return (ca.path, *ca.issue("server"))


# --- a nats-server of our own -------------------------------------------------------

NATS_SERVER = "/usr/sbin/nats-server"


@dataclass
class OwnNats:
    """A nats-server of our own: its port, and its configuration to change (a reload,
    as an operator does, with SIGHUP)."""

    port: int
    proc: subprocess.Popen[bytes]
    conf: Path
    log: Path
    base: str

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def reconfigure(self, conf: str, timeout: float = 20.0) -> None:
        """Replace the added configuration with ``conf`` and reload it (SIGHUP, what
        ``nats-server --signal reload`` sends); return once the server says it has."""
        done = self._reloads()
        self.conf.write_text(self.base + conf)
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while self._reloads() <= done:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"nats-server did not reload: {self.log.read_text()[-2000:]}")
            time.sleep(0.02)

    def _reloads(self) -> int:
        text = self.log.read_text() if self.log.exists() else ""
        return text.count("Reloaded server configuration")


@contextlib.contextmanager
def own_nats_server(tmp: Path, conf: str) -> Iterator[OwnNats]:
    """A nats-server of our own on a free loopback port, JetStream on, with ``conf``
    added to its configuration (the system server on 4222 is left alone)."""
    if not Path(NATS_SERVER).exists():
        if REQUIRE_SERVICES:
            pytest.fail(f"{NATS_SERVER} is not installed and KROONIKA_REQUIRE_SERVICES=1")
        pytest.skip(f"{NATS_SERVER} is not installed")
    port = free_port()
    path, log = tmp / "nats.conf", tmp / "nats.log"
    base = (
        f'listen: "127.0.0.1:{port}"\njetstream {{ store_dir: "{tmp / "js"}" }}\n'
        f'log_file: "{log}"\n'
    )
    path.write_text(base + conf)
    proc = subprocess.Popen(
        [NATS_SERVER, "-c", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("nats-server did not start listening")
        yield OwnNats(port, proc, path, log, base)
    finally:
        proc.terminate()
        proc.wait(10)


#: Retries fast enough for a test of a sink that fails on purpose.
QUICK_RETRY = RetryPolicy(initial=0.001, maximum=0.004, permanent_attempts=3, send_timeout=5)


def evaluator_of(kit: Kit, rules: list[AlertRule], **kw: Any) -> AlertEvaluator:
    """An alert evaluator over ``kit``'s store (its own cursors) that records its alerts
    through ``kit``'s trail; ``kw`` as :class:`AlertEvaluator` takes them."""

    async def emit(event: AuditEvent) -> Any:
        return kit.trail.emit_sync(event)

    return AlertEvaluator(rules, emit, store=kit.store, cursors=CursorStore(kit.store.engine), **kw)


async def drained(kit: Kit, sink: Any) -> SinkRunner:
    """A runner of ``sink`` over ``kit``'s store that has read everything stored."""
    runner = SinkRunner(kit.store, [sink], retry=QUICK_RETRY, ship_checkpoints=False)
    await runner.drain()
    return runner


def of_type(kit: Kit, etype: str) -> list[dict[str, Any]]:
    """Every stored event of ``etype``, parsed, in storage order."""
    docs = [orjson.loads(b) for blk in kit.store.blocks() for b in blk.records()]
    return [d for d in docs if d["type"] == etype]


def refuse_on_insert(
    engine: Any, table: str, *, stream_like: str = "%", after_seq: int = 0
) -> None:
    """Make the real database refuse inserts into ``table`` (``audit_blocks`` or
    ``audit_retained_bases``): the store is down for that write, nothing else changes.
    For blocks, only those of a stream matching ``stream_like`` that start past
    ``after_seq`` are refused, so a test picks which commit fails."""
    from sqlalchemy import text

    seq = "NEW.first_seq" if table == "audit_blocks" else "NEW.size"
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(
                text(
                    f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
                    f"WHEN NEW.stream LIKE '{stream_like}' AND {seq} > {int(after_seq)} "
                    "BEGIN SELECT RAISE(ABORT, 'store refuses this write'); END"
                )
            )
            return
        conn.execute(
            text(
                f"CREATE FUNCTION refuse_{table}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN IF NEW.stream LIKE '{stream_like}' AND {seq} > {int(after_seq)} THEN "
                "RAISE EXCEPTION 'store refuses this write'; END IF; RETURN NEW; END $$"
            )
        )
        conn.execute(
            text(
                f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION refuse_{table}()"
            )
        )
