"""threat: match the source address against threat-intelligence feeds.

Feeds are files, reloaded when they change (size or modification time; checked at
most every ``check_interval`` seconds):

* plain IP/CIDR lists in the FireHOL (``*.netset``) and Spamhaus DROP styles: one
  address or network per line, comments after ``#`` or ``;``; the Spamhaus DROP JSON
  lines format (``{"cidr": ...}``) is read too;
* STIX 2.1 bundles (JSON): ``indicator`` objects whose ``pattern`` compares
  ``ipv4-addr:value`` or ``ipv6-addr:value`` (several joined by ``OR``); revoked and
  expired (``valid_until``) indicators are ignored, ``confidence`` and
  ``indicator_types`` are kept.

Private, loopback, link-local and other non-global addresses are never matched (the
FireHOL level 1 list contains the bogons on purpose). A feed that fails to parse
after a change keeps its previous contents and the error is counted (fail safe: an
operator's typo does not empty the deny list).

A match appends a :class:`~kroonika.audit.ThreatMatch` to ``event.threat``; the
service turns it into a ``security.threat_match`` event and applies the feed's action
(log only, deny login, deny token minting).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from kroonika.audit._model import AuditEvent, ThreatMatch
from kroonika.audit.processors.anonymise_ip import coarsen_matches

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FeedError(Exception):
    """A feed file that cannot be read or parsed; the message names the file."""


class FeedAction(StrEnum):
    LOG = "log"
    DENY_LOGIN = "deny_login"
    DENY_TOKEN = "deny_token"  # noqa: S105  (an action name, not a secret)


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """One feed: its name (as it appears in events), file, format and policy.
    ``category`` and ``confidence`` apply to list entries (STIX carries its own)."""

    name: str
    path: Path
    format: Literal["list", "stix", "auto"] = "auto"
    action: FeedAction = FeedAction.LOG
    category: str = "malicious-activity"
    confidence: int = 80

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", self.name):
            raise ValueError(f"feed name {self.name!r}: 1..64 of [A-Za-z0-9_.:-]")
        if not 0 <= self.confidence <= 100:
            raise ValueError("confidence is 0..100")


@dataclass(frozen=True, slots=True)
class Indicator:
    network: IpNetwork
    category: str
    confidence: int


@dataclass(frozen=True, slots=True)
class Match:
    """One feed entry that covers an address, with the feed's action."""

    feed: str
    indicator: str
    category: str
    confidence: int
    action: FeedAction

    def threat_match(self) -> ThreatMatch:
        return ThreatMatch(self.feed, self.indicator, self.category, self.confidence)


# --- parsers (pure) -----------------------------------------------------------------


def parse_ip_list(text: str, *, category: str, confidence: int) -> list[Indicator]:
    """FireHOL / Spamhaus DROP style lists, and DROP's JSON lines. Malformed lines
    raise :class:`FeedError` with the line number (a list is all or nothing)."""
    out: list[Indicator] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                obj = json.loads(raw)
            except ValueError as exc:
                raise FeedError(f"line {number}: bad JSON: {exc}") from None
            cidr = obj.get("cidr") if isinstance(obj, dict) else None
            if not isinstance(cidr, str):
                continue  # DROP's trailing metadata line has no "cidr"
            line = cidr
        token = line.split()[0]
        try:
            net = ipaddress.ip_network(token, strict=False)
        except ValueError:
            raise FeedError(f"line {number}: not an address or network: {token[:64]!r}") from None
        if net.prefixlen == 0:  # a whole address family: a broken list, not an indicator
            raise FeedError(f"line {number}: {net} would match every address")
        out.append(Indicator(net, category, confidence))
    return out


_STIX_IP = re.compile(r"(ipv4-addr|ipv6-addr):value\s*(=|ISSUBSET)\s*'([^']+)'")


def _stix_time(value: Any) -> datetime | None:
    """A STIX timestamp; STIX times are UTC, so one written without a zone is UTC
    (comparing it as naive with the aware ``now`` would raise on every lookup)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_stix_bundle(
    text: str, *, now: datetime, category: str, confidence: int
) -> list[Indicator]:
    """IP indicators of a STIX 2.1 bundle. Other objects and non-IP patterns are
    ignored; revoked or expired indicators are left out."""
    try:
        bundle = json.loads(text)
    except ValueError as exc:
        raise FeedError(f"not JSON: {exc}") from None
    if not isinstance(bundle, dict) or bundle.get("type") != "bundle":
        raise FeedError("not a STIX bundle (type != 'bundle')")
    objects = bundle.get("objects", [])
    if not isinstance(objects, list):
        raise FeedError("bundle.objects is not a list")
    out: list[Indicator] = []
    for obj in objects:
        if not isinstance(obj, dict) or obj.get("type") != "indicator":
            continue
        if obj.get("pattern_type", "stix") != "stix" or obj.get("revoked") is True:
            continue
        until = _stix_time(obj.get("valid_until"))
        if until is not None and until <= now:
            continue
        since = _stix_time(obj.get("valid_from"))
        if since is not None and since > now:
            continue
        pattern = obj.get("pattern")
        if not isinstance(pattern, str):
            continue
        conf = obj.get("confidence", confidence)
        if not isinstance(conf, int) or isinstance(conf, bool) or not 0 <= conf <= 100:
            conf = confidence
        types = obj.get("indicator_types")
        cat = types[0] if isinstance(types, list) and types and isinstance(types[0], str) else None
        for _kind, _op, value in _STIX_IP.findall(pattern):
            try:
                net = ipaddress.ip_network(value, strict=False)
            except ValueError:
                continue
            if net.prefixlen == 0:
                raise FeedError(
                    f"indicator {str(obj.get('id'))[:80]!r}: {net} would match every address"
                )
            out.append(Indicator(net, (cat or category)[:64], conf))
    return out


def _matchable(addr: IpAddress) -> bool:
    """Only public addresses can match (never private, loopback, link-local, ...)."""
    return addr.is_global and not addr.is_multicast


# --- the enricher ---------------------------------------------------------------------


@dataclass
class _Loaded:
    spec: FeedSpec
    stamp: tuple[int, int] | None = None
    # prefix length -> network address (int) -> indicator, per IP version
    tables: dict[int, dict[int, dict[int, Indicator]]] = field(default_factory=dict)
    entries: int = 0


class ThreatIntel:
    """Enricher and lookup over a set of feeds. ``clock`` is wall time in seconds
    (STIX validity and the reload check use it)."""

    def __init__(
        self,
        feeds: Sequence[FeedSpec],
        *,
        check_interval: float = 5.0,
        cache_size: int = 65536,
        clock: Callable[[], float] = time.time,
    ) -> None:
        names = [f.name for f in feeds]
        if len(set(names)) != len(names):
            raise ValueError("feed names must be unique")
        self._feeds = [_Loaded(spec) for spec in feeds]
        self._clock = clock
        self._check_interval = check_interval
        self._next_check = 0.0
        self._lock = threading.Lock()
        self.errors: dict[str, str] = {}
        self.reloads = 0
        self.load_failures = 0
        self._lookup = lru_cache(maxsize=cache_size)(self._lookup_uncached)
        self.refresh(force=True)

    @property
    def feeds(self) -> tuple[FeedSpec, ...]:
        return tuple(f.spec for f in self._feeds)

    def action_of(self, feed: str) -> FeedAction:
        for f in self._feeds:
            if f.spec.name == feed:
                return f.spec.action
        return FeedAction.LOG

    def entries(self, feed: str) -> int:
        return next((f.entries for f in self._feeds if f.spec.name == feed), 0)

    # --- loading

    def _load(self, loaded: _Loaded) -> None:
        spec = loaded.spec
        try:
            st = os.stat(spec.path)
        except OSError as exc:
            if loaded.stamp is not None or spec.name not in self.errors:
                self.errors[spec.name] = f"{spec.path}: {exc.strerror}"
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == loaded.stamp:
            return
        try:
            text = spec.path.read_text(encoding="utf-8")
            fmt = spec.format
            if fmt == "auto":
                fmt = "stix" if text.lstrip().startswith("{") and '"bundle"' in text else "list"
            now = datetime.fromtimestamp(self._clock(), UTC)
            if fmt == "stix":
                indicators = parse_stix_bundle(
                    text, now=now, category=spec.category, confidence=spec.confidence
                )
            else:
                indicators = parse_ip_list(text, category=spec.category, confidence=spec.confidence)
        except (OSError, UnicodeDecodeError, FeedError) as exc:
            self.load_failures += 1
            self.errors[spec.name] = f"{spec.path}: {exc}"
            loaded.stamp = stamp  # do not re-parse the same broken file on every check
            return
        loaded.tables = _index(indicators)
        loaded.entries = len(indicators)
        loaded.stamp = stamp
        self.errors.pop(spec.name, None)
        self.reloads += 1

    def refresh(self, *, force: bool = False) -> None:
        """Reload the feeds whose files changed (at most every ``check_interval``)."""
        now = self._clock()
        if not force and now < self._next_check:
            return
        with self._lock:
            self._next_check = now + self._check_interval
            before = [f.stamp for f in self._feeds]
            for loaded in self._feeds:
                self._load(loaded)
            if before != [f.stamp for f in self._feeds]:
                self._lookup.cache_clear()

    # --- matching

    def _lookup_uncached(self, ip: str) -> tuple[Match, ...]:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return ()
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if not _matchable(addr):
            return ()
        value = int(addr)
        bits = addr.max_prefixlen
        out: list[Match] = []
        for loaded in self._feeds:
            by_prefix = loaded.tables.get(addr.version)
            if not by_prefix:
                continue
            for prefix, table in by_prefix.items():
                key = value >> (bits - prefix) << (bits - prefix) if prefix else 0
                ind = table.get(key)
                if ind is not None:
                    out.append(
                        Match(
                            loaded.spec.name,
                            str(ind.network),
                            ind.category,
                            ind.confidence,
                            loaded.spec.action,
                        )
                    )
                    break  # one match per feed: the first (any) covering entry
        return tuple(out)

    def match(self, ip: str) -> tuple[Match, ...]:
        """Every feed that lists ``ip`` (one match per feed)."""
        self.refresh()
        return self._lookup(ip)

    def denies(self, ip: str, action: FeedAction) -> tuple[Match, ...]:
        """The matches whose feed's action is ``action`` (e.g. deny_login)."""
        return tuple(m for m in self.match(ip) if m.action is action)

    def __call__(self, event: AuditEvent) -> None:
        src = event.source
        if src is None:
            return
        ip = src.raw_ip if src.raw_ip is not None else src.ip if src.ip_prefix is None else None
        if ip is None:
            return
        found = [m.threat_match() for m in self.match(ip)]
        if src.raw_ip is not None and src.ip_prefix is not None:  # anonymised: no narrower
            found = coarsen_matches(found, src.ip_prefix, src.ip_prefix)
        known = {(m.feed, m.indicator) for m in event.threat}
        event.threat.extend(m for m in found if (m.feed, m.indicator) not in known)


def _index(indicators: Iterable[Indicator]) -> dict[int, dict[int, dict[int, Indicator]]]:
    tables: dict[int, dict[int, dict[int, Indicator]]] = {}
    for ind in indicators:
        net = ind.network
        by_prefix = tables.setdefault(net.version, {})
        by_prefix.setdefault(net.prefixlen, {}).setdefault(int(net.network_address), ind)
    # longest prefix first, so the most specific entry is reported
    return {
        v: dict(sorted(t.items(), key=lambda kv: kv[0], reverse=True)) for v, t in tables.items()
    }
