"""A trail on a real store with real keys, for the audit tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kroonika.audit import (
    Actor,
    ActorType,
    AuditEvent,
    AuditTrail,
    Counters,
    Fingerprinter,
    KeyRing,
    Pipeline,
    SqlAuditStore,
    SqlSubjectKeys,
    Target,
    events,
)


def deny_response(alert_id: str, **details: Any) -> AuditEvent:
    """A ``deny_network`` ``response.action`` of ``alert_id`` by the automated principal,
    with ``details`` (result, network, entry...)."""
    return events.response_action(
        actor=Actor(ActorType.SYSTEM, client_id="automated:alert-response"),
        target=Target("alert", alert_id),
        action="deny_network",
        alert_id=alert_id,
        **details,
    )


PSEUDONYM_KEY = b"k" * 32
MASTER_KEY = b"m" * 32


@dataclass
class TrailKit:
    trail: AuditTrail
    store: SqlAuditStore
    keyring: KeyRing
    keys: SqlSubjectKeys
    counters: Counters
    fingerprinter: Fingerprinter
    url: str


def make_kit(
    url: str,
    keys_dir: Path,
    *,
    strict: bool = True,
    checkpoint_every: int = 1000,
    stream: str = "test-stream",
) -> TrailKit:
    store = SqlAuditStore(url)
    store.upgrade()
    keyring = KeyRing.open(keys_dir, create=True)
    counters = Counters()
    keys = SqlSubjectKeys(store, MASTER_KEY)
    fingerprinter = Fingerprinter(PSEUDONYM_KEY, "p1")
    pipeline = Pipeline.standard(
        fingerprinter=fingerprinter, subject_keys=keys, counters=counters, strict=strict
    )
    trail = AuditTrail(
        pipeline,
        store,
        keyring,
        stream=stream,
        counters=counters,
        subject_keys=keys,
        checkpoint_every=checkpoint_every,
        checkpoint_interval=3600,
    )
    return TrailKit(trail, store, keyring, keys, counters, fingerprinter, url)
