"""One life of the whole system, every byte of its output searched for known secrets.

``kroonika serve`` and ``kroonika mock-tara`` run as processes of their own: business
database in PostgreSQL, audit store in SQLite, the rate limiter in Redis, and every sink
the suite can run for real (JSONL segments, a real rsyslog over TCP, an HTTP collector
through the webhook sink, a nats-server of the test's own with JetStream, alert e-mail over
STARTTLS to aiosmtpd), plus ``/metrics``. The test drives a full life through them: a
citizen with a unicode name logs in, uses and extends the session and gets a session
token; a login fails; administrators are bootstrapped from the command line, log in and
make API keys; a client is created and its secret rotated, signing and checkpoint keys
rotated; tokens are issued, validated, introspected, extended, revoked (one by one and in
bulk), a forged and an expired token are presented; deny- and allow-list entries are
made; a wrong client secret is tried; the rate limit is hit and a brute-force attack
raises an alert; the citizen is erased; the retention job runs; the trail is queried,
exported in every format, verified and its checkpoints exported, through the CLI and the
API.

The audit store is SQLite in one run and a PostgreSQL database of its own in the other.
After the service stopped, the retention job runs as if 500 days had passed: every
checkpointed range is archived (gzip JSON lines) and purged.

Then everything the system wrote is collected: both processes' stdout and stderr, every
CLI run's, the audit store's bytes (or, on PostgreSQL, dumps of its tables), dumps of
every business table, the JSONL segments, the retention archives (decompressed: every
gzip output is searched as it was written and decompressed),
what rsyslog, the HTTP collector, nats-server and the SMTP server received, ``/metrics``,
and every HTTP response (headers and body) the test saw, except those that hand a secret
to its owner by design (a token response, a client secret shown once, an API key shown
once, the session's own view with its CSRF token, ``Set-Cookie``, and the redirect that
carries ``state`` and ``nonce`` to TARA). What the PostgreSQL server keeps is collected
too (``pg_server_files.py``): what its own log gained during the run (its errors quote
statements and the key values of refused rows), and the raw pages of every table, TOAST
table and index of the business database and of the PostgreSQL audit store, after a
``CHECKPOINT``: the row versions that updates, deletes (the erasure, the jobs, the
retention purge) and refused inserts left behind are in them until a vacuum reuses the
space. Every column is stored uncompressed for the run (``STORAGE EXTERNAL``), so what
the pages hold can be searched. Dead row versions of the business tables are searched
for the secrets; the erased person's code and names stay in them until the ``VACUUM
FULL`` the operator guide asks for after erasures (decision 0012), so the pages are
searched for those after it; likewise the erased person's data keys (as wrapped) must be
in no output, on PostgreSQL after ``VACUUM FULL audit_subject_keys``. A server log or
page the test may not read is left out and
:func:`test_the_postgresql_server_files_can_be_read` skips saying why; the sweep itself
never skips it silently when it can be read.

None of the known secret values may appear in any of it, in clear, base64 (any
alignment, standard or URL-safe), hex or percent-encoded.
"""

from __future__ import annotations

import base64
import concurrent.futures
import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import httpx
import jwt
import psycopg
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from login_harness import ALL_SCOPES, CLIENT_ID, SECRET
from pg_server_files import ServerLog, Unreadable, raw_pages, uncompressed
from sqlalchemy import select
from test_alerts_service import HOOK_KEY, Hook, Inbox, starttls_smtp, webhook_receiver
from test_two_instances import KROONIKA, Instance, free_port

from kroonika.audit import KeyRing, SqlAuditStore
from kroonika.audit.retention import RetentionJob, RetentionPolicy
from kroonika.audit.store._schema import subject_keys
from kroonika.db import make_engine
from kroonika.tokens import SigningKeyRing, SystemClock
from poll_kit import wait_until

sys.path.insert(0, str(Path(__file__).parents[1] / "audit" / "sinks"))

from sink_kit import OwnNats, Rsyslog

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.nats]

CITIZEN = "38001085718"
GIVEN, FAMILY = "Õie-Mall", "Žukovskaja-Ääremaa"
ADMIN, AUDITOR, PRIVACY = "60001019906", "60001017716", "37101010021"
MASTER_KEY = base64.b64encode(b"sweep-master-key-0123456789abcde").decode()
PSEUDONYM_KEY = base64.b64encode(b"sweep-pseudonym-key-0123456789ab").decode()
SESSION_KEY = base64.b64encode(b"sweep-session-key-0123456789abcd").decode()
METRICS_TOKEN = "sweep-metrics-token-0123456789"
REDIS_DB = 11
WHY = "INC-4242 the end-to-end secret sweep"
#: responses that hand a secret to its owner by design: (method, path, or prefix with *)
OWNERS = (
    ("POST", "/tokens*"),  # /tokens, /tokens/extend, /tokens/session, /tokens/bulk/issue
    ("POST", "/admin/clients*"),  # the new client's secret, shown once (and rotated)
    ("POST", "/admin/api-keys"),  # the key, shown once
    # the person's own view: their name, code, sessions and CSRF token
    ("GET", "/"),
    ("GET", "/auth/session"),
    ("POST", "/auth/session/extend"),
    ("GET", "/auth/sessions"),
)
#: Business tables keep people in clear while their data is live (decision 0016); an
#: erased person's deny- or allow-list entries are kept (decision 0018).
KEEPS_ERASED = ("token_access_list",)
#: every kind of output the sweep must have collected something of
COLLECTED = (
    "serve", "mock", "cli audit export", "business table", "audit store", "segment",
    "rsyslog", "nats", "http collector", "smtp", "http GET /metrics", "redis key",
    "retention archive", "(decompressed)",
)  # fmt: skip
#: the reason of a list entry made and deleted: its row version must be in the pages,
#: or the search of dead rows proves nothing
DELETED_REASON = "sweep entry deleted again 7c1e"
DAY = 86400


def _owner(method: str, path: str) -> bool:
    return any(
        method == m and (path.startswith(p[:-1]) if p.endswith("*") else path == p)
        for m, p in OWNERS
    )


@dataclass
class Seen:
    """Every secret the test learns and every byte of output it collects."""

    secrets: set[str] = field(default_factory=set)
    erased: set[str] = field(default_factory=set)  # the erased person's code and names
    erased_keys: list[bytes] = field(default_factory=list)  # their data keys, as wrapped
    codes: set[str] = field(default_factory=set)  # other people's personal codes
    outputs: dict[str, bytes] = field(default_factory=dict)
    exempt: list[bytes] = field(default_factory=list)  # the bodies handed to owners
    clients: list[httpx.Client] = field(default_factory=list)
    forged: set[str] = field(default_factory=set)  # tokens the test made, not the service
    started: float = field(default_factory=time.monotonic)
    mock_port: int = 0  # the TARA mock's answers to the browser are the protocol's
    kinds: Counter[str] = field(default_factory=Counter)  # how many of each were learnt

    def phase(self, name: str) -> None:
        print(f"{time.monotonic() - self.started:6.1f}s {name}")

    def add(self, name: str, data: bytes) -> None:
        """One output; a gzip one also decompressed (all its members)."""
        with _LOCK:
            n = 0
            while f"{name}#{n}" in self.outputs:
                n += 1
            self.outputs[f"{name}#{n}"] = data
            if data.startswith(b"\x1f\x8b"):
                self.outputs[f"{name}#{n} (decompressed)"] = gzip.decompress(data)

    async def on_response(self, response: httpx.Response) -> None:
        self.record(response)

    def record(self, response: httpx.Response) -> None:
        """One response as the test saw it: headers and body (``read`` first)."""
        response.read()
        request = response.request
        self.harvest(response)
        if request.url.port == self.mock_port:  # TARA talking to the browser: the protocol
            return
        path = request.url.path
        if _owner(request.method, path):
            self.exempt.append(response.content)
            body = b""
        else:
            body = response.content
        headers = [
            f"{k}: {v}"
            for k, v in response.headers.multi_items()
            if k != "set-cookie" and not (k == "location" and path == "/auth/login")
        ]
        self.add(f"http {request.method} {path}", "\n".join(headers).encode() + b"\n\n" + body)

    def harvest(self, response: httpx.Response) -> None:
        """The state, nonce and code a redirect carries and the cookies set."""
        q = parse_qs(urlsplit(response.headers.get("location", "")).query)
        for key in ("state", "nonce", "code"):
            self.secrets.update(q.get(key, []))
            self.kinds[key] += len(q.get(key, []))
        for header in response.headers.get_list("set-cookie"):
            self.exempt.append(header.encode())
            name, _, rest = header.partition("=")
            value = rest.split(";", 1)[0]
            if value:
                self.kinds["cookie " + name.split("_flow_")[0]] += 1
                self.secrets.add(value)
                self.secrets.update(p for p in value.split(".") if len(p) >= 16)
            if name.startswith("kroonika_flow_"):
                self.secrets.add(name.removeprefix("kroonika_flow_"))
        if response.request.url.path.startswith("/tokens") and response.status_code < 300:
            try:
                body = response.json()
            except ValueError:
                return
            self.tokens(body)

    def tokens(self, body: Any) -> None:
        """Every token value (and its signature) anywhere in a token response."""
        if isinstance(body, dict):
            for v in body.values():
                self.tokens(v)
        elif isinstance(body, list):
            for v in body:
                self.tokens(v)
        elif isinstance(body, str) and body.count(".") == 2 and body.startswith("eyJ"):
            self.secrets.add(body)
            self.secrets.add(body.rsplit(".", 1)[1])


_LOCK = threading.Lock()


def forms(secret: str) -> set[bytes]:
    """The secret in clear and in the trivially reversible encodings: base64 at every
    alignment (standard and URL-safe, the characters fully fixed by the secret), hex,
    percent-encoding, JSON's ASCII escaping."""
    raw = secret.encode()
    out = {raw, raw.hex().encode(), quote(secret, safe="").encode(), quote_plus(secret).encode()}
    out.add(json.dumps(secret).encode()[1:-1])
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + raw)
        start, end = -(-4 * k // 3), 4 * (k + len(raw)) // 3
        part = enc[start:end]
        out |= {part, part.replace(b"+", b"-").replace(b"/", b"_")}
    return {f for f in out if len(f) >= 6}


def run_cli(
    seen: Seen, env: dict[str, str], *args: str, stdin: str | None = None, owner: bool = False
) -> str:
    """One ``kroonika`` command; its stdout and stderr are collected (its stdout is the
    ``owner``'s if it shows a secret once by design)."""
    done = subprocess.run(
        [KROONIKA, *args],
        env=env,
        input=stdin.encode() if stdin is not None else None,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if owner:
        seen.exempt.append(done.stdout)
    else:
        seen.add(f"cli {' '.join(args[:3])} stdout", done.stdout)
    seen.add(f"cli {' '.join(args[:3])} stderr", done.stderr)
    assert done.returncode == 0, (args, done.stderr.decode(errors="replace")[-2000:])
    return done.stdout.decode()


class Browser:
    """A browser through the TARA mock as one person (who is ``autologin``)."""

    def __init__(self, seen: Seen, base: str, code: str, **extra: str) -> None:
        def choose(request: httpx.Request) -> None:
            if request.url.path == "/oidc/authorize" and request.url.port == seen.mock_port:
                request.url = request.url.copy_merge_params({"autologin": code, **extra})

        self.base = base
        self.client = httpx.Client(
            follow_redirects=True,
            timeout=30,
            trust_env=False,
            event_hooks={"request": [choose], "response": [seen.record]},
            headers={"user-agent": "Mozilla/5.0 (sweep)"},
        )
        seen.clients.append(self.client)
        self.csrf = ""

    def login(self) -> httpx.Response:
        landed = self.client.get(self.base + "/auth/login")
        if landed.status_code == 200:
            self.csrf = self.client.get(self.base + "/auth/session").json()["csrf_token"]
        return landed

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"x-csrf-token": self.csrf, "x-justification": WHY, **kw.pop("headers", {})}
        return self.client.request(method, self.base + path, headers=headers, **kw)


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"authorization": "Basic " + base64.b64encode(raw).decode()}


def private_key_forms(seen: Seen, var: Path, database_url: str) -> None:
    """The audit checkpoint keys (files) and the token signing keys (in the database,
    under the master key): PEM and raw, as known secrets."""
    for path in (var / "keys" / "audit").glob("*.key"):
        pem = path.read_bytes()
        seen.secrets.add(pem.decode())
        seen.secrets.update(line for line in pem.decode().splitlines() if "-----" not in line)
        key = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        seen.secrets |= {raw.hex(), base64.b64encode(raw).decode()}
        seen.secrets.add(base64.urlsafe_b64encode(raw).decode().rstrip("="))
    engine = make_engine(database_url)
    try:
        ring = SigningKeyRing(engine, base64.b64decode(MASTER_KEY), clock=SystemClock())
        kids = [k.kid for k in ring.published()]
        assert len(kids) >= 2  # the first key and the rotated one
        for kid in kids:
            key = ring._signing_key(kid).private
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode()
            seen.secrets.add(pem)
            seen.secrets.update(line for line in pem.splitlines() if "-----" not in line)
            d = key.private_numbers().private_value.to_bytes(32, "big")
            seen.secrets |= {d.hex(), base64.urlsafe_b64encode(d).decode().rstrip("=")}
    finally:
        engine.dispose()


def expired_token(database_url: str, claims: dict[str, Any]) -> str:
    """A token signed with the service's own active key, expired an hour ago."""
    engine = make_engine(database_url)
    try:
        ring = SigningKeyRing(engine, base64.b64decode(MASTER_KEY), clock=SystemClock())
        key = ring.current()
    finally:
        engine.dispose()
    now = int(time.time())
    body = {**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}
    return jwt.encode(body, key.private, algorithm="ES256", headers={"kid": key.kid})


def dump_tables(url: str) -> dict[str, bytes]:
    """Every table of the business database, as PostgreSQL's COPY writes it."""
    out: dict[str, bytes] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        for name in names:
            data = bytearray()
            with conn.cursor().copy(f'COPY (TABLE "{name}") TO STDOUT') as copy:
                for chunk in copy:
                    data += chunk
            out[name] = bytes(data)
    return out


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def smtp_inbox(tmp_path: Path) -> Iterator[tuple[Inbox, dict[str, Any]]]:
    with starttls_smtp(tmp_path) as inbox_and_sink:
        yield inbox_and_sink


@pytest.fixture
def collector() -> Iterator[Hook]:
    with webhook_receiver() as hook:
        yield hook


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    """A Redis database of the test's own for the rate limiter, empty at the start."""
    with redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB) as r:
        r.flushdb()
        yield r
        r.flushdb()


@pytest.fixture(params=["sqlite", "postgresql"])
def audit_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The audit store: a SQLite file, or a PostgreSQL database apart from the business one."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    return str(request.getfixturevalue("second_postgres_url"))


def test_the_postgresql_server_files_can_be_read(fresh_postgres_url: str) -> None:
    """The sweep searches the PostgreSQL server's log and the raw pages of its databases;
    where this test user may not read them, this says so (the sweep leaves them out)."""
    reasons = []
    try:
        ServerLog.locate(fresh_postgres_url).written()
    except Unreadable as exc:
        reasons.append(f"the server log is not searched: {exc}")
    try:
        raw_pages(fresh_postgres_url)
    except Unreadable as exc:
        reasons.append(f"the databases' raw pages (dead rows) are not searched: {exc}")
    if reasons:
        pytest.skip("; ".join(reasons))


@pytest.mark.timeout(900)  # about two minutes alone; each CLI run is slow on a loaded machine
def test_no_known_secret_reaches_any_output(
    tmp_path: Path,
    fresh_postgres_url: str,
    audit_store_url: str,
    smtp_inbox: tuple[Inbox, dict[str, Any]],
    collector: Hook,
    rsyslog: Rsyslog,
    nats_server: tuple[OwnNats, int],
    redis_db: redis.Redis,
) -> None:
    """See the module docstring."""
    seen = Seen()
    seen.secrets |= {SECRET, HOOK_KEY, METRICS_TOKEN, MASTER_KEY, PSEUDONYM_KEY, SESSION_KEY}
    for key in (MASTER_KEY, PSEUDONYM_KEY, SESSION_KEY):
        seen.secrets.add(base64.b64decode(key).hex())
    seen.erased |= {CITIZEN, GIVEN, FAMILY, GIVEN.upper(), FAMILY.upper()}
    inbox, mail = smtp_inbox
    nats = nats_server[0]
    sinks = [
        {"kind": "syslog_tcp", "name": "rsyslog", "host": "127.0.0.1", "port": rsyslog.port},
        {
            "kind": "webhook",
            "name": "collector",
            "url": f"http://127.0.0.1:{collector.server_address[1]}/events",
            "secret": HOOK_KEY,
        },
        {"kind": "nats", "name": "nats", "url": nats.url},
        mail,
    ]
    try:
        server_log: ServerLog | None = ServerLog.locate(fresh_postgres_url)
    except Unreadable as exc:  # test_the_postgresql_server_files_can_be_read says so
        print(f"not searched: the PostgreSQL server log ({exc})")
        server_log = None
    _life(tmp_path, seen, fresh_postgres_url, audit_store_url, sinks)
    if server_log is not None:
        ours = [url.rsplit("/", 1)[1] for url in (fresh_postgres_url, audit_store_url)]
        seen.add("postgresql server log", server_log.of(server_log.written(), ours))
    nats.proc.terminate()  # its store files complete
    nats.proc.wait(10)
    received = {
        "rsyslog": [rsyslog.output.read_bytes()],
        "nats": list(files_under(tmp_path / "nats" / "js").values()),
        "http collector": collector.bodies,
        "smtp": inbox.raw,
    }
    for name, chunks in received.items():
        assert b"alert.raise" in b"".join(chunks), name  # each sink got the attack's alert
        for chunk in chunks:
            seen.add(name, chunk)
    seen.add("nats log", nats.log.read_bytes())
    for key in redis_db.scan_iter():
        seen.add("redis key", key)
        kind = redis_db.type(key)
        value = redis_db.dump(key)
        seen.add(f"redis {kind!r}", value or b"")
    seen.phase("searching")
    _assert_nothing_leaked(seen)
    seen.phase("done")


def _life(
    tmp: Path, seen: Seen, database_url: str, audit_url: str, sinks: list[dict[str, Any]]
) -> None:
    var = tmp / "var"
    port, mock_port = free_port(), free_port()
    seen.mock_port = mock_port
    service, mock_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{mock_port}"
    clients = tmp / "mock-clients.json"
    clients.write_text(
        json.dumps(
            {
                "clients": [
                    {
                        "client_id": CLIENT_ID,
                        "secret": SECRET,
                        "redirect_uris": [service + "/auth/callback"],
                        "allowed_scopes": ALL_SCOPES,
                    }
                ]
            }
        )
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KROONIKA_")},
        "KROONIKA_VAR_DIR": str(var),
        "KROONIKA_DATABASE_URL": database_url,
        "KROONIKA_AUDIT_STORE_URL": audit_url,
        "KROONIKA_AUDIT_ARCHIVE_DIR": str(tmp / "archive"),
        "KROONIKA_MASTER_KEY": MASTER_KEY,
        "KROONIKA_PSEUDONYM_KEY": PSEUDONYM_KEY,
        "KROONIKA_SESSION_KEY": SESSION_KEY,
        "KROONIKA_METRICS_TOKEN": METRICS_TOKEN,
        "KROONIKA_PUBLIC_URL": service,
        "KROONIKA_TARA_ISSUER": mock_url,
        "KROONIKA_TARA_CLIENT_ID": CLIENT_ID,
        "KROONIKA_TARA_CLIENT_SECRET": SECRET,
        "KROONIKA_TARA_REDIRECT_URI": service + "/auth/callback",
        "KROONIKA_TARA_SCOPES": json.dumps(ALL_SCOPES),
        "KROONIKA_COOKIE_SECURE": "false",
        "KROONIKA_REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "KROONIKA_TRUSTED_PROXIES": json.dumps(["127.0.0.0/8"]),
        "KROONIKA_GEO_ENABLED": "false",
        "KROONIKA_TOKEN_CLIENT_SCRYPT_N": str(2**10),
        "KROONIKA_TOKEN_KEY_PUBLISH_LEAD_S": "0",
        "KROONIKA_AUDIT_JSONL_DIR": str(tmp / "jsonl"),
        "KROONIKA_AUDIT_SINKS": json.dumps(sinks),
        "KROONIKA_AUDIT_SINK_POLL_S": "0.2",
        "KROONIKA_AUDIT_CHECKPOINT_EVERY": "25",
        "KROONIKA_ADMIN_SECOND_APPROVAL": "false",
        "KROONIKA_JOBS_TICK_S": "3600",
    }
    mock_log = (tmp / "mock.log").open("wb")
    mock = subprocess.Popen(
        [
            KROONIKA,
            "mock-tara",
            "--clients",
            str(clients),
            "--port",
            str(mock_port),
            "--control-api",
        ],
        stdout=mock_log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    serve = Instance("serve", port, env, tmp / "serve.log", log_level="debug")
    try:
        # bounds for a loaded machine, where each Python process starts slowly
        up = mock_url + "/.well-known/openid-configuration"
        assert wait_until(lambda: _up(up) or mock.poll() is not None, within=120)
        assert mock.poll() is None, (tmp / "mock.log").read_text()
        serve.wait_ready(timeout=120)
        databases = [u for u in (database_url, audit_url) if u.startswith("postgresql")]
        for url in databases:
            uncompressed(url)
        try:
            _drive(seen, env, service, mock_url, database_url)
        finally:
            for client in seen.clients:
                client.close()
        seen.phase("settling")
        _settled(service)
        seen.phase("stopping")
    finally:
        serve.stop()
        mock.send_signal(signal.SIGTERM)
        try:
            mock.wait(20)
        finally:
            mock_log.close()
    assert serve.proc.returncode == 0
    seen.add("serve stdout+stderr", (tmp / "serve.log").read_bytes())
    seen.add("mock stdout+stderr", (tmp / "mock.log").read_bytes())
    seen.phase("retention, 500 days on")
    purged = purge_all(audit_url, var, tmp / "archive")
    assert purged, "the retention job purged nothing (no archive to search)"
    seen.phase("collecting")
    private_key_forms(seen, var, database_url)
    for name, data in dump_tables(database_url).items():
        seen.add(f"business table {name}", data)
    for name, data in files_under(tmp).items():
        if name.startswith(str(tmp / "audit.db")):  # the SQLite audit store, WAL included
            seen.add(f"audit store {name}", data)
    if audit_url.startswith("postgresql"):
        for name, data in dump_tables(audit_url).items():
            seen.add(f"audit store table {name}", data)
    for name, data in files_under(tmp / "archive").items():
        seen.add(f"retention archive {name}", data)
    _collect_pages(seen, database_url, audit_url)
    for name, data in files_under(tmp / "jsonl").items():
        seen.add(f"segment {name}", data)
    for name, data in files_under(tmp / "exports").items():
        seen.add(f"export file {name}", data)


def purge_all(audit_url: str, var: Path, archive: Path) -> list[Any]:
    """The retention job as the service runs it, but 500 days on: every range up to a
    checkpoint is archived, then purged."""
    store = SqlAuditStore(audit_url)
    try:
        job = RetentionJob(
            store,
            RetentionPolicy(),
            archive_dir=archive,
            clock=lambda: time.time() + 500 * DAY,
            keyring=KeyRing.open(var / "keys" / "audit"),
        )
        return job.run()
    finally:
        store.close()


def subject_keys_in(audit_url: str) -> dict[str, bytes]:
    """Every data key in the audit store, as stored (wrapped by the master key)."""
    engine = make_engine(audit_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(subject_keys.c.key_id, subject_keys.c.wrapped)).all()
    finally:
        engine.dispose()
    return {key_id: bytes(wrapped) for key_id, wrapped in rows}


def _collect_pages(seen: Seen, database_url: str, audit_url: str) -> None:
    """The raw pages of the business database and of a PostgreSQL audit store, where the
    test may read them (:func:`test_the_postgresql_server_files_can_be_read` says why not)."""
    try:
        business = raw_pages(database_url)
    except Unreadable as exc:
        print(f"not searched: the raw pages of the databases ({exc})")
        return
    # the search of dead rows is not vacuous: a deleted entry's row version is found
    assert DELETED_REASON.encode() in business["token_access_list token_access_list"]
    for name, data in business.items():
        seen.add(f"unvacuumed business pages {name}", data)
    # what the operator guide says to run after erasures (a plain VACUUM only marks the
    # space free: the old row versions' bytes stay in it)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM FULL session, tokens")
    for name, data in raw_pages(database_url).items():
        seen.add(f"business pages {name}", data)
    if audit_url.startswith("postgresql"):
        # (whether an erased key's bytes are still in them depends on where its row lay
        # in the page: pruning moves the live rows over some dead ones)
        for name, data in raw_pages(audit_url).items():
            seen.add(f"unvacuumed audit store pages {name}", data)
        with psycopg.connect(audit_url, autocommit=True) as conn:
            conn.execute("VACUUM FULL audit_subject_keys")  # as the guide says
        for name, data in raw_pages(audit_url).items():
            seen.add(f"audit store pages {name}", data)


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _settled(service: str) -> None:
    """Every sink has delivered everything stored (the lag gauges are all zero)."""

    def caught_up() -> bool:
        text = httpx.get(
            service + "/metrics",
            headers={"authorization": f"Bearer {METRICS_TOKEN}"},
            timeout=10,
            trust_env=False,
        ).text
        lags = [
            line for line in text.splitlines() if line.startswith("kroonika_audit_sink_lag_events")
        ]
        return bool(lags) and all(line.split()[-1] in ("0", "0.0") for line in lags)

    assert wait_until(caught_up, within=60, interval=0.2), "the sinks did not catch up"


def _drive(seen: Seen, env: dict[str, str], service: str, mock: str, database_url: str) -> None:
    http = httpx.Client(
        timeout=60, trust_env=False, event_hooks={"response": [seen.record]}, base_url=service
    )
    seen.clients.append(http)

    seen.phase("a citizen: login, session use,")
    # --- a citizen: login, session use, extend, a session token, logout -----------------
    citizen = Browser(
        seen, service, CITIZEN, autologin_given_name=GIVEN, autologin_family_name=FAMILY
    )
    landed = citizen.login()
    assert landed.status_code == 200
    seen.secrets.add(citizen.csrf)
    assert citizen.call("POST", "/auth/session/extend").status_code == 200
    assert citizen.call("GET", "/auth/sessions").status_code == 200
    session_token = citizen.call("POST", "/tokens/session")
    assert session_token.status_code < 300, session_token.text

    seen.phase("a failed login (the ID token's")
    # --- a failed login (the ID token's nonce is wrong) --------------------------------
    httpx.post(mock + "/mock/config", json={"wrong_nonce": True}, timeout=10).raise_for_status()
    failed = Browser(seen, service, CITIZEN).login()
    assert failed.json()["reason"] == "id_token.nonce_mismatch"
    httpx.post(mock + "/mock/config", json={"wrong_nonce": False}, timeout=10).raise_for_status()

    seen.phase("administrators bootstrapped fr")
    # --- administrators bootstrapped from the command line; the admin makes an API key,
    # --- the auditor and the privacy officer work in their TARA sessions
    roles = {ADMIN: "admin", AUDITOR: "auditor", PRIVACY: "privacy"}
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        adds = [("admins", "add", "-", "--role", role, "-j", WHY) for role in roles.values()]
        granted = [
            pool.submit(run_cli, seen, env, *args, stdin=code)
            for code, args in zip(roles, adds, strict=True)
        ]
        for done in granted:
            done.result()
    people: dict[str, Browser] = {}
    for code, role in roles.items():
        people[role] = Browser(seen, service, code)
        assert people[role].login().status_code == 200
        seen.secrets.add(people[role].csrf)
    seen.codes |= {ADMIN, AUDITOR, PRIVACY}
    made = people["admin"].call(
        "POST", "/admin/api-keys", json={"name": "sweep", "roles": ["admin"]}
    )
    assert made.status_code == 201, made.text
    api_key = made.json()["api_key"]
    seen.secrets.add(api_key)
    people["admin"].call("POST", "/auth/logout")

    def admin(method: str, path: str, role: str = "admin", **kw: Any) -> httpx.Response:
        if role != "admin":
            return people[role].call(method, path, **kw)
        headers = {"authorization": f"Bearer {api_key}", "x-justification": WHY}
        return http.request(method, path, headers=headers | kw.pop("headers", {}), **kw)

    seen.phase("a client, its secret rotated; ")
    # --- a client, its secret rotated; keys rotated ------------------------------------
    made = admin(
        "POST",
        "/admin/clients",
        json={"name": "sweep-svc", "allowed_audiences": ["svc-a"], "max_ttl_s": 600},
    )
    assert made.status_code == 201, made.text
    client_id, first_secret = made.json()["client_id"], made.json()["client_secret"]
    rotated = admin("POST", f"/admin/clients/{client_id}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    secret = rotated.json()["client_secret"]
    seen.secrets |= {first_secret, secret}
    for purpose in ("signing", "checkpoint"):
        r = admin("POST", f"/admin/keys/{purpose}/rotate")
        assert r.status_code == 200, r.text
    run_cli(seen, env, "audit", "keys", "rotate")
    run_cli(seen, env, "keys", "rotate")
    shown = run_cli(seen, env, "clients", "add", "sweep-cli", "-a", "svc-a", owner=True)
    seen.secrets.add(shown.split("client_secret: ")[1].split()[0])
    auth = basic(client_id, secret)

    seen.phase("tokens: issue, validate, intro")

    # --- tokens: issue, validate, introspect, extend, revoke, bulk ---------------------
    def mint(**body: Any) -> dict[str, Any]:
        r = http.post("/tokens", json={"subject": "svc-user-1", **body}, headers=auth)
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out

    tokens = [mint(ttl_s=300)["access_token"] for _ in range(4)]
    assert http.post("/tokens/validate", json={"token": tokens[0]}, headers=auth).json()["valid"]
    assert http.post("/introspect", data={"token": tokens[0]}, headers=auth).json()["active"]
    extended = http.post("/tokens/extend", json={"token": tokens[0]}, headers=auth)
    assert extended.status_code == 200, extended.text
    assert http.post("/revoke", data={"token": tokens[1]}, headers=auth).status_code == 200
    bulk = http.post("/tokens/bulk/revoke", json={"items": [{"token": tokens[2]}]}, headers=auth)
    assert bulk.status_code < 300, bulk.text
    jti = jwt.decode(tokens[3], options={"verify_signature": False})["jti"]
    assert admin("POST", "/admin/bulk/revoke", json={"items": [{"jti": jti}]}).status_code < 300
    claims = jwt.decode(tokens[0], options={"verify_signature": False})
    forged = jwt.encode(
        claims,
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": jwt.get_unverified_header(tokens[0])["kid"]},
    )
    expired = expired_token(database_url, claims)
    seen.secrets |= {forged, forged.rsplit(".", 1)[1], expired, expired.rsplit(".", 1)[1]}
    seen.forged |= {forged, expired}
    for presented in (forged, expired):
        r = http.post("/tokens/validate", json={"token": presented}, headers=auth)
        assert r.json()["valid"] is False
        http.post("/introspect", data={"token": presented}, headers=auth)
    assert (
        http.post("/tokens", json={"subject": "x"}, headers=basic(client_id, "w" * 43)).status_code
        == 401
    )
    seen.secrets.add("w" * 43)

    seen.phase("refused input carrying secrets")
    # --- refused input that carries secrets: no answer, log or record repeats it -------
    wrong = {
        "client": "wrong-client-secret-0123456789abcdef",
        "api_key": api_key[:-8] + "AAAAAAAA",
        "metrics": "wrong-metrics-token-0123456789",
        "junk_token": "eyJhbGciOiJFUzI1NiJ9.eyJzd2VlcCI6MX0.not-a-signature-0123456789",
        "hook": "new-alert-hook-key-0123456789abcdef",
    }
    seen.secrets |= set(wrong.values())
    seen.forged.add(wrong["junk_token"])
    post_auth = {"client_id": client_id, "client_secret": wrong["client"]}
    assert http.post("/introspect", data={"token": tokens[0], **post_auth}).status_code == 401
    assert http.post("/revoke", data={"token": tokens[0], **post_auth}).status_code == 401
    r = http.post("/tokens/validate", json={"token": wrong["junk_token"]}, headers=auth)
    assert r.json()["valid"] is False
    bad_key = {"authorization": f"Bearer {wrong['api_key']}", "x-justification": WHY}
    assert http.get("/admin/lists", headers=bad_key).status_code == 401
    bad_bearer = {"authorization": f"Bearer {wrong['metrics']}"}
    assert http.get("/metrics", headers=bad_bearer).status_code == 401
    r = admin("POST", "/admin/lists", json={"list": "deny", "kind": "jti", "value": "x",
                                             "reason": "r", "client_secret": secret})  # fmt: skip
    assert r.status_code == 422, r.text
    r = admin("POST", "/admin/clients", json={"name": "x", "max_ttl_s": secret})
    assert r.status_code == 422, r.text
    callback = next(h.request.url for h in landed.history if h.request.url.path == "/auth/callback")
    for replay in (citizen.client, http):  # the used code and state, with and without the flow
        assert replay.get(str(callback)).status_code >= 400
    r = admin("PATCH", "/admin/config", json={"changes": {"alerts.webhook_secret": wrong["hook"]}})
    assert r.status_code == 200, r.text
    assert admin("GET", "/admin/config").status_code == 200

    seen.phase("access lists")
    # --- access lists ------------------------------------------------------------------
    for body in (
        {"list": "deny", "kind": "jti", "value": jti, "reason": "sweep deny"},
        {"list": "deny", "kind": "subject", "value": "EE" + CITIZEN, "reason": "sweep deny"},
        {"list": "allow", "kind": "ip", "value": "198.51.100.7", "reason": "sweep allow"},
    ):
        r = admin("POST", "/admin/lists", json=body)
        assert r.status_code == 201, r.text
    twice = {"list": "deny", "kind": "subject", "value": "EE" + CITIZEN, "reason": "again"}
    gone = {"list": "allow", "kind": "ip", "value": "198.51.100.9", "reason": DELETED_REASON}
    r = admin("POST", "/admin/lists", json=gone)
    assert r.status_code == 201, r.text
    assert admin("DELETE", f"/admin/lists/{r.json()['id']}").status_code in (200, 204)
    assert admin("POST", "/admin/lists", json=twice).status_code == 400  # already listed
    # a personal code typed where free text goes: refused or kept out, never echoed
    named = {"x-justification": f"INC-1 the person {CITIZEN} asked"}
    assert admin("GET", "/admin/lists", headers=named).status_code >= 400
    admin("POST", "/admin/clients", json={"name": f"service of EE{CITIZEN}"})
    assert admin("GET", "/admin/lists").status_code == 200
    assert admin("GET", "/admin/lists/export").status_code == 200

    seen.phase("rate limiting, an attack and i")
    # --- rate limiting, an attack and its alert ----------------------------------------
    for attack in ("rate-limit", "brute-force"):
        out = run_cli(
            seen, env, "simulate", "--attack", attack, "--base-url", service, "--mock-url", mock
        )
        assert out
    assert wait_until(
        lambda: bool(admin("GET", "/admin/alerts", role="auditor").json()["alerts"]), within=60
    ), "the attack raised no alert"
    # traffic with credentials, as an operator gives them (the secrets in the environment)
    creds = {"KROONIKA_SIM_CLIENT_SECRET": secret, "KROONIKA_SIM_ADMIN_KEY": api_key}
    simulated = ("simulate", "--base-url", service, "--mock-url", mock, "--client-id", client_id)
    run_cli(seen, env | creds, *simulated, "--duration", "2", "--people", "2")

    seen.phase("the citizen is erased; retenti")
    # --- the citizen is erased; retention runs -----------------------------------------
    citizen.call("POST", "/auth/logout")
    keys = subject_keys_in(env["KROONIKA_AUDIT_STORE_URL"])
    erased = admin(
        "POST", "/admin/privacy/erasures", role="privacy", json={"personal_code": CITIZEN}
    )
    assert erased.status_code == 200, erased.text
    left = subject_keys_in(env["KROONIKA_AUDIT_STORE_URL"])
    seen.erased_keys = [wrapped for key_id, wrapped in keys.items() if key_id not in left]
    assert seen.erased_keys, "the erasure deleted no data key"
    for job in ("audit_retention", "sessions", "token_metadata"):
        r = admin("POST", f"/admin/jobs/{job}/run")
        assert r.status_code == 200, r.text

    seen.phase("the trail: query, export in ev")
    # --- the trail: query, export in every format, verify, checkpoints (CLI and API) ---
    for params in ({"limit": 1000}, {"format": "jsonl"}, {"type": "auth.login"}):
        assert admin("GET", "/audit/events", role="auditor", params=params).status_code == 200
    assert admin("GET", "/audit/checkpoints", role="auditor").status_code == 200
    for path, role in (("/admin/dashboard", "auditor"), ("/admin/tokens", "admin"),
                       ("/admin/sessions", "admin"), ("/admin/keys", "admin"),
                       ("/admin/clients", "admin"), ("/admin/roles", "admin")):  # fmt: skip
        assert admin("GET", path, role=role).status_code == 200, path
    for path in ("/.well-known/jwks.json", "/.well-known/openid-configuration", "/health"):
        assert http.get(path).status_code == 200
    verified = admin("POST", "/audit/verify", role="auditor", json={})
    assert verified.status_code == 200, verified.text
    exports = Path(env["KROONIKA_VAR_DIR"]).parent / "exports"
    exports.mkdir()
    checkpoints = str(exports / "checkpoints.json")
    run_cli(seen, env, "audit", "checkpoint", "export", "-o", checkpoints)
    reads = [
        ("audit", "query", "-o", "jsonl"),
        ("audit", "tail", "-n", "50"),
        *(("audit", "export", "--format", fmt) for fmt in ("json", "ecs", "ocsf", "cef", "leef")),
        ("audit", "verify", "--json"),
        ("audit", "verify", "--checkpoint", checkpoints),
        ("alerts", "list", "--json"),
    ]
    # at once: each command starts a Python of its own, slow on a loaded machine
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for done in [pool.submit(run_cli, seen, env, *args) for args in reads]:
            done.result()
    metrics = http.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    assert metrics.status_code == 200


def _assert_nothing_leaked(seen: Seen) -> None:
    # the collection holds what it should, or the sweep proves nothing
    names = " ".join(seen.outputs)
    for part in COLLECTED:
        assert part in names, part
    assert len(seen.secrets) > 30
    # every login (citizen, failed, three administrators) gave its state, nonce and code
    assert min(seen.kinds[k] for k in ("state", "nonce", "code")) >= 5, seen.kinds
    assert len([k for k in seen.kinds if k.startswith("cookie ")]) >= 2, seen.kinds
    # the search finds what it looks for: every token and client secret is in the
    # answers that handed them out
    handed = b"\n".join(seen.exempt)
    tokens = [s for s in seen.secrets if s.startswith("eyJ") and s.count(".") == 2]
    assert len(tokens) >= 8
    for token in tokens:
        if token not in seen.forged:
            assert any(f in handed for f in forms(token)), token
    secrets = [(s, f) for s in seen.secrets if len(s) >= 6 for f in forms(s)]
    erased = [(s, f) for s in seen.erased for f in forms(s)]
    people = [(s, f) for s in seen.codes for f in forms(s)]
    # an erased data key, which the master key would unwrap, is gone everywhere (after
    # the VACUUM FULL the operator guide asks for on PostgreSQL)
    keys = [
        (f"erased key {k.hex()[:8]}", f)
        for k in seen.erased_keys
        for f in (k, k.hex().encode(), base64.b64encode(k), base64.urlsafe_b64encode(k))
    ]
    leaks: list[str] = []
    for name, data in seen.outputs.items():
        if name.startswith("unvacuumed business pages "):
            # the erased person's old row versions stay until a VACUUM FULL (decision
            # 0012): the pages are searched for them after one ("business pages")
            needles = secrets
        elif name.startswith("unvacuumed audit store pages "):
            needles = secrets + erased + people  # and their keys after the VACUUM FULL
        elif not name.startswith(("business table ", "business pages ")):
            needles = secrets + erased + people + keys
        elif name.split()[2].startswith(KEEPS_ERASED):
            needles = secrets
        else:  # live people are kept in clear; the erased person is gone
            needles = secrets + erased
        for secret, form in needles:
            if form in data:
                at = data.index(form)
                context = data[max(0, at - 80) : at + len(form) + 40].decode(errors="replace")
                leaks.append(f"{name}: {secret[:12]!r}... as {form[:16]!r} in {context!r}")
    assert not leaks, "\n".join(leaks[:40])
    print(  # the figures behind the assertion, for the report
        f"searched {len(seen.outputs)} outputs ({sum(map(len, seen.outputs.values()))} bytes) "
        f"for {len(seen.secrets)} secrets and {len(seen.erased | seen.codes)} personal values "
        f"in {len(secrets + erased + people)} forms; learnt {dict(seen.kinds)}"
    )
