"""HTTP sinks against local collectors: wire format byte for byte; outages (errors,
stalls, a collector that is down) followed by recovery with nothing lost, in order."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from http_collector import Collector, Handler, Request
from pydantic import SecretStr
from sink_kit import Kit, make_ca, write_events

from kroonika.audit.formats import ecs_document
from kroonika.audit.sinks import (
    CheckpointRecord,
    CursorStore,
    ElasticBulkSink,
    Record,
    RetryPolicy,
    SinkEvent,
    SinkRunner,
    SplunkHecSink,
    WebhookSink,
)
from kroonika.audit.sinks.webhook import check_signature
from kroonika.settings import AuditSinkSettings, Settings
from kroonika.shipping import build_sink
from poll_kit import eventually

FAST = RetryPolicy(initial=0.01, maximum=0.05, send_timeout=10, permanent_attempts=2)
TOKEN = SecretStr("00000000-1111-2222-3333-444444444444")
WEBHOOK_KEY = SecretStr("a-webhook-key-of-enough-length")


def stored(kit: Kit) -> list[bytes]:
    return [b for blk in kit.store.blocks("web-1") for b in blk.records()]


def epoch(rfc3339: str) -> str:
    import datetime

    main, frac = rfc3339.rstrip("Z").split(".")
    dt = datetime.datetime.fromisoformat(main).replace(tzinfo=datetime.UTC)
    return f"{int(dt.timestamp())}.{frac}"


def hec_body(bodies: list[bytes]) -> bytes:
    out = b""
    for b in bodies:
        t = orjson.loads(b)["time"]
        out += (
            b'{"event":' + b + b',"host":"kt","source":"kroonika","sourcetype":"kroonika:audit",'
            b'"time":' + epoch(t).encode() + b"}"
        )
    return out


@pytest.mark.asyncio
async def test_hec_wire_format_is_exact(kit: Kit) -> None:
    """HEC gets events back to back, time in epoch seconds, the Splunk token header."""
    write_events(kit, 3, hostile=True)
    hec = Collector(lambda r: (200, b'{"text":"Success","code":0}'))
    await hec.start()
    sink = SplunkHecSink("hec", hec.url, TOKEN, host="kt")
    runner = SinkRunner(kit.store, [sink], batch_size=10, retry=FAST, ship_checkpoints=False)
    try:
        await runner.drain()
    finally:
        await runner.stop()
        await hec.stop()
    (req,) = hec.accepted
    assert req.path == "/services/collector/event"
    assert req.headers["authorization"] == f"Splunk {TOKEN.get_secret_value()}"
    assert req.body == hec_body(stored(kit))


@pytest.mark.asyncio
async def test_hec_outage_errors_stall_and_down_then_recovery_loses_nothing(kit: Kit) -> None:
    """503s, a stalled request and a collector that is down: then every event, in order."""
    seen: list[SinkEvent] = []

    async def on_event(ev: SinkEvent) -> None:
        seen.append(ev)

    hec = Collector(lambda r: (200, b'{"text":"Success","code":0}'), stall_seconds=30)
    await hec.start()
    port = hec.port
    sink = SplunkHecSink("hec", hec.url, TOKEN, host="kt", timeout=2)
    runner = SinkRunner(
        kit.store,
        [sink],
        batch_size=4,
        retry=FAST,
        on_event=on_event,
        ship_checkpoints=False,
        report_quiet=0,  # report the second outage too, however soon it follows
    )
    try:
        write_events(kit, 4)
        await runner.drain()
        hec.script = ["503", "503", "stall", "500"]
        write_events(kit, 5, start=4)
        await runner.drain()
        await hec.stop()  # down: connection refused
        write_events(kit, 3, start=9)
        task = asyncio.create_task(runner.drain())
        # back once the runner has found it down (a fixed 0.3 s can be too short)
        await eventually(lambda: len(seen) == 3)
        hec.port = port
        await hec.start()  # back
        await task
    finally:
        await runner.stop()
        await hec.stop()
    assert b"".join(r.body for r in hec.accepted) == hec_body(stored(kit))
    assert [e.state for e in seen] == ["failed", "recovered", "failed", "recovered"]


@pytest.mark.asyncio
async def test_hec_refused_event_is_found_and_dead_lettered(kit: Kit) -> None:
    """A 400 for one event: the batch is narrowed and only that event is dead-lettered."""
    write_events(kit, 5)
    bad_id = orjson.loads(stored(kit)[2])["id"].encode()

    def handler(r: Request) -> tuple[int, bytes]:
        if bad_id in r.body:
            return 400, b'{"text":"Invalid data format","code":6}'
        return 200, b'{"text":"Success","code":0}'

    hec = Collector(handler)
    await hec.start()
    sink = SplunkHecSink("hec", hec.url, TOKEN, host="kt")
    runner = SinkRunner(kit.store, [sink], batch_size=10, retry=FAST, ship_checkpoints=False)
    try:
        await runner.drain()
    finally:
        await runner.stop()
        await hec.stop()
    bodies = stored(kit)
    assert b"".join(r.body for r in hec.accepted) == hec_body(bodies[:2] + bodies[3:])
    letters = CursorStore(kit.store.engine).dead_letters("hec")
    assert [d["seq"] for d in letters] == [3]


def bulk_index() -> tuple[Collector, dict[str, dict[str, object]], list[str]]:
    """An _bulk endpoint with create semantics; the first time it sees the 3rd item
    it answers 429 for it (per item, in a 200 response)."""
    index: dict[str, dict[str, object]] = {}
    order: list[str] = []
    throttled: list[bool] = [False]

    def handler(r: Request) -> tuple[int, bytes]:
        assert r.body.endswith(b"\n")
        lines = r.body.split(b"\n")[:-1]
        items = []
        for pos in range(0, len(lines), 2):
            action = orjson.loads(lines[pos])["create"]
            doc_id = action["_id"]
            if pos // 2 == 2 and not throttled[0]:
                throttled[0] = True
                items.append(
                    {
                        "create": {
                            "_id": doc_id,
                            "status": 429,
                            "error": {"type": "es_rejected_execution_exception"},
                        }
                    }
                )
            elif doc_id in index:
                items.append(
                    {
                        "create": {
                            "_id": doc_id,
                            "status": 409,
                            "error": {"type": "version_conflict_engine_exception"},
                        }
                    }
                )
            else:
                index[doc_id] = orjson.loads(lines[pos + 1])
                order.append(doc_id)
                items.append({"create": {"_id": doc_id, "status": 201}})
        errors = any(i["create"]["status"] >= 300 for i in items)
        return 200, orjson.dumps({"took": 1, "errors": errors, "items": items})

    return Collector(handler), index, order


@pytest.mark.asyncio
async def test_bulk_per_item_failures_in_a_200_are_retried_not_ignored(kit: Kit) -> None:
    """A 429 item inside a 200 answer is re-sent; duplicates conflict harmlessly."""
    write_events(kit, 6, hostile=True)
    es, index, order = bulk_index()
    await es.start()
    sink = ElasticBulkSink("es", es.url, index="logs-kroonika.audit-default")
    runner = SinkRunner(kit.store, [sink], batch_size=10, retry=FAST, ship_checkpoints=False)
    try:
        await runner.drain()
    finally:
        await runner.stop()
        await es.stop()
    docs = [orjson.loads(b) for b in stored(kit)]
    assert sorted(order) == sorted(d["id"] for d in docs)  # each once; ES keeps no order
    assert [index[d["id"]] for d in docs] == [
        orjson.loads(orjson.dumps(ecs_document(d))) for d in docs
    ]
    first = es.requests[0]
    assert first.path == "/_bulk"
    assert first.headers["content-type"] == "application/x-ndjson"
    action = orjson.loads(first.body.split(b"\n")[0])
    assert action == {"create": {"_id": docs[0]["id"], "_index": "logs-kroonika.audit-default"}}
    assert len(es.requests) == 2
    resent = [orjson.loads(x)["create"]["_id"] for x in es.requests[1].body.split(b"\n")[:-1:2]]
    assert resent == [d["id"] for d in docs[2:]]  # from the refused item on, in order


@pytest.mark.asyncio
async def test_webhook_body_is_json_lines_with_a_valid_hmac(kit: Kit) -> None:
    """Webhook: canonical JSON lines; the signature verifies over timestamp.body."""
    write_events(kit, 3)
    hook = Collector(lambda r: (204, b""))
    await hook.start()
    sink = WebhookSink("hook", hook.url + "/audit", WEBHOOK_KEY, clock=lambda: 1_800_000_000.0)
    runner = SinkRunner(kit.store, [sink], batch_size=10, retry=FAST, ship_checkpoints=False)
    try:
        await runner.drain()
    finally:
        await runner.stop()
        await hook.stop()
    (req,) = hook.accepted
    assert req.body == b"".join(b + b"\n" for b in stored(kit))
    assert req.headers["x-kroonika-timestamp"] == "1800000000"
    key = WEBHOOK_KEY.get_secret_value().encode()
    assert check_signature(key, "1800000000", req.body, req.headers["x-kroonika-signature"])
    assert not check_signature(
        key, "1800000000", req.body + b" ", req.headers["x-kroonika-signature"]
    )


@pytest.mark.asyncio
async def test_webhook_outage_then_recovery_keeps_order(kit: Kit) -> None:
    """Webhook answers 502 and stalls, then accepts: all lines, in order, once."""
    hook = Collector(lambda r: (200, b"{}"), stall_seconds=30)
    await hook.start()
    hook.script = ["502", "stall", "502"]
    sink = WebhookSink("hook", hook.url, WEBHOOK_KEY, timeout=2)
    runner = SinkRunner(kit.store, [sink], batch_size=3, retry=FAST, ship_checkpoints=False)
    write_events(kit, 8)
    try:
        await runner.drain()
    finally:
        await runner.stop()
        await hook.stop()
    assert b"".join(r.body for r in hook.accepted) == b"".join(b + b"\n" for b in stored(kit))


@pytest.mark.parametrize(
    ("kind", "bad_answer"),
    [
        ("es", (200, b"[]")),
        ("es", (200, b"null")),
        ("es", (200, b"not gzip", {"content-encoding": "gzip"})),
        ("hec", (200, b"not gzip", {"content-encoding": "gzip"})),
    ],
)
@pytest.mark.asyncio
async def test_a_malformed_answer_is_a_transient_failure_then_delivery_resumes(
    kit: Kit, kind: str, bad_answer: tuple[int, bytes] | tuple[int, bytes, dict[str, str]]
) -> None:
    """An answer that is not a JSON object, or whose encoding is broken, is a reported,
    retried failure (not a crash of the delivery pass); then every event arrives."""
    write_events(kit, 3)
    seen: list[SinkEvent] = []

    async def on_event(ev: SinkEvent) -> None:
        seen.append(ev)

    def handler(r: Request) -> tuple[int, bytes] | tuple[int, bytes, dict[str, str]]:
        if len(collector.requests) == 1:
            return bad_answer
        return 200, b'{"took":1,"errors":false,"items":[]}'

    collector = Collector(handler)
    await collector.start()
    sink: ElasticBulkSink | SplunkHecSink = (
        ElasticBulkSink("out", collector.url)
        if kind == "es"
        else SplunkHecSink("out", collector.url, TOKEN, host="kt")
    )
    runner = SinkRunner(
        kit.store, [sink], batch_size=10, retry=FAST, on_event=on_event, ship_checkpoints=False
    )
    try:
        await runner.drain()
    finally:
        await runner.stop()
        await collector.stop()
    assert [e.state for e in seen] == ["failed", "recovered"]
    assert runner.metrics()["out"]["delivered"] == len(stored(kit))
    assert collector.requests[1].body == collector.requests[0].body  # the same batch again


@pytest.mark.asyncio
async def test_an_oversized_answer_is_not_held_but_a_transient_failure(kit: Kit) -> None:
    """A collector answering more than the sink reads (here 2 MiB to HEC, whose cap is
    1 MiB) makes a retried failure, so no answer can make the sink hold any amount."""
    write_events(kit, 3)
    seen: list[SinkEvent] = []

    async def on_event(ev: SinkEvent) -> None:
        seen.append(ev)

    def handler(r: Request) -> tuple[int, bytes]:
        if len(hec.requests) == 1:
            return 200, b" " * (2 * 1024 * 1024)
        return 200, b'{"text":"Success","code":0}'

    hec = Collector(handler)
    await hec.start()
    sink = SplunkHecSink("hec", hec.url, TOKEN, host="kt")
    runner = SinkRunner(
        kit.store, [sink], batch_size=10, retry=FAST, on_event=on_event, ship_checkpoints=False
    )
    try:
        await runner.drain()
    finally:
        await runner.stop()
        await hec.stop()
    assert [(e.state, "more than 1048576 bytes" in e.error) for e in seen] == [
        ("failed", True),
        ("recovered", False),
    ]
    assert [r.body for r in hec.requests] == [hec_body(stored(kit))] * 2


def tls_collector(tmp_path: Path, handler: Handler) -> tuple[Collector, Path]:
    """An HTTPS collector whose certificate (for 127.0.0.1) a fresh CA signed."""
    ca, cert, key = make_ca(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    return Collector(handler, tls=server), ca


@pytest.mark.parametrize("kind", ["splunk_hec", "elastic_bulk", "webhook"])
@pytest.mark.asyncio
async def test_https_sink_from_settings_trusts_its_ca_file_and_nothing_else(
    kit: Kit, tmp_path: Path, kind: str
) -> None:
    """With ``ca_file`` the collector's certificate is verified against that CA: the
    events arrive; a sink given another CA sends nothing and names the failure."""
    write_events(kit, 2)
    hook, ca = tls_collector(tmp_path / "pki", lambda r: (200, b'{"errors":false}'))
    other_ca, _, _ = make_ca(tmp_path / "other")
    await hook.start()
    specs = [
        {"kind": kind, "name": name, "url": hook.url, "secret": "s3cr3t-" * 4, "ca_file": str(f)}
        for name, f in (("good", ca), ("bad", other_ca))
    ]
    good, bad = (build_sink(AuditSinkSettings.model_validate(spec), Settings()) for spec in specs)
    runner = SinkRunner(kit.store, [good], retry=FAST, ship_checkpoints=False)
    refused = SinkRunner(kit.store, [bad], retry=FAST, ship_checkpoints=False)
    try:
        await runner.drain()
        task = asyncio.create_task(refused.drain())
        # until its first attempt has failed (a fixed 0.3 s can be too short)
        await eventually(lambda: refused.metrics()["bad"]["failures"] >= 1)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        await runner.stop()
        await refused.stop()
        await hook.stop()
    assert len(hook.accepted) == 1
    assert runner.metrics()["good"]["delivered"] == len(stored(kit))
    assert refused.metrics()["bad"]["delivered"] == 0
    assert (
        refused.metrics()["bad"]["last_error"]
        == "TransientSinkError: cannot reach 127.0.0.1: ConnectError"
    )


@pytest.mark.parametrize("status", ["301", "404", "405"])
@pytest.mark.asyncio
async def test_an_endpoint_that_is_wrong_for_a_while_dead_letters_nothing(
    kit: Kit, status: str
) -> None:
    """A redirect or a missing route refuses the endpoint, not an event: it is retried
    (an operator fixes it) and then every event arrives, none dead-lettered."""
    write_events(kit, 4)
    hook = Collector(lambda r: (200, b"{}"))
    await hook.start()
    hook.script = [status] * 8
    sink = WebhookSink("hook", hook.url, WEBHOOK_KEY)
    runner = SinkRunner(kit.store, [sink], batch_size=10, retry=FAST, ship_checkpoints=False)
    try:
        await runner.drain()
    finally:
        await runner.stop()
        await hook.stop()
    assert CursorStore(kit.store.engine).dead_letters("hook") == []
    assert b"".join(r.body for r in hook.accepted) == b"".join(b + b"\n" for b in stored(kit))


@pytest.mark.asyncio
async def test_webhook_ships_checkpoints_of_a_stream_with_a_non_ascii_name(
    kit_factory: Callable[..., Kit],
) -> None:
    """A checkpoint id holds the stream name ('tõrva-1'); the Idempotency-Key header
    carries it percent-encoded (UTF-8), so the checkpoint is delivered, not stuck."""
    kit = kit_factory(stream="tõrva-1")
    write_events(kit, 5)  # and a checkpoint at 5
    hook = Collector(lambda r: (200, b"{}"))
    await hook.start()
    sink = WebhookSink("hook", hook.url, WEBHOOK_KEY)
    runner = SinkRunner(kit.store, [sink], batch_size=10, retry=FAST)
    try:
        await asyncio.wait_for(runner.drain(), 10)
    finally:
        await runner.stop()
        await hook.stop()
    (cp,) = kit.store.checkpoints("tõrva-1")
    assert runner.metrics()["hook"]["checkpoints"] == 1
    last = hook.accepted[-1]
    assert orjson.loads(last.body)["checkpoint"]["size"] == cp.size
    key = "checkpoint:t%C3%B5rva-1:5"
    assert last.headers["idempotency-key"] == f"{key}..{key}"


def answer_lost_once_index() -> tuple[Collector, dict[str, dict[str, object]], list[list[int]]]:
    """An _bulk endpoint with create semantics that stores the first request and then
    answers it 503 (a gateway that timed out after Elasticsearch took it): the sender
    cannot tell, and sends it again. Per request it records each item's status."""
    index: dict[str, dict[str, object]] = {}
    statuses: list[list[int]] = []

    def handler(r: Request) -> tuple[int, bytes]:
        lines = r.body.split(b"\n")[:-1]
        items: list[dict[str, object]] = []
        for pos in range(0, len(lines), 2):
            doc_id = orjson.loads(lines[pos])["create"]["_id"]
            if doc_id in index:
                error = {"type": "version_conflict_engine_exception"}
                items.append({"create": {"_id": doc_id, "status": 409, "error": error}})
            else:
                index[doc_id] = orjson.loads(lines[pos + 1])
                items.append({"create": {"_id": doc_id, "status": 201}})
        statuses.append([i["create"]["status"] for i in items])  # type: ignore[index]
        if len(statuses) == 1:
            return 503, b'{"error":"gateway timeout"}'
        errors = any(s != 201 for s in statuses[-1])
        return 200, orjson.dumps({"took": 1, "errors": errors, "items": items})

    return Collector(handler), index, statuses


@pytest.mark.asyncio
async def test_a_bulk_batch_sent_again_after_a_lost_answer_is_all_conflicts_and_delivered(
    kit: Kit,
) -> None:
    """The batch was stored but its answer lost: sent again, every item (events and the
    checkpoint, each under its id) is a 409 in a 200 with ``errors: true``, and that is
    a delivery: the cursor moves past it, the sink recovers, nothing is dead-lettered,
    and the index holds each item once."""
    seen: list[SinkEvent] = []

    async def on_event(ev: SinkEvent) -> None:
        seen.append(ev)

    write_events(kit, 3)
    kit.trail.checkpoint_now()
    (cp,) = kit.store.checkpoints("web-1")
    es, index, statuses = answer_lost_once_index()
    await es.start()
    sink = ElasticBulkSink("es", es.url)
    runner = SinkRunner(kit.store, [sink], batch_size=10, retry=FAST, on_event=on_event)
    try:
        await runner.drain()
    finally:
        await runner.stop()
        await es.stop()
    ids = [orjson.loads(b)["id"] for b in stored(kit)]
    assert statuses[:2] == [[201, 201, 201], [409, 409, 409]]
    assert sorted(index) == sorted([*ids, f"checkpoint:web-1:{cp.size}"])
    assert index[f"checkpoint:web-1:{cp.size}"]["kroonika"]["checkpoint"]["size"] == cp.size  # type: ignore[index]
    assert [e.state for e in seen] == ["failed", "recovered"]
    assert CursorStore(kit.store.engine).dead_letters("es") == []
    assert CursorStore(kit.store.engine).get("es", "web-1") == 3


@pytest.mark.asyncio
async def test_a_replayed_dead_letter_that_elastic_already_holds_counts_as_delivered(
    kit: Kit,
) -> None:
    """Two overlapping replays (or a replay of an event that did arrive) send an item
    Elasticsearch holds: its 409 is a delivery, not a refusal."""
    write_events(kit, 1)
    es, index, statuses = answer_lost_once_index()
    statuses.append([])  # no lost answer here
    await es.start()
    sink = ElasticBulkSink("es", es.url)
    record = Record("web-1", 1, stored(kit)[0])
    await sink.send([record])
    await sink.send([record])  # raises if the 409 counted as a refusal
    await sink.close()
    await es.stop()
    assert statuses[1:] == [[201], [409]]
    assert list(index) == [record.id]


#: 128 letters of four UTF-8 bytes each: a checkpoint id of 525 bytes.
LONG_STREAM = "\U0001d51e" * 128  # MATHEMATICAL FRAKTUR SMALL A


def id_limited_index() -> tuple[Collector, dict[str, dict[str, object]]]:
    """An _bulk endpoint with create semantics that refuses, as Elasticsearch does, an
    ``_id`` longer than 512 bytes (UTF-8): a 400 for that item."""
    index: dict[str, dict[str, object]] = {}

    def handler(r: Request) -> tuple[int, bytes]:
        lines = r.body.split(b"\n")[:-1]
        items: list[dict[str, object]] = []
        for pos in range(0, len(lines), 2):
            doc_id = orjson.loads(lines[pos])["create"]["_id"]
            if len(doc_id.encode()) > 512:
                error = {"type": "illegal_argument_exception", "reason": "id is too long"}
                items.append({"create": {"status": 400, "error": error}})
            elif doc_id in index:
                error = {"type": "version_conflict_engine_exception"}
                items.append({"create": {"_id": doc_id, "status": 409, "error": error}})
            else:
                index[doc_id] = orjson.loads(lines[pos + 1])
                items.append({"create": {"_id": doc_id, "status": 201}})
        errors = any(i["create"]["status"] not in (201, 409) for i in items)  # type: ignore[index]
        return 200, orjson.dumps({"took": 1, "errors": errors, "items": items})

    return Collector(handler), index


@pytest.mark.asyncio
async def test_a_checkpoint_id_over_elastics_512_bytes_goes_under_a_stable_digest_id(
    kit_factory: Callable[..., Kit],
) -> None:
    """A 128-letter stream name of multibyte letters makes a checkpoint id Elastic
    refuses as ``_id``: it is sent as ``sha256:<hex of the id>``, so it is delivered
    (not dead-lettered), the document still carries the whole id, and a re-send is a
    409 like any other repeat. Event ids (UUIDs) keep their own ``_id``."""
    import hashlib

    kit = kit_factory(stream=LONG_STREAM)
    write_events(kit, 5)  # and a checkpoint at 5
    (cp,) = kit.store.checkpoints(LONG_STREAM)
    cp_id = f"checkpoint:{LONG_STREAM}:{cp.size}"
    assert len(cp_id.encode()) > 512
    es, index = id_limited_index()
    await es.start()
    sink = ElasticBulkSink("es", es.url)
    runner = SinkRunner(kit.store, [sink], batch_size=10, retry=FAST)
    try:
        await runner.drain()
        await sink.send([CheckpointRecord(cp)])  # raises if the repeat were refused
    finally:
        await runner.stop()
        await es.stop()
    assert CursorStore(kit.store.engine).dead_letters("es") == []
    assert runner.metrics()["es"]["checkpoints"] == 1
    digest_id = "sha256:" + hashlib.sha256(cp_id.encode()).hexdigest()
    bodies = [b for blk in kit.store.blocks(LONG_STREAM) for b in blk.records()]
    ids = [orjson.loads(b)["id"] for b in bodies]
    assert sorted(index) == sorted([*ids, digest_id])
    doc = index[digest_id]
    assert doc["event"]["id"] == cp_id  # type: ignore[index]
    assert doc["kroonika"]["checkpoint"]["stream"] == LONG_STREAM  # type: ignore[index]
    last = es.requests[-1].body.split(b"\n")[0]
    assert orjson.loads(last) == {
        "create": {"_id": digest_id, "_index": "logs-kroonika.audit-default"}
    }


def test_an_id_that_fits_elastics_limit_is_its_own_document_id() -> None:
    """Up to 512 bytes of UTF-8 the ``_id`` is the id itself (as before), one byte
    more and it is the digest form."""
    import hashlib

    from kroonika.audit.sinks.elastic_bulk import document_id

    fits = "checkpoint:" + "õ" * 249 + "-:1"
    assert len(fits.encode()) == 512
    assert document_id(fits) == fits
    over = fits + "0"
    assert document_id(over) == "sha256:" + hashlib.sha256(over.encode()).hexdigest()
