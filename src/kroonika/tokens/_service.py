"""The token service: minting, validation, introspection, revocation, extension,
bulk operations and list management, every one of them audited.

Audit policy (fail closed): an operation that creates something (a token, a list
entry) is undone when its audit record cannot be written, and the caller gets
:class:`~kroonika.audit.AuditUnavailable` (the web layer answers 503); a token
that was minted but could not be audited is revoked before anyone sees it.
Events carry token metadata only: jti, kid, alg, type, audience, iat/exp, claim
*names*, the client and a keyed fingerprint of the token, never the token.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import jwt
import orjson

from kroonika.audit import (
    Actor,
    ActorType,
    AuditEvent,
    AuditUnavailable,
    Correlation,
    Fingerprinter,
    Outcome,
    SealedEvent,
    Source,
    Target,
    events,
)
from kroonika.audit._model import DetailValue
from kroonika.tokens._clients import CLAIM_NAME, Client
from kroonika.tokens._clock import Clock
from kroonika.tokens._errors import (
    BatchTooLarge,
    ExtendConflict,
    InvalidScope,
    KeyRingError,
    MintRefused,
    NotPermitted,
    TokenRejected,
)
from kroonika.tokens._keys import SigningKeyRing
from kroonika.tokens._lists import AccessLists, Entry, Kind, ListName
from kroonika.tokens._lists import Subject as ListSubject
from kroonika.tokens._store import Page, TokenRecord, TokenStore
from kroonika.tokens._verify import Reason, Verdict, VerifiedToken, check_claims, verify_signature
from kroonika.tokens.rfc6749 import is_scope

log = logging.getLogger("kroonika.tokens")

RESERVED_CLAIMS = frozenset(
    {
        "iss",
        "sub",
        "aud",
        "iat",
        "nbf",
        "exp",
        "jti",
        "sid",
        "azp",
        "client_id",
        "cnf",
        "act",
        "amr",
        "acr",
        "given_name",
        "family_name",
        "token_type",
        # RFC 7662 response members that introspection fills in itself: a custom
        # ``username`` would otherwise be reported as the token's user.
        "active",
        "username",
    }
)
SESSION: Final = "session"
#: RFC 8693 section 4.2 and RFC 9068 section 2.2.3: the claim is RFC 6749 section 3.3's
SCOPE: Final = "scope"
_SCOPE_FORM = "scope must be scope tokens (visible ASCII but quote and backslash) joined by spaces"
CUSTOM: Final = "custom"
BEARER: Final = "Bearer"
#: used with ``fullmatch``: ``^...$`` with ``match`` let a final line break through
_SUBJECT = re.compile(r"[\x21-\x7e]{1,200}")
# Every jti we mint is secrets.token_urlsafe(16); a bulk item's jti must at least look so.
_JTI = re.compile(r"[A-Za-z0-9_-]{1,64}")
# How far revocation follows a chain of extensions (A replaced by B replaced by C ...).
_MAX_CHAIN = 1000


def _shown(value: object, limit: int = 64) -> str:
    """Caller-supplied text for an error message: short, every unusual character escaped."""
    text = value if isinstance(value, str) else repr(value)
    return ascii(text[:limit])[1:-1] + ("..." if len(text) > limit else "")


class ClientLookup(Protocol):
    """Where the service finds the client that minted a token (a ClientRegistry)."""

    def get(self, client_id: str) -> Client | None: ...


class Emitter(Protocol):
    """Where events go (an :class:`~kroonika.audit.AuditTrail`)."""

    async def emit(self, event: AuditEvent) -> SealedEvent | None: ...

    async def emit_many(self, batch: Iterable[AuditEvent]) -> list[SealedEvent]: ...


@dataclass(frozen=True, slots=True)
class Policy:
    issuer: str
    ttl_min_s: int = 60
    ttl_max_s: int = 3600
    ttl_default_s: int = 900
    session_ttl_s: int = 900
    session_audience: tuple[str, ...] = ("kroonika",)
    leeway_s: int = 30
    bulk_max: int = 100
    max_custom_claims: int = 20
    max_claim_bytes: int = 1024
    max_claims_bytes: int = 4096
    # 0: every successful validation/introspection is its own event; N > 0: one
    # summary per client and type every N seconds. Failures are always individual.
    summary_window_s: int = 0


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Where a request came from (for the audit event and IP lists)."""

    ip: str | None = None
    port: int | None = None
    user_agent: str | None = None
    request_id: str | None = None
    trace_id: str | None = None

    def source(self) -> Source | None:
        if self.ip is None and self.user_agent is None:
            return None
        return Source(ip=self.ip, port=self.port, user_agent=self.user_agent)

    def correlation(self, session_ref: str | None = None) -> Correlation | None:
        if self.request_id is None and self.trace_id is None and session_ref is None:
            return None
        return Correlation(
            request_id=self.request_id, trace_id=self.trace_id, session_ref=session_ref
        )


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str = field(repr=False)
    record: TokenRecord


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One bulk item's result, keyed by jti (or by position when there is none)."""

    index: int
    status: str
    jti: str | None = None
    reason: str | None = None
    token: str | None = field(default=None, repr=False)
    expires_at: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "status": self.status}
        for name in ("jti", "reason", "token", "expires_at"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


@dataclass(frozen=True, slots=True)
class MintRequest:
    subject: str | None = None
    audience: tuple[str, ...] = ()
    ttl_s: int | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)


def parse_mint_request(item: Any) -> MintRequest:
    """A mint request from its JSON form (``subject``, ``audience``, ``ttl_s``,
    ``claims``); :class:`MintRefused` names what is wrong, so the refusal is audited like
    any other."""
    if not isinstance(item, Mapping):
        raise MintRefused("invalid_request", "a mint request must be an object")
    subject = item.get("subject")
    if subject is not None and not isinstance(subject, str):
        raise MintRefused("invalid_subject", "subject must be a string")
    aud = item.get("audience")
    if aud is None:
        audience: tuple[str, ...] = ()
    elif isinstance(aud, str):
        audience = (aud,)
    elif isinstance(aud, list) and all(isinstance(a, str) for a in aud):
        audience = tuple(aud)
    else:
        raise MintRefused("invalid_audience", "audience must be a string or a list of strings")
    ttl = item.get("ttl_s")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int)):
        raise MintRefused("invalid_ttl", "ttl must be an integer number of seconds")
    claims = item.get("claims")
    if claims is None:
        claims = {}
    elif not isinstance(claims, Mapping):
        raise MintRefused("invalid_claims", "claims must be an object")
    return MintRequest(subject=subject, audience=audience, ttl_s=ttl, claims=claims)


@dataclass
class _Check:
    verdict: Verdict
    record: TokenRecord | None = None
    expired_now: bool = False


class _Summary:
    """Counts successful validations/introspections per (type, client) per window."""

    def __init__(self, window_s: int, clock: Clock) -> None:
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str | None], int] = {}
        self._started = clock.now()

    def add(self, event_type: str, client: str | None) -> list[AuditEvent]:
        with self._lock:
            key = (event_type, client)
            self._counts[key] = self._counts.get(key, 0) + 1
        if self._clock.now() - self._started >= self.window_s:
            return self.drain()
        return []

    def drain(self) -> list[AuditEvent]:
        with self._lock:
            counts, self._counts = self._counts, {}
            window = max(1, self._clock.now() - self._started)
            self._started = self._clock.now()
        out: list[AuditEvent] = []
        for (etype, client), n in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
            make = events.token_validate if etype == "token.validate" else events.token_introspect
            actor = Actor(ActorType.CLIENT, client_id=client) if client else Actor()
            details: dict[str, DetailValue] = {"count": n, "window_s": window, "verdict": "valid"}
            if client:
                details["client"] = client
            if etype == "token.introspect":
                details["active"] = True
            out.append(make(actor=actor, **_any(details)))
        return out


def _any(details: Mapping[str, DetailValue]) -> dict[str, Any]:
    """Details for an event constructor's ``**details`` (typed loosely for mypy)."""
    return dict(details)


def _client_actor(client: Client | None) -> Actor:
    if client is None:
        return Actor()
    return Actor(ActorType.CLIENT, client_id=client.client_id)


class TokenService:
    """The Python API of the token subsystem (the web routers and the admin API call it)."""

    def __init__(
        self,
        *,
        keys: SigningKeyRing,
        store: TokenStore,
        lists: AccessLists,
        trail: Emitter,
        fingerprinter: Fingerprinter,
        clock: Clock,
        policy: Policy,
        clients: ClientLookup | None = None,
    ) -> None:
        if not policy.ttl_min_s <= policy.ttl_default_s <= policy.ttl_max_s:
            raise ValueError("token TTL policy needs min <= default <= max")
        self.keys = keys
        self.store = store
        self.lists = lists
        self.trail = trail
        self.fingerprinter = fingerprinter
        self.clock = clock
        self.policy = policy
        self.clients = clients
        self._summary = (
            _Summary(policy.summary_window_s, clock) if policy.summary_window_s else None
        )

    # --- helpers ------------------------------------------------------------------------

    def _sref(self, session_ref: str | None) -> str | None:
        """A session as events name it: the keyed fingerprint of its reference."""
        return (
            None if session_ref is None else self.fingerprinter.fingerprint("session", session_ref)
        )

    def _who(self, actor: Actor) -> str:
        """Who acted, for the token table: never a clear personal code."""
        if actor.client_id:
            return f"client:{actor.client_id}"
        if actor.subject:
            return f"{actor.type.value}:{self.fingerprinter.pseudonym(actor.subject)}"
        if actor.pseudonym:
            return f"{actor.type.value}:{actor.pseudonym}"
        return actor.type.value

    def _meta(
        self,
        token: str | None,
        verified: VerifiedToken | None,
        record: TokenRecord | None,
        *,
        kid: str | None = None,
        alg: str | None = None,
    ) -> dict[str, DetailValue]:
        d: dict[str, DetailValue] = {}
        if token:
            d["fingerprint"] = self.fingerprinter.fingerprint("token", token)
        if verified is not None:
            d.update(
                jti=verified.jti,
                kid=verified.kid,
                alg=verified.alg,
                audience=list(verified.aud),
                issued_at=verified.iat,
                expires_at=verified.exp,
                claim_names=verified.claim_names,
            )
        else:
            if kid:
                d["kid"] = kid
            if alg:
                d["alg"] = alg
        if record is not None:
            d.setdefault("jti", record.jti)
            d.setdefault("kid", record.kid)
            d.setdefault("alg", record.alg)
            d.setdefault("audience", list(record.audience))
            d.setdefault("issued_at", record.iat)
            d.setdefault("expires_at", record.exp)
            d.setdefault("claim_names", list(record.claim_names))
            d["token_type"] = record.token_type
            if record.client_id:
                d["client"] = record.client_id
        return d

    async def _emit(self, event: AuditEvent) -> None:
        await self.trail.emit(event)

    def _now(self) -> int:
        return self.clock.now()

    def _sign(self, payload: dict[str, Any], typ: str) -> tuple[str, str, str]:
        try:
            key = self.keys.current()
        except KeyRingError as exc:
            # the operator's hint (which command, which kid) goes here; the client gets
            # a generic 503 (rfc6749.error_response)
            log.error("cannot sign a token: %s", exc)
            raise
        token = jwt.encode(
            payload, key.private, algorithm=key.alg, headers={"kid": key.kid, "typ": typ}
        )
        return token, key.kid, key.alg

    # --- minting --------------------------------------------------------------------------

    def _ttl(self, requested: int | None, cap: int) -> int:
        maximum = min(self.policy.ttl_max_s, cap)
        ttl = requested if requested is not None else min(self.policy.ttl_default_s, maximum)
        if isinstance(ttl, bool) or not isinstance(ttl, int):
            raise MintRefused("invalid_ttl", "ttl must be an integer number of seconds")
        if ttl < self.policy.ttl_min_s:
            raise MintRefused("ttl_too_short", f"minimum is {self.policy.ttl_min_s}s")
        if ttl > maximum:
            raise MintRefused("ttl_too_long", f"maximum is {maximum}s")
        return ttl

    def _check_claims(self, client: Client, claims: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(claims, Mapping):
            raise MintRefused("invalid_claims", "claims must be an object")
        if len(claims) > self.policy.max_custom_claims:
            raise MintRefused("too_many_claims", f"at most {self.policy.max_custom_claims}")
        total = 0
        out: dict[str, Any] = {}
        for name, value in claims.items():
            if not isinstance(name, str) or not CLAIM_NAME.fullmatch(name):
                raise MintRefused("invalid_claim_name")
            if name in RESERVED_CLAIMS:
                raise MintRefused("reserved_claim", name)
            if name not in client.allowed_claims:
                raise MintRefused("claim_not_allowed", name)
            if name == SCOPE and not is_scope(value):
                raise MintRefused("invalid_scope", _SCOPE_FORM)
            try:
                size = len(orjson.dumps(value))
            except TypeError as exc:
                raise MintRefused("invalid_claim_value", name) from exc
            if size > self.policy.max_claim_bytes:
                raise MintRefused("claim_too_large", name)
            total += size
            out[name] = value
        if total > self.policy.max_claims_bytes:
            raise MintRefused("claims_too_large")
        return out

    def _prepare_client_token(
        self, client: Client, req: MintRequest, ctx: RequestContext
    ) -> tuple[str, TokenRecord]:
        if client.disabled:
            raise MintRefused("client_disabled")
        subject = req.subject
        if subject is not None and (
            not isinstance(subject, str) or not _SUBJECT.fullmatch(subject)
        ):
            raise MintRefused("invalid_subject")
        audience = tuple(req.audience) or client.allowed_audiences[:1]
        if not audience:
            raise MintRefused("audience_required")
        for aud in audience:
            if aud not in client.allowed_audiences:
                raise MintRefused("audience_not_allowed", _shown(aud))
        ttl = self._ttl(req.ttl_s, client.max_ttl_s)
        custom = self._check_claims(client, req.claims)
        jti = secrets.token_urlsafe(16)
        decision = self.lists.check(
            ListSubject(jti=None, subject=subject, client=client.client_id, ip=ctx.ip)
        )
        if not decision.allowed:
            raise MintRefused(decision.reason or "denylisted")
        now = self._now()
        payload: dict[str, Any] = {
            **custom,
            "iss": self.policy.issuer,
            "aud": list(audience) if len(audience) > 1 else audience[0],
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": jti,
            "client_id": client.client_id,
        }
        if subject is not None:
            payload["sub"] = subject
        token, kid, alg = self._sign(payload, "JWT")
        record = TokenRecord(
            jti,
            kid,
            alg,
            CUSTOM,
            subject,
            client.client_id,
            audience,
            None,
            tuple(sorted(payload)),
            now,
            now + ttl,
            "active",
            1,
        )
        return token, record

    def _refused_event(
        self, actor: Actor, reason: str, ctx: RequestContext, **details: DetailValue
    ) -> AuditEvent:
        return events.token_issue(
            outcome=Outcome.FAILURE,
            reason=reason,
            actor=actor,
            source=ctx.source(),
            correlation=ctx.correlation(),
            **_any(details),
        )

    def _issued_event(
        self, actor: Actor, token: str, record: TokenRecord, ctx: RequestContext
    ) -> AuditEvent:
        return events.token_issue(
            actor=actor,
            source=ctx.source(),
            target=Target("token", record.jti),
            correlation=ctx.correlation(self._sref(record.session_ref)),
            ttl_s=record.exp - record.iat,
            subject_type="person" if record.token_type == SESSION else "client_subject",
            **_any(self._meta(token, None, record)),
        )

    async def _store_and_audit(
        self, issued: list[tuple[str, TokenRecord]], evts: list[AuditEvent]
    ) -> None:
        records = [r for _, r in issued]
        await asyncio.to_thread(self.store.insert, records)
        try:
            await self.trail.emit_many(evts)
        except AuditUnavailable:
            await asyncio.to_thread(
                self.store.revoke,
                [r.jti for r in records],
                now=self._now(),
                by="system",
                why="audit_unavailable",
            )
            raise

    async def issue(
        self, client: Client, request: MintRequest, ctx: RequestContext | None = None
    ) -> IssuedToken:
        """``POST /tokens``: a custom JWT for an authenticated client."""
        ctx = ctx or RequestContext()
        actor = _client_actor(client)
        try:
            token, record = await asyncio.to_thread(
                self._prepare_client_token, client, request, ctx
            )
        except MintRefused as exc:
            await self._emit(
                self._refused_event(
                    actor, exc.reason, ctx, client=client.client_id, token_type=CUSTOM
                )
            )
            exc.audited = True
            raise
        await self._store_and_audit(
            [(token, record)], [self._issued_event(actor, token, record, ctx)]
        )
        return IssuedToken(token, record)

    async def issue_session_token(
        self,
        *,
        session_ref: str,
        subject: str,
        given_name: str | None = None,
        family_name: str | None = None,
        amr: Sequence[str] = (),
        acr: str | None = None,
        ctx: RequestContext | None = None,
        ttl_s: int | None = None,
    ) -> IssuedToken:
        """The session's access token after a TARA login (bound to ``session_ref``)."""
        ctx = ctx or RequestContext()
        actor = Actor(ActorType.USER, subject=subject)
        decision = await asyncio.to_thread(
            self.lists.check, ListSubject(subject=subject, ip=ctx.ip)
        )
        if not decision.allowed:
            reason = decision.reason or "denylisted"
            await self._emit(
                events.token_issue(
                    outcome=Outcome.FAILURE,
                    reason=reason,
                    actor=actor,
                    source=ctx.source(),
                    correlation=ctx.correlation(self._sref(session_ref)),
                    token_type=SESSION,
                )
            )
            refused = MintRefused(reason)
            refused.audited = True
            raise refused
        now = self._now()
        ttl = ttl_s or self.policy.session_ttl_s
        jti = secrets.token_urlsafe(16)
        aud = self.policy.session_audience
        payload: dict[str, Any] = {
            "iss": self.policy.issuer,
            "sub": subject,
            # typ at+jwt claims the RFC 9068 profile, whose section 2.2 requires
            # client_id: the client that asked is Kroonika's own login, named by the
            # issuer (the token record keeps no client, so no registered client that
            # happened to have this id could extend or revoke it as its own)
            "client_id": self.policy.issuer,
            "aud": list(aud) if len(aud) > 1 else aud[0],
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": jti,
            "sid": session_ref,
            "amr": list(amr),
        }
        if given_name is not None:
            payload["given_name"] = given_name
        if family_name is not None:
            payload["family_name"] = family_name
        if acr is not None:
            payload["acr"] = acr
        token, kid, alg = await asyncio.to_thread(self._sign, payload, "at+jwt")
        record = TokenRecord(
            jti,
            kid,
            alg,
            SESSION,
            subject,
            None,
            aud,
            session_ref,
            tuple(sorted(payload)),
            now,
            now + ttl,
            "active",
            1,
        )
        await self._store_and_audit(
            [(token, record)], [self._issued_event(actor, token, record, ctx)]
        )
        return IssuedToken(token, record)

    # --- checking -------------------------------------------------------------------------

    def _check(self, token: str, audience: str | None, ip: str | None) -> _Check:
        now = self._now()
        verdict = verify_signature(token, self.keys)
        vt = verdict.token
        if vt is None:
            return _Check(verdict)
        reason = check_claims(
            vt, now=now, leeway=self.policy.leeway_s, issuer=self.policy.issuer, audience=audience
        )
        record = self.store.get(vt.jti) if reason is not Reason.WRONG_ISSUER else None
        if reason is Reason.EXPIRED:
            expired_now = record is not None and self.store.mark_expired(vt.jti, now=now)
            return _Check(verdict.with_reason(reason), record, expired_now)
        if reason is not None:
            return _Check(verdict.with_reason(reason), record)
        if record is None:
            return _Check(verdict.with_reason(Reason.UNKNOWN_TOKEN))
        if record.state == "expired":
            return _Check(verdict.with_reason(Reason.EXPIRED), record)
        if record.state != "active":
            return _Check(verdict.with_reason(Reason.REVOKED), record)
        decision = self.lists.check(
            ListSubject(jti=vt.jti, subject=vt.sub, client=record.client_id, ip=ip)
        )
        if not decision.allowed:
            return _Check(
                verdict.with_reason(Reason(decision.reason or Reason.NOT_ALLOWLISTED)), record
            )
        return _Check(verdict, record)

    def _check_event(
        self,
        event_type: str,
        token: str,
        check: _Check,
        caller: Client | None,
        ctx: RequestContext,
        **extra: DetailValue,
    ) -> AuditEvent:
        v = check.verdict
        make = events.token_validate if event_type == "token.validate" else events.token_introspect
        details = self._meta(token, v.token, check.record, kid=v.kid, alg=v.alg)
        details["verdict"] = "valid" if v.valid else str(v.reason)
        details.update(extra)
        if caller is not None:
            details.setdefault("client", caller.client_id)
        foreign = self._foreign(caller, check)
        return make(
            outcome=Outcome.SUCCESS
            if v.valid and extra.get("active", True) and not foreign
            else Outcome.FAILURE,
            reason=Reason.NOT_FOR_CALLER.value if foreign else None if v.valid else str(v.reason),
            actor=_client_actor(caller),
            source=ctx.source(),
            target=Target("token", v.token.jti) if v.token else None,
            correlation=ctx.correlation(),
            **_any(details),
        )

    def _expire_event(self, token: str, check: _Check, observed_by: str) -> AuditEvent:
        return events.token_expire(
            actor=Actor(ActorType.SYSTEM),
            target=Target("token", check.record.jti if check.record else None),
            observed_by=observed_by,
            **_any(self._meta(token, check.verdict.token, check.record)),
        )

    async def _audit_checks(
        self, items: list[tuple[str, _Check, AuditEvent]], caller: Client | None
    ) -> None:
        out: list[AuditEvent] = []
        for token, check, event in items:
            if check.expired_now:
                out.append(self._expire_event(token, check, "validation"))
            if self._summary is not None and event.outcome is Outcome.SUCCESS:
                out.extend(self._summary.add(event.type, caller.client_id if caller else None))
            else:
                out.append(event)
        if out:
            await self.trail.emit_many(out)

    async def validate(
        self,
        token: str,
        *,
        audience: str | None = None,
        caller: Client | None = None,
        ctx: RequestContext | None = None,
    ) -> Verdict:
        """``POST /tokens/validate``: the detailed verdict."""
        ctx = ctx or RequestContext()
        check = await asyncio.to_thread(self._check, token, audience, ctx.ip)
        await self._audit_checks(
            [(token, check, self._check_event("token.validate", token, check, caller, ctx))],
            caller,
        )
        return self._answer(caller, check)

    def _foreign(self, caller: Client | None, check: _Check) -> bool:
        """A token of ours in the store that is neither from nor for ``caller``: its
        state (valid, revoked, deny-listed...) is not the caller's to learn."""
        return (
            caller is not None
            and check.record is not None
            and not self._for_caller(caller, check.record)
        )

    def _answer(self, caller: Client | None, check: _Check) -> Verdict:
        """The verdict the caller may see (decision 0006)."""
        return Verdict(Reason.NOT_FOR_CALLER) if self._foreign(caller, check) else check.verdict

    def _for_caller(self, caller: Client, record: TokenRecord | None) -> bool:
        if record is None:
            return False
        if record.client_id == caller.client_id or caller.client_id in record.audience:
            return True
        return bool(set(caller.allowed_audiences) & set(record.audience))

    async def introspect(
        self, token: str, *, caller: Client, ctx: RequestContext | None = None
    ) -> dict[str, Any]:
        """RFC 7662 section 2.2: the response for an authenticated caller.
        Anything invalid is ``{"active": false}``; the reason goes only to the trail."""
        ctx = ctx or RequestContext()
        check = await asyncio.to_thread(self._check, token, None, ctx.ip)
        active = check.verdict.valid and self._for_caller(caller, check.record)
        extra: dict[str, DetailValue] = {"active": active}
        event = self._check_event("token.introspect", token, check, caller, ctx, **extra)
        await self._audit_checks([(token, check, event)], caller)
        vt = check.verdict.token
        if not active or vt is None or check.record is None:
            return {"active": False}
        response: dict[str, Any] = dict(vt.claims)
        if SCOPE in response and not is_scope(response[SCOPE]):
            # a token minted before scopes were checked: RFC 7662 2.2's scope is a
            # string of scope tokens, and a resource server must not read a grant
            # into anything else, so it is left out (the token is still active)
            del response[SCOPE]
        response.update(
            active=True,
            token_type=BEARER,
            jti=vt.jti,
            iat=vt.iat,
            exp=vt.exp,
            iss=vt.iss,
        )
        if check.record.client_id:
            response["client_id"] = check.record.client_id
        if vt.sub is not None:
            response["username"] = vt.sub
        return response

    # --- revocation -----------------------------------------------------------------------

    def _revoke_event(
        self,
        *,
        outcome: Outcome,
        reason: str | None,
        actor: Actor,
        ctx: RequestContext,
        token: str | None,
        verified: VerifiedToken | None,
        record: TokenRecord | None,
        count: int,
        revoked_by: str,
        why: str,
        kid: str | None = None,
        alg: str | None = None,
    ) -> AuditEvent:
        return events.token_revoke(
            outcome=outcome,
            reason=reason,
            actor=actor,
            source=ctx.source(),
            target=Target("token", record.jti if record else None) if record else None,
            correlation=ctx.correlation(self._sref(record.session_ref) if record else None),
            count=count,
            revoked_by=revoked_by,
            why=why,
            **_any(self._meta(token, verified, record, kid=kid, alg=alg)),
        )

    def _revoke_in(
        self, conn: Any, jtis: Sequence[str], *, now: int, by: str, why: str
    ) -> tuple[set[str], dict[str, list[str]]]:
        """Revoke ``jtis`` in ``conn``'s transaction. A token that is no longer active
        because an extension replaced it takes its replacement down with it (whoever
        revokes the original means the access it gave, not one copy of it). Returns the
        jtis that changed and, per requested jti, the replacements revoked for it."""
        changed = set(self.store.revoke(jtis, now=now, by=by, why=why, conn=conn))
        cascaded: dict[str, list[str]] = {}
        for jti in dict.fromkeys(jtis):
            if jti in changed:
                continue
            successors = self.store.revoke_successors(
                jti, now=now, by=by, why=why, conn=conn, limit=_MAX_CHAIN
            )
            if successors:
                cascaded[jti] = successors
        return changed, cascaded

    def _revoke_all(
        self, jtis: Sequence[str], *, by: str, why: str
    ) -> tuple[set[str], dict[str, list[str]], dict[str, TokenRecord]]:
        with self.store.engine.begin() as conn:
            changed, cascaded = self._revoke_in(conn, jtis, now=self._now(), by=by, why=why)
        records = self.store.get_many(j for js in cascaded.values() for j in js)
        return changed, cascaded, records

    def _successor_events(
        self,
        origin: str,
        successors: Sequence[str],
        records: Mapping[str, TokenRecord],
        *,
        actor: Actor,
        ctx: RequestContext,
        revoked_by: str,
        why: str,
    ) -> list[AuditEvent]:
        """One ``token.revoke`` per replacement revoked with the token ``origin``."""
        return [
            self._revoke_event(
                outcome=Outcome.SUCCESS,
                reason=None,
                actor=actor,
                ctx=ctx,
                token=None,
                verified=None,
                record=records.get(jti),
                count=1,
                revoked_by=revoked_by,
                why=f"{why} (extension of revoked token {origin})",
            )
            for jti in successors
        ]

    def _owned_record(
        self, token: str, caller: Client
    ) -> tuple[Verdict, TokenRecord | None, str | None]:
        """Signature first: a forged token never reaches the store. Returns the
        verdict, the record, and a refusal reason (``None`` when the caller may revoke)."""
        verdict = verify_signature(token, self.keys)
        vt = verdict.token
        if vt is None:
            return verdict, None, str(verdict.reason)
        if vt.iss != self.policy.issuer:
            return verdict, None, str(Reason.WRONG_ISSUER)
        record = self.store.get(vt.jti)
        if record is None:
            return verdict, None, str(Reason.UNKNOWN_TOKEN)
        if not (record.client_id == caller.client_id or caller.client_id in record.audience):
            return verdict, record, "not_owner"
        return verdict, record, None

    async def revoke(
        self,
        token: str,
        *,
        caller: Client,
        why: str = "client_request",
        ctx: RequestContext | None = None,
    ) -> int:
        """RFC 7009 revocation by a client. Returns how many tokens changed state (0 or 1).
        Raises :class:`NotPermitted` when the token was not issued to or for the caller."""
        ctx = ctx or RequestContext()
        actor = _client_actor(caller)
        verdict, record, refusal = await asyncio.to_thread(self._owned_record, token, caller)
        common: dict[str, Any] = {
            "actor": actor,
            "ctx": ctx,
            "token": token,
            "verified": verdict.token,
            "revoked_by": f"client:{caller.client_id}",
            "why": why,
            "kid": verdict.kid,
            "alg": verdict.alg,
        }
        if refusal is not None:
            await self._emit(
                self._revoke_event(
                    outcome=Outcome.FAILURE, reason=refusal, record=record, count=0, **common
                )
            )
            if refusal == "not_owner":
                refused = NotPermitted("the token was not issued to or for this client")
                refused.audited = True
                raise refused
            return 0
        if record is None or verdict.token is None:  # for mypy: implied by no refusal
            return 0
        if verdict.token.exp <= self._now() - self.policy.leeway_s:
            # Expired (as validation sees it, leeway included): nothing left to revoke.
            # Revoking it would record a revocation that ended no access, and make its
            # record say "revoked" where it expired. RFC 7009 2.2: 200 all the same.
            await self._emit(
                self._revoke_event(
                    outcome=Outcome.SUCCESS, reason="not_active", record=record, count=0, **common
                )
            )
            return 0
        by = f"client:{caller.client_id}"
        changed, cascaded, records = await asyncio.to_thread(
            self._revoke_all, [record.jti], by=by, why=why
        )
        successors = cascaded.get(record.jti, [])
        count = len(changed) + len(successors)
        await self.trail.emit_many(
            [
                self._revoke_event(
                    outcome=Outcome.SUCCESS,
                    reason=None if count else "not_active",
                    record=record,
                    count=count,
                    **common,
                ),
                *self._successor_events(
                    record.jti, successors, records, actor=actor, ctx=ctx, revoked_by=by, why=why
                ),
            ]
        )
        return count

    async def revoke_jti(
        self, jti: str, *, by: Actor, why: str, ctx: RequestContext | None = None
    ) -> int:
        """Administrative revocation by token id (the admin API calls this)."""
        ctx = ctx or RequestContext()
        record = await asyncio.to_thread(self.store.get, jti)
        who = self._who(by)
        if record is None:
            changed: set[str] = set()
            successors: list[str] = []
            records: dict[str, TokenRecord] = {}
        else:
            changed, cascaded, records = await asyncio.to_thread(
                self._revoke_all, [jti], by=who, why=why
            )
            successors = cascaded.get(jti, [])
        count = len(changed) + len(successors)
        reason = "unknown_token" if record is None else None if count else "not_active"
        await self.trail.emit_many(
            [
                self._revoke_event(
                    outcome=Outcome.SUCCESS if record else Outcome.FAILURE,
                    reason=reason,
                    actor=by,
                    ctx=ctx,
                    token=None,
                    verified=None,
                    record=record,
                    count=count,
                    revoked_by=who,
                    why=why,
                ),
                *self._successor_events(
                    jti, successors, records, actor=by, ctx=ctx, revoked_by=who, why=why
                ),
            ]
        )
        return count

    async def revoke_session(
        self,
        session_ref: str,
        *,
        by: Actor,
        why: str,
        ctx: RequestContext | None = None,
        undo_if_unaudited: bool = False,
    ) -> int:
        """Revoke every active token bound to a session (the session ended). A request's
        revocation stays done if its events cannot be recorded (decision 0006); the
        sessions job passes ``undo_if_unaudited``: the tokens are made active again and
        its next run revokes them with their events."""
        return await self._revoke_set(
            by, why, ctx, session_ref=session_ref, undo_if_unaudited=undo_if_unaudited
        )

    async def revoke_subject(
        self,
        subject: str,
        *,
        by: Actor,
        why: str,
        ctx: RequestContext | None = None,
        undo_if_unaudited: bool = False,
    ) -> int:
        """Revoke every active token of a person or client subject; with
        ``undo_if_unaudited`` (an erasure) they are made active again if the trail
        refuses the events, and the caller fails closed."""
        return await self._revoke_set(
            by, why, ctx, subject=subject, undo_if_unaudited=undo_if_unaudited
        )

    async def _revoke_set(
        self,
        by: Actor,
        why: str,
        ctx: RequestContext | None,
        *,
        session_ref: str | None = None,
        subject: str | None = None,
        undo_if_unaudited: bool = False,
    ) -> int:
        ctx = ctx or RequestContext()
        records = await asyncio.to_thread(
            self.store.active_jtis, session_ref=session_ref, subject=subject
        )
        now = self._now()
        changed = await asyncio.to_thread(
            self.store.revoke, [r.jti for r in records], now=now, by=self._who(by), why=why
        )
        done = set(changed)
        evts = [
            self._revoke_event(
                outcome=Outcome.SUCCESS,
                reason=None,
                actor=by,
                ctx=ctx,
                token=None,
                verified=None,
                record=r,
                count=1,
                revoked_by=self._who(by),
                why=why,
            )
            for r in records
            if r.jti in done
        ]
        if not evts:
            evts = [
                events.token_revoke(
                    actor=by,
                    source=ctx.source(),
                    correlation=ctx.correlation(self._sref(session_ref)),
                    count=0,
                    revoked_by=self._who(by),
                    why=why,
                )
            ]
        try:
            await self.trail.emit_many(evts)
        except AuditUnavailable:
            if undo_if_unaudited:
                revoked = [r for r in records if r.jti in done]
                await asyncio.to_thread(
                    self.store.restore_active, revoked, state="revoked", now=now
                )
            raise
        return len(changed)

    # --- extension ------------------------------------------------------------------------

    async def extend(
        self,
        token: str,
        *,
        caller: Client | None,
        ttl_s: int | None = None,
        ctx: RequestContext | None = None,
    ) -> IssuedToken:
        """``POST /tokens/extend``: a replacement with a new expiry; the old token is
        replaced atomically (of two concurrent extensions exactly one succeeds).
        With ``caller=None`` the bearer refreshes its own token (``token.refresh``)."""
        ctx = ctx or RequestContext()
        make = events.token_extend if caller is not None else events.token_refresh
        actor = _client_actor(caller)
        check = await asyncio.to_thread(self._check, token, None, ctx.ip)
        vt, record = check.verdict.token, check.record
        refusal: str | None = None
        if not check.verdict.valid or vt is None or record is None:
            refusal = str(check.verdict.reason or Reason.UNKNOWN_TOKEN)
        elif caller is not None and not (
            record.client_id == caller.client_id or caller.client_id in record.audience
        ):
            refusal = "not_owner"
        elif SCOPE in vt.claims and not is_scope(vt.claims[SCOPE]):
            refusal = "invalid_scope"  # minted before scopes were checked: not signed anew
        new_token = ""
        new_record: TokenRecord | None = None
        if refusal is None and vt is not None and record is not None:
            try:
                if record.token_type == SESSION:
                    ttl = self._ttl(ttl_s, self.policy.session_ttl_s)
                else:
                    cap = await asyncio.to_thread(self._extension_cap, record, caller)
                    ttl = self._ttl(ttl_s, cap)
                now = self._now()
                payload = dict(vt.claims)
                payload.update(iat=now, nbf=now, exp=now + ttl, jti=secrets.token_urlsafe(16))
                new_token, kid, alg = await asyncio.to_thread(self._sign, payload, vt.typ or "JWT")
                new_record = TokenRecord(
                    payload["jti"],
                    kid,
                    alg,
                    record.token_type,
                    record.subject,
                    record.client_id,
                    record.audience,
                    record.session_ref,
                    tuple(sorted(payload)),
                    now,
                    now + ttl,
                    "active",
                    1,
                )
                await asyncio.to_thread(
                    self.store.replace,
                    record,
                    new_record,
                    now=now,
                    by=f"client:{caller.client_id}" if caller else "bearer",
                )
            except MintRefused as exc:
                refusal = exc.reason
            except ExtendConflict as exc:
                refusal = exc.reason
        meta = self._meta(token, vt, record, kid=check.verdict.kid, alg=check.verdict.alg)
        if refusal is not None or new_record is None:
            evts = []
            if check.expired_now:
                evts.append(self._expire_event(token, check, "extension"))
            evts.append(
                make(
                    outcome=Outcome.FAILURE,
                    reason=refusal,
                    actor=actor,
                    source=ctx.source(),
                    target=Target("token", vt.jti) if vt else None,
                    correlation=ctx.correlation(),
                    **_any(meta),
                )
            )
            await self.trail.emit_many(evts)
            error: NotPermitted | ExtendConflict | TokenRejected | InvalidScope
            if refusal == "not_owner":
                error = NotPermitted("the token was not issued to or for this client")
            elif refusal == "invalid_scope":
                error = InvalidScope("the token's scope is no RFC 6749 scope: mint a new token")
            elif refusal == "not_active":
                error = ExtendConflict(refusal)
            else:
                error = TokenRejected(refusal or "invalid")
            error.audited = True
            raise error
        meta["new_jti"] = new_record.jti
        if caller is not None:
            meta["new_expires_at"] = new_record.exp
        try:
            await self._emit(
                make(
                    actor=actor,
                    source=ctx.source(),
                    target=Target("token", new_record.jti),
                    correlation=ctx.correlation(self._sref(new_record.session_ref)),
                    **_any(meta),
                )
            )
        except AuditUnavailable:
            await asyncio.to_thread(
                self.store.revoke,
                [new_record.jti],
                now=self._now(),
                by="system",
                why="audit_unavailable",
            )
            raise
        return IssuedToken(new_token, new_record)

    def _extension_cap(self, record: TokenRecord, caller: Client | None) -> int:
        """The longest lifetime an extension of a client's token may get: the minting
        client's maximum (not only the caller's: an audience client or the bearer may
        not stretch a token past what its issuer may mint), and no extension at all
        once the minting client is disabled or gone. Without a client lookup, the
        lifetime the token was minted with."""
        cap = self.policy.ttl_max_s
        if self.clients is not None and record.client_id:
            issuer = self.clients.get(record.client_id)
            if issuer is None or issuer.disabled:
                raise MintRefused("client_disabled")
            cap = min(cap, issuer.max_ttl_s)
        elif caller is None:
            cap = min(cap, max(record.exp - record.iat, self.policy.ttl_min_s))
        if caller is not None:
            cap = min(cap, caller.max_ttl_s)
        return cap

    # --- listing --------------------------------------------------------------------------

    async def mine(
        self,
        bearer: str,
        *,
        limit: int = 20,
        cursor: str | None = None,
        state: str | None = None,
        token_type: str | None = None,
        client_id: str | None = None,
        issued_after: int | None = None,
        issued_before: int | None = None,
        ctx: RequestContext | None = None,
    ) -> Page:
        """``GET /tokens/mine``: the bearer's own tokens, newest first."""
        ctx = ctx or RequestContext()
        check = await asyncio.to_thread(self._check, bearer, None, ctx.ip)
        vt = check.verdict.token
        if not check.verdict.valid or vt is None or not vt.sub:
            await self._audit_checks(
                [(bearer, check, self._check_event("token.validate", bearer, check, None, ctx))],
                None,
            )
            rejected = TokenRejected(str(check.verdict.reason or "no_subject"))
            rejected.audited = True
            raise rejected
        limit = max(1, min(limit, 100))
        return await asyncio.to_thread(
            self.store.page_for_subject,
            vt.sub,
            limit=limit,
            cursor=cursor,
            state=state,
            token_type=token_type,
            client_id=client_id,
            issued_after=issued_after,
            issued_before=issued_before,
        )

    # --- bulk -----------------------------------------------------------------------------

    def _batch(self, n: int) -> None:
        if n > self.policy.bulk_max:
            raise BatchTooLarge(n, self.policy.bulk_max)

    async def _check_batch(self, n: int, refused: AuditEvent) -> None:
        """:class:`BatchTooLarge` (audited with ``refused``) when ``n`` is over the limit."""
        try:
            self._batch(n)
        except BatchTooLarge as exc:
            refused.outcome = Outcome.FAILURE
            refused.reason = "batch_too_large"
            await self._emit(refused)
            exc.audited = True
            raise

    async def bulk_validate(
        self,
        tokens_: Sequence[str],
        *,
        caller: Client | None,
        audience: str | None = None,
        ctx: RequestContext | None = None,
    ) -> list[ItemResult]:
        ctx = ctx or RequestContext()
        await self._check_batch(
            len(tokens_),
            events.token_validate(
                actor=_client_actor(caller),
                source=ctx.source(),
                correlation=ctx.correlation(),
                **_any({"client": caller.client_id} if caller else {}),
            ),
        )

        def run() -> list[_Check]:
            return [self._check(t, audience, ctx.ip) for t in tokens_]

        checks = await asyncio.to_thread(run)
        await self._audit_checks(
            [
                (t, c, self._check_event("token.validate", t, c, caller, ctx))
                for t, c in zip(tokens_, checks, strict=True)
            ],
            caller,
        )
        answers = [self._answer(caller, c) for c in checks]
        return [
            ItemResult(
                i,
                "valid" if v.valid else "invalid",
                v.token.jti if v.token else None,
                None if v.valid else str(v.reason),
            )
            for i, v in enumerate(answers)
        ]

    async def bulk_revoke(
        self,
        items: Sequence[Any],
        *,
        caller: Client,
        why: str = "client_request",
        ctx: RequestContext | None = None,
    ) -> list[ItemResult]:
        """Each item is ``{"token": ...}`` or ``{"jti": ...}``; the revocations happen in
        one transaction; results say per item what happened, and every item, refused or
        not, has its ``token.revoke`` event."""
        ctx = ctx or RequestContext()
        actor = _client_actor(caller)
        by = f"client:{caller.client_id}"
        await self._check_batch(
            len(items),
            events.token_revoke(
                actor=actor,
                source=ctx.source(),
                correlation=ctx.correlation(),
                count=0,
                revoked_by=by,
                why=why,
                client=caller.client_id,
            ),
        )

        def refused_event(
            reason: str,
            *,
            token: str | None = None,
            verdict: Verdict | None = None,
            record: TokenRecord | None = None,
        ) -> AuditEvent:
            return self._revoke_event(
                outcome=Outcome.FAILURE,
                reason=reason,
                actor=actor,
                ctx=ctx,
                token=token,
                verified=verdict.token if verdict else None,
                record=record,
                count=0,
                revoked_by=by,
                why=why,
                kid=verdict.kid if verdict else None,
                alg=verdict.alg if verdict else None,
            )

        def run() -> tuple[list[ItemResult], list[AuditEvent]]:
            results: list[ItemResult | None] = [None] * len(items)
            plan: list[tuple[int, str | None, Verdict | None, TokenRecord]] = []
            evts: list[AuditEvent] = []
            for i, item in enumerate(items):
                token = item.get("token") if isinstance(item, Mapping) else None
                jti = item.get("jti") if isinstance(item, Mapping) else None
                if isinstance(token, str):
                    verdict, record, refusal = self._owned_record(token, caller)
                    if refusal is not None or record is None:
                        results[i] = ItemResult(
                            i, "refused", verdict.token.jti if verdict.token else None, refusal
                        )
                        evts.append(
                            refused_event(
                                refusal or "unknown_token",
                                token=token,
                                verdict=verdict,
                                record=record,
                            )
                        )
                        continue
                    plan.append((i, token, verdict, record))
                elif isinstance(jti, str) and _JTI.fullmatch(jti):
                    rec = self.store.get(jti)
                    if rec is None or not (
                        rec.client_id == caller.client_id or caller.client_id in rec.audience
                    ):
                        # Unknown and foreign ids answer alike: no probing of other clients' ids.
                        results[i] = ItemResult(i, "refused", jti, "unknown_token")
                        evts.append(
                            refused_event(
                                "unknown_token" if rec is None else "not_owner", record=rec
                            )
                        )
                        continue
                    plan.append((i, None, None, rec))
                else:
                    results[i] = ItemResult(i, "refused", None, "malformed")
                    evts.append(refused_event("malformed"))
            now = self._now()
            with self.store.engine.begin() as conn:
                changed, cascaded = self._revoke_in(
                    conn, [r.jti for _, _, _, r in plan], now=now, by=by, why=why
                )
            successors = self.store.get_many(j for js in cascaded.values() for j in js)
            reported: set[str] = set()
            for i, token, vd, rec in plan:
                first = rec.jti not in reported  # a duplicate item finds it already done
                reported.add(rec.jti)
                mine = cascaded.get(rec.jti, []) if first else []
                count = (int(rec.jti in changed) if first else 0) + len(mine)
                results[i] = ItemResult(i, "revoked" if count else "not_active", rec.jti)
                evts.append(
                    self._revoke_event(
                        outcome=Outcome.SUCCESS,
                        reason=None if count else "not_active",
                        actor=actor,
                        ctx=ctx,
                        token=token,
                        verified=vd.token if vd else None,
                        record=rec,
                        count=count,
                        revoked_by=by,
                        why=why,
                    )
                )
                evts.extend(
                    self._successor_events(
                        rec.jti, mine, successors, actor=actor, ctx=ctx, revoked_by=by, why=why
                    )
                )
            return [r for r in results if r is not None], evts

        results, evts = await asyncio.to_thread(run)
        if evts:
            await self.trail.emit_many(evts)
        return results

    async def bulk_issue(
        self,
        client: Client,
        requests: Sequence[MintRequest | Any],
        *,
        ctx: RequestContext | None = None,
    ) -> list[ItemResult]:
        """Mint several tokens; the issued ones are stored in one transaction. An item
        may be a :class:`MintRequest` or its JSON form (:func:`parse_mint_request`); a
        malformed one is refused on its own, like any other refusal."""
        ctx = ctx or RequestContext()
        actor = _client_actor(client)
        await self._check_batch(
            len(requests),
            self._refused_event(
                actor, "batch_too_large", ctx, client=client.client_id, token_type=CUSTOM
            ),
        )

        def run() -> tuple[list[ItemResult], list[tuple[str, TokenRecord]], list[AuditEvent]]:
            results: list[ItemResult] = []
            issued: list[tuple[str, TokenRecord]] = []
            evts: list[AuditEvent] = []
            for i, item in enumerate(requests):
                try:
                    req = item if isinstance(item, MintRequest) else parse_mint_request(item)
                    token, record = self._prepare_client_token(client, req, ctx)
                except MintRefused as exc:
                    results.append(ItemResult(i, "refused", None, exc.reason))
                    evts.append(
                        self._refused_event(
                            actor, exc.reason, ctx, client=client.client_id, token_type=CUSTOM
                        )
                    )
                    continue
                issued.append((token, record))
                results.append(ItemResult(i, "issued", record.jti, None, token, record.exp))
                evts.append(self._issued_event(actor, token, record, ctx))
            return results, issued, evts

        results, issued, evts = await asyncio.to_thread(run)
        if issued:
            await self._store_and_audit(issued, evts)
        elif evts:
            await self.trail.emit_many(evts)
        return results

    # --- cleanup --------------------------------------------------------------------------

    async def expire_overdue(self, *, limit: int = 1000) -> int:
        """Cleanup job: mark overdue tokens expired, one ``token.expire`` each. A batch whose
        events cannot be recorded is made active again (past its ``exp``, no verifier
        accepts it either way) and :class:`AuditUnavailable` raised: the next run expires
        it with its events."""
        now = self._now()
        done = await asyncio.to_thread(self.store.expire_overdue, now=now, limit=limit)
        if done:
            try:
                await self.trail.emit_many(
                    [
                        events.token_expire(
                            actor=Actor(ActorType.SYSTEM),
                            target=Target("token", r.jti),
                            observed_by="cleanup",
                            **_any(self._meta(None, None, r)),
                        )
                        for r in done
                    ]
                )
            except AuditUnavailable:
                await asyncio.to_thread(self.store.restore_active, done, state="expired", now=now)
                raise
        return len(done)

    async def flush_summary(self) -> int:
        """Write the pending per-client success summary now (shutdown, tests)."""
        if self._summary is None:
            return 0
        evts = self._summary.drain()
        if evts:
            await self.trail.emit_many(evts)
        return len(evts)

    # --- lists ----------------------------------------------------------------------------

    def _value_ref(self, kind: Kind, value: str) -> str:
        if kind in ("subject", "ip"):
            return self.fingerprinter.fingerprint(kind, value)
        return value

    async def list_add(
        self,
        lst: ListName,
        kind: Kind,
        value: str,
        *,
        reason: str,
        created_by: str,
        actor: Actor,
        expires_at: int | None = None,
        ctx: RequestContext | None = None,
    ) -> Entry:
        """Add an allow/deny entry (audited ``access_list.add``; undone if unaudited)."""
        ctx = ctx or RequestContext()
        entry = await asyncio.to_thread(
            self.lists.add,
            lst,
            kind,
            value,
            reason=reason,
            created_by=created_by,
            expires_at=expires_at,
        )
        try:
            await self._emit(
                events.access_list_add(
                    actor=actor,
                    source=ctx.source(),
                    target=Target("access_list_entry", entry.id),
                    correlation=ctx.correlation(),
                    list=lst,
                    kind=kind,
                    value_ref=self._value_ref(kind, entry.value),
                    why=entry.reason,
                    expires_at=expires_at,
                )
            )
        except AuditUnavailable:
            await asyncio.to_thread(self.lists.remove, entry.id)
            raise
        return entry

    async def list_remove(
        self,
        entry_id: str,
        *,
        why: str,
        actor: Actor,
        ctx: RequestContext | None = None,
        undo_if_unaudited: bool = False,
    ) -> Entry:
        """Remove an entry (audited ``access_list.remove``). A request's removal stays done
        if its event cannot be recorded (decision 0006); the access_lists job passes
        ``undo_if_unaudited``: the entry is put back and its next run removes it."""
        ctx = ctx or RequestContext()
        entry = await asyncio.to_thread(self.lists.remove, entry_id)
        try:
            await self._emit(
                events.access_list_remove(
                    actor=actor,
                    source=ctx.source(),
                    target=Target("access_list_entry", entry.id),
                    correlation=ctx.correlation(),
                    list=entry.list,
                    kind=entry.kind,
                    value_ref=self._value_ref(entry.kind, entry.value),
                    why=why,
                )
            )
        except AuditUnavailable:
            if undo_if_unaudited:
                await asyncio.to_thread(self.lists.restore, entry)
            raise
        return entry

    async def list_update(
        self,
        entry_id: str,
        *,
        why: str,
        actor: Actor,
        reason: str | None = None,
        expires_at: int | None = None,
        clear_expiry: bool = False,
        ctx: RequestContext | None = None,
        undo_if_unaudited: bool = False,
    ) -> Entry:
        """Change an entry's reason or expiry (audited ``access_list.update``). With
        ``undo_if_unaudited`` (an automated response's renewal) the change is put back
        if its event cannot be recorded; a request's change stays (decision 0006)."""
        ctx = ctx or RequestContext()
        before, after = await asyncio.to_thread(
            self.lists.update,
            entry_id,
            reason=reason,
            expires_at=expires_at,
            clear_expiry=clear_expiry,
        )
        try:
            await self._record_update(before, after, why=why, actor=actor, ctx=ctx)
        except AuditUnavailable:
            if undo_if_unaudited:
                await asyncio.to_thread(self.lists.put_back, before)
            raise
        return after

    async def list_put_back(self, before: Entry, *, why: str, actor: Actor) -> Entry:
        """Undo an update whose purpose failed: the entry gets ``before``'s reason and
        expiry back, recorded as ``access_list.update`` (if that cannot be recorded, the
        entry stays put back and :class:`AuditUnavailable` is raised)."""
        changed = await asyncio.to_thread(self.lists.put_back, before)
        await self._record_update(changed, before, why=why, actor=actor, ctx=RequestContext())
        return before

    async def _record_update(
        self, before: Entry, after: Entry, *, why: str, actor: Actor, ctx: RequestContext
    ) -> None:
        changes = {
            k: [getattr(before, k), getattr(after, k)]
            for k in ("reason", "expires_at")
            if getattr(before, k) != getattr(after, k)
        }
        await self._emit(
            events.access_list_update(
                actor=actor,
                source=ctx.source(),
                target=Target("access_list_entry", after.id),
                correlation=ctx.correlation(),
                list=after.list,
                kind=after.kind,
                value_ref=self._value_ref(after.kind, after.value),
                why=why,
                changes=orjson.dumps(changes).decode(),
            )
        )
