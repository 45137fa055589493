"""Builds the audit trail of this service from its settings (the audit library
itself knows nothing about Kroonika's configuration)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from kroonika.audit import (
    Actor,
    ActorType,
    AuditError,
    AuditTrail,
    Counters,
    Fingerprinter,
    KeyRing,
    Pipeline,
    SqlAuditStore,
    SqlSubjectKeys,
    events,
)
from kroonika.audit.processors.anonymise_ip import AnonymiseIp
from kroonika.audit.processors.enrich import Enricher
from kroonika.settings import Settings


@dataclass
class AuditComponents:
    trail: AuditTrail
    store: SqlAuditStore
    keyring: KeyRing
    fingerprinter: Fingerprinter
    subject_keys: SqlSubjectKeys
    counters: Counters
    #: the retired pseudonymisation keys (``KROONIKA_PSEUDONYM_PREVIOUS_KEYS``): what was
    #: stored under them still names its person (decisions 0012, 0022)
    retired: tuple[Fingerprinter, ...] = ()

    def stop_sync(self, reason: str = "cli exit") -> None:
        """For short-lived writers (CLI commands): record ``audit.log.stop`` if the
        writer recorded its start, publish a checkpoint of the stream (so that an
        exported witness covers it, and deleting a CLI command's whole stream is
        detectable), then close the store."""
        try:
            if self.trail.size and self.trail.started_sync:
                self.trail.emit_sync(
                    events.audit_log_stop(
                        actor=Actor(ActorType.SYSTEM), events=self.trail.emitted, reason=reason
                    )
                )
                self.trail.checkpoint_now()
        except AuditError:
            pass  # the command already failed closed on its own event
        finally:
            self.store.close()


def cli_stream_name() -> str:
    """A command's own audit stream: ``cli-<host>-<pid>-<4 hex>``. The host keeps two
    machines (or containers, whose commands often share a pid) from choosing one name on
    a shared store."""
    return f"cli-{socket.gethostname().split('.')[0][:40]}-{os.getpid()}-{os.urandom(2).hex()}"


def pseudonymiser(settings: Settings) -> Fingerprinter:
    """The active pseudonymisation key: how the trail names people (``actor.pseudonym``)."""
    return Fingerprinter(settings.secret_bytes("pseudonym_key"), settings.pseudonym_kid)


def build_audit(
    settings: Settings,
    *,
    stream: str | None = None,
    enrichers: tuple[Enricher, ...] = (),
    clock: Callable[[], int] | None = None,
) -> AuditComponents:
    """Open (and migrate) the configured store and build the writer for one stream.
    Refuses to build with missing keys in production (checked here, not on first use)."""
    store = SqlAuditStore(
        settings.resolved_audit_store_url(), synchronous=settings.audit_synchronous
    )
    store.upgrade()
    keyring = KeyRing.open(settings.resolved_audit_keys_dir(), create=not settings.production)
    counters = Counters()
    fingerprinter = pseudonymiser(settings)
    retired = tuple(Fingerprinter(key, kid) for kid, key in settings.pseudonym_keys()[1:])
    subject_keys = SqlSubjectKeys(
        store,
        settings.secret_bytes("master_key"),
        key_ttl_s=settings.audit_subject_key_ttl_s,
        erasure_check_s=settings.audit_erasure_check_s,
    )
    pipeline = Pipeline.standard(
        fingerprinter=fingerprinter,
        subject_keys=subject_keys,
        counters=counters,
        strict=settings.audit_strict,
        enrichers=enrichers,
        anonymise_ip=AnonymiseIp(
            v4_prefix=settings.audit_ip_v4_prefix, v6_prefix=settings.audit_ip_v6_prefix
        ),
    )
    trail = AuditTrail(
        pipeline,
        store,
        keyring,
        stream=stream or settings.audit_stream,
        counters=counters,
        checkpoint_every=settings.audit_checkpoint_every,
        checkpoint_interval=settings.audit_checkpoint_interval,
        subject_keys=subject_keys,
        clock=clock or time.time_ns,
    )
    return AuditComponents(
        trail, store, keyring, fingerprinter, subject_keys, counters, retired=retired
    )
