"""OCSF and ECS output carries what each schema requires for the class / category used.

ocsf-lib cannot validate offline (it fetches the schema from schema.ocsf.io), so the required
attributes of each OCSF 1.3.0 class used here are listed from the schema sources.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from format_samples import TYPICAL

from kroonika.audit.formats import ecs_document, ocsf_event
from kroonika.audit.formats.ocsf import CLASS_BY_TYPE

_TYPES = sorted(CLASS_BY_TYPE)

_BASE_REQUIRED = (
    "activity_id",
    "category_uid",
    "class_uid",
    "metadata",
    "severity_id",
    "time",
    "type_uid",
)
_CLASS_REQUIRED: dict[int, tuple[str, ...]] = {
    0: (),
    1006: ("job", "actor", "device"),
    2004: ("finding_info",),
    3002: ("user",),
    3004: ("entity",),
    6002: ("app",),
    6003: ("actor", "api", "src_endpoint"),
}
# "at least one of" constraints
_CLASS_AT_LEAST_ONE: dict[int, tuple[str, ...]] = {3002: ("service", "dst_endpoint")}
_CATEGORY_OF: dict[int, int] = {0: 0, 1006: 1, 2004: 2, 3002: 3, 3004: 3, 6002: 6, 6003: 6}

# ECS 8.x: allowed event.type values per event.category.
_ECS_ALLOWED: dict[str, set[str]] = {
    "authentication": {"start", "end", "info"},
    "session": {"start", "end", "info"},
    "iam": {"admin", "change", "creation", "deletion", "group", "info", "user"},
    "configuration": {"access", "change", "creation", "deletion", "info"},
    "web": {"access", "error", "info"},
    "process": {"access", "change", "end", "info", "start"},
    "intrusion_detection": {"allowed", "denied", "info", "start", "end"},
    "network": {
        "access",
        "allowed",
        "connection",
        "denied",
        "end",
        "info",
        "protocol",
        "start",
    },
    "threat": {"indicator"},
    "database": {"access", "change", "deletion", "info", "installation", "start", "error"},
}
_ECS_KINDS = {
    "alert",
    "asset",
    "enrichment",
    "event",
    "metric",
    "state",
    "pipeline_error",
    "signal",
}


def _event(etype: str) -> dict[str, Any]:
    event = copy.deepcopy(TYPICAL)
    event["type"] = etype
    event["category"] = {"auth": "authentication", "key": "admin", "response": "alert"}.get(
        etype.split(".")[0], etype.split(".")[0]
    )
    return event


@pytest.mark.parametrize("etype", [*_TYPES, "something.new"])
def test_ocsf_event_has_required_attributes(etype: str) -> None:
    """Every OCSF event carries the base-event and class required attributes."""
    out = ocsf_event(_event(etype))
    for key in (*_BASE_REQUIRED, *_CLASS_REQUIRED[out["class_uid"]]):
        assert key in out, key
    assert out["category_uid"] == _CATEGORY_OF[out["class_uid"]]
    assert out["type_uid"] == out["class_uid"] * 100 + out["activity_id"]
    assert out["metadata"]["version"] == "1.3.0"
    assert {"name", "vendor_name"} <= out["metadata"]["product"].keys()
    if (options := _CLASS_AT_LEAST_ONE.get(out["class_uid"])) is not None:
        assert any(k in out for k in options)
    if out["class_uid"] == 2004:
        assert {"uid", "title"} <= out["finding_info"].keys()
    if out["class_uid"] == 6003:
        assert "operation" in out["api"]
    assert isinstance(out["time"], int)


def test_ocsf_login_is_authentication_logon() -> None:
    """auth.login is Authentication (3002) / Logon (1) with the pseudonym as the user uid."""
    out = ocsf_event(TYPICAL)
    assert (out["class_uid"], out["activity_id"], out["type_uid"]) == (3002, 1, 300201)
    assert out["user"]["uid"] == out["actor"]["user"]["uid"] == "p1:3q2-7wXyZ"
    assert (out["status_id"], out["time"]) == (2, 1795757003123)


@pytest.mark.parametrize("etype", [*_TYPES, "something.new"])
def test_ecs_categorization_uses_allowed_values(etype: str) -> None:
    """event.category / event.type use only values (and pairs) that ECS allows."""
    ev = ecs_document(_event(etype))["event"]
    assert ev["kind"] in _ECS_KINDS
    for category in ev["category"]:
        allowed = set().union(*(_ECS_ALLOWED[c] for c in ev["category"]))
        assert category in _ECS_ALLOWED
        assert set(ev["type"]) <= allowed
    assert ev["action"] == etype


def test_ecs_document_fields() -> None:
    """The typical login maps to the documented ECS fields."""
    doc = ecs_document(TYPICAL)
    assert doc["@timestamp"] == "2026-11-27T05:23:23.123456Z"
    assert doc["user"] == {"id": "p1:3q2-7wXyZ", "roles": ["citizen"]}
    assert doc["source"]["geo"]["location"] == "59.4370,24.7536"
    assert doc["source"]["as"] == {"number": 3249, "organization": {"name": "Telia Eesti"}}
    assert doc["related"] == {"user": ["p1:3q2-7wXyZ"], "ip": ["192.0.2.0"]}
    assert doc["trace"]["id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert doc["http"]["request"]["id"] == "req-7f3a"
    assert doc["event"]["severity"] == 4
    assert "pii" not in doc.get("kroonika", {})
