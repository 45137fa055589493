"""Each renderer's output for the sample events equals its reviewed golden file."""

from __future__ import annotations

import pytest
from format_samples import SAMPLES, check_golden

from kroonika.audit.formats import CefRenderer, LeefRenderer, Rfc5424Renderer, render

_VERSION = "1.0.0"
_EXT = {"json": "json", "ecs": "json", "ocsf": "json", "cef": "cef", "leef": "leef"}


@pytest.mark.parametrize("sample", sorted(SAMPLES))
@pytest.mark.parametrize("fmt", ["json", "ecs", "ocsf"])
def test_json_formats_match_golden(fmt: str, sample: str) -> None:
    """JSON-based formats render each sample exactly as the golden file says."""
    check_golden(f"{sample}.{fmt}.json", render(fmt, SAMPLES[sample]))


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_cef_matches_golden(sample: str) -> None:
    """CEF renders each sample exactly as the golden file says."""
    check_golden(f"{sample}.cef", CefRenderer(product_version=_VERSION)(SAMPLES[sample]))


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_leef_matches_golden(sample: str) -> None:
    """LEEF renders each sample exactly as the golden file says."""
    check_golden(f"{sample}.leef", LeefRenderer(product_version=_VERSION)(SAMPLES[sample]))


@pytest.mark.parametrize("body", ["json", "cef"])
@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_rfc5424_matches_golden(sample: str, body: str) -> None:
    """RFC 5424 renders each sample (JSON or CEF body) exactly as the golden file says."""
    renderer = Rfc5424Renderer(
        hostname="kroonika-1.example", procid="4242", body=body, product_version=_VERSION
    )  # type: ignore[arg-type]
    check_golden(f"{sample}.{body}.rfc5424", renderer(SAMPLES[sample]))
