"""``kroonika simulate``: realistic browser traffic against a running service through the mock.

Each simulated person is a browser (cookies, redirects) with its own public address,
presented through ``X-Forwarded-For`` (``kroonika dev`` trusts it from loopback; a
service that does not sees them all as the loopback address, and its per-address limits
answer most logins with ``rate_limited``). Each picks a traffic kind by weight.
Later features add kinds with :func:`register` (a name, a weight and an async function that
returns an outcome label), so the simulator grows with the service.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field

import httpx

from kroonika.audit._tls import trust_store_context
from kroonika.audit.synthetic import public_address

PEOPLE = (
    ("38001085718", "idcard"),
    ("60001019906", "mid"),
    ("60001017716", "mid"),
    ("40404040009", "smartid"),
    ("37101010021", "smartid"),
)


@dataclass(frozen=True)
class Credentials:
    """What the token and admin traffic kinds act with (``skipped`` without them)."""

    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    admin_key: str | None = field(default=None, repr=False)
    auditor_key: str | None = field(default=None, repr=False)


@dataclass
class Browser:
    """One simulated browser; ``identity`` is what it picks on the mock's login page."""

    base_url: str
    client: httpx.AsyncClient
    rng: random.Random
    identity: str = "38001085718"
    choice: dict[str, str] = field(default_factory=dict)
    csrf: str | None = None
    creds: Credentials = field(default_factory=Credentials)
    tokens: list[str] = field(default_factory=list)

    async def login(self, method: str | None = None, **choice: str) -> httpx.Response:
        self.choice = {"autologin": self.identity, **choice}
        params = {"method": method} if method else {}
        r = await self.client.get(self.base_url + "/auth/login", params=params)
        if r.status_code == 200:
            s = await self.client.get(self.base_url + "/auth/session")
            self.csrf = s.json().get("csrf_token") if s.status_code == 200 else None
        return r


Kind = Callable[[Browser], Awaitable[str]]


@dataclass(frozen=True)
class TrafficKind:
    name: str
    weight: float
    run: Kind


KINDS: list[TrafficKind] = []


def register(name: str, weight: float) -> Callable[[Kind], Kind]:
    def wrap(fn: Kind) -> Kind:
        KINDS.append(TrafficKind(name, weight, fn))
        return fn

    return wrap


def _result(r: httpx.Response) -> str:
    if r.status_code == 200:
        return "ok"
    try:
        return str(r.json().get("reason") or r.json().get("error"))
    except ValueError:
        return f"http_{r.status_code}"


@register("login", 5)
async def _login(b: Browser) -> str:
    code, method = b.rng.choice(PEOPLE)
    b.identity = code
    return _result(await b.login(method))


@register("login_cancel", 1)
async def _cancel(b: Browser) -> str:
    b.identity = "cancel"
    return _result(await b.login())


@register("login_tampered_state", 0.5)
async def _tampered(b: Browser) -> str:
    r = await b.client.get(
        b.base_url + "/auth/callback", params={"state": "x" * 43, "code": "forged"}
    )
    return _result(r)


@register("extend", 2)
async def _extend(b: Browser) -> str:
    if b.csrf is None:
        await _login(b)
    r = await b.client.post(
        b.base_url + "/auth/session/extend", headers={"x-csrf-token": b.csrf or ""}
    )
    return _result(r)


@register("list_sessions", 1)
async def _list(b: Browser) -> str:
    return _result(await b.client.get(b.base_url + "/auth/sessions"))


@register("logout", 1.5)
async def _logout(b: Browser) -> str:
    if b.csrf is None:
        await _login(b)
    r = await b.client.post(b.base_url + "/auth/logout", headers={"x-csrf-token": b.csrf or ""})
    b.csrf = None
    return _result(r)


def _client(b_holder: list[Browser], address: str) -> httpx.AsyncClient:
    async def choose(request: httpx.Request) -> None:
        if request.url.path == "/oidc/authorize" and b_holder:
            request.url = request.url.copy_merge_params(b_holder[0].choice)

    return httpx.AsyncClient(
        follow_redirects=True,
        timeout=15,
        event_hooks={"request": [choose]},
        headers={"user-agent": "Mozilla/5.0 (kroonika simulate)", "x-forwarded-for": address},
        trust_env=False,
        verify=trust_store_context({}),  # no key log under SSLKEYLOGFILE (0032)
    )


async def simulate(
    base_url: str,
    *,
    people: int,
    duration: float,
    seed: int | None = None,
    on_progress: Callable[[int, float], None] | None = None,
    credentials: Credentials | None = None,
    kinds: Collection[str] | None = None,
) -> Counter[tuple[str, str]]:
    """Run ``people`` browsers for ``duration`` seconds; count (kind, outcome) pairs.
    ``kinds`` limits the traffic to the named kinds."""
    master = random.Random(seed)
    counts: Counter[tuple[str, str]] = Counter()
    deadline = time.monotonic() + duration
    started = time.monotonic()
    chosen = [k for k in KINDS if kinds is None or k.name in kinds]
    if not chosen:
        raise ValueError(f"no traffic kind among {sorted(kinds or ())}")
    weights = [k.weight for k in chosen]

    addresses = [public_address(master) for _ in range(people)]

    async def person(i: int) -> None:
        holder: list[Browser] = []
        async with _client(holder, addresses[i]) as client:
            b = Browser(
                base_url.rstrip("/"),
                client,
                random.Random(master.random()),
                creds=credentials or Credentials(),
            )
            holder.append(b)
            while time.monotonic() < deadline:
                kind = b.rng.choices(chosen, weights)[0]
                try:
                    outcome = await kind.run(b)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                counts[(kind.name, outcome)] += 1
                if on_progress is not None:
                    on_progress(sum(counts.values()), time.monotonic() - started)
                await asyncio.sleep(b.rng.uniform(0.05, 0.3))

    await asyncio.gather(*(person(i) for i in range(people)))
    return counts


# The token and administrative kinds register themselves on import.
from kroonika.web import simulate_traffic as _traffic  # noqa: E402, F401
