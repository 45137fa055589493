"""The dashboard page rendered from figures holding raw hostile strings (a tampered store,
another writer): everything shown is inert text, and the style matches the page's CSP."""

from __future__ import annotations

import base64
import hashlib
import re
from collections import Counter

from kroonika.audit.alerting import Alert
from kroonika.audit.dashboard import Overview, StreamHealth, Verification, Window
from kroonika.shipping import SinkStatus
from kroonika.web.routes_dashboard import CSP, render, shown

HOSTILE = "<script>alert(1)</script>\r\nFORGED\x1b[31m \u202eevil\u202c\u2028 \u200b\"'&"


def _overview(text: str) -> Overview:
    window = Window("1h", "2026-11-27T11:00:00.000000Z")
    window.add(
        {
            "category": text,
            "outcome": "failure",
            "type": "auth.login",
            "reason": text,
            "source": {"ip": "192.0.2.1"},
            "actor": {"pseudonym": text},
        }
    )
    alert = Alert(
        alert_id=text, rule=text, summary=text, severity=text, raised_at=text, first_seen=text
    )
    return Overview(
        generated="2026-11-27T12:00:00.000000Z",
        verification_since="2026-10-28T12:00:00.000000Z",
        open_alerts=[alert],
        open_total=1,
        acknowledged=[
            Alert(
                alert_id=text,
                rule=text,
                summary=text,
                severity="alert",
                raised_at=text,
                first_seen=text,
                acknowledged_at=text,
                acknowledged_by=text,
                note=text,
            )
        ],
        windows=[window],
        streams=[StreamHealth(text, 3, text, text, 3)],
        verification=Verification(text, text, text, 1),
        read=1,
    )


def test_raw_controls_and_markup_are_shown_as_escapes() -> None:
    """No tag, control, bidi or invisible character of a stored string reaches the page;
    each control is shown as its escape."""
    sinks = [SinkStatus(HOSTILE, True, 1, 0, 5, 1.0, HOSTILE)]
    page = render(_overview(HOSTILE), sinks, refresh_s=60, viewer=HOSTILE)
    assert "<script>" not in page
    for ch in "\r\n\x1b\u202e\u202c\u2028\u200b":
        assert ch not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\r\\nFORGED\\x1b[31m \\u202eevil" in page
    assert len(re.findall(r"<script", page, re.I)) == 0


def test_a_personal_code_in_any_stored_string_is_masked() -> None:
    """A valid personal code, prefixed or not, is not shown; other numbers are."""
    assert shown("user EE38001085718 and 60001019906") == (
        "user EE[personal code] and [personal code]"
    )
    assert shown("order 38001085719") == "order 38001085719"  # bad check digit
    assert shown("wide \uff13\uff18\uff10\uff10\uff11\uff10\uff18\uff15\uff17\uff11\uff18") == (
        "wide [personal code]"
    )
    assert shown("PNOEE-38001085718.") == "PNOEE-[personal code]."
    assert shown("138001085718") == "138001085718"  # part of a longer number
    assert "38001085718" not in render(
        _overview("EE38001085718"), None, refresh_s=60, viewer="auditor"
    )


def test_estonian_names_are_kept() -> None:
    assert shown("MARY ÄNN O’CONNEŽ-ŠUSLIK") == "MARY ÄNN O’CONNEŽ-ŠUSLIK"


def test_the_style_sheet_is_the_one_the_csp_allows() -> None:
    """The page's only style element hashes to the CSP's style-src (else the browser
    refuses it and says so in the console)."""
    page = render(_overview("x"), None, refresh_s=60, viewer="auditor")
    (style,) = re.findall(r"<style>(.*?)</style>", page, re.S)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in CSP
    assert '<meta http-equiv="refresh" content="60">' in page


def test_counts_table_shows_outcomes_per_category() -> None:
    window = Window("24h", "2026-11-26T12:00:00.000000Z")
    for outcome in ("success", "success", "failure"):
        window.add({"category": "token", "outcome": outcome, "type": "token.issue"})
    ov = _overview("x")
    ov.windows = [window]
    page = render(ov, None, refresh_s=60, viewer="auditor")
    row = re.search(r'<tr data-category="token">(.*?)</tr>', page)
    assert row is not None
    assert re.findall(r'<td class="n">(\d+)</td>', row.group(1)) == ["2", "1", "0", "3"]
    assert window.by_category == Counter({("token", "success"): 2, ("token", "failure"): 1})
