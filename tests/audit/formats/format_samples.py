"""Sample events and the golden-file helper shared by the tests/audit/formats tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

GOLDEN_DIR = Path(__file__).parent / "golden"
#: Set to 1 to rewrite the golden files from the current renderers (then review the diff).
REGENERATE = os.environ.get("KROONIKA_REGEN_GOLDEN") == "1"

TYPICAL: dict[str, Any] = {
    "schema": "kroonika.audit/1",
    "id": "0192f3c1-7a2b-7c3d-8e4f-5a6b7c8d9e0f",
    "stream": "web-1",
    "seq": 42,
    "time": "2026-11-27T05:23:23.123456Z",
    "type": "auth.login",
    "category": "authentication",
    "outcome": "failure",
    "reason": "id_token.nonce_mismatch",
    "severity": "warning",
    "actor": {"type": "user", "pseudonym": "p1:3q2-7wXyZ", "roles": ["citizen"]},
    "source": {
        "ip": "192.0.2.0",
        "ip_prefix": 24,
        "port": 51234,
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
        "geo": {"country": "EE", "city": "Tallinn", "lat": "59.4370", "lon": "24.7536"},
        "as": {"number": 3249, "org": "Telia Eesti"},
    },
    "target": {"type": "session", "id": "s1:abc"},
    "correlation": {
        "request_id": "req-7f3a",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "flow_id": "flow-19",
        "session_ref": "s1:abc",
    },
    "details": {"method": "idcard", "acr": "high"},
    "integrity": {"prev": "00" * 32, "leaf": "ab" * 32},
}

ADMIN_REQUEST: dict[str, Any] = {
    "schema": "kroonika.audit/1",
    "id": "0192f3c1-7a2b-7c3d-8e4f-000000000002",
    "stream": "web-2",
    "seq": 7,
    "time": "2026-11-27T06:00:00.000001Z",
    "type": "admin.request",
    "category": "admin",
    "outcome": "failure",
    "reason": "forbidden",
    "severity": "notice",
    "actor": {"type": "admin", "pseudonym": "p1:admin", "roles": ["operator"], "client_id": "x"},
    "source": {"ip": "2001:db8:1::", "ip_prefix": 48, "port": 443},
    "target": {"type": "config_key", "id": "ratelimit.login"},
    "correlation": {"request_id": "req-1"},
    "details": {
        "route": "/admin/config",
        "http_method": "PUT",
        "status": 403,
        "justification": "INC-42",
    },
}

THREAT_MATCH: dict[str, Any] = {
    "schema": "kroonika.audit/1",
    "id": "0192f3c1-7a2b-7c3d-8e4f-000000000003",
    "stream": "web-1",
    "seq": 43,
    "time": "2026-11-27T05:23:24Z",
    "type": "security.threat_match",
    "category": "security",
    "outcome": "unknown",
    "severity": "alert",
    "source": {"ip": "203.0.113.0", "ip_prefix": 24},
    "threat": [
        {
            "feed": "firehol_level1",
            "indicator": "203.0.113.0/24",
            "category": "malware",
            "confidence": 80,
        }
    ],
}

#: Every user-controlled string is hostile: quotes, backslashes, ], |, =, CR/LF, ANSI, NUL,
#: DEL, C1 CSI, U+2028, bidi override, Estonian letters, emoji.
H = 'õäöüšž "q" \\b\\ ]|= \r\nFAKE: 1 \x1b[31mred\x1b[0m \x00\x7f\x9b2J\u2028\u202e 👍🏽 '
HOSTILE: dict[str, Any] = {
    "schema": "kroonika.audit/1",
    "id": "id" + H,
    "stream": "st" + H,
    "seq": 1,
    "time": "2026-11-27T05:23:23.123456Z",
    "type": "token.revoke" + H,
    "category": "token",
    "outcome": "success",
    "reason": "why" + H,
    "severity": "error",
    "actor": {"type": "admin", "pseudonym": "ps" + H, "roles": ["r" + H], "client_id": H},
    "source": {
        "ip": "ip" + H,
        "port": 1,
        "user_agent": "ua" + H,
        "geo": {"country": H, "city": "Tõrva" + H, "lat": H, "lon": H},
        "as": {"number": 1, "org": H},
    },
    "target": {"type": "token", "id": "jti" + H},
    "correlation": {"request_id": "rq" + H, "trace_id": H, "flow_id": H, "session_ref": H},
    "details": {"justification": "j" + H, "route": "/r" + H, "list": [H, 1]},
    "threat": [{"feed": H, "indicator": H, "confidence": 10}],
}

SAMPLES: dict[str, dict[str, Any]] = {
    "typical": TYPICAL,
    "admin_request": ADMIN_REQUEST,
    "threat_match": THREAT_MATCH,
    "hostile": HOSTILE,
}


def check_golden(name: str, actual: str) -> None:
    """Compare ``actual`` with golden/<name>, or rewrite it when KROONIKA_REGEN_GOLDEN=1."""
    path = GOLDEN_DIR / name
    if REGENERATE:
        GOLDEN_DIR.mkdir(exist_ok=True)
        path.write_bytes(actual.encode() + b"\n")
        return
    expected = path.read_bytes().decode()
    assert expected.endswith("\n")
    assert actual == expected[:-1]
