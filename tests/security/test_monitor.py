"""The monitor on the live stream: scripted auth.login sequences through a real trail
(real pipeline with geo enrichment, SQLite store) and real profile tables."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from security_kit import Kit, drop_redis_keys, make_kit, redis_windows

from kroonika.audit import Actor, ActorType, Correlation, Outcome, Source, events
from kroonika.audit.enrich import FeedAction, FeedSpec, ThreatIntel
from kroonika.audit.processors.anonymise_ip import AnonymiseIp
from kroonika.security import SecurityMonitor, detectors, monitor
from poll_kit import eventually

TARTU_IP = "193.40.12.7"
TALLINN_IP = "194.126.100.9"
LONDON_IP = "81.2.69.142"
SYDNEY_IP = "1.1.1.1"
ATTACKER_IP = "45.133.1.77"  # not in the geo fixture


@pytest_asyncio.fixture(params=["memory", "redis"])
async def kit(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Kit]:
    """A monitor whose windows are in the process, or in the real Redis (as with
    several instances): every detector test runs against both."""
    prefix = f"kroonika-test:{uuid.uuid4().hex}"
    shared = request.param == "redis"
    k = make_kit(
        tmp_path,
        windows=redis_windows(request.getfixturevalue("redis_url"), prefix) if shared else None,
    )
    await k.trail.start()
    await k.monitor.start()
    yield k
    await k.monitor.stop()
    await k.trail.stop()
    k.store.close()
    if shared:
        drop_redis_keys(request.getfixturevalue("redis_url"), prefix)


async def login(
    kit: Kit,
    ip: str,
    *,
    person: str | None = "38001085718",
    ok: bool = True,
    reason: str = "tara.user_cancel",
) -> None:
    await kit.trail.emit(
        events.auth_login(
            outcome=Outcome.SUCCESS if ok else Outcome.FAILURE,
            reason=None if ok else reason,
            actor=Actor(
                ActorType.USER if person else ActorType.ANONYMOUS, subject=person and f"EE{person}"
            ),
            source=Source(ip=ip, user_agent="Mozilla/5.0"),
            correlation=Correlation(request_id="r1"),
            method="smartid",
            idp="tara",
        )
    )
    await kit.monitor.drain()


async def normal_history(kit: Kit, days: int = 12) -> None:
    """A person who logs in from Tartu or Tallinn around 09-11 UTC every day."""
    for day in range(days):
        kit.clock.now_ns = (1_780_000_000 // 86400 + day) * 86400 * 10**9 + 9 * 3600 * 10**9
        kit.clock.advance((day % 3) * 1800)
        await login(kit, TARTU_IP if day % 2 else TALLINN_IP)


@pytest.mark.asyncio
async def test_a_normal_sequence_gives_no_anomaly(kit: Kit) -> None:
    """Twelve days of daytime logins from Estonia produce no anomaly."""
    await normal_history(kit)
    assert kit.anomalies() == []
    assert kit.monitor.counts["observed"] == 12


@pytest.mark.asyncio
async def test_new_country(kit: Kit) -> None:
    """After Estonian logins, a London login (a day later) is a new country."""
    await normal_history(kit, days=3)
    kit.clock.advance(86400)
    await login(kit, LONDON_IP)
    kinds = [k for k, _ in kit.anomalies()]
    assert kinds == ["new_country"]
    (_, rec) = kit.anomalies()[0]
    assert rec["actor"]["pseudonym"] == kit.fingerprinter.pseudonym("EE38001085718")
    assert rec["source"]["geo"]["city"] == "London"
    assert '"country":"GB"' in rec["details"]["evidence"]


@pytest.mark.asyncio
async def test_impossible_travel(kit: Kit) -> None:
    """Tartu and then Sydney twenty minutes later is impossible travel."""
    await normal_history(kit, days=2)
    kit.clock.advance(3600)
    await login(kit, TARTU_IP)
    kit.clock.advance(1200)
    await login(kit, SYDNEY_IP)
    kinds = sorted(k for k, _ in kit.anomalies())
    assert "impossible_travel" in kinds
    rec = next(r for k, r in kit.anomalies() if k == "impossible_travel")
    assert '"from":"EE/Tartu"' in rec["details"]["evidence"]
    assert rec["details"]["confidence"] >= 75


@pytest.mark.asyncio
async def test_unusual_hour(kit: Kit) -> None:
    """After twelve days of 09-11 UTC logins, a 03:00 login is at an unusual hour."""
    await normal_history(kit)
    kit.clock.now_ns = (kit.clock.now_ns // (86400 * 10**9) + 1) * 86400 * 10**9 + 3 * 3600 * 10**9
    await login(kit, TARTU_IP)
    assert [k for k, _ in kit.anomalies()] == ["unusual_hour"]


@pytest.mark.asyncio
async def test_brute_force(kit: Kit) -> None:
    """Eight failed logins for one person in a minute and a half: one brute-force
    anomaly per key (person and network), not one per attempt."""
    for _ in range(12):
        kit.clock.advance(10)
        await login(kit, ATTACKER_IP, ok=False)
    found = sorted((r["details"]["key_kind"], k) for k, r in kit.anomalies())
    assert found == [("ip", "brute_force"), ("person", "brute_force")]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "reason",
    [
        "idp_unavailable",
        "idp_misconfigured",
        "idp_bad_response",
        "idp_client_rejected",
        "idp_request_rejected",
        "database_unavailable",
        "internal_error",
        "id_token.bad_signature",
        "id_token.unknown_kid",
        "id_token.issuer_mismatch",
        "id_token.audience_mismatch",
        "id_token.expired",
        "id_token.issued_in_future",
        "id_token.missing_claim",
    ],
)
async def test_failures_that_are_the_services_fault_are_no_attack(kit: Kit, reason: str) -> None:
    """TARA down or refusing our client secret fails every login from an office network
    and of people who retry: no brute-force or credential-stuffing finding, since
    nobody guessed anything."""
    for i in range(15):
        kit.clock.advance(10)
        await login(kit, ATTACKER_IP, ok=False, reason=reason)
        await login(kit, ATTACKER_IP, person=f"3800108{i:04d}", ok=False, reason=reason)
    kinds = [k for k, _ in kit.anomalies()]
    assert kinds == (["forged_id_token"] if reason in detectors.FORGERY_SIGNS else [])
    assert kit.monitor.counts["service_faults"] == 30


@pytest.mark.asyncio
@pytest.mark.parametrize("reason", sorted(detectors.FORGERY_SIGNS))
async def test_an_id_token_not_signed_by_the_provider_raises_one_anomaly(
    kit: Kit, reason: str
) -> None:
    """A bad signature, a downgraded algorithm or a key id unknown after a refetch can
    mean someone answers in TARA's place: one anomaly about the provider per window
    (not one per login, and no brute force in the people's names); the next window
    raises it again if it goes on."""
    for _ in range(5):  # the ID token was not trusted, so the person is not known
        kit.clock.advance(10)
        await login(kit, ATTACKER_IP, person=None, ok=False, reason=reason)
    ((kind, rec),) = kit.anomalies()
    assert kind == "forged_id_token"
    assert rec["details"]["key_kind"] == "idp"
    assert rec["details"]["confidence"] == detectors.FORGERY_SIGNS[reason]
    assert '"reason":"' + reason + '"' in rec["details"]["evidence"]
    assert rec["actor"]["type"] == "anonymous"
    assert rec["severity"] in ("warning", "error", "critical", "alert")
    kit.clock.advance(int(kit.monitor.config.stuffing_window_s) + 1)
    await login(kit, ATTACKER_IP, person=None, ok=False, reason=reason)
    assert [k for k, _ in kit.anomalies()] == ["forged_id_token", "forged_id_token"]
    await login(kit, ATTACKER_IP, ok=False, reason="id_token.issuer_mismatch")
    assert len(kit.anomalies()) == 2


@pytest.mark.asyncio
async def test_a_few_failures_are_not_brute_force(kit: Kit) -> None:
    """Seven failures spread over a quarter of an hour are normal mistakes."""
    for _ in range(7):
        kit.clock.advance(130)
        await login(kit, TARTU_IP, ok=False)
    assert kit.anomalies() == []


@pytest.mark.asyncio
@pytest.mark.parametrize("reason", ["id_token.nonce_mismatch", "id_token.state_mismatch"])
async def test_a_code_injected_into_the_browser_still_counts(kit: Kit, reason: str) -> None:
    """A nonce or state that is not the flow's came through the browser: such failures
    still feed the brute-force detector."""
    for _ in range(8):
        kit.clock.advance(10)
        await login(kit, ATTACKER_IP, ok=False, reason=reason)
    assert ("person", "brute_force") in [(r["details"]["key_kind"], k) for k, r in kit.anomalies()]
    assert kit.monitor.counts["service_faults"] == 0


def test_every_id_token_check_that_is_taras_fault_is_a_service_fault() -> None:
    """The TARA client's upstream ID-token checks and the monitor's list agree: an ID
    token that fails its checks after the code exchange never feeds a detector, and
    one the browser can cause (nonce, state) always does."""
    from kroonika.tara import ID_TOKEN_CHECKS, IdTokenInvalid

    for check in ID_TOKEN_CHECKS:
        exc = IdTokenInvalid(check, "x")
        assert (exc.reason in monitor.SERVICE_FAULTS) == exc.upstream, check
    assert {"nonce_mismatch", "state_mismatch", "bad_signature"} <= ID_TOKEN_CHECKS


@pytest.mark.asyncio
async def test_credential_stuffing(kit: Kit) -> None:
    """One address failing for fifteen different people is credential stuffing."""
    for i in range(15):
        kit.clock.advance(20)
        await login(kit, ATTACKER_IP, person=f"3800108{i:04d}", ok=False)
    kinds = [k for k, _ in kit.anomalies()]
    assert kinds == ["credential_stuffing"]
    rec = kit.anomalies()[0][1]
    assert rec["source"]["ip"] == "45.133.1.0"
    assert ATTACKER_IP not in str(rec)


@pytest.mark.asyncio
async def test_threat_match_is_emitted_from_the_enriched_event(tmp_path: Path) -> None:
    """A login from a listed address carries threat context and yields security.threat_match."""
    feed = tmp_path / "drop.txt"
    feed.write_text("45.133.1.0/24 ; SBL487172\n")
    intel = ThreatIntel([FeedSpec("spamhaus-drop", feed, action=FeedAction.DENY_LOGIN)])
    k = make_kit(tmp_path, threat=intel)
    await k.trail.start()
    await k.monitor.start()
    try:
        await login(k, ATTACKER_IP, ok=False)
        (login_rec,) = k.of_type("auth.login")
        (match,) = k.of_type("security.threat_match")
    finally:
        await k.monitor.stop()
        await k.trail.stop()
        k.store.close()
    assert login_rec["threat"][0]["indicator"] == "45.133.1.0/24"
    assert match["details"] == {
        "feed": "spamhaus-drop",
        "action": "deny_login",
        "event_type": "auth.login",
    }
    assert match["threat"] == login_rec["threat"]


@pytest.mark.asyncio
async def test_profile_is_kept_in_the_database(kit: Kit) -> None:
    """The profile keyed by pseudonym holds countries, networks, hours and the last place."""
    await normal_history(kit, days=4)
    p = kit.profiles.get(kit.fingerprinter.pseudonym("EE38001085718"))
    assert p is not None
    assert p.login_count == 4
    assert dict(p.countries) == {"EE": 4}
    assert set(p.networks) == {"193.40.12.0/24", "194.126.100.0/24"}
    assert p.last_place is not None
    assert p.last_place.city == "Tartu"
    assert sum(p.hours[12:15]) == 4  # 09-11 UTC: 12-14 in a Tallinn summer


@pytest.mark.asyncio
@pytest.mark.parametrize("rotate", [False, True], ids=["one_address", "rotating_in_a_64"])
async def test_ipv6_sources_are_counted_per_64(tmp_path: Path, rotate: bool) -> None:
    """With full IPv6 addresses kept in the trail (prefix 128), an attacker who takes a
    new address of their /64 for every attempt (privacy addresses cost nothing) is the
    one network that one address would be: eight failures for eight people are brute
    force from that network either way, named by its /64."""
    k = make_kit(tmp_path, anonymise_ip=AnonymiseIp(v6_prefix=128))
    await k.trail.start()
    await k.monitor.start()
    try:
        for i in range(8):
            k.clock.advance(10)
            ip = f"2001:db8:7:1:{i + 1:x}::5" if rotate else "2001:db8:7:1::5"
            await login(k, ip, person=f"3800108{i:04d}", ok=False)
    finally:
        await k.monitor.stop()
        await k.trail.stop()
        k.store.close()
    found = [(r["details"]["key_kind"], kind) for kind, r in k.anomalies()]
    assert found == [("ip", "brute_force")]


@pytest.mark.asyncio
async def test_an_attack_is_never_pinned_on_another_network(kit: Kit) -> None:
    """A brute-force finding names the attacking network and person: an unrelated
    failed login from elsewhere, once the attack's window has passed, does not
    re-raise the attack with the bystander's address and pseudonym."""
    for _ in range(40):
        kit.clock.advance(3)
        await login(kit, ATTACKER_IP, ok=False)
    kit.clock.advance(24)  # 120 s after the first findings; the attack is still in the window
    await login(kit, TARTU_IP, person="49403136526", ok=False)
    bystander = kit.fingerprinter.pseudonym("EE49403136526")
    for _, rec in kit.anomalies():
        assert rec["source"]["ip"] == "45.133.1.0"
        assert rec["actor"].get("pseudonym") != bystander
    assert len(kit.anomalies()) == 2


@pytest.mark.asyncio
async def test_a_failure_is_checked_against_its_own_keys_only(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failures from many networks in one window: each is checked against its own
    person's and network's history, so a flood of distinct addresses cannot make
    detection cost grow with the square of the window and fall behind."""
    sizes: list[int] = []

    def brute_force(window: Any, now: float, config: detectors.DetectorConfig) -> Any:
        sizes.append(len(window))
        return detectors.brute_force(window, now, config)

    monkeypatch.setattr(monitor, "brute_force", brute_force)
    for i in range(300):
        record = {
            "type": "auth.login",
            "time": f"2026-06-01T10:{i // 60:02d}:{i % 60:02d}Z",
            "outcome": "failure",
            "source": {"ip": f"10.{i // 256}.{i % 256}.0", "ip_prefix": 24},
        }
        assert await kit.monitor.observe(record) == []
    assert len(sizes) == 300
    assert max(sizes) == 1


@pytest.mark.asyncio
async def test_an_older_login_does_not_replace_the_last_one(kit: Kit) -> None:
    """A login folded in after a later one (several instances share the profiles)
    counts in the history but leaves the last login's time and place."""
    await normal_history(kit, days=2)
    person = kit.fingerprinter.pseudonym("EE38001085718")
    before = kit.profiles.get(person)
    assert before is not None
    assert before.last_at is not None
    older = detectors.LoginObservation(
        before.last_at - 7200, True, person, "81.2.69.0/24", detectors.Place("GB", "London")
    )
    kit.profiles.record_login(older)
    after = kit.profiles.get(person)
    assert after is not None
    assert after.login_count == 3
    assert dict(after.countries) == {"EE": 2, "GB": 1}
    assert (after.last_at, after.last_place) == (before.last_at, before.last_place)


@pytest.mark.asyncio
async def test_a_place_with_odd_coordinates_is_a_place_without_them(kit: Kit) -> None:
    """Coordinates that are not a point on Earth ("nan", out of range) are ignored:
    no detector error, and the login still counts in the profile."""
    await normal_history(kit, days=2)
    for lat, lon in (("nan", "0"), ("inf", "10"), ("91", "10"), ("10", "-181")):
        kit.clock.advance(600)
        await kit.trail.emit(
            events.auth_login(
                outcome=Outcome.SUCCESS,
                actor=Actor(ActorType.USER, subject="EE38001085718"),
                source=Source(ip=TARTU_IP, geo={"country": "EE", "lat": lat, "lon": lon}),
                method="smartid",
            )
        )
        await kit.monitor.drain()
    assert kit.monitor.counts["errors"] == 0
    p = kit.profiles.get(kit.fingerprinter.pseudonym("EE38001085718"))
    assert p is not None
    assert p.login_count == 6
    assert p.last_place is not None
    assert p.last_place.city == "Tartu"  # the last login with a real location


@pytest.mark.asyncio
async def test_a_detector_error_still_folds_the_login_into_the_profile(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fail open without losing history: when a per-login detector raises, the error
    is counted and the login still counts in the person's profile."""
    await normal_history(kit, days=2)

    def broken(*_: Any) -> Any:
        raise ValueError("detector bug")

    monkeypatch.setattr(monitor, "login_findings", broken)
    kit.clock.advance(3600)
    await login(kit, TARTU_IP)
    assert kit.monitor.counts["errors"] == 1
    p = kit.profiles.get(kit.fingerprinter.pseudonym("EE38001085718"))
    assert p is not None
    assert p.login_count == 3


@pytest.mark.asyncio
async def test_thresholds_raised_at_run_time_can_still_be_reached(kit: Kit) -> None:
    """The admin API raises the brute-force threshold on a running monitor: the
    history kept per network grows with it, so 300 failures still make a finding."""
    kit.monitor.config = dataclasses.replace(kit.monitor.config, brute_force_failures=300)
    found = []
    for i in range(300):
        record = {
            "type": "auth.login",
            "time": f"2026-06-01T10:00:{i // 10:02d}.{i % 10}00000Z",
            "outcome": "failure",
            "source": {"ip": "45.133.1.0", "ip_prefix": 24},
        }
        found += await kit.monitor.observe(record)
    assert [(e.details["kind"], e.details["key_kind"]) for e in found] == [("brute_force", "ip")]
    assert '"failures":300' in found[0].details["evidence"]


@pytest.mark.asyncio
async def test_a_login_without_a_location_does_not_reset_impossible_travel(kit: Kit) -> None:
    """Tartu, then an address the geo database does not know, then Sydney ten minutes
    after Tartu: still impossible travel, measured from Tartu."""
    await normal_history(kit, days=2)
    kit.clock.advance(3600)
    await login(kit, TARTU_IP)
    kit.clock.advance(300)
    await login(kit, ATTACKER_IP)
    kit.clock.advance(300)
    await login(kit, SYDNEY_IP)
    travel = [r for k, r in kit.anomalies() if k == "impossible_travel"]
    assert len(travel) == 1
    assert '"from":"EE/Tartu"' in travel[0]["details"]["evidence"]
    assert '"minutes":10' in travel[0]["details"]["evidence"]


@pytest.mark.asyncio
async def test_a_monitor_that_falls_behind_drops_and_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Detection stuck behind: the queue holds at most queue_size events; the rest
    are skipped and counted as dropped instead of held in memory without limit."""
    k = make_kit(tmp_path)
    stuck = SecurityMonitor(k.trail, k.profiles, queue_size=5)
    release = asyncio.Event()
    examined: list[dict[str, Any]] = []

    async def slow(record: dict[str, Any]) -> list[Any]:
        examined.append(record)
        await release.wait()
        return []

    monkeypatch.setattr(stuck, "observe", slow)
    await k.trail.start()
    await stuck.start()
    try:
        for i in range(10):
            k.clock.advance(1)
            await k.trail.emit(
                events.auth_login(
                    outcome=Outcome.FAILURE,
                    reason="tara.user_cancel",
                    source=Source(ip=f"45.133.{i}.1"),
                    method="smartid",
                )
            )
        # the monitor's task takes the first record on its own time (a 0.5 s bound
        # can be too short on a loaded machine)
        await eventually(lambda: stuck.counts["dropped"] == 4)
        assert stuck.counts["dropped"] == 4  # one being examined, five waiting
        release.set()
        await stuck.drain()
        assert len(examined) == 6
    finally:
        release.set()
        await stuck.stop()
        await k.trail.stop()
        k.store.close()


@pytest.mark.asyncio
async def test_an_erased_person_is_forgotten_but_their_network_keeps_its_count(
    kit: Kit,
) -> None:
    """forget (an erasure): the person's recent failures go, so their next ones start a
    fresh window (no brute force on the person), while the network still counts every
    failure from it (brute force on the address)."""
    for _ in range(5):
        kit.clock.advance(10)
        await login(kit, ATTACKER_IP, ok=False)
    assert kit.anomalies() == []
    assert kit.monitor.forget([kit.fingerprinter.pseudonym("EE38001085718")]) == 5
    for _ in range(5):
        kit.clock.advance(10)
        await login(kit, ATTACKER_IP, ok=False)
    found = sorted((r["details"]["key_kind"], k) for k, r in kit.anomalies())
    assert found == [("ip", "brute_force")]


@pytest.mark.asyncio
async def test_an_erased_person_still_counts_as_one_person_of_a_stuffing_network(
    kit: Kit,
) -> None:
    """Credential stuffing counts distinct people per network: an erased person's failures
    stay there under a stand-in that names nobody, so the attack is still found."""
    people = [f"3800108{i:04d}" for i in range(15)]
    for code in people[:8]:
        kit.clock.advance(20)
        await login(kit, ATTACKER_IP, person=code, ok=False)
    assert kit.monitor.forget([kit.fingerprinter.pseudonym("EE" + people[0])]) == 1
    for code in people[8:]:
        kit.clock.advance(20)
        await login(kit, ATTACKER_IP, person=code, ok=False)
    assert [k for k, _ in kit.anomalies()] == ["credential_stuffing"]
