"""Sink options of decision 0030, from the settings: the JetStream duplicate window the
sink expects, an HTTP sink's explicit proxy, NATS TLS before INFO."""

from __future__ import annotations

import pytest
from test_sink_credentials import build, refusal

from kroonika.audit.sinks import JetStreamSink
from kroonika.audit.sinks.jetstream import DEFAULT_DUPLICATE_WINDOW


def test_the_nats_duplicate_window_expected_is_two_hours_unless_told() -> None:
    default = build({"kind": "nats", "name": "n"})
    told = build({"kind": "nats", "name": "n", "duplicate_window_s": 600})
    assert isinstance(default, JetStreamSink)
    assert isinstance(told, JetStreamSink)
    assert default.duplicate_window == DEFAULT_DUPLICATE_WINDOW == 7200
    assert told.duplicate_window == 600


def test_the_duplicate_window_is_a_nats_key_only() -> None:
    text = refusal(
        {
            "kind": "webhook",
            "name": "hook",
            "url": "https://h.example/x",
            "secret": "k" * 20,
            "duplicate_window_s": 600,
        }
    )
    assert "'duplicate_window_s' has no effect" in text


def test_a_duplicate_window_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="duplicate_window_s"):
        build({"kind": "nats", "name": "n", "duplicate_window_s": 0})
