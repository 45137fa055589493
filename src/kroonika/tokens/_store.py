"""The issued-token table: state changes are compare-and-set in the database.

An extension replaces a token with ``UPDATE ... WHERE jti = :jti AND state =
'active' AND version = :version``; only the transaction that changed exactly one
row inserts the replacement, so of two concurrent extensions exactly one wins on
SQLite (writers serialise) and on PostgreSQL (the second UPDATE re-evaluates its
WHERE after the first commits and matches nothing).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, and_, insert, or_, select, update

from kroonika.db.tokens import tokens
from kroonika.tokens._errors import ExtendConflict, TokenError


@dataclass(frozen=True, slots=True)
class TokenRecord:
    jti: str
    kid: str
    alg: str
    token_type: str
    subject: str | None
    client_id: str | None
    audience: tuple[str, ...]
    session_ref: str | None
    claim_names: tuple[str, ...]
    iat: int
    exp: int
    state: str
    version: int
    changed_at: int | None = None
    changed_by: str | None = None
    change_reason: str | None = None
    replaced_by: str | None = None

    def row(self) -> dict[str, Any]:
        return {
            "jti": self.jti,
            "kid": self.kid,
            "alg": self.alg,
            "token_type": self.token_type,
            "subject": self.subject,
            "client_id": self.client_id,
            "audience": orjson.dumps(list(self.audience)).decode(),
            "session_ref": self.session_ref,
            "claim_names": orjson.dumps(list(self.claim_names)).decode(),
            "iat": self.iat,
            "exp": self.exp,
            "state": self.state,
            "version": self.version,
            "changed_at": self.changed_at,
            "changed_by": self.changed_by,
            "change_reason": self.change_reason,
            "replaced_by": self.replaced_by,
        }

    def public(self) -> dict[str, Any]:
        """What the owner may see about their token (never the value)."""
        return {
            "jti": self.jti,
            "token_type": self.token_type,
            "client_id": self.client_id,
            "aud": list(self.audience),
            "iat": self.iat,
            "exp": self.exp,
            "state": self.state,
            "kid": self.kid,
        }


def _record(m: Any) -> TokenRecord:
    return TokenRecord(
        m["jti"],
        m["kid"],
        m["alg"],
        m["token_type"],
        m["subject"],
        m["client_id"],
        tuple(orjson.loads(m["audience"])),
        m["session_ref"],
        tuple(orjson.loads(m["claim_names"])),
        m["iat"],
        m["exp"],
        m["state"],
        m["version"],
        m["changed_at"],
        m["changed_by"],
        m["change_reason"],
        m["replaced_by"],
    )


@dataclass(frozen=True, slots=True)
class Page:
    items: list[TokenRecord]
    next_cursor: str | None


def encode_cursor(iat: int, jti: str) -> str:
    return base64.urlsafe_b64encode(f"{iat}:{jti}".encode()).decode().rstrip("=")


_CURSOR_JTI = re.compile(r"[A-Za-z0-9_-]{1,64}")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """The (iat, jti) a cursor names. Anything that is not one of our cursors is
    ``invalid cursor`` (never a value the database refuses: a huge number, a NUL)."""
    try:
        if len(cursor) > 200:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        iat, jti = raw.split(":", 1)
        if not (iat.isascii() and iat.isdigit() and len(iat) <= 16):
            raise ValueError("not a time")
        if not _CURSOR_JTI.fullmatch(jti):
            raise ValueError("not a token id")
        return int(iat), jti
    except (ValueError, UnicodeDecodeError) as exc:
        raise TokenError("invalid cursor") from exc


class TokenStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def insert(self, records: Sequence[TokenRecord], conn: Connection | None = None) -> None:
        if not records:
            return
        if conn is not None:
            conn.execute(insert(tokens), [r.row() for r in records])
            return
        with self.engine.begin() as c:
            c.execute(insert(tokens), [r.row() for r in records])

    def get(self, jti: str) -> TokenRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(tokens).where(tokens.c.jti == jti)).first()
        return None if row is None else _record(row._mapping)

    def get_many(self, jtis: Iterable[str]) -> dict[str, TokenRecord]:
        ids = list(set(jtis))
        if not ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(tokens).where(tokens.c.jti.in_(ids))).all()
        return {r._mapping["jti"]: _record(r._mapping) for r in rows}

    def replace(self, old: TokenRecord, new: TokenRecord, *, now: int, by: str) -> None:
        """Atomically mark ``old`` replaced and insert ``new``; :class:`ExtendConflict`
        when ``old`` is no longer the active version this caller saw."""
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(tokens)
                .where(
                    tokens.c.jti == old.jti,
                    tokens.c.state == "active",
                    tokens.c.version == old.version,
                )
                .values(
                    state="replaced",
                    version=old.version + 1,
                    replaced_by=new.jti,
                    changed_at=now,
                    changed_by=by[:200],
                    change_reason="extended",
                )
            ).rowcount
            if changed != 1:
                raise ExtendConflict("not_active")
            conn.execute(insert(tokens).values(**new.row()))

    def revoke(
        self,
        jtis: Sequence[str],
        *,
        now: int,
        by: str,
        why: str,
        conn: Connection | None = None,
    ) -> list[str]:
        """Revoke the active ones among ``jtis``; returns those that changed."""
        if not jtis:
            return []
        if conn is None:
            with self.engine.begin() as c:
                return self.revoke(jtis, now=now, by=by, why=why, conn=c)
        changed: list[str] = []
        for jti in jtis:
            n = conn.execute(
                update(tokens)
                .where(tokens.c.jti == jti, tokens.c.state == "active")
                .values(
                    state="revoked",
                    version=tokens.c.version + 1,
                    changed_at=now,
                    changed_by=by[:200],
                    change_reason=why[:500],
                )
            ).rowcount
            if n == 1:
                changed.append(jti)
        return changed

    def revoke_successors(
        self, jti: str, *, now: int, by: str, why: str, conn: Connection, limit: int = 1000
    ) -> list[str]:
        """Revoke what replaced ``jti`` by extension: follow ``replaced_by`` (A was
        replaced by B, B by C ...) and revoke the active token at the end. Inside the
        caller's transaction, and re-reading each link after trying it, so an extension
        that commits meanwhile is followed too. Returns the revoked jtis."""
        changed: list[str] = []
        seen = {jti}
        current = jti
        for _ in range(limit):
            nxt = conn.execute(
                select(tokens.c.replaced_by).where(tokens.c.jti == current)
            ).scalar_one_or_none()
            if not nxt or nxt in seen:
                break
            seen.add(nxt)
            changed += self.revoke([nxt], now=now, by=by, why=why, conn=conn)
            current = nxt
        return changed

    def active_jtis(
        self, *, session_ref: str | None = None, subject: str | None = None
    ) -> list[TokenRecord]:
        q = select(tokens).where(tokens.c.state == "active")
        if session_ref is not None:
            q = q.where(tokens.c.session_ref == session_ref)
        if subject is not None:
            q = q.where(tokens.c.subject == subject)
        with self.engine.connect() as conn:
            return [_record(r._mapping) for r in conn.execute(q).all()]

    def mark_expired(self, jti: str, *, now: int) -> bool:
        """Active → expired, once; True for the caller that changed it."""
        with self.engine.begin() as conn:
            n = conn.execute(
                update(tokens)
                .where(tokens.c.jti == jti, tokens.c.state == "active", tokens.c.exp <= now)
                .values(state="expired", version=tokens.c.version + 1, changed_at=now)
            ).rowcount
        return n == 1

    def expire_overdue(self, *, now: int, limit: int = 1000) -> list[TokenRecord]:
        """Mark up to ``limit`` overdue active tokens expired; returns them."""
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(tokens)
                .where(tokens.c.state == "active", tokens.c.exp <= now)
                .order_by(tokens.c.exp)
                .limit(limit)
            ).all()
            done: list[TokenRecord] = []
            for r in rows:
                rec = _record(r._mapping)
                n = conn.execute(
                    update(tokens)
                    .where(tokens.c.jti == rec.jti, tokens.c.state == "active")
                    .values(state="expired", version=tokens.c.version + 1, changed_at=now)
                ).rowcount
                if n == 1:
                    done.append(rec)
        return done

    def restore_active(self, records: Sequence[TokenRecord], *, state: str, now: int) -> None:
        """Undo a change of the active ``records`` to ``state`` made at ``now`` (by
        :meth:`expire_overdue` or :meth:`revoke`) whose audit event could not be recorded:
        each goes back to active, with its earlier change stamp, unless it changed since."""
        with self.engine.begin() as conn:
            for rec in records:
                conn.execute(
                    update(tokens)
                    .where(
                        tokens.c.jti == rec.jti,
                        tokens.c.state == state,
                        tokens.c.version == rec.version + 1,
                        tokens.c.changed_at == now,
                    )
                    .values(
                        state="active",
                        version=rec.version + 2,
                        changed_at=rec.changed_at,
                        changed_by=rec.changed_by,
                        change_reason=rec.change_reason,
                    )
                )

    def page_for_subject(
        self,
        subject: str,
        *,
        limit: int,
        cursor: str | None = None,
        state: str | None = None,
        token_type: str | None = None,
        client_id: str | None = None,
        issued_after: int | None = None,
        issued_before: int | None = None,
    ) -> Page:
        """Newest first, keyset pagination on (iat, jti)."""
        q = select(tokens).where(tokens.c.subject == subject)
        if state is not None:
            q = q.where(tokens.c.state == state)
        if token_type is not None:
            q = q.where(tokens.c.token_type == token_type)
        if client_id is not None:
            q = q.where(tokens.c.client_id == client_id)
        if issued_after is not None:
            q = q.where(tokens.c.iat >= issued_after)
        if issued_before is not None:
            q = q.where(tokens.c.iat < issued_before)
        if cursor is not None:
            c_iat, c_jti = decode_cursor(cursor)
            q = q.where(
                or_(tokens.c.iat < c_iat, and_(tokens.c.iat == c_iat, tokens.c.jti < c_jti))
            )
        q = q.order_by(tokens.c.iat.desc(), tokens.c.jti.desc()).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = [_record(r._mapping) for r in conn.execute(q).all()]
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = encode_cursor(rows[-1].iat, rows[-1].jti) if more and rows else None
        return Page(rows, nxt)
