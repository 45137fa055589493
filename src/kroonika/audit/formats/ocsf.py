"""Open Cybersecurity Schema Framework 1.3.0 events (https://schema.ocsf.io/1.3.0/).

Class per event type (``type_uid = class_uid * 100 + activity_id``; 99 is OCSF's "Other"):

========================================  =========================================  ==========
Kroonika type                             OCSF class                                 activity
========================================  =========================================  ==========
auth.login / auth.logout                  3002 Authentication                        1 / 2
auth.flow.transition, session.*           3002 Authentication (``session`` object)   99 Other
token.issue, token.refresh                3004 Entity Management                     1 Create
token.extend, access_list.update,         3004 Entity Management                     3 Update
config.change, key.rotate,
admin.text.redact
token.revoke, token.expire,               3004 Entity Management                     4 Delete
access_list.remove, audit.retention,
audit.erasure
access_list.add, audit.checkpoint         3004 Entity Management                     1 Create
admin.bulk                                3004 Entity Management                     99 Other
admin.request                             6003 API Activity                          by HTTP method
token.validate, token.introspect,         6003 API Activity                          2 Read
audit.access
job.run                                   1006 Scheduled Job Activity                6 Start
audit.log.start / audit.log.stop          6002 Application Lifecycle                 3 / 4
audit.sink, idp.keys                      6002 Application Lifecycle                 99 Other
security.*, alert.raise                   2004 Detection Finding                     1 Create
alert.acknowledge, response.action        2004 Detection Finding                     2 Update
anything else                             0 Base Event                               99 Other
========================================  =========================================  ==========

Account Change (3001) is not used: Kroonika manages no accounts (TARA does); tokens, list entries,
keys and configuration are managed entities, which is what Entity Management describes.
Session events are not Logon/Logoff so that one login is not counted twice.

``severity_id``: debug/info 1 Informational, notice 2 Low, warning 3 Medium, error 4 High,
critical/alert 5 Critical. Geo coordinates are exact decimal strings in Kroonika while OCSF wants
floats, so ``src_endpoint.location`` carries country and city and the coordinates go to
``unmapped``, with everything else that has no OCSF home. The ``pii`` block is not shipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from kroonika.audit.formats._text import clean, clean_obj, dumps, epoch_ms, part

__all__ = ["OCSF_VERSION", "ocsf_event", "render_ocsf"]

#: The OCSF schema version these events declare (``metadata.version``).
OCSF_VERSION: Final = "1.3.0"

# class_uid -> (class name, category_uid, category name)
_CLASSES: Final[Mapping[int, tuple[str, int, str]]] = {
    0: ("Base Event", 0, "Uncategorized"),
    1006: ("Scheduled Job Activity", 1, "System Activity"),
    2004: ("Detection Finding", 2, "Findings"),
    3002: ("Authentication", 3, "Identity & Access Management"),
    3004: ("Entity Management", 3, "Identity & Access Management"),
    6002: ("Application Lifecycle", 6, "Application Activity"),
    6003: ("API Activity", 6, "Application Activity"),
}

_ACTIVITY_NAMES: Final[Mapping[int, Mapping[int, str]]] = {
    1006: {1: "Create", 2: "Update", 3: "Delete", 4: "Enable", 5: "Disable", 6: "Start"},
    2004: {1: "Create", 2: "Update", 3: "Close"},
    3002: {1: "Logon", 2: "Logoff"},
    3004: {1: "Create", 2: "Read", 3: "Update", 4: "Delete"},
    6002: {3: "Start", 4: "Stop"},
    6003: {1: "Create", 2: "Read", 3: "Update", 4: "Delete"},
}

#: Kroonika event type -> (class_uid, activity_id).
CLASS_BY_TYPE: Final[Mapping[str, tuple[int, int]]] = {
    "auth.login": (3002, 1),
    "auth.logout": (3002, 2),
    "auth.flow.transition": (3002, 99),
    "session.create": (3002, 99),
    "session.extend": (3002, 99),
    "session.terminate": (3002, 99),
    "token.issue": (3004, 1),
    "token.refresh": (3004, 1),
    "token.extend": (3004, 3),
    "token.revoke": (3004, 4),
    "token.expire": (3004, 4),
    "access_list.add": (3004, 1),
    "access_list.update": (3004, 3),
    "access_list.remove": (3004, 4),
    "config.change": (3004, 3),
    "key.rotate": (3004, 3),
    "admin.text.redact": (3004, 3),
    "admin.bulk": (3004, 99),
    "audit.checkpoint": (3004, 1),
    "audit.retention": (3004, 4),
    "audit.erasure": (3004, 4),
    "admin.request": (6003, 99),
    "token.validate": (6003, 2),
    "token.introspect": (6003, 2),
    "audit.access": (6003, 2),
    "job.run": (1006, 6),
    "audit.log.start": (6002, 3),
    "audit.log.stop": (6002, 4),
    "audit.sink": (6002, 99),
    "idp.keys": (6002, 99),
    "security.rate_limit": (2004, 1),
    "security.policy_violation": (2004, 1),
    "security.anomaly": (2004, 1),
    "security.threat_match": (2004, 1),
    "alert.raise": (2004, 1),
    "alert.acknowledge": (2004, 2),
    "response.action": (2004, 2),
}

_HTTP_ACTIVITY: Final[Mapping[str, int]] = {
    "POST": 1,
    "GET": 2,
    "HEAD": 2,
    "PUT": 3,
    "PATCH": 3,
    "DELETE": 4,
}

_SEVERITY: Final[Mapping[str, tuple[int, str]]] = {
    "debug": (1, "Informational"),
    "info": (1, "Informational"),
    "notice": (2, "Low"),
    "warning": (3, "Medium"),
    "error": (4, "High"),
    "critical": (5, "Critical"),
    "alert": (5, "Critical"),
    "emergency": (6, "Fatal"),
}
_STATUS: Final[Mapping[str, tuple[int, str]]] = {
    "success": (1, "Success"),
    "failure": (2, "Failure"),
}
_USER_TYPE: Final[Mapping[str, tuple[int, str]]] = {
    "user": (1, "User"),
    "admin": (2, "Admin"),
    "system": (3, "System"),
}
_PRODUCT: Final = {"name": "Kroonika", "vendor_name": "Kroonika"}


def _user(actor: Mapping[str, Any]) -> dict[str, Any] | None:
    pseudonym = actor.get("pseudonym")
    if not isinstance(pseudonym, str):
        return None
    user: dict[str, Any] = {"uid": clean(pseudonym)}
    if isinstance(atype := actor.get("type"), str):
        user["type_id"], user["type"] = _USER_TYPE.get(atype, (99, clean(atype)))
    return user


def ocsf_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """Build the OCSF event for ``event`` as a plain dict."""
    etype = event.get("type")
    etype_s = clean(etype) if isinstance(etype, str) else ""
    class_uid, activity_id = CLASS_BY_TYPE.get(etype_s, (0, 99))
    details = part(event, "details")
    if etype_s == "admin.request":
        method = details.get("http_method", details.get("method"))
        if isinstance(method, str):
            activity_id = _HTTP_ACTIVITY.get(method.upper(), 99)
    class_name, category_uid, category_name = _CLASSES[class_uid]
    activity_name = _ACTIVITY_NAMES.get(class_uid, {}).get(activity_id) or etype_s or "Other"

    severity = event.get("severity")
    severity_id, severity_label = (
        _SEVERITY.get(severity, (0, "Unknown")) if isinstance(severity, str) else (0, "Unknown")
    )
    outcome = event.get("outcome")
    status_id, status = (
        _STATUS.get(outcome, (0, "Unknown")) if isinstance(outcome, str) else (0, "Unknown")
    )

    metadata: dict[str, Any] = {"version": OCSF_VERSION, "product": dict(_PRODUCT)}
    if isinstance(eid := event.get("id"), str):
        metadata["uid"] = clean(eid)
    if isinstance(seq := event.get("seq"), int):
        metadata["sequence"] = seq
    if isinstance(stream := event.get("stream"), str):
        metadata["log_name"] = clean(stream)
    if etype_s:
        metadata["event_code"] = etype_s
    correlation = part(event, "correlation")
    flow = correlation.get("flow_id", correlation.get("request_id"))
    if isinstance(flow, str):
        metadata["correlation_uid"] = clean(flow)

    out: dict[str, Any] = {
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": category_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": f"{class_name}: {activity_name}",
        "time": epoch_ms(event.get("time")) or 0,
        "severity_id": severity_id,
        "severity": severity_label,
        "status_id": status_id,
        "status": status,
        "metadata": metadata,
    }
    if etype_s:
        out["message"] = etype_s
    if isinstance(reason := event.get("reason"), str):
        out["status_detail"] = clean(reason)
    unmapped: dict[str, Any] = {}

    actor_in = part(event, "actor")
    user = _user(actor_in)
    actor: dict[str, Any] = {"app_name": "Kroonika"}
    if user is not None:
        actor["user"] = user
    if isinstance(client_id := actor_in.get("client_id"), str):
        actor["app_uid"] = clean(client_id)
    if isinstance(roles := actor_in.get("roles"), list | tuple):
        unmapped["actor_roles"] = clean_obj(list(roles))
    if actor_in.get("type") is not None and user is None:
        unmapped["actor_type"] = clean_obj(actor_in.get("type"))
    out["actor"] = actor

    source = part(event, "source")
    src: dict[str, Any] = {}
    if isinstance(ip := source.get("ip"), str):
        src["ip"] = clean(ip)
    if isinstance(port := source.get("port"), int) and not isinstance(port, bool):
        src["port"] = port
    geo = part(source, "geo")
    location = {
        key: clean(value)
        for key, value in (("country", geo.get("country")), ("city", geo.get("city")))
        if isinstance(value, str)
    }
    if location:
        src["location"] = location
    if "lat" in geo or "lon" in geo:
        unmapped["source_geo"] = clean_obj({k: geo[k] for k in ("lat", "lon") if k in geo})
    asys = part(source, "as")
    if asys:
        a: dict[str, Any] = {}
        if isinstance(number := asys.get("number"), int):
            a["number"] = number
        if isinstance(org := asys.get("org"), str):
            a["name"] = clean(org)
        src["autonomous_system"] = a
    if src:
        out["src_endpoint"] = src
    extra = {k: v for k, v in source.items() if k not in ("ip", "port", "geo", "as", "user_agent")}
    if extra:
        unmapped["source"] = clean_obj(extra)

    http_request: dict[str, Any] = {}
    if isinstance(ua := source.get("user_agent"), str):
        http_request["user_agent"] = clean(ua)
    if isinstance(request_id := correlation.get("request_id"), str):
        http_request["uid"] = clean(request_id)

    target = part(event, "target")
    if class_uid == 3002:
        out["user"] = user if user is not None else {"type_id": 0, "type": "Unknown"}
        out["service"] = {"name": "Kroonika"}
        out["auth_protocol_id"], out["auth_protocol"] = 4, "OpenID"
        out["is_remote"] = True
        if isinstance(session_ref := correlation.get("session_ref"), str):
            out["session"] = {"uid": clean(session_ref)}
    elif class_uid == 3004:
        entity: dict[str, Any] = {"name": clean(str(target.get("type", etype_s or "unknown")))}
        if isinstance(tid := target.get("id"), str | int):
            entity["uid"] = clean(str(tid))
        if isinstance(ttype := target.get("type"), str):
            entity["type"] = clean(ttype)
        out["entity"] = entity
        if isinstance(justification := details.get("justification"), str):
            out["comment"] = clean(justification)
    elif class_uid == 6003:
        operation = etype_s
        route = details.get("route")
        method = details.get("http_method", details.get("method"))
        if isinstance(route, str):
            http_request["url"] = {"path": clean(route)}
            operation = clean(f"{method} {route}" if isinstance(method, str) else route)
        if isinstance(method, str):
            http_request["http_method"] = clean(method).upper()
        out["api"] = {"operation": operation, "service": {"name": "Kroonika"}}
        if isinstance(status_code := details.get("status"), int):
            out["http_response"] = {"code": status_code}
        if "src_endpoint" not in out:
            out["src_endpoint"] = {"name": metadata.get("log_name", "kroonika")}
        if target:
            out["resources"] = [clean_obj(target)]
    elif class_uid == 1006:
        job_name = details.get("job", target.get("id", etype_s))
        out["job"] = {"name": clean(str(job_name))}
        out["device"] = {"type_id": 1, "type": "Server", "name": metadata.get("log_name", "")}
    elif class_uid == 6002:
        out["app"] = dict(_PRODUCT)
    elif class_uid == 2004:
        finding: dict[str, Any] = {
            "uid": metadata.get("uid", ""),
            "title": clean(str(details.get("kind", etype_s))),
            "types": [etype_s],
        }
        if isinstance(policy := details.get("policy"), str):
            finding["analytic"] = {"name": clean(policy), "type_id": 1, "type": "Rule"}
        out["finding_info"] = finding
        out["is_alert"] = activity_id == 1
        if target:
            out["resources"] = [clean_obj(target)]
    if http_request:
        out["http_request"] = http_request

    if isinstance(trace_id := correlation.get("trace_id"), str):
        unmapped["trace_id"] = clean(trace_id)
    if correlation:
        unmapped["correlation"] = clean_obj(correlation)
    for key in ("schema", "category", "target", "details", "threat", "integrity"):
        if (value := event.get(key)) is not None:
            unmapped[key] = clean_obj(value)
    if unmapped:
        out["unmapped"] = unmapped
    return out


def render_ocsf(event: Mapping[str, Any]) -> str:
    """Render ``event`` as one line of OCSF JSON."""
    return dumps(ocsf_event(event))
