"""Runtime configuration changes that wait for a second administrator (decision 0017).

While ``admin.second_approval`` is on, a change that weakens a control
(:attr:`~kroonika.admin._config.ConfigKey.weakens`) is not applied: it is stored here as
requested, with each key's version and value at that moment, and waits until another
administrator approves it (then it is applied exactly as asked, unless one of its keys
changed meanwhile) or rejects it, or until it expires. The request/decide/undo steps
follow :class:`~kroonika.admin._roles.RoleStore`'s role requests. Requested values are
kept as ``runtime_config`` keeps them: secrets sealed under the master key.

A request's ``target`` is what it changes: :data:`CONFIG`, or one token client
(``client/<id>``, :func:`client_target`) whose own settings are keyed ``client.<field>``
(:data:`~kroonika.admin._config.CLIENT_WEAKENS`); the caller applies those.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Engine, delete, insert, select, update

from kroonika.admin._config import KEYS, SECRET_MASK, Change, RuntimeConfig
from kroonika.admin._errors import ChangeConflict, NotFound
from kroonika.db.admin import admin_config_request as t

PENDING, APPROVED, REJECTED, EXPIRED = "pending", "approved", "rejected", "expired"
CONFIG = "config"
_CLIENT = "client/"


def client_target(client_id: str) -> str:
    return _CLIENT + client_id


def secret(key: str) -> bool:
    """Whether ``key`` holds a secret (a client's settings hold none)."""
    return key in KEYS and KEYS[key].secret


@dataclass(frozen=True, slots=True)
class ConfigRequest:
    id: str
    changes: dict[str, Any]  # the requested values (clear; never shown for secrets)
    expected: dict[str, tuple[int, Any]]  # key: (version, value) when asked
    weakening: tuple[str, ...]
    requested_by: str
    requested_at: int
    expires_at: int
    justification: str
    status: str  # as stored: pending | approved | rejected
    decided_by: str | None
    decided_at: int | None
    target: str = CONFIG

    @property
    def client_id(self) -> str | None:
        """The token client the request changes, or None (the runtime configuration)."""
        return self.target[len(_CLIENT) :] if self.target.startswith(_CLIENT) else None

    def state(self, now: int) -> str:
        """The status, with a pending request past its time shown as ``expired``."""
        return EXPIRED if self.status == PENDING and now >= self.expires_at else self.status

    def diff(self) -> list[Change]:
        """Each requested key as a change from the value it had when asked (version 0:
        not applied)."""
        return [Change(k, self.expected[k][1], v, secret(k), 0) for k, v in self.changes.items()]

    def public(self, now: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "target": self.target,
            "changes": {
                k: SECRET_MASK if secret(k) else v for k, v in sorted(self.changes.items())
            },
            "weakening": list(self.weakening),
            "requested_by": self.requested_by,
            "requested_at": self.requested_at,
            "justification": self.justification,
            "expires_at": self.expires_at,
            "status": self.state(now),
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
        }


class ConfigRequests:
    """Pending configuration changes in the business database (synchronous; call in a
    thread)."""

    def __init__(self, config: RuntimeConfig, *, clock: Callable[[], float]) -> None:
        self.config = config
        self.engine: Engine = config.engine
        self.clock = clock

    def _now(self) -> int:
        return int(self.clock())

    def _row(self, m: Any) -> ConfigRequest:

        stored = orjson.loads(m["changes"])
        expected = orjson.loads(m["expected"])
        return ConfigRequest(
            id=m["id"],
            changes={k: self.config.decode(k, orjson.dumps(v).decode()) for k, v in stored.items()},
            expected={k: (int(v[0]), v[1]) for k, v in expected.items()},
            weakening=tuple(orjson.loads(m["weakening"])),
            requested_by=m["requested_by"],
            requested_at=m["requested_at"],
            expires_at=m["expires_at"],
            justification=m["justification"],
            status=m["status"],
            decided_by=m["decided_by"],
            decided_at=m["decided_at"],
            target=m["target"],
        )

    def create(
        self,
        clean: Mapping[str, Any],
        weakening: list[str],
        *,
        by: str,
        why: str,
        ttl_s: int,
        target: str = CONFIG,
        expected: Mapping[str, tuple[int, Any]] | None = None,
    ) -> ConfigRequest:
        """Store validated ``clean`` as a pending request; it expires after ``ttl_s``.
        ``expected`` (key: (version, value) now) is the runtime configuration's unless
        given (another target's)."""

        if expected is None:
            current = self.config.effective()
            expected = {
                k: (self.config.version(k), None if secret(k) else current[k]) for k in clean
            }
        now = self._now()
        req = ConfigRequest(
            f"cr_{secrets.token_hex(8)}",
            dict(clean),
            dict(expected),
            tuple(weakening),
            by,
            now,
            now + ttl_s,
            why,
            PENDING,
            None,
            None,
            target,
        )
        stored = {k: orjson.loads(self.config.encode(k, v)) for k, v in clean.items()}
        with self.engine.begin() as conn:
            conn.execute(
                insert(t).values(
                    id=req.id,
                    changes=orjson.dumps(stored).decode(),
                    expected=orjson.dumps({k: list(v) for k, v in expected.items()}).decode(),
                    weakening=orjson.dumps(list(req.weakening)).decode(),
                    requested_by=by,
                    requested_at=now,
                    expires_at=req.expires_at,
                    justification=why,
                    status=PENDING,
                    target=target,
                )
            )
        return req

    def withdraw(self, request_id: str) -> None:
        """Remove a request whose record the audit trail refused (it never existed)."""

        with self.engine.begin() as conn:
            conn.execute(delete(t).where(t.c.id == request_id, t.c.status == PENDING))

    def get(self, request_id: str) -> ConfigRequest | None:

        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.id == request_id)).first()
        return None if row is None else self._row(row._mapping)

    def list(self, status: str | None = None, limit: int = 100) -> list[ConfigRequest]:
        """Requests, newest first; ``status`` as :meth:`ConfigRequest.state` shows it."""

        now = self._now()
        q = select(t).order_by(t.c.requested_at.desc(), t.c.id).limit(limit)
        if status in (PENDING, EXPIRED):
            q = q.where(t.c.status == PENDING)
            q = q.where(t.c.expires_at > now if status == PENDING else t.c.expires_at <= now)
        elif status is not None:
            q = q.where(t.c.status == status)
        with self.engine.connect() as conn:
            return [self._row(r._mapping) for r in conn.execute(q).all()]

    def decide(self, request_id: str, *, approve: bool, by: str) -> ConfigRequest:
        """Mark a pending request that has not expired approved or rejected (the caller
        applies an approved one); :class:`ChangeConflict` ``already_decided`` or
        ``expired`` otherwise. Who may decide is the caller's check."""

        now = self._now()
        with self.engine.begin() as conn:
            result = conn.execute(
                update(t)
                .where(t.c.id == request_id, t.c.status == PENDING, t.c.expires_at > now)
                .values(status=APPROVED if approve else REJECTED, decided_by=by, decided_at=now)
            )
        decided = self.get(request_id)
        if decided is None:
            raise NotFound("configuration request")
        if result.rowcount != 1:
            if decided.status == PENDING:
                raise ChangeConflict(
                    f"the request expired at {decided.expires_at}; ask again", code="expired"
                )
            raise ChangeConflict("the request was already decided", code="already_decided")
        return decided

    def undo(self, decided: ConfigRequest) -> None:
        """Make a decision whose change or record failed pending again."""

        with self.engine.begin() as conn:
            conn.execute(
                update(t)
                .where(t.c.id == decided.id, t.c.status == decided.status)
                .values(status=PENDING, decided_by=None, decided_at=None)
            )
