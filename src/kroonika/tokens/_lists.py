"""Allow- and deny-lists by token id (jti), subject, client, IP address or CIDR.

Rules: deny beats allow; in allowlist mode a request must match at least one
allow entry (so an empty allowlist means nobody); expired entries are ignored.

Lookups use a per-instance snapshot of every entry. It is dropped when this
instance changes an entry and, when Redis is configured, when any instance
publishes a change on the ``kroonika:access_lists`` channel (so instances agree
within a second); as a last resort it is reloaded after ``max_age_s``.
This store fails closed: a snapshot that cannot be loaded raises.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sqlalchemy import Engine, delete, insert, select, update

from kroonika.db import insert_new
from kroonika.db.tokens import access_list
from kroonika.tokens._clock import Clock
from kroonika.tokens._errors import AccessListError, ExpiryInThePast, NoListEntry

ListName = Literal["allow", "deny"]
Kind = Literal["jti", "subject", "client", "ip"]
KINDS: tuple[Kind, ...] = ("jti", "subject", "client", "ip")
LISTS: tuple[ListName, ...] = ("allow", "deny")
CHANNEL = "kroonika:access_lists"

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
log = logging.getLogger("kroonika.tokens.lists")


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    list: ListName
    kind: Kind
    value: str
    reason: str
    created_by: str
    created_at: int
    expires_at: int | None
    updated_at: int | None = None

    def live(self, now: int) -> bool:
        return self.expires_at is None or self.expires_at > now


@dataclass(frozen=True, slots=True)
class Subject:
    """What a decision is about; any part may be unknown."""

    jti: str | None = None
    subject: str | None = None
    client: str | None = None
    ip: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str | None = None  # denylisted_<kind> | not_allowlisted
    entry_id: str | None = None


@dataclass
class _Snapshot:
    exact: dict[tuple[str, str, str], list[Entry]] = field(default_factory=dict)
    networks: list[tuple[IpNetwork, Entry]] = field(default_factory=list)


class Invalidation(Protocol):
    """How instances tell each other that the lists changed."""

    def publish(self) -> None: ...

    def close(self) -> None: ...


class RedisInvalidation:
    """Redis pub/sub: ``publish`` after a change; every subscriber drops its cache.

    Redis away fails open: a change is still made (publishing it is logged as failed; the
    other instances reload within ``max_age_s``), and the subscriber drops the cache (it
    may miss changes), retries every ``retry_s`` and subscribes again once Redis is back,
    also when Redis was already away when the service started."""

    def __init__(
        self,
        url: str,
        on_change: Callable[[], None],
        *,
        channel: str = CHANNEL,
        retry_s: float = 1.0,
    ):
        import redis

        self._channel = channel
        self._on_change = on_change
        self._retry_s = retry_s
        self._error = redis.RedisError
        from kroonika._redis import redis_client

        self._redis = redis_client(url, socket_timeout=2, socket_connect_timeout=2)
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        self._down = threading.Event()
        self._closed = threading.Event()
        self._thread: Any = None
        try:
            self._listen()
        except redis.RedisError as exc:
            self._went_down(exc)
            threading.Thread(
                target=self._listen_later, name="kroonika-list-notices", daemon=True
            ).start()

    def _listen(self) -> None:
        self._pubsub.subscribe(**{self._channel: self._message})
        self._thread = self._pubsub.run_in_thread(
            sleep_time=0.05, daemon=True, exception_handler=self._lost
        )

    def _listen_later(self) -> None:
        while not self._closed.wait(self._retry_s):
            try:
                self._listen()
            except self._error:
                continue
            self._back()
            if self._closed.is_set():
                self._thread.stop()
            return

    def _went_down(self, exc: BaseException) -> None:
        if not self._down.is_set():
            self._down.set()
            log.warning("access list notices: Redis unreachable (%s)", type(exc).__name__)
        self._on_change()

    def _back(self) -> None:
        if self._down.is_set():
            self._down.clear()
            log.warning("access list notices: Redis is back")
        self._on_change()

    def _message(self, _message: Any) -> None:
        self._back()

    def _lost(self, exc: BaseException, _pubsub: Any, _thread: Any) -> None:
        if not isinstance(exc, self._error):
            raise exc
        self._went_down(exc)
        self._closed.wait(self._retry_s)

    def publish(self) -> None:
        try:
            self._redis.publish(self._channel, b"changed")
        except self._error as exc:
            log.warning(
                "access list change not published, Redis unreachable (%s)", type(exc).__name__
            )

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.stop()
            self._thread.join(timeout=2)
        self._pubsub.close()
        self._redis.close()


def normalise(kind: Kind, value: str) -> str:
    value = value.strip()
    if not value or len(value) > 200:
        raise AccessListError("a list value must be 1..200 characters")
    if kind == "ip":
        try:
            return str(ipaddress.ip_network(value, strict=False))
        except ValueError as exc:
            raise AccessListError(f"not an IP address or CIDR: {value!r}") from exc
    if kind == "subject":
        return value.upper()
    return value


class AccessLists:
    """The list store with its cached enforcement (the admin API calls this)."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock,
        allowlist_mode: bool = False,
        max_age_s: float = 30.0,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self.allowlist_mode = allowlist_mode
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._loaded_at = 0.0
        self.invalidation: Invalidation | None = None
        self.loads = 0

    # --- cache ------------------------------------------------------------------------

    def invalidate(self) -> None:
        """Drop this instance's snapshot (called on change and by pub/sub)."""
        with self._lock:
            self._snapshot = None

    def _changed(self) -> None:
        self.invalidate()
        if self.invalidation is not None:
            self.invalidation.publish()

    def _view(self) -> _Snapshot:
        with self._lock:
            snap = self._snapshot
            fresh = time.monotonic() - self._loaded_at < self._max_age_s
        if snap is not None and fresh:
            return snap
        snap = _Snapshot()
        for entry in self.entries():
            if entry.kind == "ip":
                snap.networks.append((ipaddress.ip_network(entry.value, strict=False), entry))
            else:
                snap.exact.setdefault((entry.list, entry.kind, entry.value), []).append(entry)
        with self._lock:
            self._snapshot = snap
            self._loaded_at = time.monotonic()
            self.loads += 1
        return snap

    # --- enforcement ------------------------------------------------------------------

    def _match(self, snap: _Snapshot, lst: ListName, who: Subject, now: int) -> Entry | None:
        for kind, value in (("jti", who.jti), ("subject", who.subject), ("client", who.client)):
            if not value:
                continue
            key = value.upper() if kind == "subject" else value
            for entry in snap.exact.get((lst, kind, key), ()):
                if entry.live(now):
                    return entry
        if who.ip:
            try:
                addr = ipaddress.ip_address(who.ip)
            except ValueError:
                addr = None
            if addr is not None:
                for net, entry in snap.networks:
                    if entry.list == lst and entry.live(now) and addr in net:
                        return entry
        return None

    def check(self, who: Subject) -> Decision:
        """Deny beats allow; in allowlist mode something must be allowlisted."""
        now = self._clock.now()
        snap = self._view()
        denied = self._match(snap, "deny", who, now)
        if denied is not None:
            return Decision(False, f"denylisted_{denied.kind}", denied.id)
        if self.allowlist_mode:
            allowed = self._match(snap, "allow", who, now)
            if allowed is None:
                return Decision(False, "not_allowlisted")
            return Decision(True, None, allowed.id)
        return Decision(True)

    # --- store ------------------------------------------------------------------------

    def add(
        self,
        lst: ListName,
        kind: Kind,
        value: str,
        *,
        reason: str,
        created_by: str,
        expires_at: int | None = None,
    ) -> Entry:
        if lst not in LISTS or kind not in KINDS:
            raise AccessListError(f"unknown list {lst!r} or kind {kind!r}")
        if not reason.strip() or not created_by.strip():
            raise AccessListError("an entry needs a reason and a creator")
        self.check_expiry(expires_at)
        entry = Entry(
            f"al_{secrets.token_hex(8)}",
            lst,
            kind,
            normalise(kind, value),
            reason.strip()[:500],
            created_by[:200],
            self._clock.now(),
            expires_at,
        )
        with self._engine.begin() as conn:
            if not insert_new(conn, access_list, dataclasses.asdict(entry)):
                raise AccessListError(f"the {lst}list already has this {kind}")
        self._changed()
        return entry

    def check_expiry(self, expires_at: int | None) -> None:
        """:class:`ExpiryInThePast` for an expiry at or before now (this store's clock)."""
        if expires_at is not None and expires_at <= self._clock.now():
            raise ExpiryInThePast()

    def get(self, entry_id: str) -> Entry | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(access_list).where(access_list.c.id == entry_id)).first()
        return None if row is None else _entry(row._mapping)

    def remove(self, entry_id: str) -> Entry:
        entry = self.get(entry_id)
        if entry is None:
            raise NoListEntry()
        with self._engine.begin() as conn:
            conn.execute(delete(access_list).where(access_list.c.id == entry_id))
        self._changed()
        return entry

    def restore(self, entry: Entry) -> None:
        """Put back an entry :meth:`remove` took out (its removal could not be audited)."""
        with self._engine.begin() as conn:
            conn.execute(insert(access_list).values(**dataclasses.asdict(entry)))
        self._changed()

    def put_back(self, before: Entry) -> Entry:
        """Give an entry back the reason and expiry of ``before`` (an :meth:`update`
        whose record could not be made); returns the entry as it was until now."""
        current = self.get(before.id)
        if current is None:
            raise NoListEntry()
        values = {k: getattr(before, k) for k in ("reason", "expires_at", "updated_at")}
        with self._engine.begin() as conn:
            conn.execute(update(access_list).where(access_list.c.id == before.id).values(**values))
        self._changed()
        return current

    def update(
        self,
        entry_id: str,
        *,
        reason: str | None = None,
        expires_at: int | None = None,
        clear_expiry: bool = False,
    ) -> tuple[Entry, Entry]:
        """Change an entry's reason or expiry; returns (before, after)."""
        before = self.get(entry_id)
        if before is None:
            raise NoListEntry()
        values: dict[str, Any] = {"updated_at": self._clock.now()}
        if reason is not None:
            if not reason.strip():
                raise AccessListError("the reason cannot be empty")
            values["reason"] = reason.strip()[:500]
        if expires_at is not None or clear_expiry:
            if not clear_expiry:
                self.check_expiry(expires_at)
            values["expires_at"] = None if clear_expiry else expires_at
        with self._engine.begin() as conn:
            conn.execute(update(access_list).where(access_list.c.id == entry_id).values(**values))
        self._changed()
        after = self.get(entry_id)
        if after is None:
            raise NoListEntry()
        return before, after

    def entries(
        self, lst: ListName | None = None, kind: Kind | None = None, *, live_only: bool = False
    ) -> list[Entry]:
        q = select(access_list).order_by(access_list.c.created_at, access_list.c.id)
        if lst is not None:
            q = q.where(access_list.c.list == lst)
        if kind is not None:
            q = q.where(access_list.c.kind == kind)
        with self._engine.connect() as conn:
            rows = conn.execute(q).all()
        out = [_entry(r._mapping) for r in rows]
        if live_only:
            now = self._clock.now()
            out = [e for e in out if e.live(now)]
        return out

    def close(self) -> None:
        if self.invalidation is not None:
            self.invalidation.close()
            self.invalidation = None


def _entry(m: Any) -> Entry:
    return Entry(
        m["id"],
        m["list"],
        m["kind"],
        m["value"],
        m["reason"],
        m["created_by"],
        m["created_at"],
        m["expires_at"],
        m["updated_at"],
    )
