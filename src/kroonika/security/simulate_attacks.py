"""``kroonika simulate --attack NAME``: each attack pattern on demand, through the TARA
mock against a running service, so anyone can watch the detections work.

Source addresses are presented with ``X-Forwarded-For`` (the service must trust the
simulator's address as a proxy: ``kroonika dev`` trusts loopback) and are chosen to
resolve to real places in the geo database (DB-IP City Lite or a fixture):

- ``brute-force``: failed logins (cancelled at TARA) from one address in London,
  above the threshold within its window;
- ``credential-stuffing``: logins of many different people from one address in
  Sydney that the service refuses (TARA answers below the level of assurance asked
  for: the mock's ``low_acr`` switch, through its control API, restored afterwards);
- ``impossible-travel``: one person logging in from Tartu and a minute later from
  Sydney (and Mountain View);
- ``rate-limit``: a burst of login starts from one address in Mountain View, beyond
  the per-address limit (429 with ``Retry-After``).

Imports only httpx: it speaks to the service over HTTP like any other client.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType

import httpx

from kroonika.audit._tls import trust_store_context

TARTU = "193.40.0.1"
LONDON = "81.2.69.142"
SYDNEY = "1.1.1.1"
MOUNTAIN_VIEW = "8.8.8.8"

# Valid personal codes of made-up people (checksums correct), and a known identity.
PERSON = "38001085718"
_WEIGHTS1 = (1, 2, 3, 4, 5, 6, 7, 8, 9, 1)
_WEIGHTS2 = (3, 4, 5, 6, 7, 8, 9, 1, 2, 3)


def personal_code(first_ten: str) -> str:
    """The Estonian personal code with its check digit (modulus 11, two weight sets)."""
    digits = [int(c) for c in first_ten]
    for weights in (_WEIGHTS1, _WEIGHTS2):
        rest = sum(d * w for d, w in zip(digits, weights, strict=True)) % 11
        if rest < 10:
            return first_ten + str(rest)
    return first_ten + "0"


def people(n: int) -> list[str]:
    return [personal_code(f"3900101{i:03d}") for i in range(1, n + 1)]


Outcomes = Counter[str]
Attack = Callable[["AttackContext"], Awaitable[Outcomes]]


class AttackContext:
    """Where to send the attack and how big it is."""

    def __init__(
        self,
        base_url: str,
        mock_url: str | None = None,
        *,
        scale: int = 1,
        mock_token: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.mock_url = mock_url.rstrip("/") if mock_url else None
        self._mock_headers = {"authorization": f"Bearer {mock_token}"} if mock_token else {}
        self.scale = max(1, scale)

    def browser(self, ip: str, autologin: str, **choice: str) -> httpx.AsyncClient:
        """A browser behind the trusted proxy at ``ip`` that picks ``autologin`` at TARA."""
        params = {"autologin": autologin, **choice}
        if autologin not in ("cancel", PERSON):
            params.setdefault("autologin_given_name", "MARI")
            params.setdefault("autologin_family_name", "MAASIKAS")

        async def choose(request: httpx.Request) -> None:
            if request.url.path == "/oidc/authorize":
                request.url = request.url.copy_merge_params(params)

        return httpx.AsyncClient(
            follow_redirects=True,
            timeout=15,
            event_hooks={"request": [choose]},
            headers={"x-forwarded-for": ip, "user-agent": "Mozilla/5.0 (kroonika attack)"},
            trust_env=False,
            verify=trust_store_context({}),  # no key log under SSLKEYLOGFILE (0032)
        )

    async def login(self, ip: str, autologin: str, **choice: str) -> str:
        """One whole login; its outcome label (``ok``, a reason, or ``http_<status>``)."""
        async with self.browser(ip, autologin, **choice) as b:
            r = await b.get(self.base_url + "/auth/login")
        if r.status_code == 200:
            return "ok"
        try:
            return str(r.json().get("reason") or r.json().get("error"))
        except ValueError:
            return f"http_{r.status_code}"

    async def mock_switch(self, **switches: object) -> bool:
        if self.mock_url is None:
            return False
        async with httpx.AsyncClient(
            timeout=10, trust_env=False, verify=trust_store_context({})
        ) as c:
            r = await c.post(
                self.mock_url + "/mock/config", json=switches, headers=self._mock_headers
            )
        return r.status_code == 200


async def brute_force(ctx: AttackContext) -> Outcomes:
    out: Outcomes = Counter()
    for _ in range(10 * ctx.scale):
        out[await ctx.login(LONDON, "cancel")] += 1
    return out


async def credential_stuffing(ctx: AttackContext) -> Outcomes:
    out: Outcomes = Counter()
    if not await ctx.mock_switch(low_acr=True):
        out["mock_control_api_unavailable"] += 1
        return out
    try:
        for code in people(16 * ctx.scale):
            out[await ctx.login(SYDNEY, code)] += 1
    finally:
        await ctx.mock_switch(low_acr=False)
    return out


async def impossible_travel(ctx: AttackContext) -> Outcomes:
    out: Outcomes = Counter()
    for ip in (TARTU, SYDNEY, MOUNTAIN_VIEW):
        out[await ctx.login(ip, PERSON)] += 1
    return out


async def rate_limit(ctx: AttackContext) -> Outcomes:
    out: Outcomes = Counter()
    headers = {"x-forwarded-for": MOUNTAIN_VIEW}
    async with httpx.AsyncClient(
        timeout=15, trust_env=False, headers=headers, verify=trust_store_context({})
    ) as c:

        async def one() -> str:
            r = await c.get(ctx.base_url + "/auth/login", follow_redirects=False)
            return "rate_limited" if r.status_code == 429 else f"http_{r.status_code}"

        for result in await asyncio.gather(*(one() for _ in range(40 * ctx.scale))):
            out[result] += 1
    return out


ATTACKS: Mapping[str, Attack] = MappingProxyType(
    {
        "brute-force": brute_force,
        "credential-stuffing": credential_stuffing,
        "impossible-travel": impossible_travel,
        "rate-limit": rate_limit,
    }
)


async def run_attack(
    name: str,
    base_url: str,
    *,
    mock_url: str | None = None,
    scale: int = 1,
    mock_token: str | None = None,
) -> Counter[tuple[str, str]]:
    """Run one attack; (attack, outcome) counts like the traffic simulator's. ``mock_token``
    is the mock's control token (``KROONIKA_MOCK_TARA_CONTROL_TOKEN``), if it needs one."""
    try:
        attack = ATTACKS[name]
    except KeyError:
        raise ValueError(f"unknown attack {name!r}; one of {sorted(ATTACKS)}") from None
    outcomes = await attack(AttackContext(base_url, mock_url, scale=scale, mock_token=mock_token))
    return Counter({(name, k): v for k, v in outcomes.items()})
