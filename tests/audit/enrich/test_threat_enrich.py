"""Threat-intelligence feeds: lists and STIX 2.1 bundles, reload, never private ranges."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kroonika.audit import Actor, ActorType, Source, ThreatMatch, events
from kroonika.audit.enrich import (
    FeedAction,
    FeedError,
    FeedSpec,
    ThreatIntel,
    parse_ip_list,
    parse_stix_bundle,
)
from kroonika.audit.processors.anonymise_ip import AnonymiseIp

NOW = 1_780_000_000.0  # 2026-05-28

DROP = """; Spamhaus DROP List 2026/05/28 - (c) 2026 The Spamhaus Project
; Last-Modified: Thu, 28 May 2026 10:00:00 GMT
1.10.16.0/20 ; SBL256894
45.133.1.0/24 ; SBL487172
"""

FIREHOL = """#
# firehol_level1  (bogons are listed on purpose)
#
0.0.0.0/8
10.0.0.0/8
127.0.0.0/8
169.254.0.0/16
192.168.0.0/16
185.220.101.7
2a0b:f4c0::/32
"""


def stix(*indicators: dict[str, object]) -> str:
    return json.dumps(
        {
            "type": "bundle",
            "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
            "objects": list(indicators),
        }
    )


def indicator(pattern: str, **extra: object) -> dict[str, object]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z",
        "pattern": pattern,
        "pattern_type": "stix",
        "valid_from": "2026-01-01T00:00:00Z",
        **extra,
    }


@pytest.fixture
def feeds(tmp_path: Path) -> dict[str, Path]:
    paths = {
        "drop": tmp_path / "drop.txt",
        "firehol": tmp_path / "firehol_level1.netset",
        "stix": tmp_path / "bundle.json",
    }
    paths["drop"].write_text(DROP)
    paths["firehol"].write_text(FIREHOL)
    paths["stix"].write_text(
        stix(
            indicator(
                "[ipv4-addr:value = '92.63.197.0/24' OR ipv4-addr:value = '91.92.93.94']",
                confidence=90,
                indicator_types=["anonymization"],
            ),
            indicator("[ipv6-addr:value = '2a01:4f8:c17:1::/64']", confidence=60),
            indicator("[ipv4-addr:value = '77.88.99.1']", valid_until="2026-02-01T00:00:00Z"),
            indicator("[ipv4-addr:value = '77.88.99.2']", revoked=True),
            indicator("[domain-name:value = 'evil.example']"),
            {"type": "ipv4-addr", "id": "ipv4-addr--1", "value": "5.6.7.8"},
        )
    )
    return paths


def intel(feeds: dict[str, Path], **kw: object) -> ThreatIntel:
    return ThreatIntel(
        [
            FeedSpec("spamhaus-drop", feeds["drop"], action=FeedAction.DENY_LOGIN, confidence=95),
            FeedSpec("firehol-level1", feeds["firehol"], category="malicious-activity"),
            FeedSpec("misp-stix", feeds["stix"], action=FeedAction.DENY_TOKEN),
        ],
        clock=lambda: NOW,
        **kw,  # type: ignore[arg-type]
    )


def test_drop_list_network_matches_with_the_feed_action(feeds: dict[str, Path]) -> None:
    """An address inside a DROP network matches with the feed's action and confidence."""
    (m,) = intel(feeds).match("45.133.1.77")
    assert (m.feed, m.indicator, m.confidence, m.action) == (
        "spamhaus-drop",
        "45.133.1.0/24",
        95,
        FeedAction.DENY_LOGIN,
    )


def test_firehol_single_host_matches(feeds: dict[str, Path]) -> None:
    """A bare address in a FireHOL netset matches as a /32."""
    (m,) = intel(feeds).match("185.220.101.7")
    assert m.indicator == "185.220.101.7/32"


@pytest.mark.parametrize(
    "ip", ["10.1.2.3", "127.0.0.1", "169.254.9.9", "192.168.1.1", "::1", "fe80::1"]
)
def test_private_loopback_and_link_local_never_match(feeds: dict[str, Path], ip: str) -> None:
    """Listed bogons never match a private, loopback or link-local address."""
    assert intel(feeds).match(ip) == ()


def test_stix_indicators_with_or_patterns_and_ipv6(feeds: dict[str, Path]) -> None:
    """Both sides of an OR pattern and IPv6 networks are read, with confidence and type."""
    t = intel(feeds)
    (a,) = t.match("92.63.197.20")
    (b,) = t.match("91.92.93.94")
    (c,) = t.match("2a01:4f8:c17:1::5")
    assert (a.category, a.confidence, b.category) == ("anonymization", 90, "anonymization")
    assert (c.indicator, c.confidence) == ("2a01:4f8:c17:1::/64", 60)


def test_expired_revoked_and_non_indicator_objects_are_ignored(feeds: dict[str, Path]) -> None:
    """valid_until in the past, revoked, and bare observables do not match."""
    t = intel(feeds)
    assert t.match("77.88.99.1") == t.match("77.88.99.2") == t.match("5.6.7.8") == ()


def test_enricher_appends_threat_matches_from_the_full_address(feeds: dict[str, Path]) -> None:
    """After anonymise_ip the enricher reads raw_ip and fills event.threat."""
    event = events.auth_login(
        actor=Actor(ActorType.USER, subject="EE38001085718"), source=Source(ip="45.133.1.77")
    )
    AnonymiseIp()(event)
    intel(feeds)(event)
    assert event.threat == [ThreatMatch("spamhaus-drop", "45.133.1.0/24", "malicious-activity", 95)]
    assert event.to_record()["threat"][0]["feed"] == "spamhaus-drop"


def test_denies_filters_by_action(feeds: dict[str, Path]) -> None:
    """denies() returns only matches whose feed has the asked action."""
    t = intel(feeds)
    assert t.denies("45.133.1.1", FeedAction.DENY_LOGIN)
    assert not t.denies("45.133.1.1", FeedAction.DENY_TOKEN)
    assert t.denies("91.92.93.94", FeedAction.DENY_TOKEN)


def test_a_changed_file_is_reloaded(feeds: dict[str, Path]) -> None:
    """A feed file rewritten on disk is picked up at the next check."""
    clock = [NOW]
    t = ThreatIntel([FeedSpec("drop", feeds["drop"])], clock=lambda: clock[0], check_interval=5.0)
    assert t.match("31.41.59.26") == ()
    feeds["drop"].write_text(DROP + "31.41.59.0/24 ; SBL1\n")
    os.utime(feeds["drop"], ns=(1, 2))  # a different mtime even on coarse clocks
    clock[0] += 10
    assert t.match("31.41.59.26")[0].indicator == "31.41.59.0/24"


def test_a_broken_update_keeps_the_previous_contents(feeds: dict[str, Path]) -> None:
    """A feed that stops parsing keeps its old entries and records the error."""
    clock = [NOW]
    t = ThreatIntel([FeedSpec("drop", feeds["drop"])], clock=lambda: clock[0])
    feeds["drop"].write_text("this is not a network\n")
    clock[0] += 10
    assert t.match("45.133.1.1")
    assert "line 1" in t.errors["drop"]
    assert t.load_failures == 1


def test_stix_times_without_a_zone_are_utc(feeds: dict[str, Path]) -> None:
    """STIX times are UTC: one written without its "Z" is read as UTC, so such a
    bundle neither breaks every lookup nor keeps an expired indicator."""
    feeds["stix"].write_text(
        stix(
            indicator("[ipv4-addr:value = '91.92.93.94']", valid_from="2026-01-01T00:00:00"),
            indicator("[ipv4-addr:value = '91.92.93.95']", valid_until="2026-02-01T00:00:00"),
            indicator("[ipv4-addr:value = '91.92.93.96']", valid_from="2099-01-01T00:00:00"),
        )
    )
    t = ThreatIntel([FeedSpec("misp-stix", feeds["stix"])], clock=lambda: NOW)
    assert [m.indicator for m in t.match("91.92.93.94")] == ["91.92.93.94/32"]
    assert t.match("91.92.93.95") == ()
    assert t.match("91.92.93.96") == ()


def test_a_missing_feed_file_is_reported_not_fatal(tmp_path: Path) -> None:
    """A feed whose file is absent matches nothing and says why."""
    t = ThreatIntel([FeedSpec("gone", tmp_path / "gone.txt")], clock=lambda: NOW)
    assert t.match("45.133.1.1") == ()
    assert "gone" in t.errors


def test_list_parser_reports_the_bad_line() -> None:
    """A malformed list line names its line number."""
    with pytest.raises(FeedError, match="line 2"):
        parse_ip_list("1.2.3.0/24\nnope\n", category="x", confidence=1)


def test_drop_json_lines_are_read() -> None:
    """Spamhaus DROP's JSON lines format (with its metadata line) parses."""
    text = '{"cidr":"1.10.16.0/20","sblid":"SBL256894","rir":"apnic"}\n{"type":"metadata"}\n'
    (ind,) = parse_ip_list(text, category="drop", confidence=90)
    assert str(ind.network) == "1.10.16.0/20"


def test_a_non_bundle_is_refused() -> None:
    """A JSON document that is not a STIX bundle is a feed error."""
    from datetime import UTC, datetime

    with pytest.raises(FeedError):
        parse_stix_bundle(
            '{"type": "indicator"}', now=datetime.now(UTC), category="x", confidence=1
        )


def test_feed_names_are_checked() -> None:
    """Feed names are short identifiers (they appear in events)."""
    with pytest.raises(ValueError, match="feed name"):
        FeedSpec("bad name with spaces", Path("x"))


@pytest.mark.parametrize("whole", ["0.0.0.0/0", "::/0", '{"cidr": "0.0.0.0/0"}'])
def test_a_list_entry_covering_every_address_refuses_the_list(whole: str) -> None:
    """One entry that matches everything (a broken export) would deny every login
    through a deny_login feed: the list is refused, like one with a malformed line."""
    with pytest.raises(FeedError, match="every address"):
        parse_ip_list(f"1.2.3.0/24\n{whole}\n", category="x", confidence=1)


def test_a_stix_indicator_covering_every_address_refuses_the_bundle() -> None:
    from datetime import UTC, datetime

    bundle = {
        "type": "bundle",
        "objects": [
            {
                "type": "indicator",
                "id": "indicator--1",
                "pattern": "[ipv4-addr:value = '0.0.0.0/0']",
                "valid_from": "2026-01-01T00:00:00Z",
            }
        ],
    }
    with pytest.raises(FeedError, match="every address"):
        parse_stix_bundle(json.dumps(bundle), now=datetime.now(UTC), category="x", confidence=1)


@pytest.mark.parametrize(
    ("ip", "clear"),
    [
        ("185.220.101.7", "185.220.101.0/24"),  # a FireHOL /32: the address itself
        ("91.92.93.94", "91.92.93.0/24"),  # a STIX single address
        ("2a01:4f8:c17:1::5", "2a01:4f8:c17::/48"),  # a STIX /64
        ("45.133.1.77", "45.133.1.0/24"),  # a /24 entry is already coarse enough
    ],
)
def test_an_indicator_never_publishes_more_of_the_address_than_the_event(
    feeds: dict[str, Path], ip: str, clear: str
) -> None:
    """A feed entry more specific than the anonymised prefix (a listed /32 is the
    client's full address) is recorded as its covering /24 or /48, so the full address
    stays only in ``pii``, whether the enricher or the route that denied the request
    found the match; with ``keep_clear`` the entry is kept as listed."""
    for route_found_it in (False, True):
        event = events.auth_login(
            actor=Actor(ActorType.USER, subject="EE38001085718"), source=Source(ip=ip)
        )
        if route_found_it:
            event.threat = [m.threat_match() for m in intel(feeds).match(ip)]
        AnonymiseIp()(event)
        intel(feeds)(event)
        assert [m.indicator for m in event.threat] == [clear]
        record = json.dumps(event.to_record())
        assert ip not in record
    event = events.auth_login(actor=Actor(ActorType.USER), source=Source(ip="185.220.101.7"))
    AnonymiseIp(keep_clear=True)(event)
    intel(feeds)(event)
    assert [m.indicator for m in event.threat] == ["185.220.101.7/32"]
