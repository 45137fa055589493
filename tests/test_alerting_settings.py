"""KROONIKA_ALERT_RULES: the built-in rules, changed, switched off, or added to."""

from __future__ import annotations

import pytest

from kroonika.alerting import alert_rules
from kroonika.settings import Settings, SettingsError


def test_the_built_in_rules_are_in_force_by_default() -> None:
    """Anomalies, threat matches, sink failures, damage found, repeated violations,
    TARA's key set expired (logins fail)."""
    names = [r.name for r in alert_rules(Settings())]
    assert names == [
        "security_anomaly",
        "threat_match",
        "sink_failure",
        "audit_damage",
        "policy_violations",
        "idp_keys_expired",
    ]


def test_a_built_in_rule_can_be_changed_or_switched_off() -> None:
    """A window and threshold changed; a rule with enabled=false is gone."""
    settings = Settings(
        alert_rules={
            "policy_violations": {"threshold": 3, "window_s": 60, "severity": "error"},
            "threat_match": {"enabled": False},
        }
    )
    rules = {r.name: r for r in alert_rules(settings)}
    assert "threat_match" not in rules
    pv = rules["policy_violations"]
    assert (pv.threshold, pv.window_s, pv.severity.value) == (3, 60, "error")
    assert pv.types == ("security.policy_violation",)


def test_a_new_rule_needs_types_and_may_not_watch_alerts() -> None:
    """A rule of one's own: types required; alert.* refused (no loops); unknown keys refused."""
    rules = alert_rules(Settings(alert_rules={"rate_limits": {"types": ["security.rate_limit"]}}))
    assert rules[-1].name == "rate_limits"
    with pytest.raises(SettingsError, match="needs types"):
        alert_rules(Settings(alert_rules={"mine": {"threshold": 2}}))
    with pytest.raises(SettingsError, match="cannot be watched"):
        alert_rules(Settings(alert_rules={"loop": {"types": ["alert.raise"]}}))
    with pytest.raises(ValueError, match="extra"):
        Settings(alert_rules={"mine": {"types": ["auth.login"], "treshold": 2}})


@pytest.mark.parametrize(
    "entry", ["security.rate_limt", "secur", "auth.login.x", "securityx.", ".", "security.."]
)
def test_a_rule_type_that_matches_no_event_type_is_refused(entry: str) -> None:
    """A misspelt type or a prefix of no type would never fire, without a word: the
    service refuses it."""
    with pytest.raises(SettingsError, match="no event type"):
        alert_rules(Settings(alert_rules={"mine": {"types": ["auth.login", entry]}}))


def test_rule_types_of_the_catalogue_and_their_prefixes_are_taken() -> None:
    """A catalogue type, an area and a two-level prefix, as the trail's queries take them."""
    spec = {"types": ["security.rate_limit", "token", "auth.flow"]}
    (rule,) = [r for r in alert_rules(Settings(alert_rules={"mine": spec})) if r.name == "mine"]
    assert rule.types == ("security.rate_limit", "token", "auth.flow")


@pytest.mark.parametrize("spelling", ["security", "security."])
def test_a_rule_prefix_means_the_same_with_or_without_its_final_dot(spelling: str) -> None:
    """`security.` (a sink's spelling) is `security`: every security.* type, a whole
    segment at a time, never a type that only starts with the same letters."""
    spec = {"types": [spelling, "auth.login."]}
    (rule,) = [r for r in alert_rules(Settings(alert_rules={"mine": spec})) if r.name == "mine"]
    assert rule.types == ("security", "auth.login")
    assert rule.applies({"type": "security.rate_limit"})
    assert rule.applies({"type": "auth.login"})
    assert not rule.applies({"type": "securityx.rate_limit"})
    assert not rule.applies({"type": "auth.logout"})


def test_no_rule_responds_unless_the_operator_chooses_it() -> None:
    """Automated responses are off by default: no built-in rule has one."""
    assert [r.name for r in alert_rules(Settings()) if r.response is not None] == []


def test_a_response_is_chosen_per_rule_with_its_ttl_and_mode() -> None:
    """deny_network on the anomaly rule (its key names the source network), enforced."""
    settings = Settings(
        alert_rules={
            "security_anomaly": {
                "response": {"action": "deny_network", "ttl_s": 600, "mode": "enforce"}
            }
        }
    )
    rules = {r.name: r for r in alert_rules(settings)}
    response = rules["security_anomaly"].response
    assert response is not None
    assert (response.action, response.ttl_s, response.mode) == ("deny_network", 600, "enforce")
    assert rules["policy_violations"].response is None


@pytest.mark.parametrize(
    ("rule", "response", "says"),
    [
        ("security_anomaly", {"action": "end_sessions", "mode": "enforce"}, "one of"),
        ("security_anomaly", {"action": "deny_network", "mode": "on"}, "enforce or dry_run"),
        ("security_anomaly", {"action": "deny_network", "mode": "enforce", "ttl_s": 0}, "ttl_s"),
        ("sink_failure", {"action": "deny_network", "mode": "dry_run"}, "needs an address"),
    ],
)
def test_a_response_that_cannot_work_refuses_to_start(
    rule: str, response: dict[str, object], says: str
) -> None:
    """An unknown action or mode, a ttl out of bounds, a network denial on a rule whose
    key names no address: SettingsError naming the rule."""
    settings = Settings(alert_rules={rule: {"response": response}})
    with pytest.raises(SettingsError, match=f"rule {rule}: .*{says}"):
        alert_rules(settings)


def test_a_response_must_say_its_mode() -> None:
    """No default mode: enforcing or a dry run is the operator's choice; unknown keys refused."""
    with pytest.raises(ValueError, match="mode"):
        Settings(alert_rules={"security_anomaly": {"response": {"action": "deny_network"}}})
    with pytest.raises(ValueError, match="extra"):
        Settings(
            alert_rules={
                "security_anomaly": {
                    "response": {"action": "deny_network", "mode": "enforce", "cidr": 16}
                }
            }
        )
