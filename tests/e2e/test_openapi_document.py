"""The OpenAPI document over real HTTP says what the running service takes and answers:
the token endpoints' bodies and query parameters, the status codes and the shape of
the refusals. Clients generated from the document and the tools that drive it (a
schema fuzzer found all of these) read the document, not the code."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from admin_harness import (
    AUDITOR,
    AdminStack,
    admin_stack,
    assert_documented,
    edit_record,
    person_session,
    read_from,
    resolve,
)
from dashboard_harness import NOBODY, NOBODY_NAMES
from login_harness import basic_auth, register_client

from kroonika.audit import Actor, ActorType, events
from kroonika.auditing import build_audit
from kroonika.tokens import NewClient

SEEN_SECRETS: list[str] = []
#: each token endpoint that reads a body by hand, and the media type it requires
TOKEN_BODIES = {
    "/tokens": "application/json",
    "/tokens/validate": "application/json",
    "/tokens/extend": "application/json",
    "/tokens/bulk/validate": "application/json",
    "/tokens/bulk/revoke": "application/json",
    "/tokens/bulk/issue": "application/json",
    "/introspect": "application/x-www-form-urlencoded",
    "/revoke": "application/x-www-form-urlencoded",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminStack]:
    with admin_stack(
        Path(tmp_path_factory.mktemp("openapi")),
        overrides={"token_client_scrypt_n": 2**10},
    ) as s:
        yield s


@pytest.fixture(scope="module")
def doc(stack: AdminStack) -> dict[str, Any]:
    r = httpx.get(stack.url + "/openapi.json", timeout=30)
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    return body


@pytest.fixture(scope="module")
def client(stack: AdminStack) -> NewClient:
    return register_client(stack.stack, "openapi-doc", SEEN_SECRETS)


def _body_schema(doc: dict[str, Any], path: str) -> tuple[str, dict[str, Any]]:
    content = doc["paths"][path]["post"]["requestBody"]["content"]
    if path == "/tokens":  # also the RFC 6749 token request (form), see the test below
        assert set(content) == {"application/json", "application/x-www-form-urlencoded"}
        content = {"application/json": content["application/json"]}
    assert len(content) == 1, content
    ((media, spec),) = content.items()
    return media, resolve(doc, spec["schema"])


@pytest.mark.parametrize("path", sorted(TOKEN_BODIES))
def test_token_endpoint_documents_its_body(doc: dict[str, Any], path: str) -> None:
    """Each token endpoint documents its request body in the media type it requires."""
    media, schema = _body_schema(doc, path)
    assert media == TOKEN_BODIES[path]
    assert schema["type"] == "object"
    assert set(schema.get("required", ())) <= set(schema["properties"])


def test_a_mint_from_the_documented_body_gets_the_documented_status(
    stack: AdminStack, doc: dict[str, Any], client: NewClient
) -> None:
    """A mint with the documented fields succeeds with the status the document names."""
    _, schema = _body_schema(doc, "/tokens")
    assert {"subject", "audience", "ttl_s", "claims"} <= set(schema["properties"])
    r = httpx.post(
        stack.url + "/tokens",
        json={"subject": "u-1", "audience": "svc-a", "ttl_s": 300},
        headers=basic_auth(client),
        timeout=30,
    )
    assert r.status_code == 201, r.text
    assert "201" in doc["paths"]["/tokens"]["post"]["responses"]


def test_the_token_endpoint_documents_the_client_credentials_grant(
    stack: AdminStack, doc: dict[str, Any], client: NewClient
) -> None:
    """``/tokens`` documents the RFC 6749 token request form and its 200 answer, and a
    request built from that form gets it."""
    post = doc["paths"]["/tokens"]["post"]
    form = resolve(
        doc, post["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    )
    assert form["properties"]["grant_type"]["enum"] == ["client_credentials"]
    r = httpx.post(
        stack.url + "/tokens",
        data={"grant_type": "client_credentials"},
        headers=basic_auth(client),
        timeout=30,
    )
    assert r.status_code == 200, r.text
    schema = resolve(doc, post["responses"]["200"]["content"]["application/json"]["schema"])
    assert set(r.json()) == set(schema["properties"])


def test_form_endpoints_take_the_documented_form(
    stack: AdminStack, doc: dict[str, Any], client: NewClient
) -> None:
    """Introspection and revocation answer 200 to the documented required form fields."""
    minted = httpx.post(
        stack.url + "/tokens", json={"subject": "u-2"}, headers=basic_auth(client), timeout=30
    ).json()["access_token"]
    for path in ("/introspect", "/revoke"):
        _, schema = _body_schema(doc, path)
        form = dict.fromkeys(schema["required"], minted)
        r = httpx.post(stack.url + path, data=form, headers=basic_auth(client), timeout=30)
        assert r.status_code == 200, (path, r.text)


def test_client_refusals_are_documented(
    stack: AdminStack, doc: dict[str, Any], client: NewClient
) -> None:
    """A malformed body (400) and a wrong secret (401) are documented OAuth errors."""
    bad = httpx.post(
        stack.url + "/tokens/validate", json={"token": 1}, headers=basic_auth(client), timeout=30
    )
    assert bad.status_code == 400
    assert_documented(doc, "POST", "/tokens/validate", bad)
    wrong = {"authorization": basic_auth(client)["authorization"][:-4] + "AAAA"}
    unknown = httpx.post(stack.url + "/tokens", json={}, headers=wrong, timeout=30)
    assert unknown.status_code == 401
    assert_documented(doc, "POST", "/tokens", unknown)


def test_my_tokens_documents_the_filters_it_reads(stack: AdminStack, doc: dict[str, Any]) -> None:
    """``/tokens/mine`` documents its query filters; every documented state and type is
    accepted and a value outside them is refused."""
    params = {p["name"]: p["schema"] for p in doc["paths"]["/tokens/mine"]["get"]["parameters"]}
    assert {"limit", "cursor", "state", "type", "client_id", "issued_after"} <= set(params)
    with stack.stack.browser() as b:
        assert b.get(stack.url + "/auth/login").status_code == 200
        for name in ("state", "type"):
            for value in params[name]["enum"]:
                r = b.get(stack.url + "/tokens/mine", params={name: value})
                assert r.status_code == 200, (name, value, r.text)
            assert b.get(stack.url + "/tokens/mine", params={name: "x"}).status_code == 400


def test_a_malformed_admin_body_is_the_documented_422(
    stack: AdminStack, doc: dict[str, Any]
) -> None:
    """The 422 of a malformed body has the shape the document gives it (no ``detail``
    list of FastAPI validation errors: ``fields`` says where)."""
    r = stack.call("POST", "/admin/clients", json={"name": ""})
    assert r.status_code == 422
    assert r.json()["fields"] == ["body.name"]
    assert_documented(doc, "POST", "/admin/clients", r)
    assert "HTTPValidationError" not in doc["components"]["schemas"]


@pytest.mark.parametrize(
    ("method", "path", "template", "body", "role", "status"),
    [
        ("POST", "/admin/api-keys", "/admin/api-keys", {"name": "k", "roles": ["x"]}, "admin", 400),
        ("GET", "/admin/clients", "/admin/clients", None, None, 401),
        ("GET", "/admin/clients", "/admin/clients", None, "auditor", 403),
        ("DELETE", "/admin/api-keys/none", "/admin/api-keys/{key_id}", None, "admin", 404),
        ("GET", "/audit/events/none", "/audit/events/{event_id}", None, None, 401),
    ],
)
def test_admin_refusals_are_documented(
    stack: AdminStack,
    doc: dict[str, Any],
    method: str,
    path: str,
    template: str,
    body: dict[str, Any] | None,
    role: str | None,
    status: int,
) -> None:
    """The admin API's refusals are documented with the body they have."""
    r = stack.call(method, path, role=role, json=body)
    assert r.status_code == status, r.text
    assert_documented(doc, method, template, r)


def test_metrics_documents_its_text(stack: AdminStack, doc: dict[str, Any]) -> None:
    """``/metrics`` answers Prometheus text, and the document says text, not JSON."""
    r = httpx.get(stack.url + "/metrics", timeout=30)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert list(doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]


def test_documented_nulls_are_taken_as_absent(
    stack: AdminStack, doc: dict[str, Any], client: NewClient
) -> None:
    """The optional mint fields are documented as nullable, and a mint with each of them
    null succeeds as if it were absent."""
    _, schema = _body_schema(doc, "/tokens")
    for name in ("subject", "audience", "ttl_s", "claims"):
        kinds = [s.get("type") for s in schema["properties"][name]["anyOf"]]
        assert "null" in kinds, (name, kinds)
        r = httpx.post(
            stack.url + "/tokens", json={name: None}, headers=basic_auth(client), timeout=30
        )
        assert r.status_code == 201, (name, r.text)


@pytest.mark.parametrize(("method", "path"), [("GET", "/tokens/mine"), ("POST", "/tokens/session")])
def test_bearer_and_session_refusals_are_documented(
    stack: AdminStack, doc: dict[str, Any], method: str, path: str
) -> None:
    """Without a bearer token or a session the answer is a documented 401."""
    r = httpx.request(method, stack.url + path, timeout=30)
    assert r.status_code == 401, r.text
    assert_documented(doc, method, path, r)


@pytest.mark.parametrize(
    ("method", "path", "template", "status"),
    [
        ("GET", "/auth/session", "/auth/session", 401),
        ("POST", "/auth/session/extend", "/auth/session/extend", 401),
        ("GET", "/auth/sessions", "/auth/sessions", 401),
        ("DELETE", "/auth/sessions", "/auth/sessions", 401),
        ("DELETE", "/auth/sessions/s_none", "/auth/sessions/{ref}", 401),
        ("POST", "/auth/logout", "/auth/logout", 401),
        ("GET", "/auth/login?acr=bogus", "/auth/login", 400),
        ("GET", "/auth/login?return_to=https://evil.example/", "/auth/login", 400),
        ("GET", "/auth/callback", "/auth/callback", 400),
        ("GET", "/auth/callback?state=x&code=y", "/auth/callback", 400),
    ],
)
def test_browser_route_refusals_are_documented(
    stack: AdminStack, doc: dict[str, Any], method: str, path: str, template: str, status: int
) -> None:
    """The ``/auth`` routes documented only their 200 (and a 422 they never answer):
    a schema fuzzer called every 401, 400 and 302 of theirs undocumented."""
    r = httpx.request(method, stack.url + path, timeout=30)
    assert r.status_code == status, r.text
    assert_documented(doc, method, template, r)


def test_a_login_start_documents_its_redirect(stack: AdminStack, doc: dict[str, Any]) -> None:
    r = httpx.get(stack.url + "/auth/login", timeout=30)
    assert r.status_code == 302
    assert "Location" in doc["paths"]["/auth/login"]["get"]["responses"]["302"]["headers"]
    assert "429" in doc["paths"]["/auth/login"]["get"]["responses"]
    assert "429" not in doc["paths"]["/auth/session"]["get"]["responses"]


def _parameters(doc: dict[str, Any], path: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in doc["paths"][path]["get"].get("parameters", [])}


def test_a_login_start_documents_the_values_it_takes(
    stack: AdminStack, doc: dict[str, Any]
) -> None:
    """A schema fuzzer sent ``acr=`` (valid for the plain string the document said) and
    got a 400: the document names the values and limits the handler enforces, and each
    documented value starts a login."""
    login = _parameters(doc, "/auth/login")
    assert login["acr"]["schema"]["enum"] == ["low", "substantial", "high"]
    assert login["method"]["schema"]["items"]["enum"] == ["idcard", "mid", "smartid", "eidas"]
    assert login["ui_locales"]["schema"]["maxLength"] == 64
    assert login["return_to"]["schema"]["maxLength"] == 1024
    with httpx.Client(timeout=30) as b:
        for acr in login["acr"]["schema"]["enum"]:
            assert b.get(stack.url + "/auth/login", params={"acr": acr}).status_code == 302
        for method in login["method"]["schema"]["items"]["enum"]:
            assert b.get(stack.url + "/auth/login", params={"method": method}).status_code == 302
        assert b.get(stack.url + "/auth/login", params={"ui_locales": "x" * 64}).status_code == 302
        assert b.get(stack.url + "/auth/login", params={"ui_locales": "x" * 65}).status_code == 400


def test_the_callback_documents_what_tara_sends_it(stack: AdminStack, doc: dict[str, Any]) -> None:
    """The callback read its parameters by hand, so the document declared none."""
    callback = _parameters(doc, "/auth/callback")
    assert set(callback) == {"state", "code", "error", "error_description"}
    assert callback["state"]["required"] is True
    assert callback["state"]["schema"]["maxLength"] == 256
    assert callback["code"]["schema"]["maxLength"] == 2048
    assert not any(p.get("required") for n, p in callback.items() if n != "state")
    with httpx.Client(timeout=30) as b:
        r = b.get(stack.url + "/auth/callback", params={"state": "s" * 257, "code": "c"})
    assert (r.status_code, r.json()["reason"]) == (400, "state_invalid")


def _matches(template: str, path: str) -> bool:
    a, b = template.strip("/").split("/"), path.strip("/").split("/")
    return len(a) == len(b) and all(x == y or x.startswith("{") for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    "path",
    [
        "/admin/clients",
        "/admin/config",
        "/admin/lists/export",
        "/admin/lists/al_none",
        "/auth/sessions",
        "/audit/events",
        "/audit/events/ev_none",
    ],
)
@pytest.mark.parametrize("method", ["PUT", "OPTIONS"])
def test_a_405_allows_every_method_of_the_resource(
    stack: AdminStack, doc: dict[str, Any], path: str, method: str
) -> None:
    """A 405 names in ``Allow`` every method the path is routed for (RFC 9110 section
    15.5.6), as the document lists them: it named those of the first route matching the
    path only (``PUT /admin/clients``: ``GET``, not ``POST``; ``/admin/lists/export``:
    ``PATCH``, not ``GET``). The trail's refusals of writes (``PUT /audit/events``, a
    405 of its own) are not methods the resource supports: an ``OPTIONS`` there named
    ``DELETE, PATCH, POST, PUT``."""
    r = httpx.request(method, stack.url + path, timeout=30)
    assert r.status_code == 405
    allowed = {m.strip() for m in r.headers["allow"].split(",")}
    documented = {m.upper() for t, ops in doc["paths"].items() if _matches(t, path) for m in ops}
    assert allowed - {"HEAD"} == documented


def test_list_import_and_export_document_both_formats(
    stack: AdminStack, doc: dict[str, Any]
) -> None:
    """The list import documents its CSV and JSON bodies, the export both answers; a
    CSV export imports again as documented."""
    imp = doc["paths"]["/admin/lists/import"]["post"]["requestBody"]["content"]
    assert set(imp) == {"text/csv", "application/json"}
    exp = doc["paths"]["/admin/lists/export"]["get"]["responses"]["200"]["content"]
    assert set(exp) == {"text/csv", "application/json"}
    added = stack.call(
        "POST",
        "/admin/lists",
        json={"list": "deny", "kind": "jti", "value": "doc-jti", "reason": "doc test"},
    )
    assert added.status_code == 201, added.text
    csv = stack.call("GET", "/admin/lists/export?format=csv")
    assert csv.headers["content-type"].startswith("text/csv")
    assert "doc-jti" in csv.text
    back = stack.call(
        "POST",
        "/admin/lists/import?format=csv",
        content=csv.content,
        headers={"content-type": "text/csv"},
    )
    assert back.status_code == 200, back.text


@pytest.mark.parametrize(
    ("fmt", "media"), [("json", "application/json"), ("jsonl", "application/x-ndjson")]
)
def test_the_trail_search_documents_both_of_its_answers(
    stack: AdminStack, doc: dict[str, Any], fmt: str, media: str
) -> None:
    """``GET /audit/events`` answers a JSON page or, with ``format=jsonl``, NDJSON lines;
    the schema fuzzer got NDJSON that the document did not declare."""
    r = stack.call("GET", f"/audit/events?format={fmt}", role="auditor")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].split(";")[0] == media
    assert media in doc["paths"]["/audit/events"]["get"]["responses"]["200"]["content"]


def _store_of_its_own(stack: AdminStack, url: str, *, changed: bool) -> str:
    """A store of its own, signed with the service's keys, and the id of its record 2,
    which has its proof, or none when ``changed`` (changed in the database after it was
    signed: it no longer proves against the signed root)."""
    settings = stack.stack.settings.model_copy(update={"audit_store_url": url})
    comps = build_audit(settings, stream="documented")
    try:
        comps.trail.emit_many_sync([events.auth_login(actor=Actor(ActorType.USER))] * 3)
    finally:
        comps.store.close()
    if changed:
        edit_record(url, 2)
    page = read_from(stack, url, "GET", "/audit/events").json()["events"]
    return str(next(e["id"] for e in page if e["seq"] == 2))


def test_an_event_and_its_proof_are_answered_as_documented(
    stack: AdminStack, doc: dict[str, Any], tmp_path: Path
) -> None:
    """``GET /audit/events/{id}`` declares the schema of its answer (it had none, a bare
    object), and the real answer validates against it: a record with its inclusion
    proof, and one that cannot be proved, with ``proof`` null and why."""
    declared = doc["paths"]["/audit/events/{event_id}"]["get"]["responses"]["200"]["content"]
    schema = resolve(doc, declared["application/json"]["schema"])
    assert {"event", "proof", "proof_unavailable"} <= set(schema["properties"])
    # the ``$ref``s in the schema point into the document's components
    validator = jsonschema_rs.validator_for({**schema, "components": doc["components"]})
    stores = {changed: f"sqlite:///{tmp_path / f'{changed}.db'}" for changed in (False, True)}
    ids = {
        changed: _store_of_its_own(stack, url, changed=changed) for changed, url in stores.items()
    }
    answers: dict[bool, Any] = {}
    for changed, url in stores.items():
        r = read_from(stack, url, "GET", f"/audit/events/{ids[changed]}")
        assert r.status_code == 200, r.text
        answers[changed] = r.json()
        errors = [e.message for e in validator.iter_errors(r.json())]
        assert not errors, (r.json(), errors)
    assert answers[False]["proof"]["path"] == answers[False]["proof"]["proof"]
    assert answers[True]["proof"] is None
    assert answers[True]["proof_unavailable"]
    # the schema does say something: an answer without its event or with a proof of
    # another shape is refused by it
    assert not validator.is_valid({"proof": None})
    assert not validator.is_valid({**answers[False], "proof": {"proof": "ab"}})


def test_changes_that_wait_for_a_second_administrator_document_their_202(
    stack: AdminStack, doc: dict[str, Any]
) -> None:
    """A weakening change of the configuration or of a client is not applied but asked
    for (202 with the request, decision 0017): the schema fuzzer, given a real client,
    got a 202 that neither operation declared."""
    victim = register_client(stack.stack, "openapi-four-eyes", SEEN_SECRETS)
    client_id = victim.client.client_id
    idle = stack.call("GET", "/admin/config").json()["config"]["session.idle_s"]["value"]
    calls = [
        ("/admin/config", "/admin/config", {"changes": {"session.idle_s": idle + 60}}),
        (f"/admin/clients/{client_id}", "/admin/clients/{client_id}", {"max_ttl_s": 7200}),
    ]
    for path, template, body in calls:
        r = stack.call("PATCH", path, json=body)
        assert r.status_code == 202, (path, r.text)
        assert "request" in r.json()
        assert "202" in doc["paths"][template]["patch"]["responses"], template


@pytest.mark.parametrize(
    "path",
    ["/.well-known/jwks.json", "/.well-known/openid-configuration"],
)
def test_a_conditional_well_known_read_documents_its_304(
    stack: AdminStack, doc: dict[str, Any], path: str
) -> None:
    """The well-known documents answer 304 to an ``If-None-Match`` naming their ETag (a
    relying service's cache revalidating): the document declared neither the header nor
    the 304, nor the ETag and Cache-Control of the 200."""
    first = httpx.get(stack.url + path, timeout=30)
    assert first.status_code == 200
    again = httpx.get(
        stack.url + path, headers={"if-none-match": first.headers["etag"]}, timeout=30
    )
    assert again.status_code == 304
    op = doc["paths"][path]["get"]
    assert "304" in op["responses"]
    assert {"ETag", "Cache-Control"} <= set(op["responses"]["200"]["headers"])
    headers = {p["name"].lower() for p in op.get("parameters", []) if p["in"] == "header"}
    assert "if-none-match" in headers


#: how each refusal of the dashboard is provoked: (credentials, headers, query, status)
DASHBOARD = "/admin/dashboard"
PAGE_REFUSALS = {
    "personal_code_in_justification": (
        "auditor",
        {"x-justification": "INC-1 about 38001085718"},
        {},
        400,
    ),
    "not_logged_in": (None, {}, {}, 401),
    "no_role": (NOBODY, {}, {}, 403),
    "from_another_site": (AUDITOR, {"sec-fetch-site": "cross-site"}, {}, 403),
    "unprintable_query": ("auditor", {}, {"x": "\x00"}, 422),
}


@pytest.mark.parametrize("case", sorted(PAGE_REFUSALS))
def test_the_dashboard_documents_its_refusals_as_the_pages_they_are(
    stack: AdminStack, doc: dict[str, Any], case: str
) -> None:
    """The dashboard refuses with HTML pages (decision 0037) while the document
    declared the admin API's JSON error for each of them: a client built from it would
    parse a page as JSON. Each refusal is documented as ``text/html``."""
    who, headers, params, status = PAGE_REFUSALS[case]
    if who in (NOBODY, AUDITOR):
        names = NOBODY_NAMES if who == NOBODY else {}
        with person_session(stack, who, **names) as (browser, _):
            r = browser.get(stack.url + DASHBOARD, headers=headers, params=params)
    else:
        r = stack.call("GET", DASHBOARD, role=who, why=None, headers=headers, params=params)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert_documented(doc, "GET", DASHBOARD, r)


def test_the_dashboard_documents_only_pages(doc: dict[str, Any]) -> None:
    """Every answer the dashboard declares is a page, and no status it never answers
    (no id to miss, nothing to conflict with) is declared."""
    responses = doc["paths"][DASHBOARD]["get"]["responses"]
    assert {s: list(r["content"]) for s, r in responses.items()} == {
        s: ["text/html"] for s in ("200", "400", "401", "403", "422", "429", "503")
    }
    assert "Retry-After" in responses["429"]["headers"]
    assert "Retry-After" in responses["503"]["headers"]


def test_a_login_back_from_another_site_documents_its_page(
    stack: AdminStack, doc: dict[str, Any]
) -> None:
    """The callback answers a page that moves on by itself (200, HTML) when a login
    started for an admin or audit page comes back from another site (decision 0037):
    the document declared a JSON 200 the callback never answers."""
    with stack.stack.browser() as browser:
        start = browser.get(
            stack.url + "/auth/login",
            params={"return_to": DASHBOARD},
            follow_redirects=False,
        )
        authorize = httpx.URL(start.headers["location"]).copy_merge_params({"autologin": AUDITOR})
        back = httpx.get(str(authorize), timeout=30)
        hop = browser.get(
            back.headers["location"],
            headers={"sec-fetch-site": "cross-site"},
            follow_redirects=False,
        )
    assert hop.status_code == 200, hop.text
    assert '<meta http-equiv="refresh"' in hop.text
    assert_documented(doc, "GET", "/auth/callback", hop)
    assert list(doc["paths"]["/auth/callback"]["get"]["responses"]["200"]["content"]) == [
        "text/html"
    ]
