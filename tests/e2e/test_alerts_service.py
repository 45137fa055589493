"""Alerting in the running service, over real HTTP: a brute-force attack raises exactly
one alert, listed by ``GET /admin/alerts``, e-mailed once over STARTTLS to a real SMTP
server (aiosmtpd) and posted once to a webhook; acknowledged, it is listed as such; a
restart of the evaluator that reads the trail again raises nothing more; a hostile
summary stays neutralised in the e-mail."""

from __future__ import annotations

import asyncio
import email
import email.policy
import http.server
import re
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from admin_harness import HOLDERS, WHY, holder_key
from aiosmtpd.controller import Controller
from security_harness import AsRole, SecStack, security_stack

from kroonika.audit import Actor, ActorType, Target, events
from kroonika.audit.alerting import alert_id_for
from kroonika.audit.sinks import CursorStore
from kroonika.audit.sinks.webhook import check_signature
from kroonika.security.simulate_attacks import run_attack

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "audit" / "sinks"))
from sink_kit import HOSTILE, free_port, make_ca

HOOK_KEY = "alert-hook-key-0123456789"


class Inbox:
    def __init__(self) -> None:
        self.raw: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.raw.append(bytes(envelope.original_content))
        return "250 OK"

    def messages(self) -> list[Any]:
        return [email.message_from_bytes(r, policy=email.policy.default) for r in self.raw]


class Hook(http.server.ThreadingHTTPServer):
    bodies: list[bytes]


class HookHandler(http.server.BaseHTTPRequestHandler):
    server: Hook

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        ts, sig = self.headers["x-kroonika-timestamp"], self.headers["x-kroonika-signature"]
        ok = check_signature(HOOK_KEY.encode(), ts, body, sig)
        if ok:
            self.server.bodies.append(body)
        self.send_response(200 if ok else 401)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@dataclass
class Alerted(AsRole):
    stack: SecStack
    inbox: Inbox
    hook: Hook
    keys: dict[str, str]

    def settle(self) -> None:
        """Wait until the evaluator and both sinks have read everything stored."""
        services = self.stack.services
        cursors = CursorStore(services.audit.store.engine)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            store = services.audit.store
            heads = {s: getattr(store.stream_state(s), "size", 0) for s in store.streams()}
            if all(
                cursors.get(name, s) >= h
                for name in ("@alerts", "mail", "hook")
                for s, h in heads.items()
            ):
                return
            time.sleep(0.1)
        raise AssertionError("the evaluator or a sink did not catch up")

    def raised(self) -> list[dict[str, Any]]:
        return self.stack.events(types=("alert.raise",))

    def hooked(self) -> list[dict[str, Any]]:
        lines = [line for b in self.hook.bodies for line in b.splitlines() if line]
        return [orjson.loads(line) for line in lines]


@contextmanager
def starttls_smtp(tmp: Path) -> Iterator[tuple[Inbox, dict[str, Any]]]:
    """aiosmtpd requiring STARTTLS (a certificate of a CA of the test's own, under
    ``tmp``): its inbox, and the ``smtp`` sink ``mail`` that sends to it."""
    ca, cert, key = make_ca(tmp / "tls")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(cert), str(key))
    inbox = Inbox()
    smtp = Controller(
        inbox, hostname="127.0.0.1", port=free_port(), tls_context=server_ctx, require_starttls=True
    )
    smtp.start()
    sink = {
        "kind": "smtp",
        "name": "mail",
        "host": "127.0.0.1",
        "port": smtp.port,
        "security": "starttls",
        "ca_file": str(ca),
        "mail_from": "kroonika@example.org",
        "mail_to": ["soc@example.org"],
    }
    try:
        yield inbox, sink
    finally:
        smtp.stop()


@contextmanager
def webhook_receiver() -> Iterator[Hook]:
    """An HTTP server on loopback that keeps the bodies signed with ``HOOK_KEY``."""
    hook = Hook(("127.0.0.1", 0), HookHandler)
    hook.bodies = []
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        yield hook
    finally:
        hook.shutdown()
        hook.server_close()


@pytest.fixture
def alerted(tmp_path: Path) -> Iterator[Alerted]:
    with starttls_smtp(tmp_path) as (inbox, mail), webhook_receiver() as hook:
        sinks = [
            mail,
            {
                "kind": "webhook",
                "name": "hook",
                "url": f"http://127.0.0.1:{hook.server_address[1]}/alerts",
                "secret": HOOK_KEY,
                "types": ["alert."],
            },
        ]
        overrides = {
            "admin_bootstrap": {"38001085718": ["admin"]},
            "jobs_enabled": False,
            "audit_sinks": sinks,
            "audit_sink_poll_s": 0.1,
        }
        with security_stack(tmp_path, settings_overrides=overrides) as stack:
            keys = {r: holder_key(stack.services, r, HOLDERS[r]) for r in HOLDERS}
            yield Alerted(stack, inbox, hook, keys)


def _wait(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def test_an_attack_raises_one_alert_delivered_once_then_acknowledged(alerted: Alerted) -> None:
    """Brute force: one alert, listed, one e-mail, one webhook post; acknowledged once
    (404 for an unknown id, 409 the second time); listed as acknowledged after."""
    asyncio.run(run_attack("brute-force", alerted.stack.service, mock_url=alerted.stack.mock))
    alerted.stack.drain()
    _wait(lambda: bool(alerted.raised()))
    alerted.settle()
    (raised,) = alerted.raised()
    assert raised["details"]["rule"] == "security_anomaly"
    assert "kind=brute_force" in raised["details"]["summary"]
    assert raised["severity"] == "error"
    alert_id = raised["details"]["alert_id"]

    listed = alerted.call("GET", "/admin/alerts", role="auditor")
    assert listed.status_code == 200
    assert [a["alert_id"] for a in listed.json()["alerts"]] == [alert_id]
    assert listed.json()["alerts"][0]["state"] == "open"
    page = alerted.call("GET", "/admin/dashboard", role="auditor")
    assert page.status_code == 200
    assert '<span id="open-count">1</span>' in page.text  # the same state as the list
    assert f'data-alert-id="{alert_id}"' in page.text

    (mail,) = alerted.inbox.messages()
    assert mail["Message-ID"] == f"<{raised['id']}@example.org>"
    assert "security_anomaly" in mail["Subject"]
    assert [e["id"] for e in alerted.hooked()] == [raised["id"]]  # alerts only, once

    path = f"/admin/alerts/{alert_id}/acknowledge"
    assert alerted.call("POST", path, json={"note": "blocked at the edge"}).status_code == 400
    refused = alerted.call("POST", path, role="auditor", headers={"x-justification": WHY})
    assert refused.status_code == 403
    unknown = "/admin/alerts/alr_" + "0" * 32 + "/acknowledge"
    assert alerted.call("POST", unknown, headers={"x-justification": WHY}).status_code == 404
    done = alerted.call("POST", path, headers={"x-justification": WHY}, json={"note": "blocked"})
    assert done.status_code == 200, done.text
    assert done.json()["alert"]["state"] == "acknowledged"
    again = alerted.call("POST", path, headers={"x-justification": WHY})
    assert again.status_code == 409
    assert again.json()["error"] == "already_acknowledged"

    (ack,) = alerted.stack.events(types=("alert.acknowledge",))
    assert ack["details"]["note"] == "blocked"
    assert ack["details"]["justification"] == WHY
    assert alerted.call("GET", "/admin/alerts").json()["alerts"] == []
    acked = alerted.call("GET", "/admin/alerts?state=acknowledged").json()["alerts"]
    assert [a["alert_id"] for a in acked] == [alert_id]
    assert acked[0]["note"] == "blocked"
    page = alerted.call("GET", "/admin/dashboard", role="auditor")
    assert '<span id="open-count">0</span>' in page.text
    assert f'data-alert-id="{alert_id}"' in page.text  # now under the acknowledged

    # A restart that reads the whole trail again (its cursor put back, as after a crash
    # before the cursor moved): the alert is known, nothing is raised or sent again.
    state = alerted.stack.app.state
    alerted.run(state.alerting.stop())
    cursors = CursorStore(alerted.stack.services.audit.store.engine)
    for stream in alerted.stack.services.audit.store.streams():
        cursors.reset("@alerts", stream, 0, "2026-11-27T00:00:00.000000Z")
    alerted.run(state.alerting.start())
    alerted.settle()
    assert len(alerted.raised()) == 1
    assert len(alerted.inbox.raw) == 1


def test_a_hostile_summary_stays_neutralised_in_the_e_mail(alerted: Alerted) -> None:
    """CR/LF and ANSI in an alert's summary add no header and reach the mail as text."""
    trail = alerted.stack.services.audit.trail
    alerted.run(
        trail.emit(
            events.alert_raise(
                actor=Actor(ActorType.SYSTEM),
                target=Target("alert", "alr_hostile"),
                rule="custom",
                summary="x\r\nBcc: evil@example.net\r\n" + HOSTILE,
                alert_id="alr_hostile",
            )
        )
    )
    _wait(lambda: len(alerted.inbox.raw) == 1)
    (raw,) = alerted.inbox.raw
    (mail,) = alerted.inbox.messages()
    assert mail["Bcc"] is None
    assert b"\x1b" not in raw
    assert "\r" not in mail["Subject"]
    assert "\n" not in mail["Subject"]
    assert "Bcc: evil@example.net" in mail["Subject"]


def test_list_and_acknowledge_need_their_roles(alerted: Alerted) -> None:
    """No key: 401; privacy may not read alerts (403); a bad state, an unknown body field:
    422; a personal code in the note: 400, not echoed."""
    anonymous = httpx.get(alerted.stack.service + "/admin/alerts", timeout=30)
    assert anonymous.status_code == 401
    assert alerted.call("GET", "/admin/alerts", role="privacy").status_code == 403
    assert alerted.call("GET", "/admin/alerts?state=closed").status_code == 422
    assert alerted.call("GET", "/admin/alerts", role="admin").status_code == 200
    unknown = "/admin/alerts/alr_" + "0" * 32 + "/acknowledge"
    coded = alerted.call(
        "POST", unknown, headers={"x-justification": WHY}, json={"note": "EE38001085718"}
    )
    assert coded.status_code == 400
    assert coded.json()["error"] == "personal_code_in_text"
    assert "38001085718" not in coded.text
    extra = alerted.call("POST", unknown, headers={"x-justification": WHY}, json={"notes": "x"})
    assert extra.status_code == 422


def _open_on_page(html: str) -> list[str]:
    table = re.search(r'<table id="open-alerts">(.*?)</table>', html, re.S)
    return re.findall(r'data-alert-id="([^"]+)"', table.group(1)) if table else []


def test_an_alert_open_for_forty_days_is_in_the_list_and_on_the_page(alerted: Alerted) -> None:
    """The page and the list show the same open alerts, however old: one raised 40 days
    ago (beyond ``KROONIKA_DASHBOARD_ALERT_DAYS``) and one raised now."""
    trail = alerted.stack.services.audit.trail
    old, new = alert_id_for("custom", "old-event"), alert_id_for("custom", "new-event")
    for alert_id in (old, new):
        alerted.run(
            trail.emit(
                events.alert_raise(
                    actor=Actor(ActorType.SYSTEM),
                    target=Target("alert", alert_id),
                    rule="custom",
                    summary=f"custom: {alert_id}",
                    alert_id=alert_id,
                )
            )
        )
        if alert_id == old:
            alerted.stack.offset.advance(40 * 86400)
            services = alerted.stack.services  # the keys made at the start have expired
            alerted.keys.update({r: holder_key(services, r, HOLDERS[r]) for r in HOLDERS})
    listed = alerted.call("GET", "/admin/alerts", role="auditor")
    assert [a["alert_id"] for a in listed.json()["alerts"]] == [new, old]
    page = alerted.call("GET", "/admin/dashboard", role="auditor")
    assert page.status_code == 200
    assert _open_on_page(page.text) == [new, old]
    assert f'<span id="open-count">{listed.json()["total"]}</span>' in page.text
