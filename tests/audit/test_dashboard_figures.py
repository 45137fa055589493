"""The dashboard's figures read from a real store: open and acknowledged alerts across
writer streams, counts bounded to their windows, the latest verification, the streams."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest
from audit_kit import MASTER_KEY, PSEUDONYM_KEY

from kroonika.audit import (
    Actor,
    ActorType,
    AuditEvent,
    AuditTrail,
    Counters,
    Fingerprinter,
    KeyRing,
    Outcome,
    Pipeline,
    Severity,
    Source,
    SqlAuditStore,
    SqlSubjectKeys,
    events,
)
from kroonika.audit.alerting import LiveBook
from kroonika.audit.dashboard import anonymised_source, overview

NOW = datetime.datetime(2026, 11, 27, 12, 0, 0, tzinfo=datetime.UTC)
SYSTEM = Actor(ActorType.SYSTEM)


class Writer:
    """Writer streams on one store whose events are stamped at chosen times."""

    def __init__(self, url: str, keys_dir: Path) -> None:
        self.store = SqlAuditStore(url)
        self.store.upgrade()
        self.keyring = KeyRing.open(keys_dir, create=True)
        self.keys = SqlSubjectKeys(self.store, MASTER_KEY)
        self.fingerprinter = Fingerprinter(PSEUDONYM_KEY, "p1")
        self.at = NOW
        self.trails: dict[str, AuditTrail] = {}

    def _clock(self) -> int:
        return int(self.at.timestamp() * 1_000_000) * 1000

    def emit(self, ago: datetime.timedelta, event: AuditEvent, stream: str = "one") -> None:
        self.at = NOW - ago
        trail = self.trails.get(stream)
        if trail is None:
            pipeline = Pipeline.standard(
                fingerprinter=self.fingerprinter,
                subject_keys=self.keys,
                counters=Counters(),
                strict=True,
            )
            trail = AuditTrail(
                pipeline,
                self.store,
                self.keyring,
                stream=stream,
                subject_keys=self.keys,
                clock=self._clock,
                checkpoint_interval=3600,
            )
            self.trails[stream] = trail
        trail.emit_sync(event)


@pytest.fixture
def writer(store_url: str, tmp_path: Path) -> Iterator[Writer]:
    w = Writer(store_url, tmp_path / "keys")
    yield w
    w.store.close()


def _raise(alert_id: str, severity: Severity = Severity.ALERT, rule: str = "r") -> AuditEvent:
    return events.alert_raise(
        actor=SYSTEM, severity=severity, alert_id=alert_id, rule=rule, summary=f"about {alert_id}"
    )


def _ack(alert_id: str) -> AuditEvent:
    return events.alert_acknowledge(
        actor=Actor(ActorType.ADMIN, subject="EE38001085718", roles=("security",)),
        alert_id=alert_id,
        note="looked at it",
    )


H = datetime.timedelta(hours=1)
D = datetime.timedelta(days=1)


def test_open_alerts_are_raised_minus_acknowledged_newest_first(writer: Writer) -> None:
    """An alert is open until its acknowledgement, whichever stream stored either; open
    ones are listed newest first with their own severity, however old (an alert open for
    40 days is as open as the alert API says)."""
    writer.emit(40 * D, _raise("ancient"))
    writer.emit(10 * D, _raise("old", Severity.CRITICAL, rule="sink_failed"))
    writer.emit(2 * H, _raise("acked"))
    writer.emit(H / 2, _ack("acked"), stream="two")
    writer.emit(H / 4, _raise("new", Severity.WARNING))
    writer.emit(H / 5, _ack("never-raised"), stream="two")
    ov = overview(writer.store, NOW, alert_days=30)
    assert [(a.alert_id, a.severity, a.rule) for a in ov.open_alerts] == [
        ("new", "warning", "r"),
        ("old", "critical", "sink_failed"),
        ("ancient", "alert", "r"),
    ]
    assert ov.open_total == 3
    (acked,) = ov.acknowledged
    assert acked.alert_id == "acked"
    assert acked.note == "looked at it"
    assert acked.acknowledged_by is not None
    assert acked.acknowledged_by.startswith("p1:")  # a pseudonym, never the personal code
    assert acked.summary == "about acked"


def test_the_alerts_given_are_the_ones_shown(writer: Writer) -> None:
    """The service passes its alert state (the one the alert API lists): the page shows
    those, not a second reading of its own."""
    writer.emit(40 * D, _raise("ancient"))
    writer.emit(H, _raise("new"))
    given = LiveBook(writer.store).alerts()
    assert [a.alert_id for a in overview(writer.store, NOW, alerts=given).open_alerts] == [
        "new",
        "ancient",
    ]
    assert overview(writer.store, NOW, alerts=given[:1]).open_total == 1


def test_an_acknowledgement_older_than_a_day_is_not_recent(writer: Writer) -> None:
    """Acknowledged alerts are listed for a day; the alert stays closed after that."""
    writer.emit(5 * D, _raise("a"))
    writer.emit(3 * D, _ack("a"))
    ov = overview(writer.store, NOW)
    assert ov.open_alerts == []
    assert ov.acknowledged == []


def _login_failure(ip: str) -> AuditEvent:
    return events.auth_login(
        outcome=Outcome.FAILURE,
        reason="id_token.nonce_mismatch",
        actor=Actor(ActorType.USER, subject="EE38001085718"),
        source=Source(ip=ip),
        method="idcard",
    )


def test_counts_are_bounded_to_their_windows(writer: Writer) -> None:
    """The last hour counts only its events, the last day its own; older ones count in
    neither; failed logins, security events by type and failure sources are counted."""
    writer.emit(3 * D, _login_failure("192.0.2.10"))
    writer.emit(5 * H, _login_failure("198.51.100.7"))
    writer.emit(3 * H, events.security_anomaly(kind="brute_force", key_kind="ip"))
    writer.emit(H / 2, _login_failure("192.0.2.77"))
    writer.emit(H / 3, events.auth_login(actor=Actor(ActorType.USER, subject="EE60001019906")))
    ov = overview(writer.store, NOW)
    hour, day = ov.windows
    assert (hour.label, day.label) == ("1h", "24h")
    assert hour.failed_logins == 1
    assert day.failed_logins == 2
    assert hour.by_category[("authentication", "failure")] == 1
    assert hour.by_category[("authentication", "success")] == 1
    assert day.by_category[("authentication", "failure")] == 2
    assert day.security == {"security.anomaly": 1}
    assert hour.security == {}
    assert hour.failure_sources == {"192.0.2.0/24": 1}
    assert day.failure_sources == {"192.0.2.0/24": 1, "198.51.100.0/24": 1}
    assert day.login_reasons == {"id_token.nonce_mismatch": 2}
    (pseudonym,) = day.failure_actors
    assert pseudonym.startswith("p1:")
    assert "38001085718" not in repr(ov)


def test_the_latest_verification_is_shown(writer: Writer) -> None:
    """The newest ``audit.access`` of a verification, whatever its result."""
    for ago, result in ((6 * D, "damaged"), (2 * D, "intact"), (10 * D, "ok")):
        writer.emit(
            ago,
            events.audit_access(
                actor=SYSTEM, action="verify", result=result, interface="cli", returned=7
            ),
        )
    ov = overview(writer.store, NOW)
    assert ov.verification is not None
    assert (ov.verification.result, ov.verification.records) == ("intact", 7)
    assert ov.verification.time.startswith("2026-11-25T12:00:00")


def test_streams_show_size_and_checkpoint(writer: Writer) -> None:
    """Every writer stream with its size and, once one is made, its last checkpoint."""
    writer.emit(H, _raise("x"))
    writer.emit(H, _raise("z"))
    writer.emit(H, _raise("y"), stream="two")
    writer.trails["two"].checkpoint_now()
    ov = overview(writer.store, NOW)
    by_name = {s.stream: s for s in ov.streams}
    assert by_name["one"].size == 2
    assert by_name["one"].head_time.startswith("2026-11-27T11:00:00")
    assert by_name["one"].checkpoint_time is None
    assert by_name["two"].checkpoint_size == by_name["two"].size


@pytest.mark.parametrize(
    ("ip", "prefix", "shown"),
    [
        ("192.0.2.77", None, "192.0.2.0/24"),
        ("192.0.2.77", 32, "192.0.2.0/24"),
        ("192.0.2.0", 16, "192.0.0.0/16"),
        ("2001:db8:1:2::5", None, "2001:db8:1::/48"),
        ("192.0.2.77", "16", "192.0.2.0/24"),
        ("not an address", None, None),
        (None, None, None),
    ],
)
def test_sources_are_shown_as_anonymised_networks(
    ip: str | None, prefix: object, shown: str | None
) -> None:
    """A full address (a deployment may keep them) is never shown finer than /24 or /48."""
    assert anonymised_source(ip, prefix) == shown
