"""The operator guide's settings table cannot drift from the Settings model."""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from settings_table import GUIDE, current, render

from kroonika.settings import Settings


def test_every_settings_field_is_in_the_guide() -> None:
    """Each field appears as its KROONIKA_* variable in the operator guide."""
    text = GUIDE.read_text()
    missing = [n for n in Settings.model_fields if f"`KROONIKA_{n.upper()}`" not in text]
    assert missing == [], f"undocumented settings: {missing}"


def test_the_table_is_what_the_model_renders() -> None:
    """Names, defaults and meanings in the guide equal the generated table (regenerate with
    `.venv/bin/python tests/docs/settings_table.py --write`)."""
    assert current(GUIDE.read_text()) == render()


def test_the_guide_names_no_setting_that_does_not_exist() -> None:
    """Every KROONIKA_* variable the guide sets or quotes (`KROONIKA_X` or KROONIKA_X=) is a
    field (or the test switch); other names, e.g. a NATS stream, are not variables."""
    named = set(re.findall(r"KROONIKA_([A-Z0-9_]+)(?=[`=])", GUIDE.read_text()))
    known = {n.upper() for n in Settings.model_fields} | {"REQUIRE_SERVICES"}
    assert named - known == set()


def test_the_log_shipping_section_is_marked() -> None:
    """The section the log shipping work fills is present under its agreed title."""
    assert "## Log shipping (rsyslog, SIEM sinks, NATS)" in GUIDE.read_text()
