"""Schemathesis drives every operation of the running service (SQLite and PostgreSQL)
from its own ``/openapi.json``, valid and invalid input alike, each as the caller it is
meant for: no answer is a 500 or a stack trace, every answer is one the document
declares (status, content type, body, headers), the log has no traceback and no secret,
and every admin call is in the trail with the status it got (decision 0024)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from admin_harness import AdminStack, admin_stack
from fuzz_harness import (
    REFUSED,
    TRACEBACK_MARKS,
    Caller,
    Run,
    fuzz,
    known_values,
    load,
    page_operations,
    report,
)
from login_harness import LogLines, register_client, watching_logs

pytestmark = pytest.mark.slow

#: cases per operation and generation mode (positive, negative): the run stays near a
#: minute on the project's 2-core machine for both back-ends
EXAMPLES = 3


@dataclass
class Fuzzed:
    stack: AdminStack
    caller: Caller
    run: Run
    log: list[str]


def _fuzzed(factory: pytest.TempPathFactory, url: str | None) -> Iterator[Fuzzed]:
    """One fuzz run (business data and the audit store in the PostgreSQL database at
    ``url``, SQLite if None), the service's log records of it kept."""
    overrides: dict[str, Any] = {"token_client_scrypt_n": 2**10}
    if url is not None:
        overrides["audit_store_url"] = url
    lines = LogLines()
    with admin_stack(Path(factory.mktemp("fuzz")), database_url=url, overrides=overrides) as stack:
        client = register_client(stack.stack, "fuzz", [])
        caller = Caller(stack, client)
        with watching_logs(lines):
            # real ids first (the random run may end the session they name), then all
            known = known_values(caller)
            run = fuzz(
                stack.url,
                caller,
                examples=EXAMPLES,
                known=known,
                select=lambda label: any("{" + name + "}" in label for name in known),
            )
            fuzz(stack.url, caller, examples=EXAMPLES, run=run)
            # the pages once more, as each caller they refuse: a refusal is a page too
            pages = page_operations(stack.url)
            assert "GET /admin/dashboard" in pages
            for who in REFUSED:
                refused = Caller(stack, client, refused=who)
                fuzz(stack.url, refused, examples=EXAMPLES, run=run, select=pages.__contains__)
        yield Fuzzed(stack, caller, run, lines.lines)


# One module fixture per back-end, not one parametrized fixture: in random test order
# a parametrized module fixture is set up again each time the parameter changes.
@pytest.fixture(scope="module")
def fuzzed_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    yield from _fuzzed(tmp_path_factory, None)


@pytest.fixture(scope="module")
def fuzzed_postgres(
    tmp_path_factory: pytest.TempPathFactory, module_postgres_url: str
) -> Iterator[Fuzzed]:
    yield from _fuzzed(tmp_path_factory, module_postgres_url)


@pytest.fixture(params=["sqlite", "postgres"])
def fuzzed(request: pytest.FixtureRequest) -> Fuzzed:
    run: Fuzzed = request.getfixturevalue(f"fuzzed_{request.param}")
    return run


def test_no_answer_is_a_server_error_or_off_the_document(fuzzed: Fuzzed) -> None:
    """No generated call gets a 5xx, a stack trace or an answer the document does not declare."""
    if fuzzed.run.findings:
        pytest.fail(report(fuzzed.run), pytrace=False)


def test_every_operation_was_called(fuzzed: Fuzzed) -> None:
    """The fuzzer reached every operation of the document (it did not fail to load)."""
    schema = load(fuzzed.stack.url)
    documented = {result.ok().label for result in schema.get_all_operations()}
    assert len(documented) > 50
    assert fuzzed.run.called == documented


def test_the_log_has_no_traceback_and_no_secret(fuzzed: Fuzzed) -> None:
    """The service logged no stack trace and neither the client secret nor an API key."""
    assert fuzzed.log  # the handler saw the service's records
    traces = [line for line in fuzzed.log if any(m in line for m in TRACEBACK_MARKS)]
    assert not traces, traces[:3]
    secrets = fuzzed.caller.secrets()
    leaked = [line for line in fuzzed.log if any(s in line for s in secrets)]
    assert not leaked, [line[:200] for line in leaked[:3]]


def test_every_admin_call_is_in_the_trail_with_its_status(fuzzed: Fuzzed) -> None:
    """Each call of an admin or audit route, refused or not, left exactly one
    ``admin.request`` event with the route and the status the caller got."""
    recorded: Counter[tuple[str, int, str]] = Counter(
        (e["correlation"]["request_id"], e["details"]["status"], e["details"]["route"])
        for e in fuzzed.stack.events(types=("admin.request",))
    )
    calls = fuzzed.run.admin_calls
    assert len(calls) > 100
    missing = [call for call in calls if recorded[call] != 1]
    assert not missing, missing[:5]
