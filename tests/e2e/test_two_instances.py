"""Two ``kroonika serve`` processes on one PostgreSQL and one real rsyslog (issue 7).

Both instances share the business database, the audit store, the secrets and the audit
signing keys (one var directory, as a deployment would share them), each writing its own
stream (``inst-a``, ``inst-b``); both ship to rsyslog over TCP (RFC 6587 octet counting)
through the sink ``rsyslog``, batch size 50. Logins through the TARA mock run against both;
instance A is killed with SIGKILL in the middle; B keeps serving and then stops cleanly.

What is asserted, exactly:

1. every acknowledged login (the client received the final 200 after ``/auth/callback``)
   has its ``auth.login`` event, found by the callback's request id, in the store;
2. ``verify`` passes over the whole store, and it holds both streams;
3. B took over A's stream: the rsyslog cursor of ``inst-a`` reaches its head although A
   is dead (A's advisory locks went with its database connection);
4. the set of (stream, seq) received by rsyslog equals the set stored, and the set of
   checkpoints received equals the set stored: nothing lost, nothing foreign;
5. duplicates are allowed only as the at-most-one batch A had sent but not yet recorded
   when it died: all duplicated items belong to one stream, are either all records (one
   contiguous seq range) or all checkpoints, and number at most the batch size; at most
   one line (the frame A was writing) may arrive cut short.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from login_harness import ALL_SCOPES, CLIENT_ID, SECRET, e2e_mock, free_socket, serve

sys.path.insert(0, str(Path(__file__).parents[1] / "audit" / "sinks"))

from sink_kit import Rsyslog

from kroonika.audit import KeyRing, Query, SqlAuditStore, run_query, verify_store
from kroonika.audit.sinks import CursorStore

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rsyslog]

KROONIKA = str(Path(sys.executable).parent / "kroonika")
BATCH = 50
SINK = "rsyslog"
_SD_END = re.compile(r"(?<!\\)\] ")


def free_port() -> int:
    s = free_socket()
    port = int(s.getsockname()[1])
    s.close()
    return port


class Instance:
    def __init__(
        self, name: str, port: int, env: dict[str, str], log: Path, *, log_level: str = "warning"
    ) -> None:
        self.name = name
        self.url = f"http://127.0.0.1:{port}"
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            [KROONIKA, "serve", "--port", str(port), "--log-level", log_level],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def browser(mock: str) -> httpx.Client:
    authorize = mock + "/oidc/authorize"

    def choose(request: httpx.Request) -> None:
        if str(request.url).startswith(authorize):
            request.url = request.url.copy_merge_params({"autologin": "38001085718"})

    return httpx.Client(
        follow_redirects=True,
        timeout=20,
        event_hooks={"request": [choose]},
        headers={"user-agent": "Mozilla/5.0 (e2e) two-instances"},
    )


class Traffic(threading.Thread):
    """Logins in a loop; ``acked`` holds the callback request ids of those that completed."""

    def __init__(self, instance: Instance, mock: str) -> None:
        super().__init__(daemon=True)
        self.instance = instance
        self.mock = mock
        self.acked: list[str] = []
        self.errors = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                with browser(self.mock) as b:
                    r = b.get(self.instance.url + "/auth/login?method=idcard&return_to=/")
                if r.status_code == 200 and r.history:
                    self.acked.append(r.history[-1].headers["x-request-id"])
                else:
                    self.errors += 1
            except httpx.HTTPError:
                self.errors += 1
                time.sleep(0.05)


def body_of(line: str) -> dict[str, Any] | None:
    """The JSON body of one received RFC 5424 line (None if it arrived cut short)."""
    m = _SD_END.search(line)
    if m is None:
        return None
    try:
        doc: dict[str, Any] = orjson.loads(line[m.end() :])
    except orjson.JSONDecodeError:
        return None
    return doc


def test_two_instances_sigkill_one_every_event_stored_verified_delivered_once(
    tmp_path: Path, fresh_postgres_url: str, rsyslog: Rsyslog
) -> None:
    """See the module docstring for exactly what is asserted."""
    ports = {"a": free_port(), "b": free_port()}
    mock_sock = free_socket()
    mock_url = f"http://127.0.0.1:{mock_sock.getsockname()[1]}"
    mock = e2e_mock(mock_url, tuple(f"http://127.0.0.1:{p}/auth/callback" for p in ports.values()))
    var = tmp_path / "var"
    sinks = [{"kind": "syslog_tcp", "name": SINK, "host": "127.0.0.1", "port": rsyslog.port}]
    common = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KROONIKA_")},
        "KROONIKA_VAR_DIR": str(var),
        "KROONIKA_DATABASE_URL": fresh_postgres_url,
        "KROONIKA_AUDIT_STORE_URL": fresh_postgres_url,
        "KROONIKA_TARA_ISSUER": mock_url,
        "KROONIKA_TARA_CLIENT_ID": CLIENT_ID,
        "KROONIKA_TARA_CLIENT_SECRET": SECRET,
        "KROONIKA_TARA_SCOPES": json.dumps(ALL_SCOPES),
        "KROONIKA_COOKIE_SECURE": "false",
        "KROONIKA_RATELIMIT_ENABLED": "false",
        "KROONIKA_JOBS_ENABLED": "false",
        "KROONIKA_AUDIT_SINKS": json.dumps(sinks),
        "KROONIKA_AUDIT_SINK_BATCH_SIZE": str(BATCH),
        "KROONIKA_AUDIT_SINK_POLL_S": "0.2",
        "KROONIKA_AUDIT_CHECKPOINT_EVERY": "20",
    }

    def env(name: str) -> dict[str, str]:
        url = f"http://127.0.0.1:{ports[name]}"
        return {
            **common,
            "KROONIKA_AUDIT_STREAM": f"inst-{name}",
            "KROONIKA_PUBLIC_URL": url,
            "KROONIKA_TARA_REDIRECT_URI": url + "/auth/callback",
        }

    with serve(mock, mock_sock, lifespan="off") as mock_base:
        a = Instance("a", ports["a"], env("a"), tmp_path / "a.log")
        try:
            a.wait_ready()  # A first: it creates the shared keys and runs the migrations
            b = Instance("b", ports["b"], env("b"), tmp_path / "b.log")
            try:
                b.wait_ready()
                ta, tb = Traffic(a, mock_base), Traffic(b, mock_base)
                ta.start()
                tb.start()
                deadline = time.monotonic() + 60
                while len(ta.acked) < 15 and time.monotonic() < deadline:
                    time.sleep(0.05)
                a.proc.send_signal(signal.SIGKILL)  # mid-traffic
                a.proc.wait(10)
                ta.halt.set()
                ta.join(30)
                b_before = len(tb.acked)
                while len(tb.acked) < b_before + 15 and time.monotonic() < deadline + 60:
                    time.sleep(0.05)
                tb.halt.set()
                tb.join(30)
                assert len(ta.acked) >= 15
                assert len(tb.acked) >= b_before + 15

                store = SqlAuditStore(fresh_postgres_url, read_only=True)
                try:
                    cursors = CursorStore(store.engine)

                    def caught_up() -> bool:
                        heads = {
                            s: max((bl.last_seq for bl in store.blocks(s)), default=0)
                            for s in ("inst-a", "inst-b")
                        }
                        return all(cursors.get(SINK, s) >= h > 0 for s, h in heads.items())

                    deadline = time.monotonic() + 60
                    while not caught_up() and time.monotonic() < deadline:
                        time.sleep(0.2)
                    assert caught_up(), "B did not deliver A's stream after A died"  # (3)
                finally:
                    store.close()
            finally:
                b.stop()  # SIGTERM: B ships its audit.log.stop, then exits
        finally:
            a.stop()

    store = SqlAuditStore(fresh_postgres_url, read_only=True)
    try:
        # (1) every acknowledged login is stored
        logins = {
            orjson.loads(raw)["correlation"]["request_id"]
            for raw in run_query(store, Query(types=("auth.login",)))
        }
        acked = set(ta.acked) | set(tb.acked)
        assert acked <= logins, sorted(acked - logins)[:5]
        # (2) verify passes, both streams
        keys = KeyRing.open(var / "keys" / "audit", create=False).public_keys()
        report = verify_store(store, keys)
        assert report.intact, report.findings[:3]
        assert {s.stream for s in report.streams} == {"inst-a", "inst-b"}
        stored = {(bl.stream, bl.first_seq + i) for bl in store.blocks() for i in range(bl.count)}
        stored_cps = {(cp.stream, cp.size) for cp in store.checkpoints()}
        assert CursorStore(store.engine).get(SINK, "inst-b") == max(
            seq for s, seq in stored if s == "inst-b"
        )
    finally:
        store.close()

    # (4) and (5): what rsyslog received
    lines = rsyslog.wait_lines(len(stored) + len(stored_cps), timeout=30)
    records: Counter[tuple[str, int]] = Counter()
    cps: Counter[tuple[str, int]] = Counter()
    cut = 0
    for line in lines:
        doc = body_of(line)
        if doc is None:
            cut += 1
        elif doc["type"] == "audit.checkpoint" and "checkpoint" in doc:
            cps[(doc["stream"], doc["checkpoint"]["size"])] += 1
        else:
            records[(doc["stream"], doc["seq"])] += 1
    assert set(records) == stored, (len(set(records)), len(stored))
    assert set(cps) == stored_cps
    dup_records = sorted(k for k, n in records.items() for _ in range(n - 1))
    dup_cps = sorted(k for k, n in cps.items() for _ in range(n - 1))
    assert cut <= 1
    assert not (dup_records and dup_cps), (dup_records, dup_cps)
    dups = dup_records or dup_cps
    assert len(dups) <= BATCH, dups
    assert len({s for s, _ in dups}) <= 1, dups
    if dup_records:
        seqs = [q for _, q in dup_records]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs  # one batch
    print(  # the figures behind the assertions, for the report
        f"acked a={len(ta.acked)} b={len(tb.acked)} stored={len(stored)} "
        f"checkpoints={len(stored_cps)} received={sum(records.values())} "
        f"duplicates={len(dups)} cut={cut}"
    )
