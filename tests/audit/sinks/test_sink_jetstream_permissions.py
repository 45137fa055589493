"""JetStream: credentials that lost every publish right are an outage (the sink waits
and resumes in order), a subject denied while others go through refuses only its items
(decision 0032, 2026-11-27). Real nats-server processes of our own, reloaded as an
operator would."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from sink_kit import Kit, OwnNats, login_event, own_nats_server, write_events
from test_sink_jetstream_refusals import FAST, deliver_all, jetstream, stored_messages

from kroonika.audit import Actor, ActorType, AuditEvent, Category, events
from kroonika.audit.sinks import (
    CursorStore,
    JetStreamSink,
    Record,
    SinkEvent,
    SinkRunner,
    TransientSinkError,
)
from kroonika.audit.sinks.jetstream import DEFAULT_DENIED_RETRY_AFTER

#: The sink's user (no credential: ``no_auth_user``) and the test's own, which reads
#: the stream whatever the sink's user may do.
ADMIN = "admin:admin-pw"


def users(sink_permissions: str) -> str:
    """Configuration: one account with JetStream, the sink's user ``pub`` with
    ``sink_permissions`` and the test's user ``admin`` with every right."""
    return (
        "accounts { A { jetstream: enabled\n  users: [\n"
        '    { user: "pub", password: "not-used-by-the-sink",\n'
        f"      permissions: {sink_permissions} }}\n"
        '    { user: "admin", password: "admin-pw" } ] } }\n'
        'no_auth_user: "pub"\n'
    )


ALLOWED = '{ publish: { allow: [">"] } }'
REVOKED = {
    "publish": '{ publish: { deny: [">"] } }',
    # Losing subscribe too removes the subscription the acknowledgements come back on.
    "publish-and-subscribe": '{ publish: { deny: [">"] }, subscribe: { deny: [">"] } }',
}


def session_event(n: int) -> AuditEvent:
    return events.session_create(
        actor=Actor(ActorType.USER, subject=f"EE3800108571{n % 10}"),
    )


def bodies_of(kit: Kit) -> list[bytes]:
    return [b for blk in kit.store.blocks("web-1") for b in blk.records()]


#: How long to wait for what must happen before giving up (not a timing assertion).
PATIENCE = 60.0


async def wait_for(what: str, done: Callable[[], bool]) -> None:
    """Wait until ``done()``, failing after :data:`PATIENCE` seconds."""
    deadline = time.monotonic() + PATIENCE
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.mark.nats
@pytest.mark.parametrize("revoked", sorted(REVOKED))
@pytest.mark.asyncio
async def test_credentials_that_lose_every_publish_right_pause_the_sink_until_restored(
    kit: Kit, tmp_path: Path, revoked: str
) -> None:
    """Every right taken away, then given back (configuration reloads): the sink reports
    ``failed`` once, keeps retrying, dead-letters nothing, and once the rights are back
    delivers every event and checkpoint, in order, and reports ``recovered``."""
    prefix = f"kroonika_test_{uuid.uuid4().hex[:8]}"
    reports: list[SinkEvent] = []

    async def on_event(ev: SinkEvent) -> None:
        reports.append(ev)

    with own_nats_server(tmp_path, users(ALLOWED)) as server:
        admin_url = server.url.replace("//", f"//{ADMIN}@")
        async with jetstream(admin_url, prefix) as (_nc, js):
            sink = JetStreamSink("nats", server.url, subject_prefix=prefix, timeout=5)
            runner = SinkRunner(
                kit.store, [sink], batch_size=10, retry=FAST, on_event=on_event, poll_interval=0.05
            )
            metrics: Callable[[], dict[str, Any]] = lambda: runner.metrics()["nats"]  # noqa: E731
            await asyncio.to_thread(write_events, kit, 2)
            await runner.start()
            try:
                await wait_for("the first events", lambda: metrics()["delivered"] == 2)
                server.reconfigure(users(REVOKED[revoked]))
                await asyncio.to_thread(write_events, kit, 4, start=2)  # a checkpoint at 5
                runner.notify()
                await wait_for("the outage to be reported", lambda: bool(reports))
                # More attempts than permanent_attempts: each would have been a dead letter.
                await wait_for(
                    "retries",
                    lambda: (
                        metrics()["retries"] > 3 * FAST.permanent_attempts
                        or metrics()["dead_letters"] > 0
                    ),
                )
                assert metrics()["dead_letters"] == 0
                assert metrics()["delivered"] == 2
                server.reconfigure(users(ALLOWED))
                await wait_for("delivery to resume", lambda: metrics()["checkpoints"] == 1)
                await wait_for("every event", lambda: metrics()["delivered"] == 6)
            finally:
                await runner.stop()
                await sink.close()
            assert CursorStore(kit.store.engine).dead_letters("nats") == []
            assert [(r.state, r.stream) for r in reports] == [
                ("failed", "web-1"),
                ("recovered", "web-1"),
            ]
            assert reports[0].error.startswith("TransientSinkError: ")
            assert "permissions violation" in reports[0].error
            msgs = await stored_messages(js, prefix)
            events_ = [m.data for m in msgs if not m.subject.endswith(".checkpoint")]
            assert events_ == bodies_of(kit)  # each once, in order
            (cp,) = kit.store.checkpoints("web-1")
            assert [
                m.headers["Nats-Msg-Id"] for m in msgs if m.subject.endswith(".checkpoint")
            ] == [f"checkpoint:web-1:{cp.size}"]


@pytest.mark.nats
@pytest.mark.parametrize("batch_size", [1, 10])
@pytest.mark.asyncio
async def test_a_subject_denied_while_others_go_through_dead_letters_only_its_items(
    kit: Kit, tmp_path: Path, batch_size: int
) -> None:
    """Only the authentication subject is denied: the login events (the first item of
    all, and one among session events) become dead letters naming the subject; every
    other event and the checkpoint arrive in order. (The prefix has capitals: nats-py
    lower-cases the server's error text, subjects are not.)"""
    prefix = f"Kroonika_Test_{uuid.uuid4().hex[:8]}"
    denied = f"{prefix}.authentication"
    with own_nats_server(tmp_path, users(f'{{ publish: {{ deny: ["{denied}"] }} }}')) as server:
        admin_url = server.url.replace("//", f"//{ADMIN}@")
        async with jetstream(admin_url, prefix) as (_nc, js):
            for n, make in enumerate([login_event, session_event, session_event, login_event]):
                kit.trail.emit_sync(make(n))
            kit.trail.emit_sync(session_event(4))  # and a checkpoint at 5
            sink = JetStreamSink("nats", server.url, subject_prefix=prefix, timeout=5)
            await deliver_all(kit, sink, batch_size=batch_size)
            dead = CursorStore(kit.store.engine).dead_letters("nats")
            bodies = bodies_of(kit)
            assert [d["seq"] for d in dead] == [1, 4]
            assert [d["item_id"] for d in dead] == [orjson.loads(bodies[i])["id"] for i in (0, 3)]
            assert all(d["error"].startswith("PermanentSinkError: ") for d in dead)
            assert all("permissions violation" in d["error"] and denied in d["error"] for d in dead)
            msgs = await stored_messages(js, prefix)
            # No probe stored, though the probes went through to subjects of this stream.
            assert [m.data for m in msgs if m.subject != f"{prefix}.checkpoint"] == [
                bodies[1],
                bodies[2],
                bodies[4],
            ]
            assert [m.subject for m in msgs][-1] == f"{prefix}.checkpoint"


@pytest.mark.nats
@pytest.mark.asyncio
async def test_a_publish_denied_on_every_subject_of_the_sink_is_transient(
    kit: Kit, tmp_path: Path
) -> None:
    """A fresh sink whose credentials may publish nowhere: its first item is not
    refused (the item is not at fault) but an outage, retried, with nothing stored."""
    prefix = f"kroonika_test_{uuid.uuid4().hex[:8]}"
    with own_nats_server(tmp_path, users(REVOKED["publish"])) as server:
        admin_url = server.url.replace("//", f"//{ADMIN}@")
        async with jetstream(admin_url, prefix) as (_nc, js):
            write_events(kit, 1)
            body = bodies_of(kit)[0]
            sink = JetStreamSink("nats", server.url, subject_prefix=prefix, timeout=5)
            try:
                with pytest.raises(TransientSinkError) as caught:
                    await sink.send([Record("web-1", 1, body)])
            finally:
                await sink.close()
            assert caught.value.delivered == 0
            message = str(caught.value)
            assert "permissions violation" in message
            assert f"{prefix}.authentication" in message
            assert body.decode() not in message
            info = await js.stream_info(prefix)
            assert info.state.messages == 0  # the probes store nothing


# --- what the sink makes nats-server log (decision 0030, 2026-11-28) -----------------


async def violations(server: OwnNats, at_least: int) -> list[str]:
    """The ``Publish Violation`` lines of the server's log, once there are at least
    ``at_least`` (the server logs each just after it answers the client)."""
    lines: list[str] = []

    def enough() -> bool:
        lines[:] = [ln for ln in server.log.read_text().splitlines() if "Publish Violation" in ln]
        return len(lines) >= at_least

    await wait_for(f"{at_least} publish violations in the server's log", enough)
    return lines


def publisher_of(prefix: str, *also: str) -> str:
    """The least a publisher of the sink needs (the operator guide's permissions): its
    subjects (and ``also``), and the inboxes its answers come back on."""
    allowed = ", ".join(f'"{s}"' for s in (f"{prefix}.>", *also))
    return f'{{ publish: {{ allow: [{allowed}] }}, subscribe: {{ allow: ["_INBOX.>"] }} }}'


@pytest.mark.nats
@pytest.mark.asyncio
async def test_without_the_stream_info_right_the_server_logs_one_violation_a_start(
    kit: Kit, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A publisher allowed only the sink's subjects: the one read of the stream's
    duplicate window is the one ``Publish Violation`` of the sink's start (not one per
    batch), and the sink warns once, naming the right to grant and the key that stops
    the read."""
    prefix = f"kroonika_test_{uuid.uuid4().hex[:8]}"
    with own_nats_server(tmp_path, users(publisher_of(prefix))) as server:
        admin_url = server.url.replace("//", f"//{ADMIN}@")
        async with jetstream(admin_url, prefix) as (_nc, js):
            write_events(kit, 4)
            bodies = bodies_of(kit)
            sink = JetStreamSink("nats", server.url, subject_prefix=prefix, timeout=2)
            try:
                with caplog.at_level(logging.DEBUG, logger="kroonika.audit.sinks"):
                    await sink.send([Record("web-1", n + 1, b) for n, b in enumerate(bodies[:2])])
                    await sink.send([Record("web-1", n + 3, b) for n, b in enumerate(bodies[2:])])
            finally:
                await sink.close()
            assert (await js.stream_info(prefix)).state.messages == 4
            await refused_marker(server.url)
            line, marker = await violations(server, 2)
            assert f'Subject "$JS.API.STREAM.INFO.{prefix}"' in line
            assert MARKER in marker
            assert sink.duplicate_windows == {prefix: 0.0}
            (warning,) = [
                r
                for r in caplog.records
                if r.name == "kroonika.audit.sinks" and r.levelno >= logging.WARNING
            ]
            assert f"$JS.API.STREAM.INFO.{prefix}" in warning.getMessage()
            assert "check_duplicate_window" in warning.getMessage()


@pytest.mark.nats
@pytest.mark.asyncio
async def test_check_duplicate_window_false_sends_nothing_the_server_refuses(
    kit: Kit, tmp_path: Path
) -> None:
    """The same publisher with ``check_duplicate_window=False``: the events are
    delivered and the server logs no violation (a marker publish of the test's own,
    refused after the sink's work, is the only one)."""
    prefix = f"kroonika_test_{uuid.uuid4().hex[:8]}"
    with own_nats_server(tmp_path, users(publisher_of(prefix))) as server:
        admin_url = server.url.replace("//", f"//{ADMIN}@")
        async with jetstream(admin_url, prefix) as (_nc, js):
            write_events(kit, 2)
            records = [Record("web-1", n + 1, b) for n, b in enumerate(bodies_of(kit))]
            sink = JetStreamSink(
                "nats", server.url, subject_prefix=prefix, timeout=2, check_duplicate_window=False
            )
            try:
                await sink.send(records)
            finally:
                await sink.close()
            assert (await js.stream_info(prefix)).state.messages == 2
            assert sink.duplicate_windows == {}
            await refused_marker(server.url)
            (line,) = await violations(server, 1)
            assert MARKER in line


MARKER = '"kroonika_test_marker"'


async def refused_marker(url: str) -> None:
    """A publish the sink's user may not make, on a connection of the test's own: its
    line in the server's log comes after those of everything the sink did before."""
    import nats

    nc = await nats.connect(url, error_cb=_ignore)
    try:
        await nc.publish(MARKER.strip('"'), b"")
        await nc.flush()
    finally:
        await nc.close()


async def _ignore(exc: Exception) -> None:
    """The marker's refusal (which nats-py would otherwise log as an error)."""


@pytest.mark.nats
@pytest.mark.asyncio
async def test_with_the_stream_info_right_the_window_is_read_and_nothing_refused(
    kit: Kit, tmp_path: Path
) -> None:
    """The operator guide's permissions (the subjects and
    ``$JS.API.STREAM.INFO.<stream>``): the window is read, no violation is logged."""
    prefix = f"kroonika_test_{uuid.uuid4().hex[:8]}"
    perms = publisher_of(prefix, f"$JS.API.STREAM.INFO.{prefix}")
    with own_nats_server(tmp_path, users(perms)) as server:
        admin_url = server.url.replace("//", f"//{ADMIN}@")
        async with jetstream(admin_url, prefix):
            write_events(kit, 1)
            sink = JetStreamSink("nats", server.url, subject_prefix=prefix, timeout=2)
            try:
                await sink.send([Record("web-1", 1, bodies_of(kit)[0])])
            finally:
                await sink.close()
            assert sink.duplicate_windows == {prefix: 7200.0}
            await refused_marker(server.url)
            (line,) = await violations(server, 1)
            assert MARKER in line


class SteppedClock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.nats
@pytest.mark.asyncio
async def test_an_outage_is_probed_once_then_again_only_after_reprobe_after(
    kit: Kit, tmp_path: Path
) -> None:
    """Credentials that may publish nowhere: the first attempt probes every other
    subject (each a violation in the server's log); later attempts publish the item at
    most once per ``denied_retry_after`` (those in between send nothing) and probe
    again only once ``reprobe_after`` has passed. Each attempt is transient."""
    prefix = f"kroonika_test_{uuid.uuid4().hex[:8]}"
    others = len(Category)  # the other categories and the checkpoints
    clock = SteppedClock()
    with own_nats_server(tmp_path, users(REVOKED["publish"])) as server:
        admin_url = server.url.replace("//", f"//{ADMIN}@")
        async with jetstream(admin_url, prefix):
            write_events(kit, 1)  # a login event: <prefix>.authentication
            record = Record("web-1", 1, bodies_of(kit)[0])
            sink = JetStreamSink("nats", server.url, subject_prefix=prefix, timeout=2, clock=clock)
            expected = 0
            try:
                # at 1000 (item, probes), 1010 (held), 1070 (item), 1100 (held),
                # 1301 (item, and the probes again: 300 s after the first)
                for n, (step, logged) in enumerate(
                    [(0.0, 1 + others), (10.0, 0), (60.0, 1), (30.0, 0), (201.0, 1 + others)]
                ):
                    clock.now += step
                    with pytest.raises(TransientSinkError, match="permissions violation"):
                        await sink.send([record])
                    expected += logged
                    await refused_marker(server.url)
                    lines = await violations(server, expected + n + 1)
                    assert sum(MARKER not in ln for ln in lines) == expected, n
            finally:
                await sink.close()


@pytest.mark.nats
@pytest.mark.parametrize("revoked", sorted(REVOKED))
@pytest.mark.asyncio
async def test_an_outage_costs_the_server_log_one_attempt_per_retry_period(
    kit: Kit, tmp_path: Path, revoked: str
) -> None:
    """A runner retrying fast through an outage of every right (the subscribe right
    too: each publish then needs a new connection): the server logs the sink's
    violations of the first attempt and then nothing until ``denied_retry_after`` has
    passed, however many retries; once the rights are back, everything is delivered."""
    prefix = f"kroonika_test_{uuid.uuid4().hex[:8]}"
    clock = SteppedClock()

    def logged() -> int:
        text = server.log.read_text()
        return sum("Violation" in ln and MARKER not in ln for ln in text.splitlines())

    with own_nats_server(tmp_path, users(ALLOWED)) as server:
        admin_url = server.url.replace("//", f"//{ADMIN}@")
        async with jetstream(admin_url, prefix) as (_nc, js):
            sink = JetStreamSink("nats", server.url, subject_prefix=prefix, timeout=5, clock=clock)
            runner = SinkRunner(kit.store, [sink], batch_size=10, retry=FAST, poll_interval=0.05)
            metrics: Callable[[], dict[str, Any]] = lambda: runner.metrics()["nats"]  # noqa: E731
            await asyncio.to_thread(write_events, kit, 2)
            await runner.start()
            try:
                await wait_for("the first events", lambda: metrics()["delivered"] == 2)
                server.reconfigure(users(REVOKED[revoked]))
                await asyncio.to_thread(write_events, kit, 2, start=2)
                runner.notify()
                await wait_for("a first retry", lambda: metrics()["retries"] >= 2)
                await refused_marker(server.url)
                await wait_for("the first marker", lambda: _markers(server) == 1)
                first = logged()  # the first attempt, all of it (the marker came after)
                assert first > 0
                retries = metrics()["retries"]
                await wait_for("many retries", lambda: metrics()["retries"] >= retries + 20)
                await refused_marker(server.url)
                await wait_for("the second marker", lambda: _markers(server) == 2)
                assert logged() == first  # twenty retries, nothing sent
                clock.now += DEFAULT_DENIED_RETRY_AFTER
                retries = metrics()["retries"]
                await wait_for("a retry after the period", lambda: metrics()["retries"] > retries)
                await wait_for("more retries", lambda: metrics()["retries"] >= retries + 20)
                await refused_marker(server.url)
                await wait_for("the third marker", lambda: _markers(server) == 3)
                again = logged() - first
                assert 0 < again <= 2  # one publish (and one subscription) for the period
                server.reconfigure(users(ALLOWED))
                clock.now += DEFAULT_DENIED_RETRY_AFTER
                await wait_for("every event", lambda: metrics()["delivered"] == 4)
            finally:
                await runner.stop()
                await sink.close()
            assert CursorStore(kit.store.engine).dead_letters("nats") == []
            msgs = await stored_messages(js, prefix)
            events_ = [m.data for m in msgs if not m.subject.endswith(".checkpoint")]
            assert events_ == bodies_of(kit)  # each once, in order


def _markers(server: OwnNats) -> int:
    return server.log.read_text().count(MARKER)
