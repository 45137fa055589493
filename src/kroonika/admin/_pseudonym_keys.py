"""A rotation of the pseudonymisation key, as administration sees it (decision 0022).

The key is configuration (``KROONIKA_PSEUDONYM_KEY``/``_KID``, retired keys in
``KROONIKA_PSEUDONYM_PREVIOUS_KEYS``): it changes when the service restarts with another
one. Labels stored before (``admin:<pseudonym>`` as an API key's creator, a request's
requester) keep the key id they were made under and are resolved under that key, so the
rotation changes nobody's roles. What happens here, at start-up once the trail runs:

- the first start under a new key id records ``key.rotate`` (purpose
  ``pseudonymisation``, actor ``system``): ``pseudonym_key_state`` holds the key id the
  service last ran with, and one compare-and-set decides which instance records it. If
  the trail refuses the record the state is put back and the start fails, so the next
  start records it;
- a warning in the operational log names the key ids that stored labels were made under
  and that are no longer configured: those API keys act with no roles and those requests
  cannot be approved (fail closed: nobody can tell whom such a label names).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from kroonika.admin._auth import PERSON_LABEL
from kroonika.audit import Actor, ActorType, AuditUnavailable, Target
from kroonika.audit import events as ev
from kroonika.db.admin import (
    admin_api_key,
    admin_config_request,
    admin_role_request,
    pseudonym_key_state,
)

if TYPE_CHECKING:
    from kroonika.admin._auth import AdminServices

log = logging.getLogger("kroonika.admin")

_ROW = 1


@dataclass(frozen=True, slots=True)
class InUse:
    """The key id the service ran with, and since when."""

    kid: str
    since: int


def take_over(engine: Engine, kid: str, now: int) -> InUse | None:
    """Make ``kid`` the key id in use; what it replaces, or None when nothing changed (it
    already was, another instance took over first, or no id was kept before). One
    compare-and-set: of several instances starting together exactly one replaces it."""
    with engine.begin() as conn:
        row = conn.execute(
            select(pseudonym_key_state.c.kid, pseudonym_key_state.c.since).where(
                pseudonym_key_state.c.id == _ROW
            )
        ).first()
        if row is not None:
            if row.kid == kid:
                return None
            result = conn.execute(
                update(pseudonym_key_state)
                .where(pseudonym_key_state.c.id == _ROW, pseudonym_key_state.c.kid == row.kid)
                .values(kid=kid, since=now)
            )
            return InUse(row.kid, row.since) if result.rowcount == 1 else None
    try:
        with engine.begin() as conn:
            conn.execute(insert(pseudonym_key_state).values(id=_ROW, kid=kid, since=now))
    except IntegrityError:  # another instance's first start
        pass
    return None


def give_back(engine: Engine, old: InUse, new: str) -> None:
    """Undo :func:`take_over` whose record the trail refused."""
    with engine.begin() as conn:
        conn.execute(
            update(pseudonym_key_state)
            .where(pseudonym_key_state.c.id == _ROW, pseudonym_key_state.c.kid == new)
            .values(kid=old.kid, since=old.since)
        )


def in_use(engine: Engine) -> InUse | None:
    """The key id kept as in use, if any."""
    with engine.connect() as conn:
        row = conn.execute(
            select(pseudonym_key_state.c.kid, pseudonym_key_state.c.since).where(
                pseudonym_key_state.c.id == _ROW
            )
        ).first()
    return None if row is None else InUse(row.kid, row.since)


def labels_by_kid(engine: Engine, now: int) -> Counter[str]:
    """Per pseudonymisation key id, how many usable API keys and pending requests name
    their creator or requester (a person) under it: what still needs that key."""
    found: Counter[str] = Counter()
    with engine.connect() as conn:
        labels = [
            *conn.execute(
                select(admin_api_key.c.created_by).where(
                    admin_api_key.c.revoked_at.is_(None), admin_api_key.c.expires_at > now
                )
            ).scalars(),
            *conn.execute(
                select(admin_role_request.c.requested_by).where(
                    admin_role_request.c.status == "pending"
                )
            ).scalars(),
            *conn.execute(
                select(admin_config_request.c.requested_by).where(
                    admin_config_request.c.status == "pending",
                    admin_config_request.c.expires_at > now,
                )
            ).scalars(),
        ]
    for label in labels:
        if label.startswith(PERSON_LABEL):
            found[label[len(PERSON_LABEL) :].partition(":")[0]] += 1
    return found


async def record_rotation(admin: AdminServices) -> str | None:
    """At start-up: record ``key.rotate`` if the pseudonymisation key id changed since the
    last start (the old id, or None), and warn about labels nobody can resolve any more."""
    engine, now = admin.services.engine, int(admin.services.clock())
    new = admin.fingerprinter.kid
    retired = {f.kid for f in admin.retired}
    replaced = await asyncio.to_thread(take_over, engine, new, now)
    old = None if replaced is None else replaced.kid
    if replaced is not None:
        kept = (
            f"{old} kept in KROONIKA_PSEUDONYM_PREVIOUS_KEYS"
            if old in retired
            else f"{old} no longer configured: labels made under it resolve to nobody"
        )
        try:
            await admin.services.audit.trail.emit(
                ev.key_rotate(
                    actor=Actor(ActorType.SYSTEM),
                    target=Target("pseudonym_key", new),
                    purpose="pseudonymisation",
                    old_kid=old,
                    new_kid=new,
                    justification=f"first start with KROONIKA_PSEUDONYM_KID={new}; {kept}",
                )
            )
        except AuditUnavailable:
            await asyncio.to_thread(give_back, engine, replaced, new)
            raise
    stored = await asyncio.to_thread(labels_by_kid, engine, now)
    for kid, n in sorted(stored.items()):
        if kid == new or kid in retired:
            continue
        log.warning(
            "%d API keys or pending requests name their creator under the pseudonymisation "
            "key %r, which is not configured: they have no roles (keys) and cannot be "
            "approved (requests); put %r back in KROONIKA_PSEUDONYM_PREVIOUS_KEYS",
            n,
            kid,
            kid,
        )
    return old
