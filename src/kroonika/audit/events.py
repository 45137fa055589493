"""One constructor per event type: application code builds events only through these.

    audit.emit(events.token_issue(actor=..., target=Target("token", jti), jti=jti, ...))

Each constructor takes the common parts as keywords and the type's ``details`` fields
as further keywords; the catalogue says which ``details`` fields a type may carry and
the pipeline's ``validate`` step enforces it (deny by default).
"""

from __future__ import annotations

from typing import Final, Protocol

from kroonika.audit._model import (
    Actor,
    AuditEvent,
    Correlation,
    DetailValue,
    Outcome,
    PersonalData,
    Severity,
    Source,
    Target,
    ThreatMatch,
)
from kroonika.audit.catalogue import CATALOGUE

_SEVERITY_ORDER: Final = {s: i for i, s in enumerate(Severity)}  # debug=0 … emergency=7


class EventConstructor(Protocol):
    """The signature every constructor shares."""

    __name__: str

    def __call__(
        self,
        *,
        outcome: Outcome = Outcome.SUCCESS,
        reason: str | None = None,
        actor: Actor | None = None,
        source: Source | None = None,
        target: Target | None = None,
        correlation: Correlation | None = None,
        personal: PersonalData | None = None,
        severity: Severity | None = None,
        threat: list[ThreatMatch] | None = None,
        **details: DetailValue,
    ) -> AuditEvent: ...


def _constructor(event_type: str) -> EventConstructor:
    spec = CATALOGUE[event_type]
    # Everything that depends only on the type is looked up once, here: a failure
    # is at least a notice.
    etype, category, usual = spec.type, spec.category, spec.severity
    failure_floor = Severity.NOTICE
    on_failure = failure_floor if _SEVERITY_ORDER[usual] < _SEVERITY_ORDER[failure_floor] else usual
    failure = Outcome.FAILURE
    new_event = AuditEvent

    def make(
        *,
        outcome: Outcome = Outcome.SUCCESS,
        reason: str | None = None,
        actor: Actor | None = None,
        source: Source | None = None,
        target: Target | None = None,
        correlation: Correlation | None = None,
        personal: PersonalData | None = None,
        severity: Severity | None = None,
        threat: list[ThreatMatch] | None = None,
        **details: DetailValue,
    ) -> AuditEvent:
        if severity is None:
            severity = on_failure if outcome is failure else usual
        # positional, in AuditEvent's field order (cheaper than keywords)
        return new_event(
            etype,
            category,
            severity,
            outcome,
            reason,
            actor if actor is not None else Actor(),
            source,
            target,
            correlation,
            details,
            personal,
            threat if threat is not None else [],
        )

    make.__name__ = make.__qualname__ = event_type.replace(".", "_")
    make.__doc__ = f"``{event_type}``: {spec.description}."
    return make


auth_flow_transition: Final = _constructor("auth.flow.transition")
auth_login: Final = _constructor("auth.login")
auth_logout: Final = _constructor("auth.logout")
session_create: Final = _constructor("session.create")
session_extend: Final = _constructor("session.extend")
session_terminate: Final = _constructor("session.terminate")
token_issue: Final = _constructor("token.issue")
token_validate: Final = _constructor("token.validate")
token_introspect: Final = _constructor("token.introspect")
token_extend: Final = _constructor("token.extend")
token_refresh: Final = _constructor("token.refresh")
token_revoke: Final = _constructor("token.revoke")
token_expire: Final = _constructor("token.expire")
access_list_add: Final = _constructor("access_list.add")
access_list_remove: Final = _constructor("access_list.remove")
access_list_update: Final = _constructor("access_list.update")
admin_request: Final = _constructor("admin.request")
config_change: Final = _constructor("config.change")
admin_bulk: Final = _constructor("admin.bulk")
admin_text_redact: Final = _constructor("admin.text.redact")
job_run: Final = _constructor("job.run")
key_rotate: Final = _constructor("key.rotate")
security_rate_limit: Final = _constructor("security.rate_limit")
security_policy_violation: Final = _constructor("security.policy_violation")
security_anomaly: Final = _constructor("security.anomaly")
security_threat_match: Final = _constructor("security.threat_match")
audit_log_start: Final = _constructor("audit.log.start")
audit_log_stop: Final = _constructor("audit.log.stop")
audit_access: Final = _constructor("audit.access")
audit_checkpoint: Final = _constructor("audit.checkpoint")
audit_retention: Final = _constructor("audit.retention")
audit_erasure: Final = _constructor("audit.erasure")
audit_sink: Final = _constructor("audit.sink")
idp_keys: Final = _constructor("idp.keys")
alert_raise: Final = _constructor("alert.raise")
alert_acknowledge: Final = _constructor("alert.acknowledge")
response_action: Final = _constructor("response.action")
