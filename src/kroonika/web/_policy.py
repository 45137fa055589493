"""Policy violations at the web edge: one ``security.policy_violation`` per refusal.

Two ways in:

- routes that refuse (login, sessions, CORS) build the event with :func:`violation`
  from the request (source and correlation come from the request context) and emit
  it together with their own failure event;
- the token service's refusals are recognised by :class:`PolicyEmitter`, which wraps
  the service's emitter: a failed ``token.*`` event whose reason names a policy
  (``revoked``, ``expired``, ``denylisted_subject``, ``invalid_client``,
  ``reserved_claim`` ...) is stored in one batch with its violation. So every
  token path (HTTP, RFC 7662/7009, bulk, the admin API) reports the same way,
  without the token package knowing about policies.

The violation never carries a secret: ``attempted`` names the operation and the
refusal reason; tokens are named by the fingerprint their own event already has.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TypeVar

from fastapi import Request

from kroonika.audit import (
    Actor,
    AuditEvent,
    Correlation,
    Outcome,
    SealedEvent,
    Source,
    Target,
    ThreatMatch,
)
from kroonika.security import Decision, Policy, policy_violation
from kroonika.tokens import Emitter
from kroonika.web._context import RequestInfo

# Refusal reasons of the token service (and login) that are policy violations.
REASON_POLICIES: Mapping[str, Policy] = MappingProxyType(
    {
        "revoked": Policy.TOKEN_REVOKED,
        "expired": Policy.TOKEN_EXPIRED,
        "denylisted_subject": Policy.DENYLISTED_SUBJECT,
        "denylisted_ip": Policy.DENYLISTED_IP,
        "reserved_claim": Policy.RESERVED_CLAIMS,
        "invalid_client": Policy.CLIENT_AUTH_FAILED,
        "threat_intel_deny": Policy.THREAT_INTEL_DENY,
        "acr_too_low": Policy.ACR_BELOW_MINIMUM,
        "amr_not_allowed": Policy.AUTH_METHOD_NOT_ALLOWED,
        "method_not_allowed": Policy.AUTH_METHOD_NOT_ALLOWED,
        "state_replayed": Policy.STATE_REUSED,
        "code_reused": Policy.CODE_REUSED,
        "invalid_return_to": Policy.REDIRECT_NOT_ALLOWED,
        "csrf_failed": Policy.CSRF_FAILED,
    }
)


def _info(request: Request) -> RequestInfo | None:
    info: RequestInfo | None = request.scope.get("state", {}).get("request_info")
    return info


def request_source(request: Request) -> Source | None:
    info = _info(request)
    if info is None:
        return None
    return Source(ip=info.client_ip, user_agent=info.user_agent)


def request_correlation(request: Request, **extra: str | None) -> Correlation | None:
    info = _info(request)
    if info is None and not any(extra.values()):
        return None
    return Correlation(
        request_id=info.request_id if info else None,
        trace_id=info.trace_id if info else None,
        flow_id=extra.get("flow_id"),
        session_ref=extra.get("session_ref"),
    )


def violation(
    request: Request,
    policy: Policy,
    *,
    attempted: str,
    actor: Actor | None = None,
    target: Target | None = None,
    flow_id: str | None = None,
    session_ref: str | None = None,
    threat: list[ThreatMatch] | None = None,
    decision: Decision = Decision.DENIED,
    reason: str | None = None,
) -> AuditEvent:
    """The violation for a refusal of this request (not yet emitted)."""
    return policy_violation(
        policy,
        attempted=attempted,
        decision=decision,
        reason=reason,
        actor=actor,
        source=request_source(request),
        target=target,
        correlation=request_correlation(request, flow_id=flow_id, session_ref=session_ref),
        threat=threat,
    )


_P = TypeVar("_P", Actor, Source, Target, Correlation)


def _copy(value: _P | None) -> _P | None:
    # The pipeline processes events in place (pseudonymises the actor, anonymises the
    # source): the violation gets copies, never the refused event's own parts.
    return None if value is None else dataclasses.replace(value)


def violation_for(event: AuditEvent) -> AuditEvent | None:
    """The violation a failed ``token.*`` event stands for, or ``None``."""
    if event.outcome is not Outcome.FAILURE or not event.type.startswith("token."):
        return None
    policy = REASON_POLICIES.get(event.reason or "")
    if policy is None:
        return None
    attempted = f"{event.type} refused: {event.reason}"
    fp = event.details.get("fingerprint")
    if isinstance(fp, str):
        attempted += f" (token fingerprint {fp})"
    return policy_violation(
        policy,
        attempted=attempted,
        actor=_copy(event.actor) or Actor(),
        source=_copy(event.source),
        target=_copy(event.target),
        correlation=_copy(event.correlation),
        threat=[dataclasses.replace(t) for t in event.threat] or None,
    )


class PolicyEmitter:
    """An :class:`~kroonika.tokens.Emitter` that adds the violation of each refused
    token operation to the same batch (one durable commit; fail closed as before)."""

    def __init__(
        self, inner: Emitter, derive: Callable[[AuditEvent], AuditEvent | None] = violation_for
    ) -> None:
        self.inner = inner
        self.derive = derive

    def _with_violations(self, batch: Iterable[AuditEvent]) -> list[AuditEvent]:
        out: list[AuditEvent] = []
        for event in batch:
            extra = self.derive(event)  # before the pipeline touches the event
            out.append(event)
            if extra is not None:
                out.append(extra)
        return out

    async def emit(self, event: AuditEvent) -> SealedEvent | None:
        batch = self._with_violations([event])
        if len(batch) == 1:
            return await self.inner.emit(event)
        sealed = await self.inner.emit_many(batch)
        return sealed[0] if sealed else None

    async def emit_many(self, batch: Iterable[AuditEvent]) -> list[SealedEvent]:
        return await self.inner.emit_many(self._with_violations(batch))
