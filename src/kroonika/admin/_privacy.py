"""The privacy officer's tools: erasure by crypto-shredding (GDPR art. 17) and audited
re-identification (DESIGN.md section 5, ``docs/decisions/0012-erasure-and-re-identification.md``).

Erasure names a person by personal code or by pseudonym, finds every pseudonym the trail
gave them (one per pseudonymisation key, retired keys included), and deletes:

- every audit data key of those pseudonyms (every writer's, every generation): the
  events stay and still verify, their ``pii`` can no longer be decrypted;
- the data keys of every login flow the person's events name (``correlation.flow_id``,
  found in the trail under any of those pseudonyms): the steps of their logins before
  TARA named them hold the browser's full address under the flow's key (decision 0023);
- the security monitor's profile (``security_profile``, keyed by pseudonym);
- the person's sessions (clear subject, names, address, user agent) and the clear
  subject of their tokens (the metadata stays for revocation and audit, without the
  person). Sessions still active are first ended (``session.terminate``, reason
  ``erasure``) and active tokens revoked (``token.revoke``), each recorded like any
  other ending or revocation; a step whose record the trail refuses is undone and the
  erasure fails (run it again). See :func:`end_active`.

An erasure is refused (:class:`HoldsRoles`) while the person holds an administrator
role: removing a role is an access-control change with its own route and record.
Deny- and allow-list entries naming the person are kept (a security measure) and
counted (``list_entries``). See decision 0018.

Order: the ``audit.erasure`` event is recorded first, then the data is deleted. A key
deleted without a record would be an unaudited act that cannot be undone; a record whose
deletion then fails is corrected by a second ``audit.erasure`` with outcome ``failure``
and the erasure can simply be run again (it is idempotent).

Callers (the API route and the CLI command) emit the events this module builds: the
module itself reads and deletes, it never records.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from sqlalchemy import Engine, delete, func, select, update

from kroonika.admin._roles import checked_subject
from kroonika.audit import (
    Actor,
    AuditEvent,
    Correlation,
    Fingerprinter,
    Outcome,
    Source,
    SqlSubjectKeys,
    Target,
)
from kroonika.audit import events as ev
from kroonika.audit.privacy import flow_subject, reveal
from kroonika.audit.query import find_events, flow_ids_of
from kroonika.audit.store.sql import SqlAuditStore, flush_deleted, secure_delete
from kroonika.db.admin import admin_role
from kroonika.db.security import security_profile
from kroonika.db.sessions import session as session_table
from kroonika.db.tokens import access_list
from kroonika.db.tokens import tokens as tokens_table
from kroonika.sessions import EndReason, SessionManager
from kroonika.sessions import RequestContext as SessionContext
from kroonika.tokens import RequestContext as TokenContext
from kroonika.tokens import TokenService

#: How many events one re-identification may decrypt (each is named in its record).
REVEAL_MAX: Final = 50
_PSEUDONYM: Final = re.compile(r"[^:\s]{1,16}:[A-Za-z0-9_-]{24}")
_EVENT_ID: Final = re.compile(r"[0-9a-fA-F-]{1,64}")


class PrivacyRequestInvalid(ValueError):
    """The request names nobody, or names them in a shape that cannot be meant."""


class HoldsRoles(ValueError):
    """The person holds administrator roles: they are removed through the role routes
    (their own record and approval) before the person can be erased."""

    def __init__(self, roles: Sequence[str]) -> None:
        super().__init__(
            f"the person holds the administrator role(s) {', '.join(roles)}: "
            "revoke them first (POST /admin/roles with action revoke), then erase"
        )
        self.roles = tuple(roles)


@dataclass(frozen=True, slots=True)
class Person:
    """Whom an erasure is about: how they were named, their clear subject if known (never
    recorded), and their pseudonym under every pseudonymisation key (current first)."""

    by: str  # personal_code | pseudonym
    pseudonyms: tuple[str, ...]
    subjects: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FlowsSeen:
    """What a pass over the trail found of a person's login flows: the key subjects
    (``flow:``) and the row id up to which the pass saw every block that can ever be
    stored (:meth:`SqlAuditStore.settled_id`, 0 for none), so that a later pass reads
    only the blocks above it. Per request: never kept on the shared :class:`Eraser`."""

    subjects: tuple[str, ...]
    upto_id: int


@dataclass(frozen=True, slots=True)
class ErasureCounts:
    keys: int
    profiles: int
    sessions: int
    tokens: int
    sessions_active: int  # planned: to be ended; done: still active (a login since)
    sessions_ended: int = 0
    tokens_revoked: int = 0
    list_entries: int = 0  # kept: deny/allow-list entries naming the person
    flow_keys: int = 0  # data keys of the person's login flows (decision 0023)
    #: the flows :meth:`Eraser.plan` found, for :meth:`Eraser.apply`; not a count
    seen: FlowsSeen | None = field(default=None, compare=False, repr=False)

    @property
    def deleted_any(self) -> bool:
        """Whether anything was (or would be) ended or deleted."""
        return any(
            (
                self.keys,
                self.flow_keys,
                self.profiles,
                self.sessions,
                self.tokens,
                self.sessions_ended,
                self.tokens_revoked,
            )
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "keys": self.keys,
            "profiles": self.profiles,
            "sessions": self.sessions,
            "tokens": self.tokens,
            "sessions_active": self.sessions_active,
            "sessions_ended": self.sessions_ended,
            "tokens_revoked": self.tokens_revoked,
            "list_entries": self.list_entries,
            "flow_keys": self.flow_keys,
        }


class Eraser:
    """Finds and deletes a person's keys and personal data (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        keys: SqlSubjectKeys,
        fingerprinters: Sequence[Fingerprinter],
        trail: SqlAuditStore,
    ) -> None:
        if not fingerprinters:
            raise ValueError("erasure needs the pseudonymisation key")
        self._engine = engine
        self._keys = keys
        self._fps = tuple(fingerprinters)
        self._trail = trail

    def flows(self, person: Person, *, since: FlowsSeen | None = None) -> FlowsSeen:
        """The key subjects of the login flows the person's events name (``flow:``
        subjects, never the flow ids themselves). Without ``since``, a pass over the whole
        trail; with it (what an earlier pass for the same person found), a pass over only
        the blocks stored after that one's bound, its flows added (decision 0023)."""
        names = person.pseudonyms
        if since is None:
            upto = self._trail.settled_id()  # before the pass: see settled_id
            found = flow_ids_of(self._trail, names)
            return FlowsSeen(tuple(sorted({flow_subject(f) for f in found})), upto)
        found = flow_ids_of(self._trail, names, after_id=since.upto_id)
        subjects = {*since.subjects, *(flow_subject(f) for f in found)}
        return FlowsSeen(tuple(sorted(subjects)), since.upto_id)

    def person(self, *, personal_code: str | None, pseudonym: str | None) -> Person:
        """The person named by exactly one of ``personal_code`` and ``pseudonym``."""
        if (personal_code is None) == (pseudonym is None):
            raise PrivacyRequestInvalid("name the person by a personal code or by a pseudonym")
        if personal_code is not None:
            try:
                subject = checked_subject(personal_code)
            except ValueError as exc:
                raise PrivacyRequestInvalid(f"personal code: {exc}") from None
            return Person(
                "personal_code", tuple(fp.pseudonym(subject) for fp in self._fps), (subject,)
            )
        value = (pseudonym or "").strip()
        if not _PSEUDONYM.fullmatch(value):
            raise PrivacyRequestInvalid("a pseudonym looks like p1:<24 base64url characters>")
        subjects = tuple(self._subjects_with(value))
        # a subject found in clear gives the person's pseudonyms under the other keys too,
        # the current one first (named by a retired pseudonym, the record names them as
        # the trail names them now)
        others = [fp.pseudonym(s) for s in subjects for fp in self._fps]
        return Person("pseudonym", tuple(dict.fromkeys([*others, value])), subjects)

    def standing(self, person: Person) -> list[tuple[str, str]]:
        """Each of the person's pseudonyms (current first) with its key's standing:
        ``current``, ``retired`` (in ``KROONIKA_PSEUDONYM_PREVIOUS_KEYS``) or
        ``unconfigured`` (a pseudonym given under a key id no longer configured)."""
        kids = {fp.kid: "retired" for fp in self._fps[1:]} | {self._fps[0].kid: "current"}
        return [(p, kids.get(p.partition(":")[0], "unconfigured")) for p in person.pseudonyms]

    def _subjects_with(self, pseudonym: str) -> list[str]:
        """Clear subjects of the business tables whose pseudonym is ``pseudonym`` (the
        tables hold the subject in clear, so each distinct one is pseudonymised once)."""
        fp = next((f for f in self._fps if pseudonym.startswith(f.kid + ":")), None)
        if fp is None:
            return []
        with self._engine.connect() as conn:
            candidates = {
                r[0]
                for table in (session_table, tokens_table, admin_role)
                for r in conn.execute(
                    select(table.c.subject).where(table.c.subject.is_not(None)).distinct()
                )
            }
        return sorted(s for s in candidates if fp.pseudonym(s) == pseudonym)

    def roles(self, person: Person) -> list[str]:
        """The administrator roles the person holds (an erasure is refused while any)."""
        if not person.subjects:
            return []
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(admin_role.c.role)
                .where(admin_role.c.subject.in_(person.subjects))
                .distinct()
                .order_by(admin_role.c.role)
            ).all()
        return [r[0] for r in rows]

    def plan(self, person: Person) -> ErasureCounts:
        """What an erasure of ``person`` would end and delete now (reads only)."""
        keys = self._keys.count_many(person.pseudonyms)
        seen = self.flows(person)
        flow_keys = self._keys.count_many(seen.subjects)
        s, t = session_table, tokens_table
        with self._engine.connect() as conn:
            profiles = _count(
                conn, security_profile, security_profile.c.person.in_(person.pseudonyms)
            )
            if person.subjects:
                mine = s.c.subject.in_(person.subjects)
                theirs = t.c.subject.in_(person.subjects)
                sessions = _count(conn, s, mine)
                active = _count(conn, s, mine & s.c.ended_at.is_(None))
                tokens = _count(conn, t, theirs)
                live = _count(conn, t, theirs & (t.c.state == "active"))
                lists = _count(conn, access_list, _named(person))
            else:
                sessions = active = tokens = live = lists = 0
        return ErasureCounts(
            keys, profiles, sessions, tokens, active, active, live, lists, flow_keys, seen
        )

    def apply(
        self,
        person: Person,
        *,
        ended: int = 0,
        revoked: int = 0,
        planned: ErasureCounts | None = None,
    ) -> ErasureCounts:
        """Delete what :meth:`plan` counted (and anything of the person that appeared
        since), after :func:`end_active` ended and revoked what was live (``ended`` and
        ``revoked`` say how many, for the answer); returns what was done. ``planned``,
        the plan of this person, spares a second pass over the whole trail: only the
        blocks stored since the plan's pass are read for the person's login flows."""
        keys = self._keys.erase_many(person.pseudonyms)
        since = None if planned is None else planned.seen
        flow_keys = self._keys.erase_many(self.flows(person, since=since).subjects)
        s, t = session_table, tokens_table
        with self._engine.begin() as conn:
            secure_delete(conn)
            profiles = conn.execute(
                delete(security_profile).where(security_profile.c.person.in_(person.pseudonyms))
            ).rowcount
            sessions = tokens = active = lists = 0
            if person.subjects:
                mine = s.c.subject.in_(person.subjects)
                sessions = conn.execute(delete(s).where(mine & s.c.ended_at.is_not(None))).rowcount
                active = _count(conn, s, mine & s.c.ended_at.is_(None))
                tokens = conn.execute(
                    update(t)
                    .where(t.c.subject.in_(person.subjects) & (t.c.state != "active"))
                    .values(subject=None)
                ).rowcount
                lists = _count(conn, access_list, _named(person))
        flush_deleted(self._engine)
        return ErasureCounts(
            keys,
            int(profiles),
            int(sessions),
            int(tokens),
            active,
            ended,
            revoked,
            lists,
            flow_keys,
        )


def _named(person: Person) -> Any:
    """Access-list entries naming the person (kept: see decision 0018)."""
    return (access_list.c.kind == "subject") & access_list.c.value.in_(person.subjects)


async def end_active(
    person: Person,
    sessions: SessionManager,
    tokens: TokenService | None,
    *,
    actor: Actor,
    why: str,
    sctx: SessionContext,
    tctx: TokenContext,
) -> tuple[int, int]:
    """End the person's active sessions (``session.terminate``, reason ``erasure``) and
    revoke their active tokens (``token.revoke``), each recorded through the trail like
    any other ending or revocation. Fail closed: if the trail refuses a record, that step
    is undone (the session reopened, the tokens made active again) and
    ``AuditUnavailable`` propagates; what was done before it stays done and recorded, and
    the erasure is simply run again. Returns (sessions ended, tokens revoked)."""
    ended = revoked = 0
    for subject in person.subjects:
        for record in await asyncio.to_thread(sessions.store.active_for, subject):
            if await sessions.end(
                record, EndReason.ERASURE, sctx, ended_by="privacy", undo_if_unaudited=True
            ):
                ended += 1
        # only when there is something: a revocation of nothing is still an event
        live = [] if tokens is None else await asyncio.to_thread(_live, tokens, subject)
        if tokens is not None and live:
            revoked += await tokens.revoke_subject(
                subject, by=actor, why=why, ctx=tctx, undo_if_unaudited=True
            )
    return ended, revoked


def _live(tokens: TokenService, subject: str) -> list[str]:
    return [r.jti for r in tokens.store.active_jtis(subject=subject)]


def _count(conn: Any, table: Any, where: Any) -> int:
    return int(conn.execute(select(func.count()).select_from(table).where(where)).scalar_one())


def erasure_event(
    person: Person,
    counts: ErasureCounts,
    *,
    actor: Actor,
    justification: str,
    interface: str,
    source: Source | None = None,
    correlation: Correlation | None = None,
    failed: str | None = None,
) -> AuditEvent:
    """The ``audit.erasure`` record: the target is the person's current pseudonym, never
    a personal code; ``failed`` (a reason code) makes it the failure record that follows
    a recorded erasure whose deletion did not complete."""
    event = ev.audit_erasure(
        outcome=Outcome.FAILURE if failed else Outcome.SUCCESS,
        reason=failed,
        actor=actor,
        source=source,
        target=Target("subject", person.pseudonyms[0]),
        correlation=correlation,
        justification=justification,
        by=person.by,
        pseudonyms=list(person.pseudonyms),
        interface=interface,
    )
    event.details.update(counts.as_dict())
    return event


def pseudonymise_event(
    person: Person,
    *,
    actor: Actor,
    justification: str | None,
    interface: str,
    source: Source | None = None,
    correlation: Correlation | None = None,
) -> AuditEvent:
    """The ``audit.access`` record of a look-up of a person's pseudonyms (action
    ``pseudonymise``, decision 0028): whom (their current pseudonym, the target), how they
    were named (``by=personal_code`` or ``by=pseudonym``, never the value) and how many
    pseudonyms were answered. The other pseudonyms are not listed: the trail links them
    only where an erasure does, so retiring a key for good still breaks the link."""
    return ev.audit_access(
        actor=actor,
        source=source,
        target=Target("subject", person.pseudonyms[0]),
        correlation=correlation,
        action="pseudonymise",
        query=f"by={person.by}",
        returned=len(person.pseudonyms),
        result="ok",
        interface=interface,
        justification=justification,
    )


# --- re-identification ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Revealed:
    """What one re-identification found: per event asked for, its status (``revealed``,
    ``erased``, ``no_personal_data``, ``not_found``) and, when revealed, the personal data."""

    items: list[dict[str, Any]]

    @property
    def event_ids(self) -> list[str]:
        return [i["id"] for i in self.items if i["status"] == "revealed"]

    @property
    def fields(self) -> list[str]:
        return sorted({k for i in self.items for k in i.get("personal", {})})

    @property
    def erased(self) -> int:
        return sum(1 for i in self.items if i["status"] == "erased")


def reveal_refs(
    event_ids: Iterable[str], positions: Iterable[tuple[str, int]]
) -> tuple[list[str], list[tuple[str, int]]]:
    """The events asked for, checked: 1..REVEAL_MAX of them, ids and positions that can
    exist (``PrivacyRequestInvalid`` otherwise). Duplicates are asked once."""
    ids = list(dict.fromkeys(i.strip() for i in event_ids))
    pos = list(dict.fromkeys((s.strip(), n) for s, n in positions))
    if not ids and not pos:
        raise PrivacyRequestInvalid("name at least one event (an event id or a stream and seq)")
    if len(ids) + len(pos) > REVEAL_MAX:
        raise PrivacyRequestInvalid(f"at most {REVEAL_MAX} events per re-identification")
    for i in ids:
        if not _EVENT_ID.fullmatch(i):
            raise PrivacyRequestInvalid("an event id is a UUID (hex digits and dashes)")
    for stream, seq in pos:
        if not stream or len(stream) > 128 or not stream.isprintable() or seq < 1:
            raise PrivacyRequestInvalid("a position is a stream name and a seq of at least 1")
    return ids, pos


def decrypt_events(
    store: SqlAuditStore,
    keys: SqlSubjectKeys,
    ids: Sequence[str],
    positions: Sequence[tuple[str, int]],
) -> Revealed:
    """Find the events and decrypt their ``pii`` in memory. Nothing here is answered yet:
    the caller records ``audit.access`` (action ``re-identify``) first and answers only if
    that record was stored."""
    found = find_events(store, ids, positions)
    items: list[dict[str, Any]] = []
    refs: list[str | tuple[str, int]] = [*ids, *positions]
    for ref in refs:
        body = found.get(ref)
        asked: dict[str, Any] = (
            {"id": ref} if isinstance(ref, str) else {"stream": ref[0], "seq": ref[1]}
        )
        if body is None:
            items.append({**asked, "status": "not_found"})
            continue
        doc = orjson.loads(body)
        item: dict[str, Any] = {
            "id": doc["id"],
            "stream": doc["stream"],
            "seq": doc["seq"],
            "type": doc["type"],
            "time": doc["time"],
        }
        pii = doc.get("pii")
        if not isinstance(pii, dict):
            item["status"] = "no_personal_data"
        else:
            personal = reveal(pii, doc["id"], keys)
            if personal is None:
                item["status"] = "erased"
            else:
                item["status"] = "revealed"
                item["personal"] = personal
        items.append(item)
    return Revealed(items)


def reidentify_event(
    revealed: Revealed,
    ids: Sequence[str],
    positions: Sequence[tuple[str, int]],
    *,
    actor: Actor,
    justification: str | None,
    interface: str,
    source: Source | None = None,
    correlation: Correlation | None = None,
) -> AuditEvent:
    """The ``audit.access`` record of a re-identification (action ``re-identify``): what was
    asked for, the ids of the events revealed, the names of their personal fields and how
    many were erased; never a revealed value."""
    asked = [f"id={i}" for i in ids] + [f"stream={s} seq={n}" for s, n in positions]
    return ev.audit_access(
        actor=actor,
        source=source,
        target=Target("audit_trail", "re-identify"),
        correlation=correlation,
        action="re-identify",
        query=" ".join(asked)[:2000],
        returned=len(revealed.event_ids),
        event_ids=revealed.event_ids,
        fields=revealed.fields,
        erased=revealed.erased,
        result="ok",
        interface=interface,
        justification=justification,
    )
