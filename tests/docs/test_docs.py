"""README.md and the guides in docs/ cannot drift from the code: the operator guide's
settings table is the Settings model, every ``KROONIKA_*`` variable the documents name is
a setting (or a documented variable the code reads itself), and every ``kroonika`` command
line and ``make`` target they show exists with the options they give it."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))

from settings_table import GUIDE, current, render

from kroonika.cli import app
from kroonika.settings import OTHER_VARIABLES, Settings

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = ["README.md", "docs/user-guide.md", "docs/auditor-guide.md", "docs/operator-guide.md"]
#: Variables that are not settings: the test suite's switch (README, CI).
NOT_SETTINGS = {"REQUIRE_SERVICES"}


def _text(name: str) -> str:
    return (ROOT / name).read_text()


def test_every_settings_field_is_in_the_guide() -> None:
    """Each field appears as its KROONIKA_* variable in the operator guide."""
    text = GUIDE.read_text()
    missing = [n for n in Settings.model_fields if f"`KROONIKA_{n.upper()}`" not in text]
    assert missing == [], f"undocumented settings: {missing}"


def test_the_table_is_what_the_model_renders() -> None:
    """Names, defaults and meanings in the guide equal the generated table (regenerate with
    `.venv/bin/python tests/docs/settings_table.py --write`)."""
    assert current(GUIDE.read_text()) == render()


def _variables_read_by_the_code() -> set[str]:
    """``KROONIKA_*`` names the source reads itself (os.environ, Typer's envvar), not
    through Settings."""
    names: set[str] = set()
    for path in (ROOT / "src" / "kroonika").rglob("*.py"):
        names |= set(re.findall(r"[\"']KROONIKA_([A-Z0-9_]+)[\"']", path.read_text()))
    return names - {n.upper() for n in Settings.model_fields}


@pytest.mark.parametrize("document", DOCUMENTS)
def test_the_documents_name_no_setting_that_does_not_exist(document: str) -> None:
    """Every KROONIKA_* variable a document sets or quotes (`KROONIKA_X` or KROONIKA_X=) is
    a field, a variable the code reads itself, or the test switch; other names, e.g. a NATS
    stream, are not variables."""
    named = set(re.findall(r"KROONIKA_([A-Z0-9_]+)(?=[`=])", _text(document)))
    known = {n.upper() for n in Settings.model_fields} | _variables_read_by_the_code()
    assert named - known - NOT_SETTINGS == set()


def test_variables_the_code_reads_itself_are_in_the_guide() -> None:
    """A KROONIKA_* variable read outside Settings is documented in the operator guide."""
    text = GUIDE.read_text()
    missing = sorted(n for n in _variables_read_by_the_code() if f"`KROONIKA_{n}`" not in text)
    assert missing == []


def test_the_start_up_warning_knows_every_variable_read_outside_settings() -> None:
    """``OTHER_VARIABLES`` (not warned about at start) holds every KROONIKA_* name the
    source reads itself and every one the test suite reads from its environment: a new
    one left out would be warned about as misspelt."""
    read = _variables_read_by_the_code()
    for path in (ROOT / "tests").rglob("*.py"):
        read |= set(re.findall(r"environ\.get\(\s*[\"']KROONIKA_([A-Z0-9_]+)", path.read_text()))
    settings = {n.upper() for n in Settings.model_fields}
    assert {f"KROONIKA_{n}" for n in read - settings} - OTHER_VARIABLES == set()


def test_the_log_shipping_section_is_marked() -> None:
    """The section the log shipping work fills is present under its agreed title."""
    assert "## Log shipping (rsyslog, SIEM sinks, NATS)" in GUIDE.read_text()


# --- command lines ----------------------------------------------------------------------


def _command_lines(text: str) -> Iterator[str]:
    """`kroonika ...` in inline code, and lines of code blocks that run kroonika (not a
    comment); a code span may wrap over a line break."""
    for span in re.findall(r"`(kroonika [^`]+)`", text):
        yield " ".join(span.split())
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        for line in block.splitlines():
            m = re.match(r"\s*(?:[A-Z_]+=\S+\s+)*(kroonika\s.*)", line)
            if m:
                yield m.group(1)


def _words(line: str) -> list[str]:
    """The words of a command line up to a comment, pipe or redirection; `[--opt X]` and
    `a|b` alternatives are read as written."""
    line = re.split(r"\s#|\s\||\s<|\s>", line)[0]
    return line.replace("[", " ").replace("]", " ").split()[1:]


def _resolve(words: list[str]) -> tuple[Any, list[str], list[str]]:
    command: Any = typer.main.get_command(app)
    path = ["kroonika"]
    while hasattr(command, "commands") and words and words[0] in command.commands:
        command = command.commands[words[0]]
        path.append(words.pop(0))
    return command, path, words


def _documented_commands() -> list[tuple[str, str]]:
    return [(doc, line) for doc in DOCUMENTS for line in _command_lines(_text(doc))]


def test_the_documents_show_command_lines() -> None:
    """The parser finds the command lines (the test below is not vacuous)."""
    assert len(_documented_commands()) > 80


@pytest.mark.parametrize(("document", "line"), _documented_commands())
def test_every_documented_command_and_option_exists(document: str, line: str) -> None:
    """`kroonika <group> <command> --option` as a document shows it is a command of the
    Typer app that takes that option."""
    command, path, rest = _resolve(_words(line))
    if hasattr(command, "commands"):  # a group on its own ("kroonika audit …", "list|ack")
        alternatives = rest[0].split("|") if rest and not rest[0].startswith("-") else []
        missing = [a for a in alternatives if a not in command.commands and a not in "…..."]
        assert missing == [], f"{document}: {' '.join(path)} has no command {missing}"
        return
    options = {"--help"}
    for param in command.params:
        options |= set(getattr(param, "opts", ())) | set(getattr(param, "secondary_opts", ()))
    unknown = [
        w.split("=")[0]
        for w in rest
        if w.startswith("-") and w != "-" and w.split("=")[0] not in options
    ]
    assert unknown == [], f"{document}: {' '.join(path)} has no option {unknown}"


def test_every_documented_make_target_exists() -> None:
    """`make X` in a document is a target of the Makefile."""
    targets = set(re.findall(r"^([a-z][a-z-]*):", _text("Makefile"), re.M))
    code = [
        part
        for doc in DOCUMENTS
        for part in re.findall(r"```[a-z]*\n.*?```|`[^`\n]+`", _text(doc), re.S)
    ]
    named = {m for part in code for m in re.findall(r"(?:^|`)make ([a-z][a-z-]*)", part, re.M)}
    assert named
    assert named - targets == set()


# --- HTTP routes ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The service's OpenAPI document."""
    from kroonika.web import create_app

    var = tmp_path_factory.mktemp("docs-var")
    spec: dict[str, Any] = create_app(Settings(var_dir=var)).openapi()
    return spec


@pytest.fixture(scope="module")
def routes(openapi: dict[str, Any]) -> set[tuple[str, str]]:
    """(method, path template) of every route in the service's OpenAPI document."""
    return {(m.upper(), p) for p, ops in openapi["paths"].items() for m in ops}


def test_every_documented_route_exists(routes: set[tuple[str, str]]) -> None:
    """`GET /path`, `-X POST $URL/path` in a document is a route of the service (a
    `{param}` or an example value such as `cr_1f...` stands for a path parameter)."""
    said = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE)\s+`?(/[\w./{}…-]*)")
    curl = re.compile(r"-X (GET|POST|PUT|PATCH|DELETE) \"?\$\w+(/[\w./{}…-]*)")
    found, missing = 0, []
    for document in DOCUMENTS:
        text = _text(document)
        for method, path in said.findall(text) + curl.findall(text):
            path = path.rstrip(".…")
            if path in {"/admin", "/audit"}:  # "every call under /admin" is prose
                continue
            found += 1
            if method in {"PUT", "PATCH", "DELETE"} and path.startswith("/audit/events"):
                continue  # documented as refused with 405
            if not any(
                m == method and re.fullmatch(re.sub(r"\{[^}]+\}", r"[^/]+", p), path)
                for m, p in routes
            ):
                missing.append(f"{document}: {method} {path}")
    assert found > 60
    assert missing == []


def _rate_limit_table() -> list[tuple[str, str, str]]:
    """(name, counts, default) of each row of the operator guide's *Rate limits* table."""
    section = _text("docs/operator-guide.md").split("\n## Rate limits\n", 1)[1].split("\n## ")[0]
    rows = re.findall(r"^\| `([a-z_]+:[a-z]+)` \| (.*) \| `([^`]+)` \|$", section, re.M)
    assert len(rows) > 5
    return rows


def _served(path: str, routes: set[tuple[str, str]]) -> bool:
    """A route is ``path`` or under it."""
    return any(p == path or p.startswith(path + "/") for _, p in routes)


def test_the_rate_limit_table_names_the_limits_the_service_counts() -> None:
    """Each limit of the table is one the service counts, with its default, and none is
    left out (a name that is not counted refuses to start the service)."""
    from kroonika.ratelimit import DEFAULT_LIMITS

    table = {name: default for name, _, default in _rate_limit_table()}
    assert table == {f"{g.value}:{k.value}": v for (g, k), v in DEFAULT_LIMITS.items()}


def test_every_route_of_the_rate_limit_table_is_served_and_counted_there(
    routes: set[tuple[str, str]],
) -> None:
    """A path in the table is a route of the service (or has routes under it) and is
    counted in the row's group; every path the limiter classifies is in the table and
    served, so neither lists a route that does not exist (`/oauth/token`, `/api/admin`)."""
    from kroonika.ratelimit import DEFAULT_ROUTES, RouteGroup
    from kroonika.ratelimit._middleware import classify

    named: set[str] = set()
    for name, counts, _ in _rate_limit_table():
        for path in re.findall(r"`(/[\w/.-]*)`", counts):
            named.add(path)
            assert _served(path, routes), f"{name}: {path} is not served"
            assert classify(path, DEFAULT_ROUTES) is RouteGroup(name.split(":")[0]), path
    assert len(named) > 8
    prefixes = {prefix for prefix, _ in DEFAULT_ROUTES}
    assert sorted(p for p in prefixes if not _served(p, routes)) == []
    assert prefixes - named == set()


# --- event types ------------------------------------------------------------------------

#: Backticked names that look like event types but are not: the auditor guide's example of
#: a refused --type, file names, and the configuration key of role changes.
NOT_EVENT_TYPES = {"auth.logon", "audit.jsonl", "audit.db", "admin.roles"}


def test_every_documented_event_type_is_in_the_catalogue() -> None:
    """A backticked `area.object.action` (or `area.object.*`) of a catalogue area is a type
    of the catalogue or a prefix of one, unless it is a runtime configuration key."""
    from kroonika.admin._config import KEYS
    from kroonika.audit.catalogue import CATALOGUE

    areas = {t.split(".")[0] for t in CATALOGUE}
    named = {
        name
        for document in DOCUMENTS
        for name in re.findall(r"`([a-z_]+\.[a-z_.]*[a-z_])(?:\.\*)?`", _text(document))
        if name.split(".")[0] in areas
    }
    unknown = sorted(
        n
        for n in named - set(KEYS) - NOT_EVENT_TYPES
        if n not in CATALOGUE and not any(t.startswith(n + ".") for t in CATALOGUE)
    )
    assert len(named) > 20
    assert unknown == []


# --- configuration examples -------------------------------------------------------------


def _json_settings_examples() -> list[tuple[str, str, str]]:
    """(document, variable, value) of each ``KROONIKA_X='...'`` a document shows, but
    placeholders (``...``)."""
    return [
        (doc, name, value)
        for doc in DOCUMENTS
        for name, value in re.findall(r"KROONIKA_([A-Z0-9_]+)='([^']*)'", _text(doc))
        if "..." not in value
    ]


def _toml_examples() -> list[tuple[str, str]]:
    return [
        (doc, b) for doc in DOCUMENTS for b in re.findall(r"```toml\n(.*?)```", _text(doc), re.S)
    ]


def _sinks_apply(sinks: list[Any]) -> None:
    """Each sink is one the service builds keys for: no unknown key, none that does
    nothing for its kind (the builder's own checks, without reading secret files)."""
    from kroonika.settings import AuditSinkSettings
    from kroonika.shipping import _check_keys

    for raw in sinks:
        spec = AuditSinkSettings.model_validate(raw)
        assert not spec.model_extra, f"sink {spec.name}: unknown keys {spec.model_extra}"
        _check_keys(spec)


def test_the_documents_show_configuration_examples() -> None:
    """The parsers find the examples (the tests below are not vacuous)."""
    assert len(_json_settings_examples()) > 6
    assert len(_toml_examples()) >= 2


@pytest.mark.parametrize(("document", "name", "value"), _json_settings_examples())
def test_every_json_setting_example_is_accepted(
    document: str, name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`KROONIKA_X='<json>'` as a document shows it is a value the service takes: the
    setting accepts it and, for sinks and alert rules, the start-up checks do too."""
    from kroonika.alerting import alert_rules
    from kroonika.settings import load_settings

    monkeypatch.setenv(f"KROONIKA_{name}", value)
    settings = load_settings()
    if name == "AUDIT_SINKS":
        _sinks_apply([s.model_dump(exclude_unset=True) for s in settings.audit_sinks])
    if name == "ALERT_RULES":
        assert alert_rules(settings)


@pytest.mark.parametrize(("document", "block"), _toml_examples())
def test_every_toml_example_is_accepted(document: str, block: str, tmp_path: Path) -> None:
    """A TOML example is a clients file the TARA mock reads or a configuration file whose
    every key is a setting (and whose sinks the service would build)."""
    import tomllib

    from kroonika.tara.mock.config import parse_clients

    data = tomllib.loads(block)
    if "clients" in data:
        assert parse_clients(data)
        return
    assert set(data) - set(Settings.model_fields) == set()
    _sinks_apply(data.get("audit_sinks", []))


def test_the_sink_table_names_the_keys_of_each_kind() -> None:
    """Each row of the operator guide's sink table names only keys that act on that kind,
    and every key that does (a key the table left out is one an operator never hears of)."""
    from kroonika.shipping import _APPLIES

    rows = re.findall(r"^\| `([a-z_]+)` \| (.*) \| (.*) \|$", _text("docs/operator-guide.md"), re.M)
    rows = [(kind, f"{req} {opt}") for kind, req, opt in rows if kind in _APPLIES]
    assert len(rows) >= 8
    for kind, cells in rows:
        named = set(re.findall(r"`([a-z_]+)`", re.sub(r"\([^()]*\)", "", cells)))
        assert named - _APPLIES[kind] == set(), kind
        assert _APPLIES[kind] - named - {"tls_verify"} == set(), kind


# --- request bodies ---------------------------------------------------------------------


def _shell_commands(block: str) -> Iterator[str]:
    """The commands of a code block that start with ``curl``, with their continuation
    lines (a trailing backslash, or a quote still open)."""
    command: str | None = None
    for line in block.splitlines():
        if command is None and not re.match(r"\s*curl\s", line):
            continue
        command = line if command is None else f"{command}\n{line}"
        if command.count("'") % 2 == 0 and not command.rstrip().endswith("\\"):
            yield command
            command = None


def _documented_bodies() -> list[tuple[str, str, str, str]]:
    """(document, method, path, JSON body) of every example request with a JSON object
    body: ``curl -X M $URL/path ... -d '{...}'``, a ``M /path  {...}`` line and an HTTP
    block (request line, headers, blank line, body)."""
    found = []
    for doc in DOCUMENTS:
        for block in re.findall(r"```([a-z]*\n.*?)```", _text(doc), re.S):
            for command in _shell_commands(block):
                target = re.search(r"-X (GET|POST|PUT|PATCH|DELETE) \"?\$\w+(/[^\s\"?]*)", command)
                body = re.search(r"-d '(\{[^']*\})'", command)
                if target and body:
                    found.append((doc, target[1], target[2], body[1]))
            for method, path, body in re.findall(
                r"^(POST|PUT|PATCH) (/\S+)\s+(\{.*\})\s*(?:#.*)?$", block, re.M
            ):
                found.append((doc, method, path, body))
            if block.startswith("http\n"):
                head, _, body = block[5:].partition("\n\n")
                method, path = head.split()[:2]
                found.append((doc, method, path, body.strip()))
    return found


def test_the_documents_show_request_bodies() -> None:
    """The parser finds the example bodies (the test below is not vacuous)."""
    assert len(_documented_bodies()) > 10


@pytest.mark.parametrize(("document", "method", "path", "body"), _documented_bodies())
def test_every_field_of_an_example_body_is_one_the_route_takes(
    document: str, method: str, path: str, body: str, openapi: dict[str, Any]
) -> None:
    """Each top-level field of an example request body is a property of that route's
    JSON body: admin routes refuse an unknown field with 422, token routes ignore it."""
    fields = orjson.loads(body)
    assert isinstance(fields, dict)
    matches = [
        ops[method.lower()]
        for template, ops in openapi["paths"].items()
        if method.lower() in ops
        and re.fullmatch(re.sub(r"\{[^}]+\}", r"[^/]+", template), path.rstrip(".…"))
    ]
    assert matches, f"{document}: {method} {path} is not a route"
    schema = matches[0]["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = openapi["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    unknown = set(fields) - set(schema.get("properties", {}))
    assert unknown == set(), f"{document}: {method} {path} takes no {sorted(unknown)}"


def test_every_documented_runtime_key_exists() -> None:
    """A backticked `ratelimit.limits`, `jobs.<name>.cron` or `alerts.*` whose first part
    is that of a runtime configuration key (`GET/PATCH /admin/config`) and of no event type
    is a key (`<name>` and `*` stand for any part)."""
    from kroonika.admin._config import KEYS
    from kroonika.audit.catalogue import CATALOGUE

    areas = {k.split(".")[0] for k in KEYS} - {t.split(".")[0] for t in CATALOGUE}
    named = {
        name
        for document in DOCUMENTS
        for name in re.findall(r"`([a-z_]+\.[a-z_.<>*]*[a-z_>*])`", _text(document))
        if name.split(".")[0] in areas
    }
    patterns = {n: re.sub(r"<[a-z_]+>|\\\*", "[a-z_.]+", re.escape(n)) for n in named}
    unknown = sorted(n for n, p in patterns.items() if not any(re.fullmatch(p, k) for k in KEYS))
    assert len(named) >= 4
    assert unknown == []


def test_the_jobs_table_names_every_job_with_its_default_schedule() -> None:
    """The operator guide's *Jobs* table is the jobs the scheduler runs, each with the
    schedule it runs on unless configured."""
    from kroonika.admin._config import DEFAULT_CRON

    section = _text("docs/operator-guide.md").split("\n## Jobs\n", 1)[1].split("\n## ")[0]
    table = dict(re.findall(r"^\| `([a-z_]+)` \| `([^`]+)` \|", section, re.M))
    assert table == DEFAULT_CRON


def test_the_guides_cover_what_the_issue_list_asks() -> None:
    """The operator guide has its sections on configuration, PostgreSQL, Redis, rsyslog
    and several instances; the auditor guide shows query, verify, export, and a verify of
    a copy (`--store`) against an exported checkpoint (`--checkpoint`) in one command."""
    operator = _text("docs/operator-guide.md")
    for title in ("## Configuration", "## PostgreSQL", "## Redis", "### rsyslog"):
        assert f"\n{title}\n" in operator, title
    assert "\n## Running several instances\n" in operator
    auditor = _text("docs/auditor-guide.md")
    blocks = re.findall(r"```sh\n(.*?)```", auditor, re.S)
    commands = [c for b in blocks for c in b.replace("\\\n", " ").splitlines()]
    for sub in ("audit query", "audit verify", "audit export", "audit checkpoint export"):
        assert any(f"kroonika {sub}" in c for c in commands), sub
    assert any("--store" in c and "--checkpoint" in c for c in commands)
