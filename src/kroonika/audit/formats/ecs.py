"""Elastic Common Schema 8.x documents (https://www.elastic.co/guide/en/ecs/8.11/).

``event.category`` and ``event.type`` use only the values ECS allows, and only in the pairs the
ECS "categorization field" tables allow (for example ``iam`` takes ``creation``/``deletion``/
``change``/``info``/``admin``; ``authentication`` and ``session`` take ``start``/``end``/``info``;
``intrusion_detection`` takes ``allowed``/``denied``/``info``):

============================  =====================================  ===========================
Kroonika type / category      event.category                         event.type
============================  =====================================  ===========================
auth.login / auth.logout      authentication                         start / end
auth.flow.transition          authentication                         info
session.create/extend/term.   authentication, session                start / info / end
token.issue, token.refresh    iam                                    creation
token.extend                  iam                                    change
token.revoke, token.expire    iam                                    deletion
token.validate/introspect     authentication                         info
access_list.add/update/remove iam                                    creation / change / deletion
admin.request                 web                                    access
admin.bulk                    iam                                    admin, change
admin.text.redact             database                               change
config.change                 configuration                          change
key.rotate                    configuration                          change
job.run                       process                                info
security.rate_limit           intrusion_detection, network           denied
security.policy_violation     intrusion_detection                    denied
security.anomaly              intrusion_detection                    info      (kind ``alert``)
security.threat_match         threat, intrusion_detection            indicator, info (``alert``)
audit.log.start / stop        process                                start / end
audit.access                  database                               access
audit.checkpoint / retention  database                               info / change
audit.erasure                 database, iam                          change / deletion
audit.sink                    database                               error (failure) / info
idp.keys                      authentication                         info
alert.raise                   intrusion_detection                    info      (kind ``alert``)
alert.acknowledge             intrusion_detection                    info
response.action               intrusion_detection                    denied
anything else                 by category, else ``event.type: info``
============================  =====================================  ===========================

``event.severity`` is the RFC 5424 severity code (0 emergency .. 7 debug), repeated in
``log.syslog.severity`` and ``log.level``. ``user.id`` is the pseudonym (never the personal
code). Geo coordinates stay exact decimal strings in the ``"lat,lon"`` geo_point string form.
Everything without an ECS home is under ``kroonika.*`` (details, target, threat, correlation,
integrity). The encrypted ``pii`` block is not shipped to the SIEM. All strings are cleaned
(:func:`kroonika.audit.formats._text.clean`): no controls or ANSI sequences reach the document.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from kroonika.audit.formats._text import (
    DEFAULT_SEVERITY,
    SYSLOG_SEVERITY,
    clean,
    clean_obj,
    dumps,
    part,
)

__all__ = ["ECS_VERSION", "ecs_document", "render_ecs"]

#: The ECS version these documents follow (``ecs.version``).
ECS_VERSION: Final = "8.11.0"

_Cat = tuple[str, tuple[str, ...], tuple[str, ...]]  # kind, event.category, event.type

_BY_TYPE: Final[Mapping[str, _Cat]] = {
    "auth.login": ("event", ("authentication",), ("start",)),
    "auth.logout": ("event", ("authentication",), ("end",)),
    "auth.flow.transition": ("event", ("authentication",), ("info",)),
    "session.create": ("event", ("authentication", "session"), ("start",)),
    "session.extend": ("event", ("authentication", "session"), ("info",)),
    "session.terminate": ("event", ("authentication", "session"), ("end",)),
    "token.issue": ("event", ("iam",), ("creation",)),
    "token.refresh": ("event", ("iam",), ("creation",)),
    "token.extend": ("event", ("iam",), ("change",)),
    "token.revoke": ("event", ("iam",), ("deletion",)),
    "token.expire": ("event", ("iam",), ("deletion",)),
    "token.validate": ("event", ("authentication",), ("info",)),
    "token.introspect": ("event", ("authentication",), ("info",)),
    "access_list.add": ("event", ("iam",), ("creation",)),
    "access_list.update": ("event", ("iam",), ("change",)),
    "access_list.remove": ("event", ("iam",), ("deletion",)),
    "admin.request": ("event", ("web",), ("access",)),
    "admin.bulk": ("event", ("iam",), ("admin", "change")),
    "admin.text.redact": ("event", ("database",), ("change",)),
    "config.change": ("event", ("configuration",), ("change",)),
    "key.rotate": ("event", ("configuration",), ("change",)),
    "job.run": ("event", ("process",), ("info",)),
    "security.rate_limit": ("event", ("intrusion_detection", "network"), ("denied",)),
    "security.policy_violation": ("event", ("intrusion_detection",), ("denied",)),
    "security.anomaly": ("alert", ("intrusion_detection",), ("info",)),
    "security.threat_match": ("alert", ("threat", "intrusion_detection"), ("indicator", "info")),
    "audit.log.start": ("event", ("process",), ("start",)),
    "audit.log.stop": ("event", ("process",), ("end",)),
    "audit.access": ("event", ("database",), ("access",)),
    "audit.checkpoint": ("event", ("database",), ("info",)),
    "audit.retention": ("event", ("database",), ("change",)),
    "audit.erasure": ("event", ("database", "iam"), ("change", "deletion")),
    "audit.sink": ("event", ("database",), ("info",)),
    "idp.keys": ("event", ("authentication",), ("info",)),
    "alert.raise": ("alert", ("intrusion_detection",), ("info",)),
    "alert.acknowledge": ("event", ("intrusion_detection",), ("info",)),
    "response.action": ("event", ("intrusion_detection",), ("denied",)),
}

_BY_CATEGORY: Final[Mapping[str, _Cat]] = {
    "authentication": ("event", ("authentication",), ("info",)),
    "session": ("event", ("session",), ("info",)),
    "token": ("event", ("iam",), ("info",)),
    "access_list": ("event", ("iam",), ("info",)),
    "admin": ("event", ("iam",), ("admin",)),
    "config": ("event", ("configuration",), ("info",)),
    "job": ("event", ("process",), ("info",)),
    "security": ("event", ("intrusion_detection",), ("info",)),
    "audit": ("event", ("database",), ("info",)),
    "alert": ("event", ("intrusion_detection",), ("info",)),
}
_UNKNOWN: Final[_Cat] = ("event", (), ("info",))
_OUTCOMES: Final = frozenset({"success", "failure", "unknown"})


def _confidence(value: Any) -> str:
    """ECS ``threat.indicator.confidence`` keyword from a 0..100 score."""
    if isinstance(value, bool) or not isinstance(value, int):
        return "Not Specified"
    if value <= 0:
        return "None"
    if value < 40:
        return "Low"
    if value < 75:
        return "Medium"
    return "High"


def _indicator(match: Mapping[str, Any]) -> dict[str, Any]:
    indicator: dict[str, Any] = {"confidence": _confidence(match.get("confidence"))}
    if (feed := match.get("feed")) is not None:
        indicator["provider"] = clean(str(feed))
    if (value := match.get("indicator")) is not None:
        indicator["description"] = clean(str(value))
    return indicator


def ecs_document(event: Mapping[str, Any]) -> dict[str, Any]:
    """Build the ECS document for ``event`` (a plain dict, ready for an ``_bulk`` body)."""
    etype = event.get("type")
    category = event.get("category")
    found = _BY_TYPE.get(etype) if isinstance(etype, str) else None
    if found is None:
        found = _BY_CATEGORY.get(category, _UNKNOWN) if isinstance(category, str) else _UNKNOWN
    kind, categories, types = found
    outcome = event.get("outcome")
    if etype == "audit.sink" and outcome == "failure":
        types = ("error",)
    raw_severity = event.get("severity")
    severity_name: str = (
        raw_severity
        if isinstance(raw_severity, str) and raw_severity in SYSLOG_SEVERITY
        else DEFAULT_SEVERITY
    )
    severity = SYSLOG_SEVERITY[severity_name]

    ev: dict[str, Any] = {
        "kind": kind,
        "category": list(categories),
        "type": list(types),
        "dataset": "kroonika.audit",
        "module": "kroonika",
        "provider": "kroonika",
        "severity": severity,
        "outcome": outcome if outcome in _OUTCOMES else "unknown",
    }
    if isinstance(etype, str):
        ev["action"] = clean(etype)
    if isinstance(eid := event.get("id"), str):
        ev["id"] = clean(eid)
    if isinstance(seq := event.get("seq"), int):
        ev["sequence"] = seq
    if isinstance(reason := event.get("reason"), str):
        ev["reason"] = clean(reason)

    doc: dict[str, Any] = {
        "ecs": {"version": ECS_VERSION},
        "event": ev,
        "log": {
            "level": severity_name,
            "syslog": {"severity": {"code": severity, "name": severity_name}},
        },
    }
    if isinstance(time := event.get("time"), str):
        doc["@timestamp"] = clean(time)
    labels: dict[str, str] = {}
    if isinstance(stream := event.get("stream"), str):
        labels["stream"] = clean(stream)
    if isinstance(category, str):
        labels["category"] = clean(category)
    if isinstance(schema := event.get("schema"), str):
        labels["schema"] = clean(schema)
    if labels:
        doc["labels"] = labels

    related: dict[str, list[str]] = {}
    kroonika: dict[str, Any] = {}

    actor = part(event, "actor")
    if actor:
        user: dict[str, Any] = {}
        if isinstance(pseudonym := actor.get("pseudonym"), str):
            user["id"] = clean(pseudonym)
            related["user"] = [user["id"]]
        if isinstance(roles := actor.get("roles"), list | tuple):
            user["roles"] = [clean(str(r)) for r in roles]
        if user:
            doc["user"] = user
        extra = {k: v for k, v in actor.items() if k not in ("pseudonym", "roles")}
        if extra:
            kroonika["actor"] = clean_obj(extra)

    source = part(event, "source")
    if source:
        src: dict[str, Any] = {}
        if isinstance(ip := source.get("ip"), str):
            src["ip"] = src["address"] = clean(ip)
            related["ip"] = [src["ip"]]
        if isinstance(port := source.get("port"), int) and not isinstance(port, bool):
            src["port"] = port
        geo = part(source, "geo")
        if geo:
            g: dict[str, Any] = {}
            if isinstance(country := geo.get("country"), str):
                g["country_iso_code"] = clean(country)
            if isinstance(city := geo.get("city"), str):
                g["city_name"] = clean(city)
            lat, lon = geo.get("lat"), geo.get("lon")
            if isinstance(lat, str) and isinstance(lon, str):
                g["location"] = f"{clean(lat)},{clean(lon)}"
            if g:
                src["geo"] = g
        asys = part(source, "as")
        if asys:
            a: dict[str, Any] = {}
            if isinstance(number := asys.get("number"), int):
                a["number"] = number
            if isinstance(org := asys.get("org"), str):
                a["organization"] = {"name": clean(org)}
            if a:
                src["as"] = a
        if src:
            doc["source"] = src
        if isinstance(ua := source.get("user_agent"), str):
            doc["user_agent"] = {"original": clean(ua)}
        extra = {
            k: v for k, v in source.items() if k not in ("ip", "port", "geo", "as", "user_agent")
        }
        if extra:
            kroonika["source"] = clean_obj(extra)

    correlation = part(event, "correlation")
    if correlation:
        if isinstance(trace_id := correlation.get("trace_id"), str):
            doc["trace"] = {"id": clean(trace_id)}
        if isinstance(request_id := correlation.get("request_id"), str):
            doc["http"] = {"request": {"id": clean(request_id)}}
        kroonika["correlation"] = clean_obj(correlation)

    if related:
        doc["related"] = related
    for key in ("target", "details", "integrity"):
        if (value := event.get(key)) is not None:
            kroonika[key] = clean_obj(value)

    threat = event.get("threat")
    if isinstance(threat, list | tuple) and threat:
        matches = [m for m in threat if isinstance(m, Mapping)]
        if matches:
            doc["threat"] = {
                "indicator": _indicator(matches[0]),
                "enrichments": [
                    {
                        "indicator": _indicator(m),
                        "matched": {
                            "atomic": clean(str(m.get("indicator", ""))),
                            "field": "source.ip",
                            "type": "indicator_match_rule",
                        },
                    }
                    for m in matches
                ],
            }
        kroonika["threat"] = clean_obj(threat)
    if kroonika:
        doc["kroonika"] = kroonika
    return doc


def render_ecs(event: Mapping[str, Any]) -> str:
    """Render ``event`` as one line of ECS JSON."""
    return dumps(ecs_document(event))
