"""SecurityMonitor: runs the detectors on the live stream of committed events.

It listens to the trail's commits (:attr:`AuditTrail.on_commit`, chained with any
listener already there), takes ``auth.login`` events and events that carry threat
matches, and emits ``security.anomaly`` and ``security.threat_match`` events through
the same trail. Work happens on a task of its own, so a login response never waits
for detection; :meth:`drain` waits until everything seen so far is handled (tests,
shutdown).

It works only on what the trail recorded: the pseudonym, the anonymised network and
the geo location, so its state never holds a personal code or a full IP address.
Window state (failures of the last minutes) is per process, or shared through
Redis (:mod:`kroonika.security.windows`); the profiles are in the database and
shared. Failure policy: fails open (a detector error is counted and the event
skipped; the service keeps working), and events that find the bounded queue full
are skipped and counted as ``dropped``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import orjson

from kroonika.audit import (
    Actor,
    ActorType,
    AuditEvent,
    AuditTrail,
    AuditUnavailable,
    Correlation,
    SealedEvent,
    Source,
    ThreatMatch,
    events,
)
from kroonika.audit.enrich import ThreatIntel
from kroonika.audit.processors.anonymise_ip import source_network
from kroonika.security.detectors import (
    DetectorConfig,
    Finding,
    LoginObservation,
    Place,
    brute_force,
    credential_stuffing,
    forged_id_token,
    login_findings,
)
from kroonika.security.profiles import ProfileStore
from kroonika.security.windows import FailureWindows, KeyKind, MemoryWindows

_T = TypeVar("_T")

WATCHED = "auth.login"
#: Failed logins that were TARA's or the service's fault (an outage, a misconfigured
#: client secret, the database gone, an ID token from TARA's back channel that fails
#: its checks: a wrong issuer or audience setting, a clock out of step, a stale key
#: set): they say nothing about who tried, so they feed no detector (every citizen's
#: retry during an outage is not brute force). Counted. A nonce or state of another
#: flow (``id_token.nonce_mismatch``, ``id_token.state_mismatch``) came through the
#: browser and is not in this list (decisions 0015, 0019).
SERVICE_FAULTS = frozenset(
    {
        "idp_unavailable",
        "idp_misconfigured",
        "idp_bad_response",
        "idp_client_rejected",
        "idp_request_rejected",
        "database_unavailable",
        "internal_error",
        "id_token.malformed",
        "id_token.alg",
        "id_token.unknown_kid",
        "id_token.bad_signature",
        "id_token.missing_claim",
        "id_token.issuer_mismatch",
        "id_token.audience_mismatch",
        "id_token.expired",
        "id_token.issued_in_future",
        "id_token.not_yet_valid",
        "id_token.acr_invalid",
    }
)
KEY_WINDOW_MAX = 256  # recent failures kept per person and per network
QUEUE_SIZE = 10_000  # committed events waiting for detection; more are dropped and counted


def observation(record: Mapping[str, Any]) -> LoginObservation:
    """An ``auth.login`` record reduced to what the detectors use."""
    src = record.get("source") or {}
    ip, prefix = src.get("ip"), src.get("ip_prefix")
    # an IPv6 source as its /64 at the narrowest: rotating inside it evades nothing
    network = source_network(str(ip), prefix) if ip is not None else None
    at = datetime.fromisoformat(str(record["time"]).replace("Z", "+00:00")).timestamp()
    return LoginObservation(
        at=at,
        success=record.get("outcome") == "success",
        person=(record.get("actor") or {}).get("pseudonym"),
        network=network,
        place=Place.from_geo(src.get("geo")),
    )


def _source(record: Mapping[str, Any]) -> Source | None:
    src = record.get("source")
    if not src:
        return None
    return Source(
        ip=src.get("ip"),
        ip_prefix=src.get("ip_prefix"),
        geo=dict(src["geo"]) if src.get("geo") else None,
    )


def _correlation(record: Mapping[str, Any]) -> Correlation | None:
    c = record.get("correlation")
    if not c:
        return None
    return Correlation(
        request_id=c.get("request_id"),
        trace_id=c.get("trace_id"),
        flow_id=c.get("flow_id"),
        session_ref=c.get("session_ref"),
    )


class SecurityMonitor:
    def __init__(
        self,
        trail: AuditTrail,
        profiles: ProfileStore,
        *,
        config: DetectorConfig | None = None,
        threat: ThreatIntel | None = None,
        on_finding: Callable[[Finding], None] | None = None,
        queue_size: int = QUEUE_SIZE,
        windows: FailureWindows | None = None,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.trail = trail
        self._queue_size = queue_size
        self.profiles = profiles
        self.config = config or DetectorConfig()
        self.threat = threat
        self.on_finding = on_finding
        # Recent failures indexed by person and by network, so that a login costs work
        # in proportion to its own keys' history, not to everything in the window; in
        # the process, or shared by every instance through Redis.
        self.windows: FailureWindows = windows or MemoryWindows()
        self._span = max(self.config.brute_force_window_s, self.config.stuffing_window_s)
        self._queue: asyncio.Queue[dict[str, Any]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._previous: Callable[[list[SealedEvent]], None] | None = None
        self.counts: dict[str, int] = {
            "observed": 0,
            "findings": 0,
            "errors": 0,
            "dropped": 0,
            "service_faults": 0,
        }

    # --- lifecycle

    async def start(self) -> None:
        """Listen to the trail's commits (call from the service's event loop)."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(maxsize=self._queue_size)
        self._previous = self.trail.on_commit
        self.trail.on_commit = self._on_commit
        self._task = asyncio.create_task(self._run(), name="security-monitor")

    async def stop(self) -> None:
        if self._task is None:
            self.windows.close()  # never started (a start that failed before it)
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.drain(), 10)
        self.trail.on_commit = self._previous
        if self._queue is not None:
            self.counts["dropped"] += self._queue.qsize()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        self.windows.close()

    async def drain(self) -> None:
        """Wait until every event committed so far has been examined."""
        if self._queue is not None:
            await self._queue.join()

    def _on_commit(self, sealed: list[SealedEvent]) -> None:
        # Runs on the writer's thread: only pick and hand over, never block.
        if self._previous is not None:
            self._previous(sealed)
        loop, queue = self._loop, self._queue
        if loop is None or queue is None:
            return
        for s in sealed:
            if s.type.startswith("security.") or s.type.startswith("audit."):
                continue
            if s.type == WATCHED or b'"threat":' in s.canonical:
                record = orjson.loads(s.canonical)
                loop.call_soon_threadsafe(self._enqueue, queue, record)

    def _enqueue(self, queue: asyncio.Queue[dict[str, Any]], record: dict[str, Any]) -> None:
        # Fail open, bounded: when detection falls behind, events are skipped and
        # counted rather than held in memory without limit.
        try:
            queue.put_nowait(record)
        except asyncio.QueueFull:
            self.counts["dropped"] += 1

    async def _run(self) -> None:
        queue = self._queue
        if queue is None:
            raise RuntimeError("monitor started without a queue")
        while True:
            record = await queue.get()
            try:
                await self.observe(record)
            except AuditUnavailable:
                self.counts["errors"] += 1
            except Exception:  # noqa: BLE001  (fail open: a detector bug must not stop the service)
                self.counts["errors"] += 1
            finally:
                queue.task_done()

    # --- examining one record

    async def observe(self, record: Mapping[str, Any]) -> list[AuditEvent]:
        """Examine one committed record; emit and return the resulting events."""
        out: list[AuditEvent] = []
        if record.get("threat"):
            out.extend(self._threat_events(record))
        if record.get("type") == WATCHED and record.get("reason") in SERVICE_FAULTS:
            self.counts["service_faults"] += 1
            forged = forged_id_token(record.get("reason"), (record.get("details") or {}).get("idp"))
            if forged is not None and await self._fresh(forged, observation(record).at):
                self.counts["findings"] += 1
                if self.on_finding is not None:
                    self.on_finding(forged)
                out.append(self._anomaly_event(forged, record))
        elif record.get("type") == WATCHED:
            self.counts["observed"] += 1
            obs = observation(record)
            findings = await self._findings(obs)
            for f in findings:
                self.counts["findings"] += 1
                if self.on_finding is not None:
                    self.on_finding(f)
                out.append(self._anomaly_event(f, record))
        for event in out:
            await self.trail.emit(event)
        return out

    async def _findings(self, obs: LoginObservation) -> list[Finding]:
        if obs.success:
            if obs.person is None:
                return []
            profile = await asyncio.to_thread(self.profiles.get, obs.person)
            try:
                found = login_findings(profile, obs, self.config)
            finally:
                # a detector error (counted by the caller) must not lose the history
                await asyncio.to_thread(self.profiles.record_login, obs)
            return found
        horizon = obs.at - self._span
        candidates: list[Finding] = []
        if obs.person is not None:
            mine_p = await self._remember("person", obs.person, obs, horizon)
            candidates += brute_force(mine_p, obs.at, self.config)
        if obs.network is not None:
            mine_n = await self._remember("ip", obs.network, obs, horizon)
            candidates += brute_force(mine_n, obs.at, self.config)
            candidates += credential_stuffing(mine_n, obs.at, self.config)
        # Only findings about this login's own person and network: the anomaly event
        # carries this login's source and actor, so another key's attack must not be
        # raised (or re-raised) here in a bystander's name.
        mine = {("person", obs.person), ("ip", obs.network)}
        return [
            f for f in candidates if (f.key_kind, f.key) in mine and await self._fresh(f, obs.at)
        ]

    async def _remember(
        self, key_kind: KeyKind, key: str, obs: LoginObservation, horizon: float
    ) -> Sequence[LoginObservation]:
        """Add a failure to its key's recent history (the newest within the window,
        enough to cross every threshold) and return that history. The cap follows
        the current thresholds, which the admin API may change at run time."""
        c = self.config
        cap = max(
            KEY_WINDOW_MAX, 4 * max(c.brute_force_failures, c.stuffing_people, c.stuffing_attempts)
        )
        return await self._on_windows(self.windows.remember, key_kind, key, obs, horizon, cap)

    async def _on_windows(self, call: Callable[..., _T], *args: Any) -> _T:
        """``call`` off the event loop when the windows do network I/O (Redis)."""
        if self.windows.blocking:
            return await asyncio.to_thread(call, *args)
        return call(*args)

    def forget(self, pseudonyms: Collection[str]) -> int:
        """Forget the people ``pseudonyms`` (an erasure): their recent failures and the
        findings raised on them. In a network's window each of their failures stays, under
        a stand-in that names nobody, so the network's counts (credential stuffing counts
        distinct people) do not change. Returns how many failures were forgotten."""
        return self.windows.forget(pseudonyms)

    async def _fresh(self, f: Finding, now: float) -> bool:
        """One finding per kind and key per window (an attack is one anomaly, not
        one per failed attempt), across instances when the windows are shared."""
        span = (
            self.config.brute_force_window_s
            if f.kind == "brute_force"
            else self.config.stuffing_window_s
        )
        key = (f.kind, f.key_kind, f.key)
        return await self._on_windows(self.windows.claim, key, now, span, self._span)

    def _anomaly_event(self, f: Finding, record: Mapping[str, Any]) -> AuditEvent:
        person = f.key if f.key_kind == "person" else (record.get("actor") or {}).get("pseudonym")
        actor = Actor(ActorType.USER if person else ActorType.ANONYMOUS, pseudonym=person)
        evidence = json.dumps(dict(f.evidence), sort_keys=True, separators=(",", ":"))
        return events.security_anomaly(
            actor=actor,
            source=_source(record),
            correlation=_correlation(record),
            kind=f.kind,
            key_kind=f.key_kind,
            evidence=evidence[:2048],
            confidence=f.confidence,
        )

    def _threat_events(self, record: Mapping[str, Any]) -> list[AuditEvent]:
        pseudonym = (record.get("actor") or {}).get("pseudonym")
        out = []
        for m in record.get("threat") or []:
            match = ThreatMatch(m["feed"], m["indicator"], m["category"], int(m["confidence"]))
            action = self.threat.action_of(match.feed).value if self.threat else "log"
            out.append(
                events.security_threat_match(
                    actor=Actor(
                        ActorType.USER if pseudonym else ActorType.ANONYMOUS, pseudonym=pseudonym
                    ),
                    source=_source(record),
                    correlation=_correlation(record),
                    threat=[match],
                    feed=match.feed,
                    action=action,
                    event_type=str(record.get("type")),
                )
            )
        return out
