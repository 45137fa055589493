"""The automated first response in the running service, over real HTTP (decision 0039):
a brute-force attack from one network raises an alert whose rule denies that network
for a while; a login from it is then refused as denylisted, one from elsewhere is not;
the alert shows the response; an analyst can undo it; after the TTL logins from it work
again. A dry run records and blocks nothing; a re-read after a restart does not act
twice; a response that cannot be recorded leaves no deny entry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from admin_harness import HOLDERS, WHY, holder_key
from login_harness import refusing_connections
from security_harness import LONDON, TALLINN, TARTU, AsRole, SecStack, security_stack
from sqlalchemy import event

from kroonika.alerting import HISTORY_MARGIN_S, RESPONSE_PRINCIPAL, AlertResponder
from kroonika.audit import Actor, ActorType, AuditUnavailable
from kroonika.audit.alerting import Alert, AlertResponse, AlertRule, alert_id_for
from kroonika.audit.sinks import CursorStore
from kroonika.security.simulate_attacks import run_attack

LONDON_NEIGHBOUR = "81.2.69.200"  # the attacker's /24, another address


class Responding(AsRole):
    def __init__(self, stack: SecStack, keys: dict[str, str]) -> None:
        self.stack = stack
        self.keys = keys

    def events(self, etype: str) -> list[dict[str, Any]]:
        return self.stack.events(types=(etype,))

    def login_start(self, ip: str) -> httpx.Response:
        """The start of a login from ``ip`` (through the trusted proxy)."""
        return httpx.get(
            self.stack.service + "/auth/login", headers={"x-forwarded-for": ip}, timeout=30
        )

    def attack(self, answers: int = 1) -> dict[str, Any]:
        """A brute-force attack from London; the ``response.action`` that answered it
        (the ``answers``-th of the trail)."""
        asyncio.run(run_attack("brute-force", self.stack.service, mock_url=self.stack.mock))
        self.stack.drain()
        _wait(lambda: len(self.events("response.action")) >= answers)
        actions = self.events("response.action")
        assert len(actions) == answers
        return actions[-1]

    def wait_out(self, action: dict[str, Any]) -> None:
        """Wait (really) until the denial of ``action`` has expired."""
        time.sleep(max(0.0, action["details"]["expires_at"] - time.time() + 1))

    def deny_entries(self) -> list[Any]:
        return self.stack.tokens.lists.entries("deny", "ip")

    def settle(self) -> None:
        """Wait until the evaluator has read everything stored."""
        store = self.stack.services.audit.store
        cursors = CursorStore(store.engine)

        def caught_up() -> bool:
            heads = {s: getattr(store.stream_state(s), "size", 0) for s in store.streams()}
            return all(cursors.get("@alerts", s) >= h for s, h in heads.items())

        _wait(caught_up)


def _wait(check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


@contextmanager
def responding(
    tmp_path: Path, *, mode: str, ttl_s: int = 900, **extra: Any
) -> Iterator[Responding]:
    overrides = {
        **extra,
        "admin_bootstrap": {"38001085718": ["admin"]},
        "jobs_enabled": False,
        "audit_sink_poll_s": 0.1,
        "alert_rules": {
            "security_anomaly": {
                "response": {"action": "deny_network", "ttl_s": ttl_s, "mode": mode}
            }
        },
    }
    with security_stack(tmp_path, settings_overrides=overrides) as stack:
        keys = {r: holder_key(stack.services, r, HOLDERS[r]) for r in HOLDERS}
        yield Responding(stack, keys)


def _refused(r: httpx.Response) -> bool:
    return r.status_code == 403 and r.json().get("reason") == "denylisted_ip"


def test_an_attack_denies_its_network_once_and_an_analyst_can_undo_it(tmp_path: Path) -> None:
    """Brute force from London: the alert's response denies 81.2.69.0/24 (one entry by
    the automated principal, its access_list.add and one response.action); a login from
    that network is refused as denylisted, one from Tartu is not; the alert lists the
    response; a re-read of the whole trail acts no more; removing the entry by hand
    lets London in again."""
    with responding(tmp_path, mode="enforce") as r:
        action = r.attack()
        (alert,) = r.events("alert.raise")
        alert_id = alert["details"]["alert_id"]
        details = action["details"]
        assert (details["action"], details["result"]) == ("deny_network", "done")
        assert details["alert_id"] == alert_id
        assert details["network"] == "81.2.69.0/24"
        assert details["mode"] == "enforce"
        assert action["actor"]["client_id"] == RESPONSE_PRINCIPAL

        (entry,) = r.deny_entries()
        assert entry.id == details["entry_id"]
        assert entry.value == "81.2.69.0/24"
        assert entry.created_by == RESPONSE_PRINCIPAL
        assert alert_id in entry.reason
        assert "security_anomaly" in entry.reason
        assert entry.expires_at == details["expires_at"]
        (added,) = r.events("access_list.add")
        assert added["target"]["id"] == entry.id
        assert added["actor"]["client_id"] == RESPONSE_PRINCIPAL
        for doc in (action, added):
            assert LONDON not in str(doc)  # the network only, never the address

        assert _refused(r.login_start(LONDON_NEIGHBOUR))
        assert r.login_start(TARTU).is_redirect  # to TARA: not refused

        listed = r.call("GET", "/admin/alerts", role="auditor").json()["alerts"]
        (shown,) = [a for a in listed if a["alert_id"] == alert_id]
        (response,) = shown["responses"]
        assert (response["action"], response["result"]) == ("deny_network", "done")
        assert response["entry_id"] == entry.id
        page = r.call("GET", "/admin/dashboard", role="auditor").text
        assert f"deny_network done 81.2.69.0/24 {entry.id}" in page

        # The evaluator restarted with its cursor put back (a crash before it moved):
        # it reads the alert again and does nothing more.
        alerting = r.stack.app.state.alerting
        r.run(alerting.stop())
        store = r.stack.services.audit.store
        for stream in store.streams():
            CursorStore(store.engine).reset("@alerts", stream, 0, "2026-11-27T00:00:00.000000Z")
        r.run(alerting.start())
        r.settle()
        assert len(r.events("response.action")) == 1
        assert len(r.events("access_list.add")) == 1
        assert len(r.deny_entries()) == 1

        undo = r.call(
            "DELETE", f"/admin/lists/{entry.id}", role="admin", headers={"x-justification": WHY}
        )
        assert undo.status_code == 200, undo.text
        (removed,) = r.events("access_list.remove")
        assert removed["details"]["why"] == WHY
        assert r.login_start(LONDON_NEIGHBOUR).is_redirect


def test_after_the_ttl_logins_from_the_network_work_again(tmp_path: Path) -> None:
    """The deny entry expires ttl_s after the response: then London may log in again."""
    with responding(tmp_path, mode="enforce", ttl_s=30) as r:
        action = r.attack()
        expires_at = action["details"]["expires_at"]
        assert _refused(r.login_start(LONDON_NEIGHBOUR))
        time.sleep(max(0.0, expires_at - time.time() + 1))
        assert r.login_start(LONDON_NEIGHBOUR).is_redirect


def test_a_dry_run_records_and_blocks_nothing(tmp_path: Path) -> None:
    """mode dry_run: one response.action with result dry_run and the network; no entry,
    no access_list.add; London is not refused."""
    with responding(tmp_path, mode="dry_run") as r:
        action = r.attack()
        assert action["details"]["result"] == "dry_run"
        assert action["details"]["network"] == "81.2.69.0/24"
        assert "entry_id" not in action["details"]
        assert r.deny_entries() == []
        assert r.events("access_list.add") == []
        assert r.login_start(LONDON_NEIGHBOUR).is_redirect


class Crash(BaseException):
    """The process dying at that point: nothing after it runs."""


def _alert(network: str, key_kind: str = "ip") -> Alert:
    return Alert(
        alert_id=alert_id_for("brute_net", f"{network} {key_kind}"),
        rule="brute_net",
        summary="brute_net: security.anomaly",
        severity="error",
        raised_at="2026-11-28T00:00:00Z",
        first_seen="2026-11-28T00:00:00Z",
        key=f"kind=brute_force key_kind={key_kind} ip={network}",
    )


RULE = AlertRule(
    "brute_net",
    ("security.anomaly",),
    key=("details.kind", "details.key_kind", "source.ip"),
    response=AlertResponse("deny_network", ttl_s=600, mode="enforce"),
)


def _responder(r: Responding, fault: BaseException | None) -> AlertResponder:
    trail = r.stack.services.audit.trail

    async def emit(event: Any) -> Any:
        if fault is not None and event.type == "response.action":
            raise fault
        return await trail.emit(event)

    return AlertResponder(
        r.stack.tokens.service,
        emit,
        store=r.stack.services.audit.store,
        trusted_proxies=r.stack.settings.trusted_proxies,
    )


def test_a_response_that_cannot_be_recorded_leaves_no_entry(tmp_path: Path) -> None:
    """The trail refuses the response.action: the deny entry is removed again (its
    access_list.add and access_list.remove are recorded) and the evaluator is told."""
    with responding(tmp_path, mode="enforce") as r:
        responder = _responder(r, AuditUnavailable("the audit store is down"))
        with pytest.raises(AuditUnavailable):
            r.run(responder.respond(RULE, _alert("192.0.2.0/24")))
        assert r.deny_entries() == []
        assert r.events("response.action") == []
        (added,) = r.events("access_list.add")
        (removed,) = r.events("access_list.remove")
        assert added["target"]["id"] == removed["target"]["id"]
        assert removed["actor"]["client_id"] == RESPONSE_PRINCIPAL


def test_a_crash_before_the_response_was_recorded_does_not_deny_twice(tmp_path: Path) -> None:
    """The process dies between the deny entry and its response.action: the next try
    finds the entry by its reason and records it as done; one entry, one response."""
    with responding(tmp_path, mode="enforce") as r:
        alert = _alert("192.0.2.0/24")
        with pytest.raises(Crash):
            r.run(_responder(r, Crash()).respond(RULE, alert))
        (left,) = r.deny_entries()
        details = r.run(_responder(r, None).respond(RULE, alert))
        assert (details["result"], details["entry_id"]) == ("done", left.id)
        assert [e.id for e in r.deny_entries()] == [left.id]
        assert len(r.events("access_list.add")) == 1
        assert len(r.events("response.action")) == 1


def test_a_proxy_network_or_a_person_s_anomaly_is_never_denied(tmp_path: Path) -> None:
    """A network holding a trusted proxy (everyone behind it would be locked out) and
    an anomaly about a person (its network is the victim's) are skipped and recorded;
    a network someone else denied already is left as it is."""
    with responding(tmp_path, mode="enforce") as r:
        responder = _responder(r, None)
        proxy = r.run(responder.respond(RULE, _alert("127.0.0.0/24")))
        assert proxy["result"] == "skipped:trusted_proxy"
        person = r.run(responder.respond(RULE, _alert("193.40.0.0/24", "person")))
        assert person["result"] == "skipped:not_keyed_by_network"
        r.stack.tokens.lists.add("deny", "ip", "194.126.100.0/24", reason="abuse", created_by="t")
        taken = r.run(responder.respond(RULE, _alert("194.126.100.0/24")))
        assert taken["result"] == "skipped:already_denied"
        assert [e.created_by for e in r.deny_entries()] == ["t"]
        assert len(r.events("response.action")) == 3
        assert TALLINN not in str(r.events("response.action"))


@pytest.mark.postgres
def test_the_business_database_away_is_recorded_as_failed(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    """deny_network while the business database refuses connections: one response.action
    with result failed:database_unavailable (the alert is not held up); no entry after."""
    overrides = {"database_url": fresh_postgres_url, "jobs_enabled": False}
    with security_stack(tmp_path, settings_overrides=overrides) as stack:
        r = Responding(stack, {})
        with refusing_connections(fresh_postgres_url):
            details = r.run(_responder(r, None).respond(RULE, _alert("192.0.2.0/24")))
        assert details["result"] == "failed:database_unavailable"
        (action,) = r.events("response.action")
        assert action["details"]["result"] == "failed:database_unavailable"
        assert r.deny_entries() == []


# --- renewal while the attack goes on (decision 0039, 2026-11-28) ----------------------

#: ttl_s at its minimum, and a brute-force window as short, so that a second attack
#: after the denial is a second anomaly (a repeat of the open alert)
RESUMING = {"ttl_s": 10, "security_brute_force_window_s": 10}


def test_an_attack_that_resumes_after_the_ttl_is_denied_again(tmp_path: Path) -> None:
    """Brute force, denial, the attacker waits the ttl out and comes back: the repeat
    of the open alert renews the denial (the automated entry's expiry extended, its
    access_list.update recorded, one response.action renewed naming the entry and the
    expiry it renews); London is refused again; the alert lists both responses."""
    with responding(tmp_path, mode="enforce", **RESUMING) as r:  # type: ignore[arg-type]
        first = r.attack()
        (entry,) = r.deny_entries()
        r.wait_out(first)
        assert r.login_start(LONDON_NEIGHBOUR).is_redirect  # expired: let in
        renewal = r.attack(answers=2)["details"]
        assert (renewal["result"], renewal["entry_id"]) == ("renewed", entry.id)
        assert renewal["alert_id"] == first["details"]["alert_id"]
        assert renewal["renews"] == first["details"]["expires_at"]
        (renewed,) = r.deny_entries()
        assert renewed.id == entry.id
        assert renewed.expires_at == renewal["expires_at"] > time.time()
        (updated,) = r.events("access_list.update")
        assert updated["target"]["id"] == entry.id
        assert updated["actor"]["client_id"] == RESPONSE_PRINCIPAL
        assert _refused(r.login_start(LONDON_NEIGHBOUR))
        raised = [a["details"]["rule"] for a in r.events("alert.raise")]
        assert raised.count("security_anomaly") == 1  # (refused logins are violations)

        listed = r.call("GET", "/admin/alerts", role="auditor").json()["alerts"]
        (shown,) = [a for a in listed if a["alert_id"] == renewal["alert_id"]]
        assert [x["result"] for x in shown["responses"]] == ["done", "renewed"]
        assert shown["responses"][1]["expires_at"] == renewal["expires_at"]
        page = r.call("GET", "/admin/dashboard", role="auditor").text
        assert f"deny_network renewed 81.2.69.0/24 {entry.id}" in page


def test_an_analyst_s_removal_of_the_denial_is_respected(tmp_path: Path) -> None:
    """An analyst removed the automated entry (let them in): the attack resuming after
    the ttl renews nothing; one response.action skipped:removed_by_analyst says so."""
    with responding(tmp_path, mode="enforce", **RESUMING) as r:  # type: ignore[arg-type]
        first = r.attack()
        entry_id = first["details"]["entry_id"]
        undo = r.call(
            "DELETE", f"/admin/lists/{entry_id}", role="admin", headers={"x-justification": WHY}
        )
        assert undo.status_code == 200, undo.text
        r.wait_out(first)
        second = r.attack(answers=2)["details"]
        assert second["result"] == "skipped:removed_by_analyst"
        assert second["entry_id"] == entry_id
        assert r.deny_entries() == []
        assert r.login_start(LONDON_NEIGHBOUR).is_redirect
        assert len(r.events("access_list.add")) == 1


def test_an_acknowledged_alert_is_not_renewed(tmp_path: Path) -> None:
    """An analyst acknowledged the alert (took it over): the attack resuming after the
    ttl raises a new alert, answered on its own; the acknowledged alert has its first
    response only."""
    with responding(tmp_path, mode="enforce", **RESUMING) as r:  # type: ignore[arg-type]
        first = r.attack()
        alert_id = first["details"]["alert_id"]
        ack = r.call("POST", f"/admin/alerts/{alert_id}/acknowledge", json={"justification": WHY})
        assert ack.status_code == 200, ack.text
        r.wait_out(first)
        second = r.attack(answers=2)["details"]
        assert second["alert_id"] != alert_id
        assert "renews" not in second
        listed = r.call("GET", "/admin/alerts?state=all", role="auditor").json()["alerts"]
        (acknowledged,) = [a for a in listed if a["alert_id"] == alert_id]
        assert [x["result"] for x in acknowledged["responses"]] == ["done"]


def _answered(r: Responding, alert: Alert) -> dict[str, Any]:
    """The alert denied by a responder that works; the alert's book knows it."""
    details: dict[str, Any] = r.run(_responder(r, None).respond(RULE, alert))
    alert.apply_response({"type": "response.action", "details": details})
    return details


def test_a_renewal_that_cannot_be_recorded_is_put_back(tmp_path: Path) -> None:
    """The trail refuses the renewal's response.action: the entry gets its expiry back
    (recorded) and the evaluator is told; a crash instead leaves the entry renewed, and
    the next try records that renewal once, changing nothing more."""
    with responding(tmp_path, mode="enforce") as r:
        alert = _alert("192.0.2.0/24")
        first = _answered(r, alert)
        with pytest.raises(AuditUnavailable):
            r.run(_responder(r, AuditUnavailable("down")).renew(RULE, alert, first))
        (entry,) = r.deny_entries()
        assert entry.expires_at == first["expires_at"]
        updates = r.events("access_list.update")
        assert [u["actor"]["client_id"] for u in updates] == [RESPONSE_PRINCIPAL] * 2
        assert len(r.events("response.action")) == 1

        with pytest.raises(Crash):
            r.run(_responder(r, Crash()).renew(RULE, alert, first))
        (crashed,) = r.deny_entries()
        assert crashed.expires_at == first["expires_at"] + RULE.response.ttl_s  # type: ignore[union-attr]
        details = r.run(_responder(r, None).renew(RULE, alert, first))
        assert (details["result"], details["renews"]) == ("renewed", first["expires_at"])
        assert details["expires_at"] == crashed.expires_at
        assert len(r.events("access_list.update")) == 3
        assert len(r.events("response.action")) == 2


def test_a_renewal_reads_the_trail_since_its_standing_response_only(tmp_path: Path) -> None:
    """An alert first seen two days ago (a rule's window may be up to 30 days), its
    denial standing since now: the renewal's look for an analyst's change or an
    acknowledgement starts at the standing response (less the margin for events stored
    late), not at the alert's first event; it still sees an analyst's change after it."""
    with responding(tmp_path, mode="enforce") as r:
        alert = _alert("192.0.2.0/24")
        alert.first_seen = alert.raised_at = _iso(time.time() - 2 * 86400)
        first = r.run(_responder(r, None).respond(RULE, alert))
        standing_at = time.time()
        alert.apply_response(
            {"type": "response.action", "time": _iso(standing_at), "details": first}
        )
        renewals: list[dict[str, Any]] = []
        bounds = _time_bounds_read(
            r, lambda: renewals.append(r.run(_responder(r, None).renew(RULE, alert, first)))
        )
        assert bounds
        assert min(bounds) >= _iso(standing_at - HISTORY_MARGIN_S - 1), bounds
        (renewal,) = renewals
        assert renewal["result"] == "renewed"
        alert.apply_response(
            {"type": "response.action", "time": _iso(time.time()), "details": renewal}
        )
        r.run(
            r.stack.tokens.service.list_update(
                first["entry_id"],
                why="mine now",
                actor=Actor(ActorType.ADMIN, roles=("admin",)),
                expires_at=renewal["expires_at"] + 3600,
            )
        )
        later = r.run(_responder(r, None).renew(RULE, alert, renewal))
        assert (later["result"], later["entry_id"]) == (
            "skipped:changed_by_analyst",
            first["entry_id"],
        )


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def _time_bounds_read(r: Responding, act: Callable[[], Any]) -> list[str]:
    """The lower time bounds of the audit store's reads while ``act`` runs."""
    engine = r.stack.services.audit.store.engine
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "last_time >=" in statement:
            values = params.values() if isinstance(params, dict) else params or ()
            seen.extend(v for v in values if isinstance(v, str) and v[:2] == "20")

    event.listen(engine, "before_cursor_execute", record)
    try:
        act()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def test_an_entry_the_cleanup_job_removed_is_renewed_as_a_new_one(tmp_path: Path) -> None:
    """The expired entry removed by the system (the access_lists job): the renewal adds
    a new entry for the network (its access_list.add), recorded as renewed."""
    with responding(tmp_path, mode="enforce") as r:
        alert = _alert("192.0.2.0/24")
        first = _answered(r, alert)
        r.run(
            r.stack.tokens.service.list_remove(
                first["entry_id"], why="expired", actor=Actor(ActorType.SYSTEM)
            )
        )
        details = r.run(_responder(r, None).renew(RULE, alert, first))
        assert details["result"] == "renewed"
        (entry,) = r.deny_entries()
        assert entry.id == details["entry_id"] != first["entry_id"]
        assert entry.value == "192.0.2.0/24"
        assert len(r.events("access_list.add")) == 2


def test_a_dry_run_renewal_changes_nothing(tmp_path: Path) -> None:
    """A dry run's renewal records dry_run_renewal with the expiry it would give."""
    with responding(tmp_path, mode="dry_run") as r:
        rule = AlertRule(
            RULE.name, RULE.types, key=RULE.key, response=AlertResponse("deny_network", 600)
        )
        alert = _alert("192.0.2.0/24")
        first = r.run(_responder(r, None).respond(rule, alert))
        assert first["result"] == "dry_run"
        details = r.run(_responder(r, None).renew(rule, alert, first))
        assert details["result"] == "dry_run_renewal"
        assert details["expires_at"] == first["expires_at"] + 600
        assert r.deny_entries() == []
        assert r.events("access_list.add") == r.events("access_list.update") == []
