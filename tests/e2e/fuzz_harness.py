"""Schemathesis against a running service, operation by operation, from the service's own
``/openapi.json``: each operation is called as the caller it is meant for (an admin or
audit route with an API key of its first role and a justification, a token endpoint
with a registered client's HTTP Basic credentials, a session route with a fresh TARA
session and its CSRF token), and every answer is checked against the document.

Generation is Hypothesis's, derandomized (the same cases on every run) with a bounded
number of examples per operation; a failing check is collected, not raised, so one run
reports every operation that misbehaves (decision 0024)."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import schemathesis
from admin_harness import AUDITOR, WHY, AdminStack, person_session
from dashboard_harness import NOBODY, NOBODY_NAMES
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from login_harness import basic_auth, register_client
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from kroonika.tokens import NewClient

#: what every answer is held to (decision 0024, 2026-11-28)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
#: the operations that act for a logged-in person (a session cookie and, to change
#: something, its CSRF token)
SESSION_PATHS = (
    "/auth/session",
    "/auth/sessions",
    "/auth/logout",
    "/tokens/mine",
    "/tokens/session",
)
#: the operations a registered client calls with HTTP Basic
CLIENT_PATHS = ("/tokens", "/introspect", "/revoke")
SEED = 20261128
#: callers an operation refuses, for the operations that answer pages: a page's
#: refusals are pages too, which the document must say (decision 0037, review dash):
#: no credentials, a person without a role, a person with one on a link from another site
REFUSED = ("nobody", "no_role", "cross_site")
#: text that only a stack trace carries
TRACEBACK_MARKS = ("Traceback (most recent call last)", 'File "/', "  File ")


@dataclass(frozen=True)
class Finding:
    """One operation's answer that broke a check (the first of its kind is kept)."""

    operation: str
    mode: str
    check: str
    status: int
    message: str
    reproduce: str  # a curl command line, secrets blanked


@dataclass
class Run:
    findings: dict[tuple[str, str, str, int], Finding] = field(default_factory=dict)
    calls: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    #: (operation, mode) -> status -> how many answers
    by_operation: dict[tuple[str, str], dict[int, int]] = field(default_factory=dict)
    #: each call of an admin or audit route: (x-request-id, status, route template)
    admin_calls: list[tuple[str, int, str]] = field(default_factory=list)
    #: operation -> seconds spent on it in all (generation and calls)
    spent: dict[str, float] = field(default_factory=dict)
    #: the operations that were called at least once
    called: set[str] = field(default_factory=set)

    def add(self, finding: Finding) -> None:
        self.findings.setdefault(
            (finding.operation, finding.mode, finding.check, finding.status), finding
        )


@dataclass
class Caller:
    """Who calls: the stack's API keys, a registered client, the secrets to blank."""

    stack: AdminStack
    client: NewClient
    #: None: each operation is called as the caller it is meant for; else one of
    #: :data:`REFUSED`, for every operation
    refused: str | None = None

    def secrets(self) -> list[str]:
        return [self.client.secret, *self.stack.keys.values()]

    @contextmanager
    def credentials(self, path: str, roles: list[str] | None) -> Iterator[dict[str, Any]]:
        """``requests`` keyword arguments (headers, cookies) for an operation at ``path``
        with ``roles`` (its ``x-roles``)."""
        if self.refused == "nobody":
            yield {}
        elif self.refused is not None:
            who, names = (NOBODY, NOBODY_NAMES) if self.refused == "no_role" else (AUDITOR, {})
            with person_session(self.stack, who, **names) as (browser, csrf):
                cookies = {c.name: c.value for c in browser.cookies.jar if c.value is not None}
                headers = {"x-csrf-token": csrf}
                if self.refused == "cross_site":
                    headers["sec-fetch-site"] = "cross-site"
                yield {"headers": headers, "cookies": cookies}
        elif roles:
            yield {
                "headers": {
                    "authorization": f"Bearer {self.stack.keys[roles[0]]}",
                    "x-justification": WHY,
                }
            }
        elif path.startswith(SESSION_PATHS):
            # a fresh session for each operation: the fuzzer may log it out or end it
            with person_session(self.stack, "38001085718") as (browser, csrf):
                cookies = {c.name: c.value for c in browser.cookies.jar if c.value is not None}
                yield {"headers": {"x-csrf-token": csrf}, "cookies": cookies}
        elif path.startswith(CLIENT_PATHS):
            yield {"headers": basic_auth(self.client)}
        else:
            yield {}


def known_values(caller: Caller) -> dict[str, str]:
    """Real values for the path parameters (a client of its own, a token's jti, a list
    entry, a job, an event, a session): with them a call reaches past the 404 of an
    unknown id to the handler's own checks."""
    stack = caller.stack
    victim = register_client(stack.stack, "fuzz-target", [])
    minted = httpx.post(
        stack.url + "/tokens",
        json={"subject": "u-fuzz", "audience": "svc-a"},
        headers=basic_auth(caller.client),
        timeout=30,
    )
    token = minted.raise_for_status().json()["access_token"]
    entry = stack.call(
        "POST",
        "/admin/lists",
        json={"list": "deny", "kind": "jti", "value": "fuzz-jti", "reason": "fuzz target"},
    )
    event = stack.call("GET", "/audit/events?limit=1", role="auditor")
    with person_session(stack, "60001017716"):  # a session that is not the fuzzer's own
        sessions = stack.call("GET", "/admin/sessions").raise_for_status().json()["sessions"]
    return {
        "client_id": victim.client.client_id,
        "jti": jwt.decode(token, options={"verify_signature": False})["jti"],
        "entry_id": entry.raise_for_status().json()["id"],
        "job": stack.call("GET", "/admin/jobs").raise_for_status().json()["jobs"][0]["job"],
        "event_id": event.raise_for_status().json()["events"][0]["id"],
        "ref": sessions[0]["ref"],
    }


def load(url: str) -> Any:
    """The service's document as schemathesis reads it (no config file discovered)."""
    return schemathesis.openapi.from_url(
        url + "/openapi.json", config=schemathesis.Config(), timeout=30
    )


def page_operations(url: str) -> set[str]:
    """The labels (``GET /admin/dashboard``) of the operations that answer a page (a
    documented ``text/html`` answer)."""
    doc = httpx.get(url + "/openapi.json", timeout=30).raise_for_status().json()
    return {
        f"{method.upper()} {path}"
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if any("text/html" in r.get("content", {}) for r in op["responses"].values())
    }


def _blank(text: str, secrets: list[str]) -> str:
    for value in secrets:
        text = text.replace(value, "<secret>")
        text = text.replace(base64.b64encode(value.encode()).decode(), "<secret>")
    return text


def fuzz(
    url: str,
    caller: Caller,
    *,
    examples: int,
    modes: tuple[GenerationMode, ...] = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
    checks: list[Any] | None = None,
    select: Callable[[str], bool] = lambda label: True,
    known: dict[str, str] | None = None,
    run: Run | None = None,
) -> Run:
    """Every operation of the service at ``url`` (those whose label ``select`` takes) in
    each of ``modes``, ``examples`` cases each, derandomized, path parameters named in
    ``known`` fixed to their value; the findings of the run (added to ``run``)."""
    schema = load(url)
    run = run if run is not None else Run()
    secrets = caller.secrets()
    for result in schema.get_all_operations():
        operation = result.ok()
        if not select(operation.label):
            continue
        roles = operation.definition.raw.get("x-roles")
        for mode in modes:
            if mode is GenerationMode.NEGATIVE and not _negatable(operation.definition.raw):
                continue
            started = time.monotonic()
            with caller.credentials(operation.path, roles) as kwargs:
                _fuzz_operation(
                    operation,
                    mode,
                    url,
                    kwargs,
                    run,
                    secrets,
                    examples,
                    checks or CHECKS,
                    bool(roles),
                    _path_values(operation.definition.raw, known or {}),
                )
            took = time.monotonic() - started
            run.spent[operation.label] = run.spent.get(operation.label, 0.0) + took
    return run


def _fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    url: str,
    kwargs: dict[str, Any],
    run: Run,
    secrets: list[str],
    examples: int,
    checks: list[Any],
    roles: bool,
    fixed: dict[str, str],
) -> None:
    made: set[str] = set()

    @seed(SEED)
    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=fixed or None))
    def one(case: Any) -> None:
        sent = repr(
            (
                case.path_parameters,
                case.query,
                case.headers,
                case.cookies,
                case.body,
                case.media_type,
            )
        )
        if sent in made:  # an operation with little to vary: the same call again says nothing
            return
        made.add(sent)
        response = case.call(base_url=url, timeout=60, allow_redirects=False, **kwargs)
        run.calls += 1
        run.called.add(operation.label)
        if roles:
            request_id = response.headers.get("x-request-id", [""])[0]
            run.admin_calls.append((request_id, response.status_code, operation.path))
        run.statuses[response.status_code] = run.statuses.get(response.status_code, 0) + 1
        seen = run.by_operation.setdefault((operation.label, mode.value), {})
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        found: list[tuple[str, str]] = []
        try:
            case.validate_response(response, checks=checks, headers=kwargs.get("headers"))
        except FailureGroup as group:
            found = [(_check_name(f), f.title + ": " + f.message) for f in group.exceptions]
        except Failure as failure:
            found = [(_check_name(failure), failure.title + ": " + failure.message)]
        if any(mark in response.text for mark in TRACEBACK_MARKS):
            found.append(("traceback_in_answer", response.text[:2000]))
        for check, message in found:
            run.add(
                Finding(
                    operation=operation.label,
                    mode=mode.value,
                    check=check,
                    status=response.status_code,
                    message=_blank(message, secrets)[:3000],
                    reproduce=_blank(case.as_curl_command(headers=kwargs.get("headers")), secrets),
                )
            )

    try:
        one()
    except Unsatisfiable:
        # nothing to negate: an operation without parameters or a body
        if mode is not GenerationMode.NEGATIVE:
            raise


def _negatable(definition: dict[str, Any]) -> bool:
    """Whether an operation has an input that can be invalid: a body, a query or header
    parameter, or a path parameter with more to it than being a string (any string is a
    valid plain path parameter, so a search for an invalid one only spends time)."""
    if definition.get("requestBody"):
        return True
    return any(
        p.get("in") != "path" or set(p.get("schema", {})) - {"type", "title"}
        for p in definition.get("parameters", [])
    )


def _path_values(definition: dict[str, Any], known: dict[str, str]) -> dict[str, str]:
    """The path parameters of an operation that ``known`` names (a real client id, jti
    ...): a call with them reaches past the 404 of an unknown one."""
    return {
        p["name"]: known[p["name"]]
        for p in definition.get("parameters", [])
        if p.get("in") == "path" and p["name"] in known
    }


def _check_name(failure: Failure) -> str:
    return failure.checks[0] if failure.checks else type(failure).__name__


def report(run: Run) -> str:
    """The findings, one block each, for an assertion message."""
    return "\n\n".join(
        f"{f.operation} [{f.mode}] {f.check} -> {f.status}\n{f.message}\n{f.reproduce}"
        for f in run.findings.values()
    )
