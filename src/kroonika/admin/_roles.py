"""Roles of people (by personal code) and API keys for automation.

A person is stored by personal code (TARA's subject) but shown only by pseudonym, the
one the audit trail names them with, and their country (:func:`public_holder`,
decision 0025).

API keys look like ``kra_<id>_<secret>``: the id finds the row, only SHA-256 of the whole
key is stored (the secret is 256 random bits, so a slow hash adds nothing) and compared in
constant time. A key carries a subset of its creator's roles, expires, can be revoked, and
remembers when it was last used.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from kroonika.admin._errors import ChangeConflict, NotFound, RoleChangeRefused
from kroonika.db import insert_new
from kroonika.db.admin import admin_api_key, admin_role, admin_role_request


class Role(StrEnum):
    ADMIN = "admin"
    AUDITOR = "auditor"
    SECURITY = "security"
    PRIVACY = "privacy"


ROLES: frozenset[str] = frozenset(r.value for r in Role)
KEY_PREFIX = "kra_"
#: A role request's ``target``: ``roles/<pseudonym>`` (a configuration request's is
#: ``config`` or ``client/<id>``).
ROLES_TARGET = "roles/"
#: How a role request's id begins (a configuration request's begins ``cr_``).
ROLE_REQUEST_PREFIX = "rr_"


def parse_roles(values: Iterable[str]) -> tuple[str, ...]:
    out = tuple(sorted({v.strip().lower() for v in values if v.strip()}))
    unknown = [r for r in out if r not in ROLES]
    if unknown or not out:
        raise ValueError(f"roles must be some of {sorted(ROLES)}")
    return out


def normalise_subject(subject: str) -> str:
    """The subject as TARA names it: an Estonian personal code gets its ``EE`` prefix."""
    value = subject.strip().upper()
    return "EE" + value if value.isdigit() and len(value) == 11 else value


def checked_subject(subject: str) -> str:
    """:func:`normalise_subject` of a subject that is about to be stored: one word of 3..80
    printable characters (no spaces, terminal codes, bidi or invisible characters, which
    would hide or forge what ``kroonika admins list`` and the API show)."""
    value = normalise_subject(subject)
    if not 3 <= len(value) <= 80 or not value.isprintable() or " " in value:
        raise ValueError("a subject is 3..80 printable characters without spaces")
    return value


def country_of(subject: str) -> str | None:
    """The country prefix of a subject (``EE`` of ``EE38001085718``), or None: the only
    part of a personal code an answer shows. Any digit would narrow the code down for
    someone who knows a colleague's birth date (decision 0025)."""
    prefix = subject[:2]
    ok = len(subject) > 2 and prefix.isascii() and prefix.isalpha() and prefix.isupper()
    return prefix if ok else None


def public_subject(subject: str | None, pseudonymise: Callable[[str], str]) -> dict[str, Any]:
    """A subject as answers and exports show it: ``subject_ref``, the pseudonym the trail
    names it with, and ``country``, never the subject itself (decisions 0025 and 0031);
    both ``None`` for no subject."""
    if subject is None:
        return {"subject_ref": None, "country": None}
    return {"subject_ref": pseudonymise(subject), "country": country_of(subject)}


def public_holder(
    subject: str, role: str, granted_by: str, granted_at: int, pseudonymise: Callable[[str], str]
) -> dict[str, Any]:
    """One grant as answers show it: the holder by pseudonym and country, never the code."""
    return {
        **public_subject(subject, pseudonymise),
        "role": role,
        "granted_by": granted_by,
        "granted_at": granted_at,
    }


def _role(role: str) -> str:
    """The one canonical role name (``" Admin "`` is ``admin``), or ``ValueError``."""
    (value,) = parse_roles([role])
    return value


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class RoleRequest:
    id: str
    subject: str
    role: str
    action: str
    requested_by: str
    requested_at: int
    justification: str
    status: str
    decided_by: str | None
    decided_at: int | None
    expires_at: int

    def state(self, now: int) -> str:
        """The status, with a pending request past its time shown as ``expired``."""
        return "expired" if self.status == "pending" and now >= self.expires_at else self.status

    def asked(self, before: tuple[str, ...]) -> tuple[str, ...]:
        """The subject's roles as they would be with this request applied to ``before``."""
        held = set(before)
        if self.action == "grant":
            held.add(self.role)
        else:
            held.discard(self.role)
        return tuple(sorted(held))

    def public(self, pseudonymise: Callable[[str], str], now: int) -> dict[str, Any]:
        """The request as answers show it: the person by pseudonym (``subject_ref``, also in
        ``target`` as ``roles/<subject_ref>``, as configuration requests name theirs)."""
        ref = pseudonymise(self.subject)
        return {
            "id": self.id,
            "target": ROLES_TARGET + ref,
            "subject_ref": ref,
            "role": self.role,
            "action": self.action,
            "requested_by": self.requested_by,
            "requested_at": self.requested_at,
            "expires_at": self.expires_at,
            "status": self.state(now),
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
        }


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    roles: tuple[str, ...]
    created_by: str
    created_at: int
    expires_at: int
    revoked_at: int | None
    revoked_by: str | None
    last_used_at: int | None

    def usable(self, now: int) -> bool:
        return self.revoked_at is None and now < self.expires_at

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "roles": list(self.roles),
            "created_by": self.created_by,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "revoked_by": self.revoked_by,
            "last_used_at": self.last_used_at,
        }


def _key(m: Any) -> ApiKey:
    return ApiKey(
        m["id"],
        m["name"],
        tuple(r for r in m["roles"].split(",") if r),
        m["created_by"],
        m["created_at"],
        m["expires_at"],
        m["revoked_at"],
        m["revoked_by"],
        m["last_used_at"],
    )


def _request(m: Any) -> RoleRequest:
    return RoleRequest(**{k: m[k] for k in RoleRequest.__slots__})


class RoleStore:
    """Roles and role requests in the business database (synchronous; call in a thread)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float]) -> None:
        self.engine = engine
        self.clock = clock

    def _now(self) -> int:
        return int(self.clock())

    def roles_of(self, subject: str) -> tuple[str, ...]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(admin_role.c.role).where(admin_role.c.subject == normalise_subject(subject))
            ).all()
        return tuple(sorted(r[0] for r in rows))

    def holders(self, subject: str | None = None) -> list[tuple[str, str, str, int]]:
        """(subject, role, granted_by, granted_at) for every grant, or for one subject's."""
        q = select(admin_role).order_by(admin_role.c.subject, admin_role.c.role)
        if subject is not None:
            q = q.where(admin_role.c.subject == normalise_subject(subject))
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [(r.subject, r.role, r.granted_by, r.granted_at) for r in rows]

    def grant(self, subject: str, role: str, *, by: str) -> bool:
        """Give ``subject`` the role; False if it already had it."""
        subject, role = checked_subject(subject), _role(role)
        row = {"subject": subject, "role": role, "granted_by": by, "granted_at": self._now()}
        with self.engine.begin() as conn:
            return insert_new(conn, admin_role, row)

    def revoke(self, subject: str, role: str) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                delete(admin_role).where(
                    admin_role.c.subject == normalise_subject(subject),
                    admin_role.c.role == _role(role),
                )
            )
        return result.rowcount == 1

    def bootstrap(self, mapping: dict[str, list[str]]) -> int:
        """Grants from configuration (``KROONIKA_ADMIN_BOOTSTRAP``); returns how many were new."""
        n = 0
        for subject, roles in mapping.items():
            for role in parse_roles(roles):
                n += self.grant(subject, role, by="bootstrap")
        return n

    # --- role requests (separation of duties) ------------------------------------------

    def request(
        self,
        subject: str,
        role: str,
        action: str,
        *,
        by: str,
        by_subject: str | None,
        why: str,
        ttl_s: int,
    ) -> RoleRequest:
        """A pending role request; it expires after ``ttl_s`` (decision 0017)."""
        subject, role = checked_subject(subject), _role(role)
        if action not in ("grant", "revoke"):
            raise ValueError("action is grant or revoke")
        if by_subject is not None and normalise_subject(by_subject) == subject:
            raise RoleChangeRefused("nobody can change their own roles", code="self_grant")
        now = self._now()
        req = RoleRequest(
            f"{ROLE_REQUEST_PREFIX}{secrets.token_hex(8)}",
            subject,
            role,
            action,
            by,
            now,
            why,
            "pending",
            None,
            None,
            now + ttl_s,
        )
        with self.engine.begin() as conn:
            conn.execute(
                insert(admin_role_request).values(
                    **{k: getattr(req, k) for k in RoleRequest.__slots__}
                )
            )
        return req

    def withdraw(self, request_id: str) -> None:
        """Remove a request whose record the audit trail refused (it never existed)."""
        with self.engine.begin() as conn:
            conn.execute(
                delete(admin_role_request).where(
                    admin_role_request.c.id == request_id, admin_role_request.c.status == "pending"
                )
            )

    def get_request(self, request_id: str) -> RoleRequest | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(admin_role_request).where(admin_role_request.c.id == request_id)
            ).first()
        return None if row is None else _request(row._mapping)

    def requests(
        self, status: str | None = None, *, newest_first: bool = False, limit: int | None = None
    ) -> list[RoleRequest]:
        """Requests, oldest first (or newest first, as configuration requests are listed),
        at most ``limit``; ``status`` as :meth:`RoleRequest.state` shows it."""
        t = admin_role_request
        order = (t.c.requested_at.desc(), t.c.id) if newest_first else (t.c.requested_at,)
        q = select(t).order_by(*order).limit(limit)
        if status in ("pending", "expired"):
            now = self._now()
            q = q.where(t.c.status == "pending")
            q = q.where(t.c.expires_at > now if status == "pending" else t.c.expires_at <= now)
        elif status is not None:
            q = q.where(t.c.status == status)
        with self.engine.connect() as conn:
            return [_request(r._mapping) for r in conn.execute(q).all()]

    def decide(
        self,
        request_id: str,
        *,
        approve: bool,
        by: str,
        by_subject: str | None,
        by_labels: Collection[str] = (),
    ) -> RoleRequest:
        """Approve (and apply) or reject a pending request that has not expired
        (:class:`ChangeConflict` ``expired``: the conditional update checks the time, so it
        cannot race). The decider (``by``, also named ``by_labels`` under retired
        pseudonymisation keys) must be neither the requester nor the person whose roles
        change."""
        req = self.get_request(request_id)
        if req is None:
            raise NotFound("role request")
        if req.status != "pending":
            raise RoleChangeRefused("the request was already decided", code="already_decided")
        if by == req.requested_by or req.requested_by in by_labels:
            raise RoleChangeRefused("a second administrator must decide", code="same_admin")
        if by_subject is not None and normalise_subject(by_subject) == req.subject:
            raise RoleChangeRefused("nobody can change their own roles", code="self_grant")
        status = "approved" if approve else "rejected"
        now = self._now()
        with self.engine.begin() as conn:
            result = conn.execute(
                update(admin_role_request)
                .where(
                    admin_role_request.c.id == request_id,
                    admin_role_request.c.status == "pending",
                    admin_role_request.c.expires_at > now,
                )
                .values(status=status, decided_by=by, decided_at=now)
            )
        if result.rowcount != 1:
            again = self.get_request(request_id)
            if again is not None and again.status == "pending":
                raise ChangeConflict(
                    f"the request expired at {again.expires_at}; ask again", code="expired"
                )
            raise RoleChangeRefused("the request was already decided", code="already_decided")
        if approve:
            if req.action == "grant":
                self.grant(req.subject, req.role, by=f"{req.requested_by}+{by}")
            else:
                self.revoke(req.subject, req.role)
        decided = self.get_request(request_id)
        if decided is None:
            raise NotFound("role request")
        return decided

    def undo(self, decided: RoleRequest) -> None:
        """Take back an applied decision whose record the audit trail refused: the role
        as it was before, and the request pending again (it can be decided once more)."""
        if decided.status == "approved":
            if decided.action == "grant":
                self.revoke(decided.subject, decided.role)
            else:
                self.grant(decided.subject, decided.role, by="restored")
        with self.engine.begin() as conn:
            conn.execute(
                update(admin_role_request)
                .where(
                    admin_role_request.c.id == decided.id,
                    admin_role_request.c.status == decided.status,
                )
                .values(status="pending", decided_by=None, decided_at=None)
            )


class ApiKeys:
    """API keys for automation (synchronous; call in a thread)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float]) -> None:
        self.engine = engine
        self.clock = clock

    def _now(self) -> int:
        return int(self.clock())

    def create(self, name: str, roles: Iterable[str], *, by: str, ttl_s: int) -> tuple[ApiKey, str]:
        """A new key; the returned string is the only copy of it."""
        name = name.strip()
        if not name or len(name) > 200:
            raise ValueError("an API key needs a name of 1..200 characters")
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        parsed = parse_roles(roles)
        key_id = secrets.token_hex(8)
        value = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        now = self._now()
        with self.engine.begin() as conn:
            conn.execute(
                insert(admin_api_key).values(
                    id=key_id,
                    name=name,
                    secret_digest=_digest(value),
                    roles=",".join(parsed),
                    created_by=by,
                    created_at=now,
                    expires_at=now + ttl_s,
                )
            )
        return ApiKey(key_id, name, parsed, by, now, now + ttl_s, None, None, None), value

    def get(self, key_id: str) -> ApiKey | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(admin_api_key).where(admin_api_key.c.id == key_id)).first()
        return None if row is None else _key(row._mapping)

    def list(self) -> list[ApiKey]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(admin_api_key).order_by(admin_api_key.c.created_at)).all()
        return [_key(r._mapping) for r in rows]

    def authenticate(self, value: str) -> ApiKey | None:
        """The usable key for this bearer value (last use recorded), or None."""
        if not value.startswith(KEY_PREFIX) or len(value) > 200:
            return None
        key_id = value[len(KEY_PREFIX) :].split("_", 1)[0]
        with self.engine.connect() as conn:
            row = conn.execute(select(admin_api_key).where(admin_api_key.c.id == key_id)).first()
        want = row._mapping["secret_digest"] if row is not None else "0" * 64
        ok = hmac.compare_digest(_digest(value), want)
        if row is None or not ok:
            return None
        key = _key(row._mapping)
        now = self._now()
        if not key.usable(now):
            return None
        with self.engine.begin() as conn:
            conn.execute(
                update(admin_api_key).where(admin_api_key.c.id == key_id).values(last_used_at=now)
            )
        return key

    def revoke(self, key_id: str, *, by: str) -> ApiKey:
        with self.engine.begin() as conn:
            result = conn.execute(
                update(admin_api_key)
                .where(admin_api_key.c.id == key_id, admin_api_key.c.revoked_at.is_(None))
                .values(revoked_at=self._now(), revoked_by=by)
            )
        key = self.get(key_id)
        if key is None:
            raise NotFound("API key")
        if result.rowcount != 1:
            raise RoleChangeRefused("the key was already revoked", code="already_revoked")
        return key
