"""Kroonika's audit library: structured, privacy-safe, tamper-evident audit events.

It imports nothing from the rest of Kroonika, FastAPI or Starlette (an
import-linter contract enforces it), so any Python service can use it::

    trail = AuditTrail(Pipeline.standard(...), SqlAuditStore(url), KeyRing.open(dir))
    await trail.start()
    await trail.emit(events.auth_login(actor=Actor(ActorType.USER, subject="EE38001085718")))
"""

from kroonika.audit import events
from kroonika.audit._counters import Counters
from kroonika.audit._errors import (
    AuditError,
    AuditKeyError,
    AuditUnavailable,
    EventFiltered,
    EventRejected,
    QueryInvalid,
    StoreError,
    UndeclaredField,
)
from kroonika.audit._model import (
    Actor,
    ActorType,
    AuditEvent,
    Category,
    Correlation,
    Outcome,
    PersonalData,
    SealedEvent,
    Severity,
    Source,
    Target,
    ThreatMatch,
)
from kroonika.audit.catalogue import CATALOGUE, EventSpec, FieldSpec
from kroonika.audit.pipeline import AuditTrail, Pipeline
from kroonika.audit.privacy import Fingerprinter, MemorySubjectKeys, SubjectKeys
from kroonika.audit.query import Query, run_query
from kroonika.audit.signing import KeyRing, PublicKeys
from kroonika.audit.store.sql import SqlAuditStore, SqlSubjectKeys
from kroonika.audit.verify import Finding, Report, verify_store

__all__ = [
    "CATALOGUE",
    "Actor",
    "ActorType",
    "AuditError",
    "AuditEvent",
    "AuditKeyError",
    "AuditTrail",
    "AuditUnavailable",
    "Category",
    "Correlation",
    "Counters",
    "EventFiltered",
    "EventRejected",
    "EventSpec",
    "FieldSpec",
    "Finding",
    "Fingerprinter",
    "KeyRing",
    "MemorySubjectKeys",
    "Outcome",
    "PersonalData",
    "Pipeline",
    "PublicKeys",
    "Query",
    "QueryInvalid",
    "Report",
    "SealedEvent",
    "Severity",
    "Source",
    "SqlAuditStore",
    "SqlSubjectKeys",
    "StoreError",
    "SubjectKeys",
    "Target",
    "ThreatMatch",
    "UndeclaredField",
    "events",
    "run_query",
    "verify_store",
]
