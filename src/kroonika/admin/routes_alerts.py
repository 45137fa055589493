"""Alerts under ``/admin/alerts`` (decision 0036):

- ``GET /admin/alerts?state=open|acknowledged|all``: the alerts, newest first (roles
  admin, security, auditor); a read of the trail, so an ``audit.access`` (action
  ``alerts``) besides the call's ``admin.request``;
- ``POST /admin/alerts/{alert_id}/acknowledge``: acknowledge one (roles admin and
  security; a justification as every change, an optional ``note``), recorded as
  ``alert.acknowledge``; 404 ``not_found`` for an alert that was never raised, 409
  ``already_acknowledged`` for one acknowledged before.

The state is the trail's: the ``alert.raise`` events minus the ``alert.acknowledge``
ones, so it is as tamper-evident as the trail. The process keeps it in one
:class:`~kroonika.audit.alerting.LiveBook` that reads only what was stored since the
last call; an acknowledgement holds the alert's
:class:`~kroonika.audit.alerting.AckArbiter` lock from the check until its event is
stored, so of two instances acknowledging at once exactly one wins (the other: 409).
``repeats`` is a count of this instance, not of the service (decision 0036,
2026-11-28): the throttled firings of the open alert that the evaluator of the instance
answering counted since it started, in the streams it reads (each instance reads the
streams it owns); another instance, or this one after a restart, shows another figure.
A repeat is not an event of the trail. An acknowledgement records the acknowledging
instance's count, and an acknowledged alert shows the larger of that and this
instance's. ``responses`` are the automated
responses the trail records for the alert (``response.action``, decision 0039): the
first, then each renewal while the alert repeats (``renews``: the expiry it renewed;
null for the first); an analyst undoes a denial by removing its entry (``DELETE
/admin/lists/{entry_id}``), which also ends its renewals.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import Field

from kroonika.admin._auth import (
    AuditedRoute,
    Principal,
    admin_services,
    correlation_of,
    record_access,
    require,
    source_of,
)
from kroonika.admin._errors import AdminError, NotFound
from kroonika.admin._free_text import refuse_personal_code
from kroonika.admin.routes import Body, roles
from kroonika.audit import AuditUnavailable, Target
from kroonika.audit import events as ev
from kroonika.audit.alerting import ALERT_ID, Alert

READERS = ("admin", "security", "auditor")
RESPONDERS = ("admin", "security")

router = APIRouter(prefix="/admin", tags=["alerts"], route_class=AuditedRoute)


class AlreadyAcknowledged(AdminError):
    status = 409
    code = "already_acknowledged"


class AcknowledgeBody(Body):
    """What an acknowledgement may say: a note (free text, no personal code) and the
    justification (or ``X-Justification``)."""

    note: str | None = Field(None, min_length=1, max_length=2048)
    justification: str | None = None


def _alerting(request: Request) -> Any:
    """This service's alerting (:class:`~kroonika.alerting.Alerting`): the process-wide
    alert state and the acknowledgement arbiter."""
    alerting = getattr(request.app.state, "alerting", None)
    if alerting is None:
        raise AuditUnavailable("alerting is not installed in this service")
    return alerting


async def current_alerts(request: Request) -> list[Alert]:
    """Every alert as the trail says now, in the order raised, with the repeats this
    instance's evaluator counted (the process-wide book: only what is new is read)."""
    alerting = _alerting(request)
    alerts: list[Alert] = await asyncio.to_thread(alerting.book.alerts)
    repeats = alerting.repeats()
    if not repeats:
        return alerts
    return [
        dataclasses.replace(a, repeats=repeats[a.alert_id])
        if repeats.get(a.alert_id, 0) > a.repeats
        else a
        for a in alerts
    ]


def _lock(request: Request) -> asyncio.Lock:
    lock: asyncio.Lock | None = getattr(request.app.state, "alerts_ack_lock", None)
    if lock is None:
        lock = request.app.state.alerts_ack_lock = asyncio.Lock()
    return lock


@router.get("/alerts", openapi_extra=roles(*READERS))
async def list_alerts(
    request: Request,
    p: Annotated[Principal, require(*READERS)],
    state: Literal["open", "acknowledged", "all"] = "open",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The alerts raised by the alert rules, newest first: open (not acknowledged),
    acknowledged, or all. Summaries name pseudonyms and anonymised addresses only;
    ``responses`` lists the automated responses taken for each (decision 0039).
    ``repeats`` counts the throttled firings this instance's evaluator saw since it
    started, in the streams it reads: not a total across instances (behind a load
    balancer each answers with its own); once acknowledged, at least the figure the
    acknowledgement recorded. The read is an ``audit.access`` (action ``alerts``)."""
    alerts = [
        a.public()
        for a in reversed(await current_alerts(request))
        if state == "all" or (a.open == (state == "open"))
    ]
    listed = alerts[:limit]
    # a read of the trail (its alert events, notes included), recorded before the answer
    # as the dashboard's and `kroonika alerts list`'s are (decisions 0002, 0037)
    await record_access(
        request, p, "alerts", query=f"state={state} limit={limit}", returned=len(listed)
    )
    return {"alerts": listed, "state": state, "total": len(alerts)}


@router.post("/alerts/{alert_id}/acknowledge", openapi_extra=roles(*RESPONDERS))
async def acknowledge_alert(
    alert_id: str,
    request: Request,
    p: Annotated[Principal, require(*RESPONDERS)],
    body: AcknowledgeBody | None = None,
) -> dict[str, Any]:
    """Acknowledge an open alert (``alert.acknowledge`` records who, the note, the
    justification and the repeats counted). 404 for an unknown alert, 409 for one
    already acknowledged."""
    note = body.note if body is not None else None
    refuse_personal_code(note, "note")
    if not ALERT_ID.fullmatch(alert_id):  # the id is not echoed (decision 0024)
        raise NotFound("alert")
    admin = admin_services(request)
    alerting = _alerting(request)
    # One check-and-record at a time: in this process (the asyncio lock) and across the
    # instances sharing the store (the arbiter's lock, held until the event is stored).
    async with _lock(request), alerting.arbiter.holding(alert_id):
        alert = await asyncio.to_thread(alerting.book.get, alert_id)
        if alert is None:
            raise NotFound("alert")
        if not alert.open:
            raise AlreadyAcknowledged(
                f"alert {alert_id} was acknowledged at {alert.acknowledged_at}"
            )
        alert.repeats = max(alert.repeats, alerting.repeats().get(alert_id, 0))
        details: dict[str, Any] = {
            "alert_id": alert_id,
            "repeats": alert.repeats,
            "justification": str(request.state.admin_call.justification or ""),
        }
        if note is not None:
            details["note"] = note
        sealed = await admin.services.audit.trail.emit(
            ev.alert_acknowledge(
                actor=p.actor(),
                source=source_of(request),
                target=Target("alert", alert_id),
                correlation=correlation_of(request),
                **details,
            )
        )
    if sealed is not None:
        alert.apply_acknowledgement(orjson.loads(sealed.canonical))
    return {"alert": alert.public()}
