"""Security events of the service: unusual access detection, threat matches and
policy violations (issue 6). Imports only ``kroonika.audit``, ``kroonika.db`` and
``kroonika.settings``, so every service layer above it can use it.
"""

from kroonika.security.detectors import (
    DetectorConfig,
    Finding,
    LoginObservation,
    Place,
    Profile,
    brute_force,
    credential_stuffing,
    haversine_km,
    impossible_travel,
    login_findings,
    new_country,
    unusual_hour,
)
from kroonika.security.monitor import SecurityMonitor, observation
from kroonika.security.policy import Decision, Policy, emit_policy_violation, policy_violation
from kroonika.security.profiles import ProfileStore

__all__ = [
    "Decision",
    "DetectorConfig",
    "Finding",
    "LoginObservation",
    "Place",
    "Policy",
    "Profile",
    "ProfileStore",
    "SecurityMonitor",
    "brute_force",
    "credential_stuffing",
    "emit_policy_violation",
    "haversine_km",
    "impossible_travel",
    "login_findings",
    "new_country",
    "observation",
    "policy_violation",
    "unusual_hour",
]
