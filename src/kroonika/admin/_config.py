"""Runtime configuration: the settings an administrator may change while the service runs.

Each key is declared once (:data:`KEYS`) with its validation; the values live in the
``runtime_config`` table (JSON) over the defaults from :class:`~kroonika.settings.Settings`.
A change is validated key by key, then as a whole by every :class:`Applier` (e.g. TTL
min <= default <= max), persisted in one transaction, and applied to the running objects;
other instances pick it up on :meth:`RuntimeConfig.refresh` (the scheduler's tick).
Secret keys are never returned or logged: reads show whether they are set. Their stored
value is AES-256-GCM ciphertext under a key derived from the master key
(``KROONIKA_MASTER_KEY``; HKDF info ``kroonika.admin.runtime-config/1``, the key name as
associated data), so the database alone does not give them away.
"""

from __future__ import annotations

import base64
import itertools
import logging
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from kroonika.admin._errors import ChangeConflict, ConfigInvalid
from kroonika.db.admin import runtime_config
from kroonika.settings import Settings, ticket_regex

Check = Callable[[Any], Any]
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LOGGER = re.compile(r"kroonika(\.[A-Za-z0-9_]+)*")
SECRET_MASK = "********"  # noqa: S105 (what a masked secret looks like)
log = logging.getLogger("kroonika.admin.config")


def _int(lo: int, hi: int = 10**9) -> Check:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"an integer in {lo}..{hi}")
        return v

    return check


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("true or false")
    return v


def _str_list(v: Any) -> list[str]:
    if (
        not isinstance(v, list)
        or len(v) > 100
        or not all(isinstance(x, str) and 0 < len(x) <= 200 and x.isprintable() for x in v)
    ):
        raise ValueError("a list of at most 100 printable strings of 1..200 characters")
    return list(v)


def _str_map(v: Any) -> dict[str, str]:
    if (
        not isinstance(v, dict)
        or len(v) > 100
        or not all(
            isinstance(k, str) and isinstance(x, str) and len(k) <= 100 and len(x) <= 100
            for k, x in v.items()
        )
    ):
        raise ValueError("an object of at most 100 strings")
    return dict(v)


def _levels(v: Any) -> dict[str, str]:
    out = {k: x.upper() for k, x in _str_map(v).items()}
    bad = [k for k, x in out.items() if x not in LEVELS or not _LOGGER.fullmatch(k)]
    if bad:
        raise ValueError(f"kroonika.* loggers with a level of {LEVELS}")
    return out


def _pattern(v: Any) -> str | None:
    if v is None:
        return None
    if not isinstance(v, str):
        raise ValueError("a regular expression of at most 200 characters, or null")
    ticket_regex(v)
    return v


def _secret(v: Any) -> str:
    if not isinstance(v, str) or not 16 <= len(v) <= 512:
        raise ValueError("a string of 16..512 characters")
    return v


def _cron(v: Any) -> str:
    from croniter import croniter

    if not isinstance(v, str) or len(v.split()) != 5 or not croniter.is_valid(v):
        raise ValueError("a cron expression (5 fields)")
    try:  # valid but never due ("0 0 31 2 *") breaks every next-run computation
        croniter(v, 0).get_next(float)
    except ValueError:
        raise ValueError("a cron expression that is ever due") from None
    return v


# --- which changes weaken a control (decision 0017) ----------------------------------------
# Each takes (before, after), both checked values, and says whether going from one to the
# other weakens a security control. A comparison that cannot decide says yes (fail closed).
Weakens = Callable[[Any, Any], bool]


def _raised(before: Any, after: Any) -> bool:
    """A larger number: longer lifetimes and timeouts, higher detection thresholds."""
    return bool(after > before)


def _lowered(before: Any, after: Any) -> bool:
    """A smaller number: a shorter detection window sees fewer events."""
    return bool(after < before)


def _switched_off(before: Any, after: Any) -> bool:
    return bool(before) and not after


def _unlimited_or_raised(before: Any, after: Any) -> bool:
    """0 means no limit, the loosest value of all."""
    return bool(before != 0 and (after == 0 or after > before))


def _widened(before: Any, after: Any) -> bool:
    """A list that gains a member (an audience a token is good for)."""
    return bool(set(after) - set(before))


def _pattern_loosened(before: Any, after: Any) -> bool:
    """Clearing a ticket pattern weakens it; so does replacing it, since whether another
    pattern is stricter cannot be told in general (``.`` matches every justification)."""
    return before is not None and after != before


def _limits_loosened(before: Any, after: Any) -> bool:
    """A rate limit that is removed (``off``), or allows more calls in its window or more
    per second than before, over the defaults of :mod:`kroonika.ratelimit`."""
    from kroonika.ratelimit import RateLimitPolicy

    old = RateLimitPolicy.build(before).limits
    new = RateLimitPolicy.build(after).limits
    return any(name not in new or _looser(limit, new[name]) for name, limit in old.items())


def _looser(old: Any, new: Any) -> bool:
    """Whether rate limit ``new`` allows more calls in its window, or more per second,
    than ``old`` (both ``limits`` items)."""
    return bool(
        new.amount > old.amount or new.amount * old.get_expiry() > old.amount * new.get_expiry()
    )


def _own_limit_loosened(before: Any, after: Any) -> bool:
    """A client's own rate limit removed, or looser (:func:`_looser`); setting one where
    there was none only adds a window on top of the route groups' limits."""
    from limits import parse

    if before is None:
        return False
    return after is None or _looser(parse(before), parse(after))


def _longest_gap(cron: str, runs: int = 24) -> float:
    from croniter import croniter

    it = croniter(cron, 0)
    times = [it.get_next(float) for _ in range(runs)]
    return max(b - a for a, b in itertools.pairwise(times))


def _less_often(before: Any, after: Any) -> bool:
    """A schedule whose longest pause between two runs is longer than before."""
    return _longest_gap(after) > _longest_gap(before)


def weakened(
    declared: Mapping[str, Weakens | None], current: Mapping[str, Any], changes: Mapping[str, Any]
) -> list[str]:
    """The names in ``changes`` whose change from ``current`` weakens a control as
    ``declared`` says; a comparison that fails counts as weakening (fail closed)."""
    out = []
    for name, value in changes.items():
        weakens = declared.get(name)
        if weakens is None or current[name] == value:
            continue
        try:
            if weakens(current[name], value):
                out.append(name)
        except (ValueError, TypeError):  # fail closed: cannot tell is weakening
            log.warning("cannot tell whether a change of %s weakens it", name)
            out.append(name)
    return sorted(out)


#: which change of a token client's own settings (``PATCH /admin/clients/{id}``, the
#: keys of its ``config.change`` events) weakens a control: the client may then ask for
#: tokens for more services, with more claims, living longer, more often, or at all again.
#: Its name weakens nothing.
CLIENT_WEAKENS: dict[str, Weakens | None] = {
    "client.name": None,
    "client.allowed_audiences": _widened,
    "client.allowed_claims": _widened,
    "client.max_ttl_s": _raised,
    "client.rate_limit": _own_limit_loosened,
    "client.disabled": _switched_off,  # a disabled client enabled again
}


@dataclass(frozen=True, slots=True)
class ConfigKey:
    name: str
    check: Check
    default: Callable[[Settings], Any]
    doc: str
    secret: bool = False
    #: a safeguard the deployment can switch on and the API cannot switch off: the
    #: effective value is the setting OR the runtime value (decision 0014)
    floor: bool = False
    #: which direction of change weakens a control: such a change needs a second
    #: administrator while ``admin.second_approval`` is on (decision 0017)
    weakens: Weakens | None = None


#: the jobs that enforce an expiry or a retention period: switching one off, or running
#: it less often, weakens that control (``access_lists`` only tidies entries that are no
#: longer enforced anyway)
ENFORCING_JOBS = frozenset(
    {
        "login_flows",
        "sessions",
        "token_metadata",
        "token_keys",
        "audit_retention",
        "security_profiles",
    }
)
JOB_NAMES = (
    "login_flows",
    "sessions",
    "token_metadata",
    "access_lists",
    "token_keys",
    "audit_retention",
    "security_profiles",
)
DEFAULT_CRON = {
    "audit_retention": "23 3 * * *",
    "token_keys": "41 * * * *",
    "login_flows": "*/10 * * * *",
    "sessions": "* * * * *",
    "token_metadata": "17 * * * *",
    "access_lists": "*/5 * * * *",
    "security_profiles": "47 4 * * *",
}


def _job_keys() -> list[ConfigKey]:
    out = []
    for job in JOB_NAMES:
        out.append(
            ConfigKey(
                f"jobs.{job}.cron",
                _cron,
                lambda s, j=job: s.jobs_cron.get(j, DEFAULT_CRON[j]),  # type: ignore[misc]
                f"when the {job} cleanup job runs",
                weakens=_less_often if job in ENFORCING_JOBS else None,
            )
        )
        out.append(
            ConfigKey(
                f"jobs.{job}.enabled",
                _bool,
                lambda s, j=job: j not in s.jobs_disabled,  # type: ignore[misc]
                f"whether the {job} job runs on its schedule",
                weakens=_switched_off if job in ENFORCING_JOBS else None,
            )
        )
    return out


KEYS: Mapping[str, ConfigKey] = {
    k.name: k
    for k in [
        ConfigKey(
            "token.ttl_min_s",
            _int(1),
            lambda s: s.token_ttl_min_s,
            "shortest token TTL",
            weakens=_raised,
        ),
        ConfigKey(
            "token.ttl_default_s",
            _int(1),
            lambda s: s.token_ttl_default_s,
            "default token TTL",
            weakens=_raised,
        ),
        ConfigKey(
            "token.ttl_max_s",
            _int(1),
            lambda s: s.token_ttl_max_s,
            "longest token TTL",
            weakens=_raised,
        ),
        ConfigKey(
            "token.session_ttl_s",
            _int(30),
            lambda s: s.token_session_ttl_s,
            "TTL of the session access token",
            weakens=_raised,
        ),
        ConfigKey(
            "token.session_audience",
            _str_list,
            lambda s: list(s.token_session_audience),
            "audience policy: audiences of the session access token",
            weakens=_widened,
        ),
        ConfigKey(
            "session.idle_s",
            _int(30),
            lambda s: s.session_idle_s,
            "idle timeout",
            weakens=_raised,
        ),
        ConfigKey(
            "session.absolute_s",
            _int(60),
            lambda s: s.session_absolute_s,
            "absolute timeout",
            weakens=_raised,
        ),
        ConfigKey(
            "session.max_per_person",
            _int(0, 1000),
            lambda s: s.session_max_per_person,
            "concurrent sessions per person (0: no limit)",
            weakens=_unlimited_or_raised,
        ),
        ConfigKey(
            "ratelimit.enabled",
            _bool,
            lambda s: s.ratelimit_enabled,
            "rate limiting",
            weakens=_switched_off,
        ),
        ConfigKey(
            "ratelimit.limits",
            _str_map,
            lambda s: dict(s.ratelimit_limits),
            'limits over the defaults, e.g. {"login_start:ip": "20/minute"}',
            weakens=_limits_loosened,
        ),
        ConfigKey("log.levels", _levels, lambda s: {}, "levels of kroonika.* loggers"),
        ConfigKey(
            "alerts.brute_force_failures",
            _int(2, 10_000),
            lambda s: s.security_brute_force_failures,
            "failed logins in the window that make a brute-force finding",
            weakens=_raised,
        ),
        ConfigKey(
            "alerts.brute_force_window_s",
            _int(10, 86_400),
            lambda s: s.security_brute_force_window_s,
            "brute-force window",
            weakens=_lowered,
        ),
        ConfigKey(
            "alerts.stuffing_people",
            _int(2, 100_000),
            lambda s: s.security_stuffing_people,
            "distinct people from one source that make a credential-stuffing finding",
            weakens=_raised,
        ),
        ConfigKey(
            "alerts.stuffing_attempts",
            _int(2, 100_000),
            lambda s: s.security_stuffing_attempts,
            "failures from one source that make a credential-stuffing finding",
            weakens=_raised,
        ),
        ConfigKey(
            "alerts.travel_max_kmh",
            _int(100, 100_000),
            lambda s: s.security_travel_max_kmh,
            "speed above which travel is impossible",
            weakens=_raised,
        ),
        ConfigKey(
            "alerts.webhook_secret",
            _secret,
            lambda s: None,
            "HMAC key of the alert webhook",
            secret=True,
        ),
        ConfigKey(
            "admin.second_approval",
            _bool,
            lambda s: s.admin_second_approval,
            "weakening changes and role changes need a second administrator",
            floor=True,
            weakens=_switched_off,
        ),
        ConfigKey(
            "admin.ticket_pattern",
            _pattern,
            lambda s: s.admin_ticket_pattern,
            "a justification must contain a match (e.g. a ticket id), or null",
            weakens=_pattern_loosened,
        ),
        *_job_keys(),
    ]
}


class SecretBox:
    """Seals secret configuration values under the master key; the stored form is
    ``{"enc": "v1:<base64 nonce||ciphertext>"}`` and names no value."""

    PREFIX = "v1:"

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) < 32:
            raise ValueError("the master key must be at least 32 bytes")
        key = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=None,
            info=b"kroonika.admin.runtime-config/1",
        ).derive(master_key)
        self._aead = AESGCM(key)

    def seal(self, name: str, value: Any) -> dict[str, str]:
        nonce = os.urandom(12)
        sealed = nonce + self._aead.encrypt(nonce, orjson.dumps(value), name.encode())
        return {"enc": self.PREFIX + base64.b64encode(sealed).decode()}

    def open(self, name: str, stored: Any) -> Any:
        """The value, or ``ValueError`` for a stored form that is not ours or does not
        open under this master key (wrong key, or tampered)."""
        token = stored.get("enc") if isinstance(stored, dict) else None
        if not isinstance(token, str) or not token.startswith(self.PREFIX):
            raise ValueError(f"{name} is not stored encrypted")
        raw = base64.b64decode(token[len(self.PREFIX) :])
        try:
            return orjson.loads(self._aead.decrypt(raw[:12], raw[12:], name.encode()))
        except InvalidTag:
            raise ValueError(f"{name} does not open under the master key") from None


@dataclass(frozen=True, slots=True)
class Applier:
    """Checks a whole candidate configuration and applies it to one subsystem."""

    name: str
    check: Callable[[Mapping[str, Any]], object]  # raises ValueError
    apply: Callable[[Mapping[str, Any]], None]


@dataclass(frozen=True, slots=True)
class Change:
    key: str
    before: Any
    after: Any
    secret: bool
    version: int

    def shown(self) -> tuple[str, str]:
        """(before, after) as they may appear in an event: secrets as set/changed only."""
        if self.secret:
            return ("set" if self.before is not None else "unset"), "changed"
        return (
            orjson.dumps(self.before, option=orjson.OPT_SORT_KEYS).decode(),
            orjson.dumps(self.after, option=orjson.OPT_SORT_KEYS).decode(),
        )


@dataclass
class RuntimeConfig:
    engine: Engine
    settings: Settings
    clock: Callable[[], float]
    appliers: list[Applier] = field(default_factory=list)
    box: SecretBox | None = None
    _stored: dict[str, tuple[Any, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def defaults(self) -> dict[str, Any]:
        return {name: key.default(self.settings) for name, key in KEYS.items()}

    def effective(self) -> dict[str, Any]:
        out = self.defaults()
        for name, (value, _) in self._stored.items():
            key = KEYS.get(name)
            if key is not None:
                out[name] = (out[name] or value) if key.floor else value
        return out

    def get(self, name: str) -> Any:
        return self.effective()[name]

    def public(self) -> dict[str, Any]:
        """Every key with its value (secrets masked), source and version."""
        eff = self.effective()
        out: dict[str, Any] = {}
        for name, key in KEYS.items():
            value = eff[name]
            stored = self._stored.get(name)
            out[name] = {
                "value": (SECRET_MASK if value is not None else None) if key.secret else value,
                # a floor the runtime value does not lower comes from the settings
                "source": "runtime" if stored and stored[0] == value else "settings",
                "version": stored[1] if stored else 0,
                "secret": key.secret,
                "doc": key.doc,
            }
        return out

    def encode(self, name: str, value: Any) -> str:
        """What goes into the table: JSON, secrets sealed under the master key."""
        key = KEYS.get(name)
        if key is not None and key.secret and value is not None:
            if self.box is None:
                raise ConfigInvalid(f"{name} is secret and no master key is configured")
            return orjson.dumps(self.box.seal(name, value)).decode()
        return orjson.dumps(value).decode()

    def decode(self, name: str, data: str) -> Any:
        value = orjson.loads(data)
        key = KEYS.get(name)
        if key is None or not key.secret or value is None:
            return value
        if self.box is None:
            raise ConfigInvalid(f"{name} is secret and no master key is configured")
        return self.box.open(name, value)

    def _load(self) -> dict[str, tuple[Any, int]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(runtime_config)).all()
        out: dict[str, tuple[Any, int]] = {}
        for r in rows:
            try:
                value = self.decode(r.key, r.value)
                if r.key in KEYS:  # stored under an older, looser check
                    value = KEYS[r.key].check(value)
                out[r.key] = (value, r.version)
            except (ValueError, ConfigInvalid) as exc:
                # never the value; the setting falls back to its default, and keeps its
                # version so that the next change updates the row instead of colliding
                log.error("runtime config %s ignored: %s", r.key, exc)
                if r.key in KEYS:
                    out[r.key] = (KEYS[r.key].default(self.settings), r.version)
        return out

    def _check_all(self, candidate: Mapping[str, Any]) -> None:
        for applier in self.appliers:
            try:
                applier.check(candidate)
            except ValueError as exc:
                raise ConfigInvalid(f"{applier.name}: {exc}") from None

    def _apply_all(self, values: Mapping[str, Any]) -> None:
        for applier in self.appliers:
            applier.apply(values)

    def refresh(self) -> bool:
        """Load the stored values; apply them if anything changed. True if it did."""
        loaded = self._load()
        with self._lock:
            if {k: v for k, (_, v) in loaded.items()} == {
                k: v for k, (_, v) in self._stored.items()
            }:
                return False
            self._stored = loaded
            values = self.effective()
        self._apply_all(values)
        return True

    def validate(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Normalised changes, or :class:`ConfigInvalid` naming each bad key."""
        errors: dict[str, str] = {}
        clean: dict[str, Any] = {}
        for name, value in changes.items():
            key = KEYS.get(name)
            if key is None:
                errors[name] = "unknown key"
                continue
            try:
                clean[name] = key.check(value)
            except ValueError as exc:
                errors[name] = str(exc)
        if errors:
            err = ConfigInvalid("invalid configuration")
            err.errors = errors  # type: ignore[attr-defined]
            raise err
        return clean

    def version(self, name: str) -> int:
        """The stored version of ``name`` (0: never changed at run time)."""
        return self._stored.get(name, (None, 0))[1]

    def check(self, clean: Mapping[str, Any]) -> None:
        """:class:`ConfigInvalid` unless the current values with ``clean`` over them make a
        configuration every applier accepts."""
        self._check_all({**self.effective(), **clean})

    def weakening(self, clean: Mapping[str, Any]) -> list[str]:
        """The keys of validated ``clean`` whose change from the current value weakens a
        control (``ConfigKey.weakens``); a comparison that fails counts as weakening."""
        return weakened({k: KEYS[k].weakens for k in clean}, self.effective(), clean)

    def change(
        self,
        changes: Mapping[str, Any],
        *,
        by: str,
        expect: Mapping[str, tuple[int, Any]] | None = None,
    ) -> list[Change]:
        """Validate, persist and apply; returns what actually changed. With ``expect``
        (key: (version, value) when the change was asked for) a key whose version or,
        for a key that is not secret, effective value differs now raises
        :class:`ChangeConflict` and nothing is changed."""
        clean = self.validate(changes)
        self.refresh()
        with self._lock:
            current = self.effective()
            for name, (version, value) in (expect or {}).items():
                if self.version(name) != version or (
                    not KEYS[name].secret and current.get(name) != value
                ):
                    raise ChangeConflict(f"{name} has changed since the change was asked for")
            candidate = {**current, **clean}
            self._check_all(candidate)
            diff = [k for k in clean if current.get(k) != clean[k]]
            if not diff:
                if expect:
                    raise ChangeConflict("the configuration already has these values")
                return []
            now = int(self.clock())
            out: list[Change] = []
            try:
                with self.engine.begin() as conn:
                    for name in diff:
                        version = self._stored.get(name, (None, 0))[1] + 1
                        data = self.encode(name, clean[name])
                        if version == 1:
                            conn.execute(
                                insert(runtime_config).values(
                                    key=name, value=data, version=1, updated_at=now, updated_by=by
                                )
                            )
                        else:
                            result = conn.execute(
                                update(runtime_config)
                                .where(
                                    runtime_config.c.key == name,
                                    runtime_config.c.version == version - 1,
                                )
                                .values(value=data, version=version, updated_at=now, updated_by=by)
                            )
                            if result.rowcount != 1:
                                raise ConfigInvalid(
                                    f"{name} was changed concurrently; retry", code="conflict"
                                )
                        out.append(
                            Change(name, current.get(name), clean[name], KEYS[name].secret, version)
                        )
            except IntegrityError:  # another instance stored a key first
                raise ConfigInvalid(
                    "the configuration was changed concurrently; retry", code="conflict"
                ) from None
            for c in out:
                self._stored[c.key] = (c.after, c.version)
            values = self.effective()
        self._apply_all(values)
        return out

    def restore(self, changes: list[Change], *, by: str) -> None:
        """Undo ``changes`` (the audit trail refused their record)."""
        now = int(self.clock())
        with self.engine.begin() as conn:
            for c in changes:
                if c.version == 1:
                    conn.execute(delete(runtime_config).where(runtime_config.c.key == c.key))
                else:
                    conn.execute(
                        update(runtime_config)
                        .where(runtime_config.c.key == c.key)
                        .values(
                            value=self.encode(c.key, c.before),
                            version=c.version + 1,
                            updated_at=now,
                            updated_by=by,
                        )
                    )
        self._stored = {}
        self.refresh()


def apply_log_levels(values: Mapping[str, Any]) -> None:
    for name, level in values["log.levels"].items():
        logging.getLogger(name).setLevel(level)
