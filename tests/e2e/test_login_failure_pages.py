"""A failed login answers a person's browser with a page, an API client with the JSON it
always had: every failure path of /auth/callback through the real TARA mock, once as a
browser navigation and once as an API client (decision 0015, 2026-11-28). The page
carries the same status, the dashboard's strict CSP, Estonian and English, a link to
start again, the error code, and none of the flow's secrets."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from login_harness import Stack, running_stack
from sqlalchemy.exc import OperationalError

from kroonika.web import Services
from kroonika.web.routes_dashboard import CSP

#: what Chromium sends when a person follows a link or a redirect
NAVIGATION = {
    "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
    "image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7",
    "sec-fetch-mode": "navigate",
    "sec-fetch-dest": "document",
}
#: the ways a client asks: a browser's navigation, Accept alone, Sec-Fetch-Mode alone,
#: and the API clients (JSON asked for, no Accept at all, httpx's ``*/*``)
PAGE_ASKS = {
    "navigation": NAVIGATION,
    "accept-html": {"accept": "text/html"},
    "navigate-only": {"accept": "*/*", "sec-fetch-mode": "navigate"},
}
JSON_ASKS = {
    "accept-json": {"accept": "application/json"},
    "no-accept": {"accept": ""},
    "any": {"accept": "*/*"},
    "json-over-html": {"accept": "text/html;q=0.5, application/json"},
}
ASKS = {**PAGE_ASKS, **JSON_ASKS}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    overrides = {
        "tara_timeout_s": 1.0,
        "ratelimit_limits": {
            "callback:ip": "1000/minute",
            "login_start:ip": "1000/minute",
            "login_start:person": "1000/minute",
        },
    }
    with running_stack(tmp_path_factory.mktemp("pages"), settings_overrides=overrides) as s:
        yield s


@pytest.fixture(autouse=True)
def _switches_off(stack: Stack) -> Iterator[None]:
    yield
    httpx.post(stack.mock + "/mock/reset", json={}, timeout=10).raise_for_status()


class Flow:
    """A browser's login and every secret value it saw on the way (state, nonce, code,
    the flow cookie's value, TARA's error description)."""

    def __init__(self, stack: Stack, asks: dict[str, str]) -> None:
        self.stack = stack
        self.browser = httpx.Client(timeout=20, headers={"user-agent": "Mozilla/5.0 (e2e)"})
        self.asks = {k: v for k, v in asks.items() if v}
        if "accept" not in self.asks:
            self.browser.headers.pop("accept", None)
        self.secrets: set[str] = set()

    def start(self, **params: str) -> str:
        """Start a login; the authorize URL (its state and nonce are secrets)."""
        r = self.browser.get(self.stack.service + "/auth/login", params=params)
        assert r.status_code == 302, r.text
        for value in r.cookies.values():  # the flow cookie: <started>.<binding>
            self.secrets |= {value, value.partition(".")[2]}
        authorize = r.headers["location"]
        q = parse_qs(urlsplit(authorize).query)
        self.secrets |= {q["state"][0], q["nonce"][0], q["state"][0][:16]}
        return str(authorize)

    def tara(self, autologin: str = "38001085718") -> str:
        """Start a login and let the mock answer it: the callback URL TARA sends back."""
        authorize = httpx.URL(self.start()).copy_merge_params({"autologin": autologin})
        back = httpx.get(str(authorize), timeout=10)
        assert back.status_code in (302, 303), back.text
        url = str(back.headers["location"])
        q = parse_qs(urlsplit(url).query)
        for name in ("code", "error_description"):
            self.secrets |= set(q.get(name, []))
        return url

    def callback(self, url: str, **params: str) -> httpx.Response:
        """Present ``url`` (or the callback with ``params``) as this client asks."""
        if params:
            url = str(httpx.URL(self.stack.service + "/auth/callback").copy_merge_params(params))
        r = self.browser.get(url, headers=self.asks)
        self.secrets |= {v for v in r.cookies.values() if v}
        return r

    def close(self) -> None:
        self.browser.close()


def _state(url: str) -> str:
    return parse_qs(urlsplit(url).query)["state"][0]


def _code(url: str) -> str:
    return parse_qs(urlsplit(url).query)["code"][0]


def _cancel(f: Flow) -> httpx.Response:
    return f.callback(f.tara(autologin="cancel"))


def _switch(name: str, value: Any = True) -> Callable[[Flow], httpx.Response]:
    def run(f: Flow) -> httpx.Response:
        f.stack.mock_switch(**{name: value})
        return f.callback(f.tara())

    return run


def _tara_error(error: str) -> Callable[[Flow], httpx.Response]:
    def run(f: Flow) -> httpx.Response:
        state = _state(f.tara())
        f.secrets.add("description with\r\nCRLF and \x1b[31mANSI\x1b[0m")
        return f.callback(
            "",
            state=state,
            error=error,
            error_description="description with\r\nCRLF and \x1b[31mANSI\x1b[0m",
        )

    return run


def _bad_code(f: Flow) -> httpx.Response:
    return f.callback("", state=_state(f.tara()), code="not-a-real-code-but-secret-0123")


def _no_code(f: Flow) -> httpx.Response:
    return f.callback("", state=_state(f.tara()))


def _long_code(f: Flow) -> httpx.Response:
    return f.callback("", state=_state(f.tara()), code="c" * 2049)


def _no_state(f: Flow) -> httpx.Response:
    f.secrets.add("orphan-code-0123456789")
    return f.callback("", code="orphan-code-0123456789")


def _unknown_state(f: Flow) -> httpx.Response:
    f.secrets.add("abcdefghijklmnopqrstuvwxyz")
    return f.callback("", state="abcdefghijklmnopqrstuvwxyz", code="abc")


def _long_state(f: Flow) -> httpx.Response:
    return f.callback("", state="s" * 257, code="abc")


def _duplicate(f: Flow) -> httpx.Response:
    url = f.tara()
    return f.callback(url + "&state=" + _state(url))


def _expired(f: Flow) -> httpx.Response:
    url = f.tara()
    f.stack.clock.advance(f.stack.settings.login_flow_ttl_s + 1)
    return f.callback(url)


def _replayed(f: Flow) -> httpx.Response:
    url = f.tara()
    first = f.browser.get(url)  # the login completes (as an API client, any Accept)
    assert first.status_code == 302, first.text
    f.secrets |= {v for v in first.cookies.values() if v}
    return f.callback(url)


def _not_bound(f: Flow) -> httpx.Response:
    other = Flow(f.stack, {})  # another browser started it
    try:
        url = other.tara()
        f.secrets |= other.secrets
    finally:
        other.close()
    return f.callback(url)


def _code_reused(f: Flow) -> httpx.Response:
    used = f.tara()
    done = f.browser.get(used)
    assert done.status_code == 302, done.text
    f.secrets |= {v for v in done.cookies.values() if v}
    fresh = f.tara()
    return f.callback("", state=_state(fresh), code=_code(used))


def _denied(f: Flow) -> httpx.Response:
    url = f.tara()
    lists = f.stack.app.state.tokens.lists
    entry = lists.add("deny", "ip", "127.0.0.0/8", reason="test", created_by="t")
    try:
        return f.callback(url)
    finally:
        lists.remove(entry.id)


#: case: (how to fail, status, reason)
CASES: dict[str, tuple[Callable[[Flow], httpx.Response], int, str]] = {
    "user_cancel": (_cancel, 400, "user_cancel"),
    "forged_id_token": (_switch("bad_signature"), 502, "id_token.bad_signature"),
    "unknown_kid": (_switch("unknown_kid"), 502, "id_token.unknown_kid"),
    "wrong_nonce": (_switch("wrong_nonce"), 400, "id_token.nonce_mismatch"),
    "expired_id_token": (_switch("expired_token"), 502, "id_token.expired"),
    "low_acr": (_switch("low_acr"), 400, "acr_too_low"),
    "tara_failing": (_switch("fail_token_endpoint"), 502, "idp_unavailable"),
    "tara_too_slow": (_switch("slow_token_endpoint_seconds", 3.0), 502, "idp_unavailable"),
    "tara_behind_a_broken_proxy": (_switch("token_endpoint_status", 404), 502, "idp_bad_response"),
    "tara_garbled": (_switch("garbled_token_response"), 502, "idp_bad_response"),
    "code_unknown_to_tara": (_bad_code, 400, "code_exchange_failed"),
    "code_reused": (_code_reused, 400, "code_reused"),
    "code_missing": (_no_code, 400, "code_missing"),
    "code_invalid": (_long_code, 400, "code_invalid"),
    "tara_error_access_denied": (_tara_error("access_denied"), 400, "idp_error"),
    "tara_error_server_error": (_tara_error("server_error"), 502, "idp_unavailable"),
    "tara_error_invalid_scope": (_tara_error("invalid_scope"), 502, "idp_request_rejected"),
    "tara_error_hostile": (_tara_error("<script>x</script>\r\n"), 400, "idp_error"),
    "state_missing": (_no_state, 400, "state_missing"),
    "state_unknown": (_unknown_state, 400, "state_unknown"),
    "state_invalid": (_long_state, 400, "state_invalid"),
    "duplicate_parameter": (_duplicate, 400, "duplicate_parameter"),
    "state_expired": (_expired, 400, "state_expired"),
    "state_replayed": (_replayed, 400, "state_replayed"),
    "state_not_bound": (_not_bound, 400, "state_not_bound"),
    "denylisted_ip": (_denied, 403, "denylisted_ip"),
}


def _fail(stack: Stack, case: str, asks: dict[str, str]) -> tuple[httpx.Response, set[str]]:
    fail, _, _ = CASES[case]
    flow = Flow(stack, asks)
    try:
        return fail(flow), flow.secrets
    finally:
        flow.close()


def assert_login_page(r: httpx.Response, status: int, reason: str, secrets: set[str]) -> str:
    """The refusal is the failure page: status, headers, both languages, the error code,
    a link to start again, no script, and none of ``secrets``."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["content-security-policy"] == CSP
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-frame-options"] == "DENY"
    assert "accept" in r.headers["vary"].lower()
    page = r.text
    assert page.startswith("<!doctype html>")
    assert '<html lang="et">' in page
    assert 'lang="en"' in page
    assert "Sisselogimine ebaõnnestus" in page
    assert "Login failed" in page
    assert f'<code id="error-code">{reason}</code>' in page
    assert re.search(r'<a id="again" href="/auth/login(\?[^"]*)?">', page), page
    assert "<script" not in page.lower()
    assert "\r" not in page
    assert "\x1b" not in page
    for secret in secrets:
        assert secret not in page, (secret, page)
    return page


@pytest.mark.parametrize("asks", list(PAGE_ASKS))
@pytest.mark.parametrize("case", list(CASES))
def test_a_browser_gets_the_page(stack: Stack, case: str, asks: str) -> None:
    """A browser's navigation that ends in a failed login gets the page."""
    _, status, reason = CASES[case]
    r, secrets = _fail(stack, case, PAGE_ASKS[asks])
    assert_login_page(r, status, reason, secrets)


@pytest.mark.parametrize("asks", list(JSON_ASKS))
@pytest.mark.parametrize("case", list(CASES))
def test_an_api_client_gets_the_json_it_always_had(stack: Stack, case: str, asks: str) -> None:
    """An API client (JSON asked for, or no preference) gets the JSON error as before."""
    _, status, reason = CASES[case]
    r, _ = _fail(stack, case, JSON_ASKS[asks])
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) <= {"error", "reason", "detail", "request_id"}
    assert (body["error"], body["reason"]) == ("login_failed", reason)
    assert body["request_id"] == r.headers["x-request-id"]


def test_the_page_explains_a_cancel_in_both_languages(stack: Stack) -> None:
    """A cancelled login says so, in Estonian and in English."""
    r, secrets = _fail(stack, "user_cancel", NAVIGATION)
    page = assert_login_page(r, 400, "user_cancel", secrets)
    assert "Katkestasite sisselogimise" in page
    assert "You cancelled the login" in page


def test_start_again_keeps_where_the_login_was_going(stack: Stack) -> None:
    """The link starts a login for the same place and level of assurance as the one that
    failed (the flow this browser holds), and escapes them."""
    flow = Flow(stack, NAVIGATION)
    try:
        authorize = flow.start(return_to="/?a=1&b=<2>", acr="high")
        back = httpx.get(
            str(httpx.URL(authorize).copy_merge_params({"autologin": "cancel"})), timeout=10
        )
        r = flow.callback(str(back.headers["location"]))
    finally:
        flow.close()
    page = assert_login_page(r, 400, "user_cancel", flow.secrets)
    assert '<a id="again" href="/auth/login?return_to=%2F%3Fa%3D1%26b%3D%3C2%3E&amp;acr=high">' in (
        page
    )


def test_an_unbound_callback_does_not_offer_another_browsers_return_to(stack: Stack) -> None:
    """A callback this browser did not start links to a plain login: the other flow's
    target is not this browser's to see."""
    r, secrets = _fail(stack, "state_not_bound", NAVIGATION)
    page = assert_login_page(r, 400, "state_not_bound", secrets)
    assert '<a id="again" href="/auth/login">' in page


def test_the_request_id_on_the_page_is_the_answers(stack: Stack) -> None:
    """The page names its request id, so a person can quote it to support."""
    r, secrets = _fail(stack, "state_unknown", NAVIGATION)
    page = assert_login_page(r, 400, "state_unknown", secrets)
    assert r.headers["x-request-id"] in page


def test_the_json_answer_is_unchanged_byte_for_byte(stack: Stack) -> None:
    """No Accept: the body is exactly the JSON of before (key order included)."""
    r, _ = _fail(stack, "state_invalid", {"accept": ""})
    rid = r.headers["x-request-id"]
    assert r.content == (
        b'{"error":"login_failed","reason":"state_invalid",'
        b'"detail":"state is at most 256 characters","request_id":"' + rid.encode() + b'"}'
    )


def test_a_database_outage_is_a_page_too(tmp_path: Path) -> None:
    """The database failing mid-callback is 503 as a page for a browser and the JSON
    ``database_unavailable`` for an API client."""

    def configure(services: Services) -> None:
        def gone(*_: object) -> None:
            raise OperationalError("INSERT INTO session", {}, ConnectionError("server closed"))

        services.sessions.store.add = gone  # type: ignore[method-assign]

    with running_stack(tmp_path, configure=configure) as s:
        flow = Flow(s, NAVIGATION)
        try:
            page = flow.callback(flow.tara())
        finally:
            flow.close()
        api = Flow(s, {"accept": "application/json"})
        try:
            answer = api.callback(api.tara())
        finally:
            api.close()
    assert_login_page(page, 503, "database_unavailable", flow.secrets)
    assert answer.status_code == 503
    assert answer.json()["error"] == "database_unavailable"


def test_over_the_callback_rate_limit_is_a_page(tmp_path: Path) -> None:
    """The callback's per-address limit (checked before the route) answers a browser
    with the page (429, Retry-After) and an API client with its JSON."""
    overrides = {"ratelimit_limits": {"callback:ip": "2/minute"}}
    with running_stack(tmp_path, settings_overrides=overrides) as s:
        flow = Flow(s, NAVIGATION)
        try:
            for _ in range(2):
                flow.callback("", state="abcdefghijklmnop", code="x")
            page = flow.callback("", state="abcdefghijklmnop", code="x")
        finally:
            flow.close()
        api = httpx.get(s.service + "/auth/callback?state=abcdefghijklmnop", timeout=10)
    assert_login_page(page, 429, "rate_limited", flow.secrets)
    assert 1 <= int(page.headers["retry-after"]) <= 60
    assert api.status_code == 429
    assert api.json()["error"] == "rate_limited"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"acr": "bogus"}, "invalid_request"),
        ({"method": "carrier-pigeon"}, "invalid_request"),
        ({"return_to": "https://evil.example/<b>"}, "invalid_return_to"),
    ],
)
def test_a_refused_login_start_is_a_page_for_a_browser(
    stack: Stack, query: dict[str, str], code: str
) -> None:
    """A login link the start refuses is the page for a browser (nothing it sent is
    shown) and the JSON of before for an API client."""
    page = httpx.get(stack.service + "/auth/login", params=query, headers=NAVIGATION)
    assert_login_page(page, 400, code, set(query.values()))
    api = httpx.get(stack.service + "/auth/login", params=query, timeout=10)
    assert api.status_code == 400
    assert api.json()["error"] == code


def test_the_document_declares_the_page_beside_the_json(stack: Stack) -> None:
    """/openapi.json names both answers of every refusal of the login routes: the JSON
    error and the text/html page; a browser's answer has a documented media type."""
    doc = httpx.get(stack.service + "/openapi.json", timeout=10).json()
    for path in ("/auth/login", "/auth/callback"):
        responses = doc["paths"][path]["get"]["responses"]
        refusals = {s: r for s, r in responses.items() if s[0] in "45"}
        assert {"400", "403", "429", "502", "503"} <= set(refusals), path
        for status, answer in refusals.items():
            assert set(answer["content"]) == {"application/json", "text/html"}, (path, status)
            assert answer["content"]["text/html"]["schema"] == {"type": "string"}
    r, _ = _fail(stack, "user_cancel", NAVIGATION)
    documented = doc["paths"]["/auth/callback"]["get"]["responses"][str(r.status_code)]
    assert r.headers["content-type"].split(";")[0] in documented["content"]
