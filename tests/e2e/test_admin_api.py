"""The admin and audit APIs over real HTTP: roles on every route, justification,
configuration round trip, bulk import, separation of duties, reads of the trail."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from admin_harness import (
    ADMIN,
    AUDITOR,
    PRIVACY,
    SECOND_ADMIN,
    SECURITY,
    WHY,
    AdminStack,
    admin_stack,
    as_person,
    holder_key,
    refuse_events,
)

from poll_kit import wait_until


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminStack]:
    with admin_stack(Path(tmp_path_factory.mktemp("admin"))) as s:
        yield s


A, AU, SEC, PRIV = {"admin"}, {"auditor"}, {"admin", "security"}, {"privacy"}
# (method, path, json body, roles allowed). Bodies are valid enough to pass validation.
ROUTES: list[tuple[str, str, dict[str, Any] | None, set[str]]] = [
    ("GET", "/admin/tokens", None, SEC),
    ("POST", "/admin/tokens/search", {"subject": "EE49002124277"}, SEC),
    ("POST", "/admin/tokens/no-such-jti/revoke", None, SEC),
    ("POST", "/admin/subjects/revoke", {"subject": "EE49002124277"}, SEC),
    ("GET", "/admin/sessions", None, SEC),
    ("POST", "/admin/sessions/search", {"subject": "EE49002124277"}, SEC),
    ("DELETE", "/admin/sessions/nosuchref", None, SEC),
    ("POST", "/admin/bulk/revoke", {"items": [{"jti": "nope"}]}, SEC),
    ("POST", "/admin/bulk/sessions/end", {"refs": ["nope"]}, SEC),
    ("GET", "/admin/lists", None, SEC),
    ("POST", "/admin/lists", {"list": "deny", "kind": "jti", "value": "x", "reason": "rt"}, A),
    ("PATCH", "/admin/lists/al_none", {"reason": "changed"}, A),
    ("DELETE", "/admin/lists/al_none", None, A),
    ("GET", "/admin/lists/export", None, SEC),
    ("POST", "/admin/lists/import?format=json", None, A),
    ("GET", "/admin/lists/status?ip=192.0.2.1", None, SEC),
    ("POST", "/admin/lists/status", {"ip": "192.0.2.1"}, SEC),
    ("GET", "/admin/clients", None, A),
    ("POST", "/admin/clients", {"name": "svc"}, A),
    ("PATCH", "/admin/clients/none", {"name": "x"}, A),
    ("POST", "/admin/clients/none/rotate-secret", None, A),
    ("POST", "/admin/clients/none/disable", None, A),
    ("GET", "/admin/keys", None, A),
    ("POST", "/admin/keys/checkpoint/rotate", None, A),
    ("GET", "/admin/config", None, A),
    ("PATCH", "/admin/config", {"changes": {"log.levels": {"kroonika.jobs": "INFO"}}}, A),
    ("GET", "/admin/jobs", None, A),
    ("POST", "/admin/jobs/login_flows/run", None, A),
    ("GET", "/admin/jobs/login_flows/runs", None, A),
    ("GET", "/admin/config/requests", None, A),
    ("POST", "/admin/config/requests/cr_none", {"approve": False}, A),
    ("GET", "/admin/roles", None, A),
    ("POST", "/admin/roles/lookup", {"subject": "EE49002124277"}, A),
    ("POST", "/admin/roles", {"subject": "EE49002124277", "role": "privacy"}, A),
    ("POST", "/admin/roles/requests/rr_none", {"approve": False}, A),
    ("GET", "/admin/api-keys", None, A),
    ("POST", "/admin/api-keys", {"name": "k", "roles": ["admin"]}, A),
    ("DELETE", "/admin/api-keys/none", None, A),
    ("POST", "/admin/privacy/erasures", {"personal_code": "EE60001019906"}, PRIV),
    ("POST", "/admin/privacy/re-identify", {"event_ids": ["0000"]}, PRIV),
    ("POST", "/admin/privacy/pseudonyms", {"personal_code": "EE60001019906"}, PRIV),
    ("POST", "/admin/privacy/lists/export", {"format": "csv"}, PRIV),
    ("GET", "/admin/alerts", None, {"admin", "security", "auditor"}),
    ("POST", "/admin/alerts/alr_none/acknowledge", {"note": "seen"}, SEC),
    ("POST", "/admin/privacy/free-text/scan", {}, PRIV),
    ("POST", "/admin/privacy/free-text/redact", {}, PRIV),
    ("GET", "/audit/events", None, AU),
    ("GET", "/audit/events/none", None, AU),
    ("GET", "/audit/checkpoints", None, AU),
    ("POST", "/audit/verify", None, AU),
    ("GET", "/admin/dashboard", None, {"admin", "security", "auditor"}),
]
CALLERS = [None, "admin", "auditor", "security", "privacy"]


def test_every_admin_route_is_in_the_table(stack: AdminStack) -> None:
    """The role table covers every /admin and /audit route of the OpenAPI document."""
    import httpx

    doc = httpx.get(stack.url + "/openapi.json").json()
    routes = {
        (m.upper(), p)
        for p, ops in doc["paths"].items()
        for m in ops
        if p.startswith(("/admin", "/audit"))
    }
    covered = {(m, p.split("?")[0]) for m, p, _, _ in ROUTES}
    templated = {
        (m, p) for m, p in routes if any(m == cm and _matches(p, cp) for cm, cp in covered)
    }
    assert templated == routes


def _matches(template: str, path: str) -> bool:
    a, b = template.strip("/").split("/"), path.strip("/").split("/")
    return len(a) == len(b) and all(x == y or x.startswith("{") for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(
    ("method", "path", "body", "allowed"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES]
)
def test_role_enforcement(
    stack: AdminStack,
    caller: str | None,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    allowed: set[str],
) -> None:
    """No credentials: 401; a role the route does not allow: 403; an allowed role gets past
    authorisation. Each call is one admin.request event with that status."""
    kw: dict[str, Any] = {"json": body} if body is not None else {}
    if path.startswith("/admin/lists/import"):
        kw = {"content": b"[]", "headers": {"content-type": "application/json"}}
    r = stack.call(method, path, role=caller, **kw)
    if caller is None:
        assert r.status_code == 401, r.text
    elif caller not in allowed:
        assert r.status_code == 403, r.text
    else:
        assert r.status_code not in (401, 403), r.text
    rid = r.headers["x-request-id"]
    recorded = stack.events(types=("admin.request",), correlation=rid)
    assert [e["details"]["status"] for e in recorded] == [r.status_code]


def test_mutation_without_justification_is_refused_and_audited(stack: AdminStack) -> None:
    """400 justification_required, a security.policy_violation and a failed admin.request."""
    body = {"list": "deny", "kind": "ip", "value": "198.51.100.7", "reason": "abuse"}
    for why in (None, "too short"):
        r = stack.call("POST", "/admin/lists", why=why, json=body)
        assert r.status_code == 400
        assert r.json()["error"] == "justification_required"
        rid = r.headers["x-request-id"]
        (violation,) = stack.events(types=("security.policy_violation",), correlation=rid)
        assert violation["details"]["policy"] == "admin_justification_missing"
        (req,) = stack.events(types=("admin.request",), correlation=rid)
        assert req["outcome"] == "failure"
        assert req["details"]["status"] == 400
    assert stack.call("GET", "/admin/lists/status?ip=198.51.100.7").json()["allowed"] is True


def test_justification_in_the_body_is_accepted(stack: AdminStack) -> None:
    """A justification field in the JSON body counts like the header and is recorded."""
    body = {
        "list": "deny",
        "kind": "ip",
        "value": "198.51.100.9",
        "reason": "abuse",
        "justification": WHY,
    }
    r = stack.call("POST", "/admin/lists", why=None, json=body)
    assert r.status_code == 201, r.text
    (req,) = stack.events(types=("admin.request",), correlation=r.headers["x-request-id"])
    assert req["details"]["justification"] == WHY
    assert "198.51.100.9" not in str(req["details"]["params"])


@pytest.mark.parametrize(
    "why", ["INC-1 approved \u202edesrever", "INC-1 8-bit \x9b31m red", "INC-1 zero\u200bwidth"]
)
def test_a_justification_with_bidi_or_terminal_codes_is_refused(
    stack: AdminStack, why: str
) -> None:
    """A body justification that would reorder or drive what a reader of the trail sees is
    refused like a missing one, and nothing of it reaches the trail."""
    body = {
        "list": "deny",
        "kind": "jti",
        "value": "bidi-why",
        "reason": "leaked",
        "justification": why,
    }
    r = stack.call("POST", "/admin/lists", why=None, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "justification_required"
    rid = r.headers["x-request-id"]
    (violation,) = stack.events(types=("security.policy_violation",), correlation=rid)
    assert violation["details"]["policy"] == "admin_justification_missing"
    (req,) = stack.events(types=("admin.request",), correlation=rid)
    assert "justification" not in req["details"]


def test_a_utf8_justification_header_is_recorded_as_written(stack: AdminStack) -> None:
    """X-Justification in UTF-8 (Estonian letters) is recorded as the client wrote it, on a
    change and on a read."""
    why = "INC-77 põhjendus: žürii €"
    header = {"x-justification": why.encode()}
    body = {"list": "deny", "kind": "jti", "value": "utf8-why", "reason": "leaked"}
    for method, path, kw in [
        ("POST", "/admin/lists", {"json": body}),
        ("GET", "/admin/lists", {}),
    ]:
        r = stack.call(method, path, why=None, headers=header, **kw)
        assert r.status_code < 300, r.text
        (req,) = stack.events(types=("admin.request",), correlation=r.headers["x-request-id"])
        assert req["details"]["justification"] == why


def test_a_read_with_a_justification_that_is_not_plain_text_is_refused(
    stack: AdminStack,
) -> None:
    """The optional justification of a read is recorded only as plain text: bidi controls
    in it are a 400, and the refused read is still one admin.request."""
    header = {"x-justification": "INC-1 read \u202ereversed".encode()}
    r = stack.call("GET", "/admin/lists", why=None, headers=header)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "justification_required"
    (req,) = stack.events(types=("admin.request",), correlation=r.headers["x-request-id"])
    assert req["details"]["status"] == 400
    assert "justification" not in req["details"]


HUGE = 10**30  # no database integer column holds it


@pytest.mark.parametrize(
    ("method", "path", "kw"),
    [
        ("GET", "/admin/tokens", {"params": {"issued_after": str(HUGE)}}),
        ("GET", "/admin/tokens", {"params": {"issued_before": "-1"}}),
        (
            "POST",
            "/admin/lists",
            {
                "json": {
                    "list": "deny",
                    "kind": "jti",
                    "value": "z",
                    "reason": "rt!",
                    "expires_at": HUGE,
                }
            },
        ),
        ("PATCH", "/admin/lists/al_none", {"json": {"expires_at": HUGE}}),
        ("POST", "/admin/clients", {"json": {"name": "svc", "max_ttl_s": HUGE}}),
        ("POST", "/admin/clients", {"json": {"name": "svc", "rate_limit": "9/minute" * 10}}),
        ("PATCH", "/admin/clients/none", {"json": {"max_ttl_s": HUGE}}),
    ],
)
def test_numbers_and_texts_beyond_their_columns_are_a_422(
    stack: AdminStack, method: str, path: str, kw: dict[str, Any]
) -> None:
    """Values the database cannot hold are refused by validation (422 naming the field),
    not by the database (500), and the call is still recorded with its status."""
    r = stack.call(method, path, **kw)
    assert r.status_code == 422, r.text
    assert r.json()["fields"]
    (req,) = stack.events(types=("admin.request",), correlation=r.headers["x-request-id"])
    assert req["details"]["status"] == 422


@pytest.mark.parametrize(
    ("method", "path", "kw", "where"),
    [
        ("GET", "/admin/tokens", {"params": {"subject": "EE3800\x001085718"}}, "query.subject"),
        ("GET", "/admin/sessions", {"params": {"subject": "a\x00b"}}, "query.subject"),
        ("GET", "/audit/events", {"params": {"type": "a\x00b"}}, "query.type"),
        ("POST", "/admin/tokens/a%00b/revoke", {}, "path.jti"),
        ("DELETE", "/admin/sessions/a%00b", {}, "path.ref"),
        ("DELETE", "/admin/api-keys/a%00b", {}, "path.key_id"),
        ("PATCH", "/admin/clients/a%00b", {"json": {"name": "x"}}, "path.client_id"),
    ],
)
def test_nul_in_a_path_or_query_value_is_a_422(
    stack: AdminStack, method: str, path: str, kw: dict[str, Any], where: str
) -> None:
    """A NUL (a 500 from PostgreSQL) or other control in a path or query value is refused
    before any query runs: 422 invalid_request naming the parameter (as a control in a
    body text is), recorded as one admin.request."""
    role = "auditor" if path.startswith("/audit") else "admin"
    r = stack.call(method, path, role=role, **kw)
    assert r.status_code == 422, r.text
    assert (r.json()["error"], r.json()["fields"]) == ("invalid_request", [where])
    assert "1085718" not in r.text
    (req,) = stack.events(types=("admin.request",), correlation=r.headers["x-request-id"])
    assert req["details"]["status"] == 422


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        (
            "POST",
            "/admin/lists",
            {"list": "deny", "kind": "jti", "value": "a\x00b", "reason": "rt!"},
        ),
        (
            "POST",
            "/admin/lists",
            {"list": "deny", "kind": "jti", "value": "ab", "reason": "r\x00t"},
        ),
        ("POST", "/admin/clients", {"name": "svc\x00"}),
        ("POST", "/admin/clients", {"name": "svc", "allowed_audiences": ["aud\x1b[2J"]}),
        ("POST", "/admin/api-keys", {"name": "key\r\nforged", "roles": ["admin"]}),
        ("POST", "/admin/subjects/revoke", {"subject": "EE3800\x001085718"}),
        ("POST", "/admin/bulk/revoke", {"items": [{"jti": "a\x00"}]}),
        ("POST", "/admin/bulk/sessions/end", {"refs": ["a\x00"]}),
        ("PATCH", "/admin/config", {"changes": {"admin.ticket_pattern": "INC\x00"}}),
    ],
)
def test_nul_or_controls_in_a_body_text_are_a_422(
    stack: AdminStack, method: str, path: str, body: dict[str, Any]
) -> None:
    """Every text in an admin body is printable: NUL, CR/LF or escape codes are a 422
    naming the field, not a 500 from the database."""
    r = stack.call(method, path, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["fields"]


def test_a_blank_reason_for_an_existing_entry_is_a_422_not_a_404(stack: AdminStack) -> None:
    """White space is no reason: the change is refused as invalid, and the entry, which
    exists, is not reported missing."""
    entry = {"list": "deny", "kind": "jti", "value": "blank-reason", "reason": "leaked"}
    made = stack.call("POST", "/admin/lists", json=entry)
    assert made.status_code == 201, made.text
    r = stack.call("PATCH", f"/admin/lists/{made.json()['id']}", json={"reason": "     "})
    assert r.status_code == 422, r.text
    assert r.json()["fields"] == ["body.reason"]


def test_an_import_line_with_an_overflowing_expiry_is_named(stack: AdminStack) -> None:
    """A CSV line whose expiry no column holds is a line error (422), nothing imported."""
    data = b"list,kind,value,reason,expires_at\ndeny,jti,huge-exp,valid reason,%d\n" % HUGE
    r = stack.call("POST", "/admin/lists/import?format=csv", content=data)
    assert r.status_code == 422, r.text
    assert [e["line"] for e in r.json()["errors"]] == [2]
    assert stack.call("GET", "/admin/lists/status", params={"jti": "huge-exp"}).json()["allowed"]


@pytest.mark.parametrize("expires_at", [False, True, 1, 1_000_000_000, "4102444800", 4102444800.5])
def test_a_list_entry_that_would_be_expired_when_made_is_a_422(
    stack: AdminStack, expires_at: object
) -> None:
    """An expiry in the past (``false`` read as 0 was one) would make a deny entry that
    blocks nothing while the administrator believes it does: refused, naming the field,
    and nothing is listed. An expiry is a JSON integer, not a text, a float or a bool."""
    value = f"past-{expires_at!r}"
    entry = {"list": "deny", "kind": "jti", "value": value, "reason": "leaked token"}
    r = stack.call("POST", "/admin/lists", json={**entry, "expires_at": expires_at})
    assert r.status_code == 422, r.text
    assert r.json()["fields"] == ["body.expires_at"]
    assert stack.call("GET", "/admin/lists/status", params={"jti": value}).json()["allowed"]


def test_an_entry_cannot_be_changed_to_an_expiry_in_the_past(stack: AdminStack) -> None:
    """A change that would expire an entry at once is a 422 (removing it says so); the
    entry keeps its expiry and keeps blocking. A future expiry is taken."""
    later = int(time.time()) + 3600
    entry = {"list": "deny", "kind": "jti", "value": "expire-later", "reason": "leaked",
             "expires_at": later}  # fmt: skip
    made = stack.call("POST", "/admin/lists", json=entry)
    assert made.status_code == 201, made.text
    path = f"/admin/lists/{made.json()['id']}"
    r = stack.call("PATCH", path, json={"expires_at": int(time.time()) - 60})
    assert r.status_code == 422, r.text
    assert r.json()["fields"] == ["body.expires_at"]
    status = stack.call("GET", "/admin/lists/status", params={"jti": "expire-later"}).json()
    assert not status["allowed"]
    r = stack.call("PATCH", path, json={"expires_at": later + 60})
    assert r.status_code == 200, r.text
    assert r.json()["expires_at"] == later + 60


def test_an_import_line_that_would_be_expired_when_made_is_named(stack: AdminStack) -> None:
    """In an import, an expiry in the past is that line's error; nothing is imported."""
    data = b"list,kind,value,reason,expires_at\ndeny,jti,imp-ok,valid reason,\n" \
        b"deny,jti,imp-past,valid reason,1000\n"  # fmt: skip
    r = stack.call("POST", "/admin/lists/import?format=csv", content=data)
    assert r.status_code == 422, r.text
    assert [e["line"] for e in r.json()["errors"]] == [3]
    assert "past" in r.json()["errors"][0]["error"]
    assert stack.call("GET", "/admin/lists/status", params={"jti": "imp-ok"}).json()["allowed"]


def test_a_bulk_item_with_an_empty_subject_is_invalid_not_ok(stack: AdminStack) -> None:
    """A bulk revoke item naming nothing (or far too much) is counted as invalid."""
    items = [{"subject": " "}, {"subject": "x" * 5000}, {"jti": ""}, {"jti": "no-such"}]
    r = stack.call("POST", "/admin/bulk/revoke", json={"items": items})
    assert r.status_code == 200, r.text
    assert [i["status"] for i in r.json()["items"]] == [
        "invalid",
        "invalid",
        "invalid",
        "not_found",
    ]
    assert r.json()["summary"] == {"requested": 4, "succeeded": 0, "failed": 4}


def test_a_client_change_takes_effect_at_once(stack: AdminStack) -> None:
    """An audience taken from a client stops working on its next call (the verified-client
    cache must not keep the old permissions), and the change is checked like a new
    client's: an empty audience or a bad claim name is refused."""
    import httpx

    made = stack.call(
        "POST", "/admin/clients", json={"name": "cached", "allowed_audiences": ["svc-a", "svc-b"]}
    ).json()
    auth = (made["client_id"], made["client_secret"])

    def mint(aud: str) -> int:
        r = httpx.post(stack.url + "/tokens", json={"audience": aud}, auth=auth, timeout=30)
        return r.status_code

    assert mint("svc-a") == 201
    path = f"/admin/clients/{made['client_id']}"
    changed = stack.call("PATCH", path, json={"allowed_audiences": ["svc-b"]})
    assert changed.status_code == 200, changed.text
    assert mint("svc-a") != 201
    assert mint("svc-b") == 201
    for bad in ({"allowed_audiences": [""]}, {"allowed_claims": ["no spaces"]}):
        r = stack.call("PATCH", path, json=bad)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error"] == "invalid_client"
    assert stack.call("PATCH", path, json={"name": "  "}).status_code == 422
    (kept,) = [
        c
        for c in stack.call("GET", "/admin/clients").json()["clients"]
        if c["client_id"] == made["client_id"]
    ]
    assert (kept["name"], kept["allowed_audiences"]) == ("cached", ["svc-b"])


def test_a_client_change_the_trail_cannot_record_is_undone(
    stack: AdminStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No permission change without its record: when the trail refuses the client's
    config.change events, the client is put back as it was and the caller gets 503."""
    from kroonika.audit import AuditEvent, AuditUnavailable

    made = stack.call(
        "POST",
        "/admin/clients",
        json={"name": "guarded", "allowed_audiences": ["svc-a", "svc-b"]},
    ).json()
    trail = stack.stack.services.audit.trail

    async def refuse(events: list[AuditEvent]) -> Any:
        raise AuditUnavailable("store down")

    monkeypatch.setattr(trail, "emit_many", refuse)
    r = stack.call(  # less for the client: applied at once (decision 0017), then undone
        "PATCH",
        f"/admin/clients/{made['client_id']}",
        json={"allowed_audiences": ["svc-a"], "max_ttl_s": 99, "disabled": True},
    )
    monkeypatch.undo()
    assert r.status_code == 503, r.text
    (kept,) = [
        c
        for c in stack.call("GET", "/admin/clients").json()["clients"]
        if c["client_id"] == made["client_id"]
    ]
    assert (kept["allowed_audiences"], kept["max_ttl_s"], kept["disabled"]) == (
        ["svc-a", "svc-b"],
        made["max_ttl_s"],
        False,
    )


def test_ticket_pattern_is_enforced_once_configured(stack: AdminStack) -> None:
    """With admin.ticket_pattern set, a justification without a ticket id is refused."""
    assert (
        stack.call(
            "PATCH", "/admin/config", json={"changes": {"admin.ticket_pattern": r"INC-\d+"}}
        ).status_code
        == 200
    )
    try:
        r = stack.call("DELETE", "/admin/lists/al_none", why="no ticket named in here")
        assert r.status_code == 400
        assert r.json()["error"] == "ticket_required"
        assert stack.call("DELETE", "/admin/lists/al_none").status_code == 404
    finally:
        # clearing the pattern weakens a control: a second administrator approves it
        asked = stack.call(
            "PATCH", "/admin/config", json={"changes": {"admin.ticket_pattern": None}}
        )
        assert asked.status_code == 202, asked.text
        path = f"/admin/config/requests/{asked.json()['request']['id']}"
        done = as_person(stack, SECOND_ADMIN, "POST", path, json={"approve": True})
        assert done.status_code == 200, done.text


def test_a_ticket_pattern_that_would_lock_everyone_out_is_refused(stack: AdminStack) -> None:
    """A pattern must match the justification of the change that sets it: one that nothing
    matches ("(?!)") would refuse every later change, its own reset included."""
    for pattern in ("(?!)", r"CHG-\d+"):
        r = stack.call(
            "PATCH", "/admin/config", json={"changes": {"admin.ticket_pattern": pattern}}
        )
        assert r.status_code == 422, r.text
        assert "admin.ticket_pattern" in r.json()["errors"]
    assert (
        stack.call("GET", "/admin/config").json()["config"]["admin.ticket_pattern"]["value"] is None
    )


def test_config_round_trip_with_diff_event(stack: AdminStack) -> None:
    """PATCH persists and applies (the session policy changes); GET shows it; the
    config.change event has before and after; a secret shows only set/changed."""
    before = stack.call("GET", "/admin/config").json()["config"]["session.idle_s"]["value"]
    new = before - 60  # shorter: applied at once (a longer one waits for a second admin)
    r = stack.call(
        "PATCH",
        "/admin/config",
        json={"changes": {"session.idle_s": new, "alerts.webhook_secret": "w" * 32}},
    )
    assert r.status_code == 200, r.text
    assert stack.stack.services.sessions.policy.idle_s == new
    got = stack.call("GET", "/admin/config").json()["config"]
    assert got["session.idle_s"]["value"] == new
    assert got["session.idle_s"]["source"] == "runtime"
    assert got["alerts.webhook_secret"]["value"] == "********"
    rid = r.headers["x-request-id"]
    changes = {
        e["details"]["key"]: e["details"]
        for e in stack.events(types=("config.change",), correlation=rid)
    }
    assert changes["session.idle_s"]["before"] == str(before)
    assert changes["session.idle_s"]["after"] == str(new)
    assert changes["alerts.webhook_secret"]["after"] == "changed"
    assert "w" * 32 not in str(stack.stack.raw_events())


def test_invalid_config_is_refused_per_key(stack: AdminStack) -> None:
    """Bad values name their key; a cross-key rule (TTL min <= default) is checked; nothing
    changes."""
    r = stack.call("PATCH", "/admin/config", json={"changes": {"session.idle_s": "x", "nope": 1}})
    assert r.status_code == 422
    assert set(r.json()["errors"]) == {"session.idle_s", "nope"}
    r = stack.call("PATCH", "/admin/config", json={"changes": {"token.ttl_min_s": 10**6}})
    assert r.status_code == 422
    assert "min <= default" in r.json()["detail"]


def test_bulk_import_with_bad_lines(stack: AdminStack) -> None:
    """Bad lines are named by line number and nothing is imported; with partial=true the
    good lines are, with one admin.bulk event and per-item access_list.add children."""
    csv = (
        "list,kind,value,reason,expires_at\n"
        "deny,ip,203.0.113.0/24,scanner range,\n"
        "deny,ip,not-an-ip,bad line,\n"
        "maybe,jti,abc,unknown list,\n"
        "allow,client,svc-a,trusted client,\n"
        "deny,subject,EE38001085718,x,\n"
    )
    r = stack.call(
        "POST",
        "/admin/lists/import?format=csv",
        content=csv.encode(),
        headers={"content-type": "text/csv"},
    )
    assert r.status_code == 422
    assert [e["line"] for e in r.json()["errors"]] == [3, 4, 6]
    assert stack.call("GET", "/admin/lists/status?ip=203.0.113.5").json()["allowed"] is True
    r = stack.call(
        "POST",
        "/admin/lists/import?format=csv&partial=true",
        content=csv.encode(),
        headers={"content-type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["summary"] == {"requested": 5, "succeeded": 2, "failed": 3}
    assert [i["status"] for i in out["items"]] == ["ok", "invalid", "invalid", "ok", "invalid"]
    assert stack.call("GET", "/admin/lists/status?ip=203.0.113.5").json()["allowed"] is False
    rid = r.headers["x-request-id"]
    (bulk,) = stack.events(types=("admin.bulk",), correlation=rid)
    assert bulk["details"]["digest"] == out["digest"]
    assert bulk["details"]["failed"] == 3
    assert len(stack.events(types=("access_list.add",), correlation=rid)) == 2
    exported = stack.call("GET", "/admin/lists/export?format=csv").text
    assert "203.0.113.0/24" in exported


def test_json_import_reports_bad_entries(stack: AdminStack) -> None:
    """JSON entries are validated one by one too."""
    body = b'[{"list":"deny","kind":"jti","value":"j1","reason":"leaked"}, {"list":"deny"}, 5]'
    r = stack.call(
        "POST",
        "/admin/lists/import?format=json",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422
    assert [e["line"] for e in r.json()["errors"]] == [2, 3]


@pytest.mark.parametrize(("fmt", "query"), [("json", ""), ("csv", ""), ("json", "&partial=true")])
def test_an_import_over_the_entry_cap_is_refused_whole(
    stack: AdminStack, fmt: str, query: str
) -> None:
    """An import of more than 1000 entries (all valid) is a 413 before anything is applied:
    no entry, no access_list.add, one failed admin.request with the status."""
    values = [f"cap-{fmt}{query}-{i}" for i in range(1001)]
    if fmt == "json":
        body = orjson.dumps(
            [{"list": "deny", "kind": "jti", "value": v, "reason": "leaked"} for v in values]
        )
    else:
        body = (
            "list,kind,value,reason,expires_at\n"
            + "".join(f"deny,jti,{v},leaked,\n" for v in values)
        ).encode()
    r = stack.call(
        "POST",
        f"/admin/lists/import?format={fmt}{query}",
        content=body,
        headers={"content-type": "text/csv" if fmt == "csv" else "application/json"},
    )
    assert r.status_code == 413, r.text[:500]
    assert r.json()["error"] == "too_many_entries"
    assert "1000" in r.json()["detail"]
    for v in (values[0], values[-1]):
        status = stack.call("GET", f"/admin/lists/status?jti={v}")
        assert status.json()["allowed"] is True
    rid = r.headers["x-request-id"]
    assert not stack.events(types=("access_list.add", "admin.bulk"), correlation=rid)
    (req,) = stack.events(types=("admin.request",), correlation=rid)
    assert (req["outcome"], req["details"]["status"]) == ("failure", 413)


@pytest.mark.parametrize("params", [{"ip": "not-an-ip"}, {"ip": "10.0.0.0/99"}])
def test_a_status_check_of_a_malformed_address_is_a_400(
    stack: AdminStack, params: dict[str, str]
) -> None:
    """An address that is not one is a 400, not an answer that it would be allowed."""
    r = stack.call("GET", "/admin/lists/status", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request"


def test_role_change_needs_a_second_admin(stack: AdminStack) -> None:
    """An API key cannot change roles; a request waits for a second person; the requester
    cannot approve it; nobody can grant themselves a role."""
    r = stack.call("POST", "/admin/roles", json={"subject": "EE49002124277", "role": "security"})
    assert r.status_code == 409
    assert r.json()["error"] == "api_key"
    from kroonika.admin import RoleChangeRefused, RoleStore

    roles = RoleStore(stack.stack.services.engine, clock=stack.stack.services.clock)
    with pytest.raises(RoleChangeRefused):
        roles.request(
            ADMIN, "auditor", "grant", by="admin:x", by_subject=ADMIN, why=WHY, ttl_s=3600
        )
    req = roles.request(
        "49002124277", "security", "grant", by="admin:first", by_subject=ADMIN, why=WHY, ttl_s=3600
    )
    with pytest.raises(RoleChangeRefused):
        roles.decide(req.id, approve=True, by="admin:first", by_subject=ADMIN)
    with pytest.raises(RoleChangeRefused):
        roles.decide(req.id, approve=True, by="admin:x", by_subject="49002124277")
    roles.decide(req.id, approve=True, by="admin:second", by_subject=SECOND_ADMIN)
    assert roles.roles_of("EE49002124277") == ("security",)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/admin/roles", {"subject": "EE49002124277", "role": "security"}),
        ("/admin/roles/requests/rr_0123456789abcdef", {"approve": True}),
    ],
)
def test_an_api_key_touching_roles_is_a_policy_violation(
    stack: AdminStack, path: str, body: dict[str, Any]
) -> None:
    """Asking for or deciding a role change with an API key is refused (409 api_key) and
    recorded as a separation-of-duties violation on the route template."""
    r = stack.call("POST", path, json=body)
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "api_key"
    (v,) = stack.events(types=("security.policy_violation",), correlation=r.headers["x-request-id"])
    assert v["details"]["policy"] == "separation_of_duties"
    assert v["target"]["id"] in ("/admin/roles", "/admin/roles/requests/{request_id}")


def test_an_approved_role_change_the_trail_cannot_record_is_undone(
    stack: AdminStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No role without its record: when the trail refuses the config.change of an approved
    grant, the grant is taken back, the request is pending again, the caller gets 503."""
    import time

    from kroonika.admin import RoleStore

    target = "47101010033"
    stack.stack.clock.advance(time.time() - stack.stack.clock())  # the mock signs in real time
    with stack.stack.browser(autologin=ADMIN) as b:
        b.get(stack.url + "/auth/login")
        csrf = b.get(stack.url + "/auth/session").json()["csrf_token"]
        asked = b.post(
            stack.url + "/admin/roles",
            json={"subject": target, "role": "privacy"},
            headers={"x-justification": WHY, "x-csrf-token": csrf},
        )
    assert asked.status_code == 202, asked.text
    refuse_events(monkeypatch, stack, "config.change")
    with stack.stack.browser(autologin=SECOND_ADMIN) as b:
        b.get(stack.url + "/auth/login")
        csrf = b.get(stack.url + "/auth/session").json()["csrf_token"]
        decided = b.post(
            stack.url + f"/admin/roles/requests/{asked.json()['request']['id']}",
            json={"approve": True},
            headers={"x-justification": WHY, "x-csrf-token": csrf},
        )
    monkeypatch.undo()
    assert decided.status_code == 503, decided.text
    roles = RoleStore(stack.stack.services.engine, clock=stack.stack.services.clock)
    assert "privacy" not in roles.roles_of(target)
    again = roles.get_request(asked.json()["request"]["id"])
    assert again is not None
    assert again.status == "pending"


def test_api_key_cannot_carry_roles_its_creator_lacks(stack: AdminStack) -> None:
    """An admin cannot mint an auditor key (no self-granted roles); a security policy event
    records the attempt; a key of its own roles is shown once and works."""
    r = stack.call("POST", "/admin/api-keys", json={"name": "k", "roles": ["auditor"]})
    assert r.status_code == 409
    assert stack.events(types=("security.policy_violation",), correlation=r.headers["x-request-id"])
    r = stack.call("POST", "/admin/api-keys", json={"name": "k2", "roles": ["admin"], "ttl_s": 600})
    key = r.json()["api_key"]
    assert key not in str(stack.stack.raw_events())
    import httpx

    ok = httpx.get(stack.url + "/admin/jobs", headers={"authorization": f"Bearer {key}"})
    assert ok.status_code == 200
    stack.call("DELETE", f"/admin/api-keys/{r.json()['id']}")
    gone = httpx.get(stack.url + "/admin/jobs", headers={"authorization": f"Bearer {key}"})
    assert gone.status_code == 401


def test_an_api_key_the_trail_cannot_record_is_revoked(
    stack: AdminStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No credential without its record: when the trail refuses the key's config.change,
    the new key is revoked at once and the caller gets 503."""

    refuse_events(monkeypatch, stack, "config.change")
    r = stack.call("POST", "/admin/api-keys", json={"name": "unrecorded", "roles": ["admin"]})
    monkeypatch.undo()
    assert r.status_code == 503, r.text
    keys = stack.call("GET", "/admin/api-keys").json()["api_keys"]
    (unrecorded,) = [k for k in keys if k["name"] == "unrecorded"]
    assert unrecorded["revoked_at"] is not None


def test_every_read_of_the_trail_is_audited(stack: AdminStack) -> None:
    """Query, paging, JSONL export, one event with proof, checkpoints and verify each give
    one audit.access with what was asked and how many events came back."""
    stack.call(
        "POST",
        "/admin/lists",
        json={"list": "deny", "kind": "jti", "value": "read-me", "reason": "seed"},
    )
    page = stack.call("GET", "/audit/events", role="auditor", params={"limit": 2})
    assert page.status_code == 200
    assert len(page.json()["events"]) == 2
    nxt = stack.call(
        "GET",
        "/audit/events",
        role="auditor",
        params={"limit": 2, "cursor": page.json()["next_cursor"]},
    )
    assert nxt.json()["events"][0]["id"] != page.json()["events"][0]["id"]
    export = stack.call(
        "GET", "/audit/events", role="auditor", params={"format": "jsonl", "type": "admin.request"}
    )
    lines = export.text.splitlines()
    event_id = page.json()["events"][0]["id"]
    one = stack.call("GET", f"/audit/events/{event_id}", role="auditor")
    assert one.json()["proof"]["leaf_index"] == one.json()["event"]["seq"] - 1
    cps = stack.call("GET", "/audit/checkpoints", role="auditor")
    report = stack.call("POST", "/audit/verify", role="auditor", why=None)
    assert report.json()["intact"] is True
    expected = {
        page.headers["x-request-id"]: ("query", 2, "json"),
        nxt.headers["x-request-id"]: ("query", len(nxt.json()["events"]), "json"),
        export.headers["x-request-id"]: ("export", len(lines), "jsonl"),
        one.headers["x-request-id"]: ("read", 1, "json"),
        cps.headers["x-request-id"]: ("checkpoints", len(cps.json()["checkpoints"]), "json"),
        report.headers["x-request-id"]: ("verify", report.json()["records"], "json"),
    }
    for rid, (action, returned, fmt) in expected.items():
        (access,) = stack.events(types=("audit.access",), correlation=rid)
        d = access["details"]
        assert (d["action"], d["returned"], d["format"]) == (action, returned, fmt)


@pytest.mark.parametrize("role", [None, "admin", "auditor"])
@pytest.mark.parametrize("method", ["DELETE", "PATCH", "PUT"])
def test_audit_records_cannot_be_altered(stack: AdminStack, role: str | None, method: str) -> None:
    """Nobody can change or delete an event: 405 (the API's Error object, as every
    refusal of the admin and audit APIs) and a policy violation."""
    r = stack.call(method, "/audit/events/anything", role=role, json={})
    assert r.status_code == 405
    body = r.json()
    assert body["error"] == "audit_records_are_immutable"
    assert body["detail"]
    assert body["request_id"] == r.headers["x-request-id"]
    (v,) = stack.events(types=("security.policy_violation",), correlation=r.headers["x-request-id"])
    assert v["details"]["policy"] == "audit_trail_immutable"


def test_admin_with_a_tara_session(stack: AdminStack) -> None:
    """An administrator logged in through TARA uses the API with the session cookie; changes
    also need the CSRF token; the event names the person by pseudonym only."""
    import time

    stack.stack.clock.advance(time.time() - stack.stack.clock())  # the mock signs in real time
    with stack.stack.browser(autologin=ADMIN) as b:
        assert b.get(stack.url + "/auth/login").status_code == 200
        csrf = b.get(stack.url + "/auth/session").json()["csrf_token"]
        assert b.get(stack.url + "/admin/jobs").status_code == 200
        body = {"list": "deny", "kind": "jti", "value": "by-session", "reason": "seen leaked"}
        refused = b.post(stack.url + "/admin/lists", json=body, headers={"x-justification": WHY})
        assert refused.status_code == 403
        assert refused.json()["error"] == "csrf_failed"
        ok = b.post(
            stack.url + "/admin/lists",
            json=body,
            headers={"x-justification": WHY, "x-csrf-token": csrf},
        )
        assert ok.status_code == 201
        (req,) = stack.events(types=("admin.request",), correlation=ok.headers["x-request-id"])
        assert req["actor"]["type"] == "admin"
        assert req["actor"]["roles"] == ["admin"]
        assert ADMIN not in str(req)
    with stack.stack.browser(autologin=AUDITOR) as b:
        b.get(stack.url + "/auth/login")
        assert b.get(stack.url + "/admin/jobs").status_code == 403
        assert b.get(stack.url + "/audit/checkpoints").status_code == 200


def test_a_bulk_session_end_revokes_the_sessions_tokens(stack: AdminStack) -> None:
    """Ending sessions in bulk does what ending one does: the session's access token stops
    being active at once (not only when it expires)."""
    import time

    import httpx

    stack.stack.clock.advance(time.time() - stack.stack.clock())  # the mock signs in real time
    made = stack.call(
        "POST", "/admin/clients", json={"name": "introspector", "allowed_audiences": ["kroonika"]}
    ).json()
    auth = (made["client_id"], made["client_secret"])
    with stack.stack.browser(autologin=SECURITY) as b:
        assert b.get(stack.url + "/auth/login").status_code == 200
        token = b.cookies.get("kroonika_at")
    assert token

    def active() -> bool:
        r = httpx.post(stack.url + "/introspect", data={"token": token}, auth=auth, timeout=30)
        return bool(r.json()["active"])

    assert active()
    sessions = stack.call("GET", "/admin/sessions", params={"subject": "EE" + SECURITY}).json()
    refs = [s["ref"] for s in sessions["sessions"]]
    assert refs
    r = stack.call("POST", "/admin/bulk/sessions/end", json={"refs": refs})
    assert r.json()["summary"]["failed"] == 0, r.text
    assert not active()


def test_a_bare_personal_code_finds_revokes_and_bans_the_person(stack: AdminStack) -> None:
    """Admins type personal codes without the EE prefix TARA gives them: a search, a
    subject revoke and its ban must still reach EE<code>, not silently match nothing."""
    import time

    stack.stack.clock.advance(time.time() - stack.stack.clock())  # the mock signs in real time
    with stack.stack.browser(autologin=PRIVACY) as b:
        assert b.get(stack.url + "/auth/login").status_code == 200
    found = stack.call("GET", "/admin/sessions", params={"subject": PRIVACY}).json()
    ref = stack.stack.services.audit.fingerprinter.pseudonym("EE" + PRIVACY)
    assert [s["subject_ref"] for s in found["sessions"]] == [ref]
    tokens = stack.call("GET", "/admin/tokens", params={"subject": PRIVACY}).json()["tokens"]
    assert tokens
    r = stack.call("POST", "/admin/subjects/revoke", json={"subject": PRIVACY, "ban": "permanent"})
    assert r.status_code == 200, r.text
    assert r.json()["sessions_ended"] == 1
    assert r.json()["tokens_revoked"] == len(tokens)
    status = stack.call("GET", "/admin/lists/status", params={"subject": "EE" + PRIVACY})
    assert status.json()["allowed"] is False
    entry = {"list": "deny", "kind": "subject", "value": "49002124277", "reason": "fraud"}
    added = stack.call("POST", "/admin/lists", json=entry)
    named = stack.stack.services.audit.fingerprinter.pseudonym("EE49002124277")
    assert added.json()["subject_ref"] == named, added.text


def test_event_search_compares_times_not_strings(stack: AdminStack) -> None:
    """from/to are RFC 3339 instants in any offset; stored times are UTC strings with
    microseconds, so a bound without them (or with +02:00) must be converted first."""
    everything = stack.call("GET", "/audit/events", role="auditor", params={"limit": 1000})
    events = everything.json()["events"]
    assert events
    first = events[0]["time"]  # e.g. 2026-11-27T10:01:53.123456Z
    second = first[:19]  # the whole second the first event fell in
    hour = int(second[11:13])
    local = f"{second[:11]}{(hour + 2) % 24:02d}{second[13:]}+02:00"
    for bound in (f"{second}Z", local):
        if (hour + 2) >= 24 and bound == local:
            continue  # the date would change too; the Z form covers it
        got = stack.call(
            "GET", "/audit/events", role="auditor", params={"from": bound, "limit": 1000}
        ).json()["events"]
        assert first in [e["time"] for e in got], bound
        before = stack.call(
            "GET", "/audit/events", role="auditor", params={"to": bound, "limit": 1000}
        ).json()["events"]
        assert all(e["time"] <= f"{second}.000000Z" for e in before), bound


@pytest.mark.parametrize(
    "params",
    [
        {"from": "yesterday"},
        {"from": "2026-13-45T99:99:99Z"},
        {"from": "2030-01-01T00:00:00Z", "to": "2020-01-01T00:00:00Z"},
        {"ip": "not-an-ip"},
        {"ip": "10.0.0.0/99"},
    ],
)
def test_event_search_refuses_bad_bounds(stack: AdminStack, params: dict[str, str]) -> None:
    """A time or network that is none: 422 naming the parameter, as every bad filter."""
    r = stack.call("GET", "/audit/events", role="auditor", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid_request"
    assert set(r.json()["fields"]) <= {f"query.{name}" for name in params}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminStack]:
    """The admin stack with the limiter on: three admin calls a minute per caller, no
    limit per address (every test call comes from the loopback address)."""
    overrides = {
        "ratelimit_enabled": True,
        "ratelimit_limits": {"admin:person": "3/minute", "admin:ip": "off"},
    }
    with admin_stack(Path(tmp_path_factory.mktemp("admin-limited")), overrides=overrides) as s:
        yield s


def test_the_per_person_limit_refuses_an_api_key_over_it(limited: AdminStack) -> None:
    """An API key's fourth call in a minute: 429 with Retry-After and limit admin:person,
    one security.rate_limit naming the key, one failed admin.request with status 429;
    another caller from the same address is not affected."""
    codes = [limited.call("GET", "/admin/jobs").status_code for _ in range(3)]
    over = limited.call("GET", "/admin/jobs")
    assert codes == [200, 200, 200]
    assert over.status_code == 429, over.text
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert over.json()["error"] == "rate_limited"
    assert over.json()["limit"] == "admin:person"
    assert limited.call("GET", "/audit/checkpoints", role="auditor").status_code == 200
    rid = over.headers["x-request-id"]
    (event,) = limited.events(types=("security.rate_limit",), correlation=rid)
    assert event["outcome"] == "failure"
    assert event["details"]["limit"] == "admin:person"
    assert event["details"]["key_kind"] == "person"
    assert event["details"]["route_group"] == "admin"
    assert event["actor"]["type"] == "admin"
    assert event["actor"]["client_id"].startswith("api-key/")
    assert limited.keys["admin"] not in str(event)
    (req,) = limited.events(types=("admin.request",), correlation=rid)
    assert req["outcome"] == "failure"
    assert req["details"]["status"] == 429
    assert req["details"]["auth"] == "api_key"


def test_a_change_over_the_per_person_limit_is_not_applied(limited: AdminStack) -> None:
    """A change over the limit is refused before it runs: the entry is not added, and no
    other call of the same request is recorded."""
    key = holder_key(limited.stack.services, "admin", ADMIN, name="limited-admin")
    auth = {"authorization": f"Bearer {key}"}
    for _ in range(3):
        assert limited.call("GET", "/admin/lists", role=None, headers=auth).status_code == 200
    body = {"list": "deny", "kind": "jti", "value": "over-the-limit", "reason": "test"}
    over = limited.call("POST", "/admin/lists", role=None, headers=auth, json=body)
    assert over.status_code == 429, over.text
    status = limited.call("GET", "/admin/lists/status?jti=over-the-limit", role="security")
    assert status.json()["allowed"] is True
    rid = over.headers["x-request-id"]
    assert [e["type"] for e in limited.events(correlation=rid)] == [
        "security.rate_limit",
        "admin.request",
    ]
    (req,) = limited.events(types=("admin.request",), correlation=rid)
    assert (req["details"]["status"], req["details"]["method"]) == (429, "POST")


def test_the_per_person_limit_counts_a_person_with_a_session(limited: AdminStack) -> None:
    """An administrator using a TARA session is limited per person; the event names the
    person by pseudonym only."""
    import time

    limited.stack.clock.advance(time.time() - limited.stack.clock())  # the mock signs in real time
    with limited.stack.browser(autologin=SECOND_ADMIN) as b:
        assert b.get(limited.url + "/auth/login").status_code == 200
        codes = [b.get(limited.url + "/admin/jobs").status_code for _ in range(3)]
        over = b.get(limited.url + "/admin/jobs")
    assert codes == [200, 200, 200]
    assert over.status_code == 429, over.text
    assert over.json()["limit"] == "admin:person"
    rid = over.headers["x-request-id"]
    (event,) = limited.events(types=("security.rate_limit",), correlation=rid)
    assert event["actor"]["type"] == "admin"
    assert event["actor"]["pseudonym"]
    assert SECOND_ADMIN not in str(event)
    (req,) = limited.events(types=("admin.request",), correlation=rid)
    assert (req["details"]["status"], req["details"]["auth"]) == (429, "session")


def test_the_access_log_names_the_token_an_admin_revoked_as_the_trail_does(
    stack: AdminStack, caplog: pytest.LogCaptureFixture
) -> None:
    """``POST /admin/tokens/{jti}/revoke``: the access log line shows the jti that the
    ``token.revoke`` record of the same request holds as its target, so an operator reads
    which token went and an auditor finds the record by it."""
    stack.stack.clock.advance(time.time() - stack.stack.clock())  # the mock signs in real time
    with stack.stack.browser(autologin=AUDITOR) as b:
        assert b.get(stack.url + "/auth/login").status_code == 200
    tokens = stack.call("GET", "/admin/tokens", params={"subject": "EE" + AUDITOR}).json()
    jti = next(t["jti"] for t in tokens["tokens"] if t["state"] == "active")

    def lines() -> list[str]:  # the server writes its line after the answer has gone
        return [
            m.getMessage()
            for m in list(caplog.records)
            if m.name == "kroonika.web.access" and request_id in m.getMessage()
        ]

    with caplog.at_level("INFO", logger="kroonika.web.access"):
        r = stack.call("POST", f"/admin/tokens/{jti}/revoke")
        request_id = r.headers["x-request-id"]
        wait_until(lambda: bool(lines()))
    assert r.status_code == 200, r.text
    (line,) = lines()
    assert f"POST /admin/tokens/{jti}/revoke 200 " in line
    (revoked,) = stack.events(types=("token.revoke",), correlation=request_id)
    assert revoked["target"] == {"type": "token", "id": jti}
