"""Sinks: ship the audit trail from the store to SIEMs and collectors.

Every sink reads from the store through its own persisted cursor (at least once,
in order per stream) driven by a :class:`SinkRunner`; checkpoints are shipped too.

=====================  ==============================================================
sink                   destination
=====================  ==============================================================
SyslogTcpSink          RFC 5424 over TCP (RFC 6587 octet counting) or TLS (RFC 5425)
SyslogUdpSink          RFC 5424 over UDP (RFC 5426), size-capped, lossy
SplunkHecSink          Splunk HTTP Event Collector
ElasticBulkSink        Elasticsearch / OpenSearch ``_bulk`` with ECS documents
WebhookSink            JSON lines, HMAC-SHA256 signed
SmtpSink               e-mail, one message per event (alerts)
JetStreamSink          NATS JetStream, subject per category, ``Nats-Msg-Id`` = event id
JsonlFileSink          JSON lines files with size/time rotation
OnlyTypes              wraps a sink: only the events of some types (``["alert"]``)
CapturingSink          in memory (tests)
=====================  ==============================================================

:class:`DeadLetterReplay` re-delivers dead letters through a sink once its destination
is fixed (``kroonika audit sinks replay``).

Errors::

    SinkError
    ├── TransientSinkError    retried with backoff and jitter
    └── PermanentSinkError    retried a few times, then dead-lettered
"""

from kroonika.audit.sinks._base import (
    CapturingSink,
    CheckpointRecord,
    Item,
    PermanentSinkError,
    Record,
    Sink,
    SinkError,
    TransientSinkError,
    is_loopback,
)
from kroonika.audit.sinks._filter import OnlyTypes
from kroonika.audit.sinks._replay import DeadLetterReplay
from kroonika.audit.sinks._runner import (
    RetryPolicy,
    SinkEvent,
    SinkMetrics,
    SinkRunner,
    audit_sink_event,
    trail_reporter,
)
from kroonika.audit.sinks._state import (
    CursorStore,
    FileLock,
    OwnershipLock,
    PostgresAdvisoryLock,
    ownership_lock_for,
)
from kroonika.audit.sinks.elastic_bulk import ElasticBulkSink
from kroonika.audit.sinks.jetstream import JetStreamSink
from kroonika.audit.sinks.jsonl_file import JsonlFileSink
from kroonika.audit.sinks.smtp import SmtpSink
from kroonika.audit.sinks.splunk_hec import SplunkHecSink
from kroonika.audit.sinks.syslog import SyslogTcpSink, SyslogUdpSink, tls_context
from kroonika.audit.sinks.webhook import WebhookSink

__all__ = [
    "CapturingSink",
    "CheckpointRecord",
    "CursorStore",
    "DeadLetterReplay",
    "ElasticBulkSink",
    "FileLock",
    "Item",
    "JetStreamSink",
    "JsonlFileSink",
    "OnlyTypes",
    "OwnershipLock",
    "PermanentSinkError",
    "PostgresAdvisoryLock",
    "Record",
    "RetryPolicy",
    "Sink",
    "SinkError",
    "SinkEvent",
    "SinkMetrics",
    "SinkRunner",
    "SmtpSink",
    "SplunkHecSink",
    "SyslogTcpSink",
    "SyslogUdpSink",
    "TransientSinkError",
    "WebhookSink",
    "audit_sink_event",
    "is_loopback",
    "ownership_lock_for",
    "tls_context",
    "trail_reporter",
]
