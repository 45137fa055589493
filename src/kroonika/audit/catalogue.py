"""The event catalogue: every event type Kroonika may emit (DESIGN.md section 3).

For each type it says the category and default severity, the ``details`` fields it
may carry (deny by default: anything undeclared is rejected in strict mode and
dropped-and-counted otherwise), which personal data it may carry (it goes into the
encrypted ``pii`` block, never in clear), the OCSF class and activity it maps to and
the PCI DSS v4.0 requirement 10.2.1.x clause it serves.

Event types are ``area.object.action`` and are never renamed once published; add a
type rather than stretch one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Final, Literal

from kroonika.audit._model import Category, Severity

FieldKind = Literal["str", "int", "bool", "str_list", "int_list"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    kind: FieldKind = "str"
    max_len: int = 256
    doc: str = ""


@dataclass(frozen=True, slots=True)
class EventSpec:
    type: str
    category: Category
    severity: Severity
    description: str
    ocsf_class: int
    ocsf_activity: int
    pci: str
    details: Mapping[str, FieldSpec] = field(default_factory=dict)
    # Security, admin and audit events can never be filtered out.
    filterable: bool = True
    # Which personal data (PersonalData fields) the type may carry; they are
    # stored only encrypted in ``pii``. Anything else is refused like an
    # undeclared detail (data minimisation, GDPR art. 5(1)(c)).
    personal: frozenset[str] = frozenset()


S = FieldSpec()
I = FieldSpec("int")  # noqa: E741
B = FieldSpec("bool")
L = FieldSpec("str_list")
LONG = FieldSpec(max_len=2048)

# Token metadata, shared by the token.* types: never the token itself.
_TOKEN_META: Final = {
    "jti": S,
    "kid": S,
    "alg": S,
    "token_type": S,
    "audience": L,
    "issued_at": I,
    "expires_at": I,
    "claim_names": L,
    "client": S,
    "fingerprint": S,
    "verdict": S,
}
_SESSION: Final = {
    "method": S,
    "acr": S,
    "idle_timeout_s": I,
    "expires_at": I,
    "absolute_expires_at": I,
    "reason": S,
    "ended_by": S,
}
_PCI_ACCESS: Final = "10.2.1.4"  # invalid logical access attempts (failures) and access
_PCI_ADMIN: Final = "10.2.1.2"
_PCI_AUDIT_ACCESS: Final = "10.2.1.3"
_PCI_AUDIT_LIFECYCLE: Final = "10.2.1.6"
_PCI_CREDENTIALS: Final = "10.2.1.5"
_PCI_OBJECTS: Final = "10.2.1.7"

A, SE, T, AL, AD, C, J, SC, AU, AR = (
    Category.AUTHENTICATION,
    Category.SESSION,
    Category.TOKEN,
    Category.ACCESS_LIST,
    Category.ADMIN,
    Category.CONFIG,
    Category.JOB,
    Category.SECURITY,
    Category.AUDIT,
    Category.ALERT,
)
INFO, NOTICE, WARNING, ERROR, ALERT_ = (
    Severity.INFO,
    Severity.NOTICE,
    Severity.WARNING,
    Severity.ERROR,
    Severity.ALERT,
)

# OCSF 1.x class uids
_AUTHN, _ACCT, _AUTHZ, _ENTITY, _API, _FINDING, _DETECTION = (
    3002,
    3001,
    3003,
    3004,
    6003,
    2001,
    2004,
)


def _specs() -> dict[str, EventSpec]:
    specs = [
        # --- authentication (AC1)
        EventSpec(
            "auth.flow.transition",
            A,
            Severity.DEBUG,
            "One step of an OIDC login flow",
            _AUTHN,
            99,
            _PCI_ACCESS,
            {"from_state": S, "to_state": S, "method": S, "acr": S},
        ),
        EventSpec(
            "auth.login",
            A,
            INFO,
            "A login attempt through TARA, with its outcome",
            _AUTHN,
            1,
            _PCI_ACCESS,
            {
                "method": S,
                "acr": S,
                "acr_requested": S,
                "amr": L,
                "idp": S,
                "country": S,
                "idp_error": S,
            },
        ),
        EventSpec(
            "auth.logout",
            A,
            INFO,
            "A person logged out",
            _AUTHN,
            2,
            _PCI_ACCESS,
            {"method": S, "scope": S},
        ),
        EventSpec(
            "session.create", SE, INFO, "A session was created", _AUTHN, 1, _PCI_ACCESS, _SESSION
        ),
        EventSpec(
            "session.extend", SE, INFO, "A session was extended", _AUTHZ, 1, _PCI_ACCESS, _SESSION
        ),
        EventSpec(
            "session.terminate",
            SE,
            INFO,
            "A session ended (reason says why)",
            _AUTHN,
            2,
            _PCI_ACCESS,
            _SESSION,
        ),
        # --- tokens (AC2)
        EventSpec(
            "token.issue",
            T,
            INFO,
            "A token was minted or refused",
            _ACCT,
            1,
            _PCI_CREDENTIALS,
            {**_TOKEN_META, "ttl_s": I, "subject_type": S},
        ),
        EventSpec(
            "token.validate",
            T,
            INFO,
            "A token was validated",
            _API,
            2,
            _PCI_ACCESS,
            {**_TOKEN_META, "count": I, "window_s": I},
        ),
        EventSpec(
            "token.introspect",
            T,
            INFO,
            "RFC 7662 introspection",
            _API,
            2,
            _PCI_ACCESS,
            {**_TOKEN_META, "active": B, "count": I, "window_s": I},
        ),
        EventSpec(
            "token.extend",
            T,
            INFO,
            "A token was replaced by a longer-lived one",
            _ACCT,
            99,
            _PCI_CREDENTIALS,
            {**_TOKEN_META, "new_jti": S, "new_expires_at": I},
        ),
        EventSpec(
            "token.refresh",
            T,
            INFO,
            "A token was refreshed",
            _ACCT,
            99,
            _PCI_CREDENTIALS,
            {**_TOKEN_META, "new_jti": S},
        ),
        EventSpec(
            "token.revoke",
            T,
            NOTICE,
            "Tokens were revoked",
            _ACCT,
            99,
            _PCI_CREDENTIALS,
            {**_TOKEN_META, "count": I, "revoked_by": S, "why": LONG},
        ),
        EventSpec(
            "token.expire",
            T,
            INFO,
            "Token expiry was observed",
            _ACCT,
            99,
            _PCI_CREDENTIALS,
            {**_TOKEN_META, "observed_by": S},
        ),
        EventSpec(
            "access_list.add",
            AL,
            NOTICE,
            "An allow/deny entry was added",
            _ENTITY,
            1,
            _PCI_ADMIN,
            {"list": S, "kind": S, "value_ref": S, "why": LONG, "expires_at": I},
        ),
        EventSpec(
            "access_list.remove",
            AL,
            NOTICE,
            "An allow/deny entry was removed",
            _ENTITY,
            4,
            _PCI_ADMIN,
            {"list": S, "kind": S, "value_ref": S, "why": LONG},
        ),
        EventSpec(
            "access_list.update",
            AL,
            NOTICE,
            "An allow/deny entry was changed",
            _ENTITY,
            3,
            _PCI_ADMIN,
            {"list": S, "kind": S, "value_ref": S, "why": LONG, "changes": LONG},
        ),
        # --- administration (AC3)
        EventSpec(
            "admin.request",
            AD,
            INFO,
            "An admin or audit API call",
            _API,
            99,
            _PCI_ADMIN,
            {
                "method": S,
                "route": S,
                "status": I,
                "duration_ms": I,
                "justification": LONG,
                "params": LONG,
                "auth": S,
                "api_key": S,
            },
            filterable=False,
        ),
        EventSpec(
            "config.change",
            C,
            NOTICE,
            "Runtime configuration changed",
            _ENTITY,
            3,
            _PCI_ADMIN,
            {
                "key": S,
                "before": LONG,
                "after": LONG,
                "justification": LONG,
                "secret": B,
                "version": I,
                # a change that weakens a control, and its two-person approval (0017)
                "weakening": B,
                "request_id": S,
                "state": S,
                "requested_by": S,
                "decided_by": S,
                "expires_at": I,
            },
            filterable=False,
        ),
        EventSpec(
            "admin.bulk",
            AD,
            NOTICE,
            "A bulk administrative operation",
            _API,
            99,
            _PCI_ADMIN,
            {
                "operation": S,
                "requested": I,
                "succeeded": I,
                "failed": I,
                "digest": S,
                "justification": LONG,
            },
            filterable=False,
        ),
        EventSpec(
            "admin.text.redact",
            AD,
            NOTICE,
            "A personal code was removed from stored free text",
            _ENTITY,
            3,
            _PCI_ADMIN,
            {
                # one changed row of the business database (the target: table and row
                # id): which of its columns, whose codes (pseudonyms, never the code or
                # the text) and how many; see decision 0038
                "columns": L,
                "pseudonyms": L,
                "codes": I,
                "justification": LONG,
                "interface": S,
            },
            filterable=False,
        ),
        EventSpec(
            "job.run",
            J,
            INFO,
            "A scheduled or manual job ran",
            _API,
            99,
            _PCI_OBJECTS,
            {
                "job": S,
                "trigger": S,
                "counts": LONG,
                "duration_ms": I,
                "run_id": S,
                "error": S,
                "resumed": B,
                "batches": I,
                # a run the database gave up (lock_timeout, statement_timeout; decision
                # 0010): the pause before the scheduler tries again and how many such
                # failures in a row it follows (the job status's backoff)
                "backoff_delay_s": I,
                "backoff_failures": I,
            },
        ),
        EventSpec(
            "key.rotate",
            AD,
            NOTICE,
            "A signing key was rotated",
            _ENTITY,
            3,
            _PCI_CREDENTIALS,
            {"purpose": S, "old_kid": S, "new_kid": S, "justification": LONG},
            filterable=False,
        ),
        # --- security (AC4)
        EventSpec(
            "security.rate_limit",
            SC,
            WARNING,
            "A rate limit was exceeded",
            _DETECTION,
            1,
            _PCI_ACCESS,
            {
                "limit": S,
                "key_kind": S,
                "route_group": S,
                "window_s": I,
                "count": I,
                "summary": B,
                "retry_after_s": I,
                "penalty_level": I,
            },
            filterable=False,
        ),
        EventSpec(
            "security.policy_violation",
            SC,
            WARNING,
            "A security policy refused",
            _DETECTION,
            1,
            _PCI_ACCESS,
            {"policy": S, "attempted": LONG, "decision": S},
            filterable=False,
        ),
        EventSpec(
            "security.anomaly",
            SC,
            WARNING,
            "Unusual access pattern",
            _DETECTION,
            1,
            _PCI_ACCESS,
            {"kind": S, "key_kind": S, "evidence": LONG, "confidence": I},
            filterable=False,
        ),
        EventSpec(
            "security.threat_match",
            SC,
            WARNING,
            "Source matched threat intel",
            _DETECTION,
            1,
            _PCI_ACCESS,
            {"feed": S, "action": S, "event_type": S},
            filterable=False,
        ),
        # --- the trail itself (PCI 10.2.1.3 and 10.2.1.6)
        EventSpec(
            "audit.log.start",
            AU,
            NOTICE,
            "An audit writer started",
            _API,
            99,
            _PCI_AUDIT_LIFECYCLE,
            {"clock": S, "version": S, "store": S, "host": S, "pid": I},
            filterable=False,
        ),
        EventSpec(
            "audit.log.stop",
            AU,
            NOTICE,
            "An audit writer stopped",
            _API,
            99,
            _PCI_AUDIT_LIFECYCLE,
            {"events": I, "reason": S},
            filterable=False,
        ),
        EventSpec(
            "audit.access",
            AU,
            NOTICE,
            "The trail was read",
            _API,
            2,
            _PCI_AUDIT_ACCESS,
            {
                "action": S,
                "query": LONG,
                "returned": I,
                "format": S,
                "result": S,
                "interface": S,
                "justification": LONG,
                # which store or archive was read (a URL's password masked), and
                # the row limit asked for
                "store": LONG,
                "limit": I,
                # re-identify: which events were decrypted, which personal fields they
                # held (names, never values) and how many were already erased
                "event_ids": L,
                "fields": L,
                "erased": I,
            },
            filterable=False,
        ),
        EventSpec(
            "audit.checkpoint",
            AU,
            INFO,
            "A checkpoint was published",
            _API,
            99,
            _PCI_AUDIT_LIFECYCLE,
            {"size": I, "root": S, "kid": S},
            filterable=False,
        ),
        EventSpec(
            "audit.retention",
            AU,
            NOTICE,
            "Old events were purged",
            _API,
            4,
            _PCI_AUDIT_LIFECYCLE,
            {
                "stream_purged": S,
                "first_seq": I,
                "last_seq": I,
                "count": I,
                "archive": S,
                # the data keys of anon: months and flow: logins shredded (decision 0023)
                "keys_shredded": I,
                "keys_made_before": S,
                # planned (recorded before anything is deleted, outcome unknown), done
                # (success) or failed (failure, reason purge_failed | shred_failed);
                # reconciled: a later run settled a lone planned record (decision 0001)
                "phase": S,
                # of a reconciled record: done | not_done, and the planned record's id
                "settled": S,
                "planned_id": S,
            },
            filterable=False,
        ),
        EventSpec(
            "audit.erasure",
            AU,
            NOTICE,
            "A subject key was destroyed",
            _API,
            4,
            _PCI_AUDIT_LIFECYCLE,
            {
                "justification": LONG,
                # how the person was named (personal_code | pseudonym; never the value),
                # their pseudonyms under every pseudonymisation key, and what was deleted
                "by": S,
                "pseudonyms": L,
                "keys": I,
                "flow_keys": I,
                "profiles": I,
                "sessions": I,
                "tokens": I,
                "sessions_active": I,
                "sessions_ended": I,
                "tokens_revoked": I,
                "list_entries": I,
                "interface": S,
            },
            filterable=False,
        ),
        EventSpec(
            "audit.sink",
            AU,
            WARNING,
            "A sink failed, recovered, dead-lettered or replayed an item",
            _API,
            99,
            _PCI_AUDIT_LIFECYCLE,
            {
                "sink": S,
                # failed, recovered, dead_letter, replayed, replay_failed
                "state": S,
                "error": S,
                "lag": I,
                # the item concerned (dead_letter, replayed, replay_failed; the stream
                # being delivered for failed and recovered): "event" or "checkpoint",
                # its writer stream and seq (a checkpoint's size) and its id
                "item": S,
                "item_stream": S,
                "item_seq": I,
                "item_id": S,
                # a replay: the operator's reason (recorded before anything is sent)
                "justification": LONG,
            },
            filterable=False,
        ),
        # --- the identity provider's signing keys (decision 0005, review idpevent)
        EventSpec(
            "idp.keys",
            SC,
            WARNING,
            "Trust in the identity provider's cached key set changed",
            _API,
            99,
            _PCI_ACCESS,
            {
                # stale (the key set cannot be fetched: tokens under a cached kid are
                # verified with the cached keys), expired (the stale-if-error window ran
                # out: logins fail), recovered (a fresh set arrived); one event per change
                "state": S,
                # the cached set's age (recovered: of the set replaced), its key ids
                # (public; recovered: the fresh set's), the window, why it failed
                "age_s": I,
                "kids": L,
                "window_s": I,
                "error": S,
                # recovered: how long the outage lasted since it was first seen and the
                # kids TARA no longer publishes (they were trusted on stale data)
                "outage_s": I,
                "withdrawn": L,
            },
        ),
        # --- alerting (AC7)
        EventSpec(
            "alert.raise",
            AR,
            ALERT_,
            "An alert was raised",
            _FINDING,
            1,
            _PCI_ACCESS,
            {
                "rule": S,
                "summary": LONG,
                "alert_id": S,
                # what fired it (decision 0036): the rule's key (pseudonyms, anonymised
                # addresses, detail values), the event that fired it, its time, how many
                # events of the key fell within the rule's window
                "key": S,
                "event_id": S,
                "event_type": S,
                "first_seen": S,
                "count": I,
                "window_s": I,
            },
            filterable=False,
        ),
        EventSpec(
            "alert.acknowledge",
            AR,
            NOTICE,
            "An alert was acknowledged",
            _FINDING,
            2,
            _PCI_ADMIN,
            {
                "alert_id": S,
                "note": LONG,
                # the reason given, and the throttled repeats the evaluator counted
                "justification": LONG,
                "repeats": I,
            },
            filterable=False,
        ),
        EventSpec(
            "response.action",
            AR,
            NOTICE,
            "An automated response acted",
            _FINDING,
            2,
            _PCI_ADMIN,
            {
                "action": S,
                "alert_id": S,
                # done | dry_run | skipped:<why> | failed:<why> (decision 0039); a
                # renewal while the alert repeats: renewed | dry_run_renewal
                "result": S,
                # the rule whose response it is, enforce or dry_run, how long it holds;
                # deny_network: the alert's anonymised network, the deny entry and when
                # it expires (the entry's own access_list.add is recorded too)
                "rule": S,
                "mode": S,
                "ttl_s": I,
                "network": S,
                "entry_id": S,
                "expires_at": I,
                # a renewal: the expiry it renews (one renewal per expiry)
                "renews": I,
            },
            filterable=False,
        ),
    ]
    out: dict[str, EventSpec] = {}
    for spec in specs:
        out[spec.type] = replace(
            spec,
            details=MappingProxyType(dict(spec.details)),
            filterable=spec.filterable and spec.category not in _NEVER_FILTERED,
            personal=_IDENTITY_PERSONAL if spec.type in _IDENTITY_TYPES else _BASIC_PERSONAL,
        )
    return out


# Every type may carry the subject's personal code (from Actor.subject) and the full
# client IP; only the events of a login and its session may carry what TARA said
# about the person.
_BASIC_PERSONAL: Final = frozenset({"personal_code", "ip"})
_IDENTITY_PERSONAL: Final = _BASIC_PERSONAL | {"given_name", "family_name", "email", "phone"}
_IDENTITY_TYPES: Final = frozenset({"auth.login", "session.create"})

_NEVER_FILTERED: Final = frozenset(
    {Category.SECURITY, Category.ADMIN, Category.AUDIT, Category.CONFIG, Category.ALERT}
)

CATALOGUE: Final[Mapping[str, EventSpec]] = MappingProxyType(_specs())

#: What a ``types`` entry (a sink's, an alert rule's, a query's) may name once its final
#: dot is taken off: a type or a prefix of one that ends at a dot (``alert``,
#: ``auth.flow``). Types are never renamed, so every stored type is matched by these.
TYPE_FILTERS: Final = frozenset(
    t.rsplit(".", n)[0] for t in CATALOGUE for n in range(t.count(".") + 1)
)


def type_filter(entry: str) -> str:
    """A ``types`` entry in its one form: ``alert.`` and ``alert`` are the same prefix
    (decision 0034, 2026-11-28). Raises ``ValueError`` quoting the entry (when it is
    plain ASCII) if it matches no type of the catalogue: it would match nothing, silently.
    """
    name = entry.removesuffix(".")
    if name not in TYPE_FILTERS:
        shown = repr(entry) if entry.isascii() and entry.isprintable() else "an entry"
        raise ValueError(
            f"{shown} matches no event type (give a type such as 'alert.raise' or a prefix "
            "of one such as 'alert' or 'auth.flow')"
        )
    return name


def type_matches(etype: str, filters: tuple[str, ...]) -> bool:
    """Whether ``etype`` is one of ``filters`` (in :func:`type_filter`'s form) or under
    one of them, a whole dotted segment at a time: ``alert`` matches ``alert.raise``,
    never ``alerting.x``."""
    return any(etype == f or etype.startswith(f + ".") for f in filters)
