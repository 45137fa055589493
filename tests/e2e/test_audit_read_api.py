"""The auditor's read API against its CLI: filters that no event can match are refused
before the trail is read, and ``POST /audit/verify`` reports what ``kroonika audit
verify`` reports."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from admin_harness import AdminStack, admin_stack, edit_record, read_from

from kroonika.audit import Actor, ActorType, events
from kroonika.audit import verify as verify_module
from kroonika.audit.integrity import verify_inclusion
from kroonika.audit.retention import RetentionJob, RetentionPolicy
from kroonika.auditing import build_audit
from kroonika.web import routes_audit

KROONIKA = str(Path(sys.executable).parent / "kroonika")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminStack]:
    with admin_stack(Path(tmp_path_factory.mktemp("audit-read"))) as s:
        yield s


@pytest.mark.parametrize(
    ("param", "params"),
    [
        ("type", {"type": "auth.logon"}),
        ("type", {"type": ["auth.login", "x" * 5000]}),
        ("type", {"type": "au", "format": "jsonl"}),
        ("category", {"category": "authn"}),
        ("outcome", {"outcome": "failed"}),
    ],
)
def test_a_filter_value_no_event_can_have_is_a_422_before_any_read(
    stack: AdminStack, monkeypatch: pytest.MonkeyPatch, param: str, params: dict[str, Any]
) -> None:
    """An unknown type, category or outcome: 422 invalid_request naming the parameter (not
    the value: a refusal never carries the input); the store is not opened; the call is an
    admin.request with status 422 and no audit.access (nothing was read)."""

    def no_read(request: object) -> None:
        raise AssertionError("the store was opened")

    monkeypatch.setattr(routes_audit, "_open", no_read)
    r = stack.call("GET", "/audit/events", role="auditor", params=params)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "invalid_request"
    assert body["fields"] == [f"query.{param}"]
    assert body["detail"].startswith(f"{param}: value ")
    assert "'" not in body["detail"]  # the quoted value of the CLI's message is not here
    assert "x" * 50 not in body["detail"]
    rid = r.headers["x-request-id"]
    (req,) = stack.events(types=("admin.request",), correlation=rid)
    assert req["details"]["status"] == 422
    assert stack.events(types=("audit.access",), correlation=rid) == []


#: a value that must never come back in an answer (a personal code typed in the wrong box)
CODE = "38001085718"


@pytest.mark.parametrize(
    ("path", "params", "where", "cli"),
    [
        ("/audit/events", {"from": CODE}, ["query.from"], ["--from", CODE]),
        ("/audit/events", {"to": f"2026-11-27T{CODE}"}, ["query.to"], ["--to", f"x{CODE}"]),
        (
            "/audit/events",
            {"from": "2026-11-28", "to": "2026-11-27"},
            ["query.from", "query.to"],
            ["--from", "2026-11-28", "--to", "2026-11-27"],
        ),
        ("/audit/events", {"ip": CODE}, ["query.ip"], ["--ip", CODE]),
        ("/audit/events", {"type": f"auth.{CODE}"}, ["query.type"], ["--type", f"auth.{CODE}"]),
        ("/audit/events", {"category": CODE}, ["query.category"], ["--category", CODE]),
        ("/audit/events", {"outcome": CODE}, ["query.outcome"], ["--outcome", CODE]),
        ("/audit/events", {"limit": CODE}, ["query.limit"], ["--limit", "0"]),
        ("/audit/events", {"limit": "0"}, ["query.limit"], ["--limit", "0"]),
        ("/audit/events", {"limit": f"x{CODE}"}, ["query.limit"], ["--limit", f"x{CODE}"]),
        ("/audit/events", {"format": CODE}, ["query.format"], None),
        ("/audit/events", {"cursor": CODE}, ["query.cursor"], None),
        ("/audit/events", {"type": f"{CODE}\x1b[2J"}, ["query.type"], ["--type", f"{CODE}\x1b"]),
        ("/audit/events", {"correlation": f"{CODE}\x00"}, ["query.correlation"], None),
        ("/audit/events", {f"{CODE}\x00": "1"}, ["query"], None),
        ("/audit/checkpoints", {"stream": f"{CODE}\r\nx"}, ["query.stream"], None),
    ],
)
def test_every_bad_query_parameter_is_the_same_422(
    stack: AdminStack,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    path: str,
    params: dict[str, str],
    where: list[str],
    cli: list[str] | None,
) -> None:
    """A malformed or impossible query parameter of an audit read route, whoever checks
    it (FastAPI, the route, the admin dependency): 422 invalid_request, ``fields`` and a
    ``detail`` naming the parameter, the value nowhere in the answer; nothing is read and
    the call is an admin.request of status 422. ``kroonika audit query`` refuses the same
    value with exit 2 naming the option."""

    def no_read(request: object) -> None:
        raise AssertionError("the store was opened")

    monkeypatch.setattr(routes_audit, "_open", no_read)
    r = stack.call("GET", path, role="auditor", params=params)
    assert r.status_code == 422, r.text
    body = r.json()
    assert set(body) == {"error", "detail", "request_id", "fields"}
    assert (body["error"], body["fields"]) == ("invalid_request", where)
    for name in where:
        assert name.removeprefix("query.") in body["detail"]
    assert CODE not in r.text
    rid = r.headers["x-request-id"]
    (req,) = stack.events(types=("admin.request",), correlation=rid)
    assert req["details"]["status"] == 422
    assert stack.events(types=("audit.access",), correlation=rid) == []
    if cli is None:
        return
    done = subprocess.run(
        [KROONIKA, "audit", "query", *cli],
        env={**os.environ, "KROONIKA_VAR_DIR": str(tmp_path / "cli-var")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert cli[0] in done.stderr


def test_catalogue_values_still_search(stack: AdminStack) -> None:
    """A catalogue type, a prefix of one, a category and an outcome are searched as before."""
    assert stack.call("GET", "/audit/checkpoints", role="auditor").status_code == 200
    params = {"type": ["admin", "auth.login"], "category": "admin", "outcome": "success"}
    r = stack.call("GET", "/audit/events", role="auditor", params=params)
    assert r.status_code == 200, r.text
    assert r.json()["events"]
    assert {e["type"] for e in r.json()["events"]} == {"admin.request"}


def _many_blocks(stack: AdminStack, url: str) -> None:
    """A store of its own with 80 blocks (the parallel verifier's size), signed with the
    service's keys."""
    settings = stack.stack.settings.model_copy(update={"audit_store_url": url})
    comps = build_audit(settings, stream="tampered")
    try:
        for _ in range(80):
            comps.trail.emit_many_sync([events.auth_login(actor=Actor(ActorType.USER))] * 4)
    finally:
        comps.store.close()


def _verify_with(stack: AdminStack, url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``POST /audit/verify`` of the store at ``url``: the report and the details of the
    call's ``audit.access``."""
    r = read_from(stack, url, "POST", "/audit/verify")
    assert r.status_code == 200, r.text
    (access,) = stack.events(types=("audit.access",), correlation=r.headers["x-request-id"])
    details = {k: v for k, v in access["details"].items() if k != "request_id"}
    return r.json(), {"outcome": access["outcome"], **details}


def _kroonika(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``kroonika`` command run to its end, with a development directory of its own."""
    return subprocess.run(
        [KROONIKA, *args],
        env={**os.environ, "KROONIKA_VAR_DIR": str(tmp_path / "cli-var")},
        capture_output=True,
        text=True,
        check=False,
    )


def test_api_and_cli_verify_report_the_same_damage(stack: AdminStack, tmp_path: Path) -> None:
    """On a tampered store of 80 blocks, the API (verifying in a worker thread of the
    server) and the CLI (a process of its own) give the same report: damaged, the record
    named as modified, the same counts and roots."""
    url = f"sqlite:///{tmp_path / 'tampered.db'}"
    _many_blocks(stack, url)
    edit_record(url, 150)
    keys = tmp_path / "public-keys.json"
    keys.write_bytes(stack.stack.services.audit.keyring.public_keys().to_json())
    api, _ = _verify_with(stack, url)
    cli = _kroonika(tmp_path, "audit", "verify", "--json", "--store", url, "--keys", str(keys))
    assert cli.returncode == 1, cli.stderr
    report = orjson.loads(cli.stdout)
    assert api == report
    assert report["intact"] is False
    assert (report["findings"][0]["kind"], report["findings"][0]["seq"]) == ("modified", 150)
    assert report["streams"][0]["blocks"] == 80


def test_a_small_store_is_verified_in_process_with_the_same_report(
    stack: AdminStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store below ``API_WORKERS_MIN_RECORDS`` is verified in the server's thread: no
    worker process is started (each call used to start a pool of them, seconds on a
    loaded machine). Above it the workers run as before. A tampered store gives the same
    report and the same ``audit.access`` either way."""
    url = f"sqlite:///{tmp_path / 'tampered.db'}"
    _many_blocks(stack, url)  # 80 blocks: the workers' size for the CLI
    edit_record(url, 150)
    pools: list[int] = []
    real = verify_module._process_pool

    def counted(n_workers: int) -> Any:
        pools.append(n_workers)
        return real(n_workers)

    monkeypatch.setattr(verify_module, "_process_pool", counted)
    in_process = _verify_with(stack, url)
    assert pools == []
    monkeypatch.setattr(routes_audit, "API_WORKERS_MIN_RECORDS", 1)
    with_workers = _verify_with(stack, url)
    assert pools, "the workers did not run"
    assert in_process == with_workers
    report, access = in_process
    assert (report["findings"][0]["kind"], report["findings"][0]["seq"]) == ("modified", 150)
    assert report["records"] == 320
    assert access["action"] == "verify"
    assert access["returned"] == 320


def _check(proof: dict[str, Any]) -> None:
    """The proof object checks out with RFC 9162 against the root it names."""
    leaf, index, size, root = (proof[k] for k in ("leaf_hash", "leaf_index", "tree_size", "root"))
    hashes = [bytes.fromhex(h) for h in proof["proof"]]
    verify_inclusion(bytes.fromhex(leaf), index, size, hashes, bytes.fromhex(root))


def test_api_and_cli_give_the_same_inclusion_proof_under_the_same_name(
    stack: AdminStack, tmp_path: Path
) -> None:
    """``GET /audit/events/{id}`` answers the hash list ``kroonika audit proof`` prints,
    under the CLI's name ``proof`` (a stable interface), and under ``path``, its name
    before, for callers written then; both check out with RFC 9162."""
    url = f"sqlite:///{tmp_path / 'proved.db'}"
    _many_blocks(stack, url)
    done = _kroonika(
        tmp_path, "audit", "proof", "--seq", "150", "--stream", "tampered", "--store", url
    )
    assert done.returncode == 0, done.stderr
    cli = orjson.loads(done.stdout)
    r = read_from(stack, url, "GET", f"/audit/events/{cli['record']['id']}")
    assert r.status_code == 200, r.text
    api = r.json()["proof"]
    assert api["proof"] == cli["proof"]
    assert api["path"] == api["proof"]
    shared = ("stream", "leaf_index", "leaf_hash", "tree_size", "root", "head")
    assert {k: api[k] for k in shared} == {k: cli[k] for k in shared}
    _check(api)


def test_a_record_kept_after_a_purge_gets_the_proof_the_cli_gives(
    stack: AdminStack, tmp_path: Path
) -> None:
    """After retention purged the start of a stream, ``GET /audit/events/{id}`` of a kept
    record answers the proof made from the retained base, as ``kroonika audit proof``
    does (the route indexed the kept leaves from 1 and failed)."""
    url = f"sqlite:///{tmp_path / 'purged.db'}"
    settings = stack.stack.settings.model_copy(
        update={"audit_store_url": url, "audit_checkpoint_every": 8}
    )
    comps = build_audit(settings, stream="purged")
    try:
        for n in (4, 4, 4, 4, 4, 4, 3):  # checkpoints at 8, 16, 24; 25..27 after the last
            comps.trail.emit_many_sync([events.auth_login(actor=Actor(ActorType.USER))] * n)
        purged = RetentionJob(
            comps.store,
            RetentionPolicy(),
            clock=lambda: time.time() + 401 * 86400,
            keyring=comps.keyring,
        ).run()
    finally:
        comps.store.close()
    assert [(p.first_seq, p.last_seq) for p in purged] == [(1, 24)]
    kept = read_from(stack, url, "GET", "/audit/events").json()["events"]
    assert sorted(e["seq"] for e in kept) == [25, 26, 27]
    for event in kept:
        r = read_from(stack, url, "GET", f"/audit/events/{event['id']}")
        assert r.status_code == 200, r.text
        proof = r.json()["proof"]
        assert proof["seq"] == event["seq"]
        _check(proof)


def test_an_event_that_cannot_be_proved_is_answered_with_why(
    stack: AdminStack, tmp_path: Path
) -> None:
    """A record changed in the database no longer proves against the signed root: the
    event is answered with ``proof`` null and the reason ``kroonika audit proof`` gives,
    not a 500."""
    url = f"sqlite:///{tmp_path / 'tampered.db'}"
    _many_blocks(stack, url)
    edit_record(url, 150)
    (event,) = [
        e
        for e in read_from(stack, url, "GET", "/audit/events?limit=1000").json()["events"]
        if e["seq"] == 150
    ]
    r = read_from(stack, url, "GET", f"/audit/events/{event['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["proof"] is None
    assert r.json()["proof_unavailable"].startswith("cannot prove record 150 of stream tampered")


#: what a caller may paste where an id belongs: a token, a personal code, markup
_NOT_AN_ID = (
    "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJFRTM4MDAxMDg1NzE4In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ",
    "EE38001085718",
    "<img src=x onerror=alert(1)>",
)


@pytest.mark.parametrize("value", _NOT_AN_ID)
@pytest.mark.parametrize(
    ("method", "template", "role"),
    [
        ("GET", "/audit/events/{}", "auditor"),
        ("POST", "/admin/alerts/{}/acknowledge", "security"),
    ],
)
def test_a_404_does_not_echo_the_id_it_was_given(
    stack: AdminStack, value: str, method: str, template: str, role: str
) -> None:
    """The answer to an id that names nothing leaves the id out, as every refusal
    does (decision 0024): a token or personal code pasted there is not sent back."""
    r = stack.call(method, template.format(value), role=role)
    assert r.status_code == 404, r.text
    body = r.json()
    assert body["error"] == "not_found"
    assert value[:16] not in r.text
    assert "38001085718" not in r.text
