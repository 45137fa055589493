"""The login stack with administration: people with roles, an API key per role, and
helpers to call the admin API over real HTTP with or without a justification."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from login_harness import Stack, running_stack
from sqlalchemy import text

from kroonika.admin import ApiKeys, Principal, RoleStore
from kroonika.audit import SqlAuditStore
from kroonika.audit.store._types import decode_records, encode_records
from kroonika.web import Services

ADMIN = "38001085718"
SECOND_ADMIN = "60001019906"
AUDITOR = "60001017716"
SECURITY = "40404040009"
PRIVACY = "37101010021"
PEOPLE = {
    ADMIN: ["admin"],
    SECOND_ADMIN: ["admin"],
    AUDITOR: ["auditor"],
    SECURITY: ["security"],
    PRIVACY: ["privacy"],
}
#: who holds the role an API key of the harness is made with (a key never has more
#: roles than its creator holds now)
HOLDERS = {"admin": ADMIN, "auditor": AUDITOR, "security": SECURITY, "privacy": PRIVACY}
WHY = "INC-1234 checking the admin API in a test"


@dataclass
class AdminStack:
    stack: Stack
    keys: dict[str, str]  # role -> bearer API key

    @property
    def url(self) -> str:
        return self.stack.service

    def call(
        self,
        method: str,
        path: str,
        *,
        role: str | None = "admin",
        why: str | None = WHY,
        **kw: Any,
    ) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if role is not None:
            headers["authorization"] = f"Bearer {self.keys[role]}"
        if why is not None:
            headers["x-justification"] = why
        return httpx.request(method, self.url + path, headers=headers, timeout=60, **kw)

    def events(self, **query: Any) -> list[dict[str, Any]]:
        return self.stack.events(**query)


@contextmanager
def admin_stack(
    tmp_path: Path, *, overrides: dict[str, Any] | None = None, **kw: Any
) -> Iterator[AdminStack]:
    values: dict[str, Any] = {
        "admin_bootstrap": PEOPLE,
        "jobs_enabled": False,
        "ratelimit_enabled": False,  # the admin:ip limit is tested with the limiter
        **(overrides or {}),
    }
    with running_stack(tmp_path, settings_overrides=values, **kw) as stack:
        keys = {role: holder_key(stack.services, role, HOLDERS[role]) for role in HOLDERS}
        yield AdminStack(stack, keys)


@contextmanager
def backend_stack(tmp_path: Path, backend: str, request: Any) -> Iterator[AdminStack]:
    """:func:`admin_stack` on SQLite (``backend`` ``sqlite``) or with the business and
    audit tables in one fresh PostgreSQL database (``request`` gives the fixture)."""
    if backend == "sqlite":
        with admin_stack(tmp_path) as s:
            yield s
        return
    url = request.getfixturevalue("fresh_postgres_url")  # business and audit tables in one
    with admin_stack(tmp_path, database_url=url, overrides={"audit_store_url": url}) as s:
        yield s


def person_label(services: Services, code: str) -> str:
    """How the admin API names the person with this personal code (``admin:<pseudonym>``)."""
    subject = "EE" + code
    pseudonym = services.audit.fingerprinter.pseudonym(subject)
    return Principal("session", (), subject=subject, pseudonym=pseudonym).label


def holder_key(services: Services, role: str, code: str, *, name: str | None = None) -> str:
    """An API key with ``role`` made by the person ``code``, who is given the role first
    (as ``kroonika admins add`` would)."""
    RoleStore(services.engine, clock=services.clock).grant(code, role, by="test")
    _, value = ApiKeys(services.engine, clock=services.clock).create(
        name or f"test-{role}", [role], by=person_label(services, code), ttl_s=3600
    )
    return value


def refuse_events(monkeypatch: Any, stack: AdminStack, event_type: str) -> None:
    """The trail refuses events of ``event_type`` (AuditUnavailable), alone or in a batch,
    until ``monkeypatch.undo()``; every other event is stored as usual."""
    from kroonika.audit import AuditEvent, AuditUnavailable

    trail = stack.stack.services.audit.trail
    original, original_many = trail.emit, trail.emit_many

    async def refuse(event: AuditEvent) -> Any:
        if event.type == event_type:
            raise AuditUnavailable("store down")
        return await original(event)

    async def refuse_many(events: Any) -> Any:
        batch = list(events)
        if any(e.type == event_type for e in batch):
            raise AuditUnavailable("store down")
        return await original_many(batch)

    monkeypatch.setattr(trail, "emit", refuse)
    monkeypatch.setattr(trail, "emit_many", refuse_many)


@contextmanager
def person_session(
    stack: AdminStack, code: str, **extra: str
) -> Iterator[tuple[httpx.Client, str]]:
    """A browser logged in through the TARA mock as ``code`` (``extra``: more autologin
    parameters, e.g. the names of a code that is not a test identity) and its CSRF
    token (the service's manual clock is brought up to the mock's real one first)."""
    import time

    clock = stack.stack.clock
    clock.advance(max(0.0, time.time() - clock()))
    with stack.stack.browser(autologin=code, **extra) as b:
        assert b.get(stack.url + "/auth/login").status_code == 200
        yield b, b.get(stack.url + "/auth/session").json()["csrf_token"]


def as_person(
    stack: AdminStack, code: str, method: str, path: str, *, why: str = WHY, **kw: Any
) -> httpx.Response:
    """One admin call with a TARA session of ``code``, its CSRF token and ``why``."""
    with person_session(stack, code) as (b, csrf):
        headers = {"x-justification": why, "x-csrf-token": csrf}
        return b.request(method, stack.url + path, headers=headers, **kw)


def openapi(stack: AdminStack) -> dict[str, Any]:
    """The running service's ``/openapi.json``."""
    r = httpx.get(stack.url + "/openapi.json", timeout=30)
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    return doc


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    found: dict[str, Any] = doc
    for part in ref.removeprefix("#/").split("/"):
        found = found[part]
    return found


def assert_documented(doc: dict[str, Any], method: str, path: str, r: httpx.Response) -> None:
    """``r`` is an answer the document declares for the operation ``method path`` (a
    template): its status, its media type and, for a JSON answer with a documented
    schema of an object, the required keys and no key the schema does not name."""
    responses = doc["paths"][path][method.lower()]["responses"]
    assert str(r.status_code) in responses, (r.status_code, sorted(responses))
    content = responses[str(r.status_code)].get("content", {})
    media = r.headers.get("content-type", "").split(";")[0].strip()
    assert media in content, (r.status_code, media, sorted(content))
    schema = resolve(doc, content[media].get("schema", {}))
    if media != "application/json" or "properties" not in schema:
        return
    body = r.json()
    assert set(schema.get("required", ())) <= set(body), (schema, body)
    assert set(body) <= set(schema["properties"]), (schema, body)


def edit_record(url: str, seq: int) -> None:
    """What someone with write access to the database can do: triggers dropped, one
    record's outcome changed."""
    store = SqlAuditStore(url)
    try:
        with store.engine.begin() as conn:
            for name in ("audit_blocks_no_update", "audit_blocks_no_delete"):
                conn.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
            row = conn.execute(
                text("SELECT id, data FROM audit_blocks WHERE first_seq <= :q AND last_seq >= :q"),
                {"q": seq},
            ).one()
            records = []
            for body in decode_records(bytes(row.data)):
                doc = orjson.loads(body)
                if doc["seq"] == seq:
                    doc["outcome"] = "failure"
                    body = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
                records.append(body)
            conn.execute(
                text("UPDATE audit_blocks SET data = :d WHERE id = :i"),
                {"d": encode_records(records), "i": row.id},
            )
    finally:
        store.close()


def read_from(stack: AdminStack, url: str, method: str, path: str) -> httpx.Response:
    """An auditor's call of the read API with the store at ``url`` as what it reads."""
    settings = stack.stack.settings
    own = settings.audit_store_url
    settings.audit_store_url = url  # what the read API opens; the writer keeps its store
    try:
        return stack.call(method, path, role="auditor", why=None)
    finally:
        settings.audit_store_url = own


REQUESTS = "/admin/config/requests"


def decide(
    stack: AdminStack, code: str, request_id: str, *, approve: bool = True, path: str = REQUESTS
) -> httpx.Response:
    """``code``'s decision on the request ``request_id`` (under ``path``), in a TARA session."""
    return as_person(stack, code, "POST", f"{path}/{request_id}", json={"approve": approve})


def approve_after(
    stack: AdminStack, code: str, request_id: str, seconds: float, *, path: str = REQUESTS
) -> httpx.Response:
    """``code`` logs in, ``seconds`` pass on the service's clock, then they approve."""
    with person_session(stack, code) as (b, csrf):
        stack.stack.clock.advance(seconds)
        return b.post(
            f"{stack.url}{path}/{request_id}",
            json={"approve": True},
            headers={"x-justification": WHY, "x-csrf-token": csrf},
        )


def config_changes(stack: AdminStack, request_id: str) -> list[dict[str, Any]]:
    """The ``config.change`` events of one call (its ``x-request-id``)."""
    return stack.events(types=("config.change",), correlation=request_id)


def key_label(stack: AdminStack, role: str = "admin") -> str:
    """How the admin API names the harness's API key of ``role``."""
    return "api-key/" + stack.keys[role].split("_")[1]
