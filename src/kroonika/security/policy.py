"""Policy violations: one ``security.policy_violation`` event type, one policy name per case.

Each event says who (actor), from where (source), what was attempted (``attempted``,
a short description without secrets: never a token, code, state or cookie value;
use keyed fingerprints for references) and the decision (``denied`` unless the
caller only logs). Call :func:`emit_policy_violation` where the check refuses.
"""

from __future__ import annotations

from enum import StrEnum

from kroonika.audit import (
    Actor,
    AuditEvent,
    AuditTrail,
    Correlation,
    Outcome,
    SealedEvent,
    Source,
    Target,
    ThreatMatch,
    events,
)


class Policy(StrEnum):
    """The policy names (published in events: never rename, only add)."""

    ACR_BELOW_MINIMUM = "acr_below_minimum"
    AUTH_METHOD_NOT_ALLOWED = "auth_method_not_allowed"
    DENYLISTED_IP = "denylisted_ip"
    DENYLISTED_SUBJECT = "denylisted_subject"
    THREAT_INTEL_DENY = "threat_intel_deny"
    TOKEN_REVOKED = "token_revoked"  # noqa: S105  (policy names, not secrets)
    TOKEN_EXPIRED = "token_expired"  # noqa: S105
    CODE_REUSED = "authorization_code_reused"
    STATE_REUSED = "login_state_reused"
    REDIRECT_NOT_ALLOWED = "redirect_not_allowed"
    CSRF_FAILED = "csrf_failed"
    CORS_ORIGIN_NOT_ALLOWED = "cors_origin_not_allowed"
    CLIENT_AUTH_FAILED = "client_auth_failed"
    RESERVED_CLAIMS = "reserved_claims"
    JUSTIFICATION_MISSING = "admin_justification_missing"
    ROLE_EXCEEDED = "role_exceeded"
    SEPARATION_OF_DUTIES = "separation_of_duties"
    AUDIT_TRAIL_IMMUTABLE = "audit_trail_immutable"


class Decision(StrEnum):
    DENIED = "denied"
    LOGGED = "logged"


def policy_violation(
    policy: Policy,
    *,
    attempted: str,
    decision: Decision = Decision.DENIED,
    actor: Actor | None = None,
    source: Source | None = None,
    target: Target | None = None,
    correlation: Correlation | None = None,
    reason: str | None = None,
    threat: list[ThreatMatch] | None = None,
) -> AuditEvent:
    """The ``security.policy_violation`` event for one refusal (not yet emitted)."""
    return events.security_policy_violation(
        outcome=Outcome.FAILURE if decision is Decision.DENIED else Outcome.UNKNOWN,
        reason=reason or policy.value,
        actor=actor,
        source=source,
        target=target,
        correlation=correlation,
        threat=threat,
        policy=policy.value,
        attempted=attempted[:2048],
        decision=decision.value,
    )


async def emit_policy_violation(
    trail: AuditTrail,
    policy: Policy,
    *,
    attempted: str,
    decision: Decision = Decision.DENIED,
    actor: Actor | None = None,
    source: Source | None = None,
    target: Target | None = None,
    correlation: Correlation | None = None,
    reason: str | None = None,
    threat: list[ThreatMatch] | None = None,
) -> SealedEvent | None:
    """Emit the violation and wait until it is stored (fail closed: raises
    :class:`~kroonika.audit.AuditUnavailable`, which the request turns into a 503)."""
    return await trail.emit(
        policy_violation(
            policy,
            attempted=attempted,
            decision=decision,
            actor=actor,
            source=source,
            target=target,
            correlation=correlation,
            reason=reason,
            threat=threat,
        )
    )
