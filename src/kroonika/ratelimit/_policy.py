"""What is limited: route groups, key kinds, the limits and the penalty."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from limits import RateLimitItem, parse

from kroonika.ratelimit._errors import RateLimitConfigError


class RouteGroup(StrEnum):
    LOGIN_START = "login_start"
    CALLBACK = "callback"
    TOKEN_MINT = "token_mint"  # noqa: S105  (a route group name, not a secret)
    VALIDATE = "validate"
    ADMIN = "admin"
    #: failed client authentications on the token routes, counted per source address
    #: and checked before a client secret is (decision 0029)
    CLIENT_AUTH = "client_auth"


class KeyKind(StrEnum):
    IP = "ip"
    CLIENT = "client"
    PERSON = "person"


# Per minute unless said otherwise; moving windows. A citizen starts a login a few
# times a minute at most; relying services validate far more often than they mint.
DEFAULT_LIMITS: Mapping[tuple[RouteGroup, KeyKind], str] = MappingProxyType(
    {
        (RouteGroup.LOGIN_START, KeyKind.IP): "30/minute",
        (RouteGroup.LOGIN_START, KeyKind.PERSON): "10/minute",
        (RouteGroup.CALLBACK, KeyKind.IP): "30/minute",
        (RouteGroup.TOKEN_MINT, KeyKind.IP): "120/minute",
        (RouteGroup.TOKEN_MINT, KeyKind.CLIENT): "600/minute",
        (RouteGroup.TOKEN_MINT, KeyKind.PERSON): "30/minute",
        (RouteGroup.VALIDATE, KeyKind.IP): "1200/minute",
        (RouteGroup.VALIDATE, KeyKind.CLIENT): "6000/minute",
        (RouteGroup.ADMIN, KeyKind.IP): "120/minute",
        (RouteGroup.ADMIN, KeyKind.PERSON): "120/minute",
        # a relying service's secret is right or wrong every time: ten failures a
        # minute is a misconfiguration or a guesser, and each costs a scrypt check
        (RouteGroup.CLIENT_AUTH, KeyKind.IP): "10/minute",
    }
)


def _parse_limit(text: str) -> RateLimitItem:
    try:
        return parse(text)
    except ValueError as exc:
        raise RateLimitConfigError(f"bad rate limit {text!r}: {exc}") from None


# The limit name of a client's own limit (``Client.rate_limit``): one window per client
# over every token route it calls, on top of the route groups' per-client limits.
CLIENT_OWN = "client:own"


@functools.lru_cache(maxsize=1024)
def client_limit(text: str) -> RateLimitItem:
    """A client's own limit, e.g. ``"100/minute"`` (parsed once per distinct text).
    The client registry only stores texts this accepts; anything else raises
    :class:`RateLimitConfigError`."""
    return _parse_limit(text)


@dataclass(frozen=True)
class RateLimitPolicy:
    """An immutable policy; :meth:`RateLimiter.configure` swaps it at runtime.

    ``penalty_base_s`` is the block after the second violation within
    ``penalty_memory_s``; it doubles with each further one up to ``penalty_max_s``.
    """

    limits: Mapping[tuple[RouteGroup, KeyKind], RateLimitItem]
    exempt: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    penalty_base_s: int = 60
    penalty_max_s: int = 3600
    penalty_memory_s: int = 3600
    enabled: bool = True
    texts: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        overrides: Mapping[str, str] | None = None,
        exempt: Iterable[str] = (),
        **kw: int | bool,
    ) -> RateLimitPolicy:
        """Defaults with ``overrides`` like ``{"login_start:ip": "20/minute"}``
        (``"off"`` removes a limit). Everything is checked here, not per request."""
        texts = {f"{g.value}:{k.value}": v for (g, k), v in DEFAULT_LIMITS.items()}
        for name, value in (overrides or {}).items():
            group, _, kind = name.partition(":")
            try:
                RouteGroup(group)
                KeyKind(kind)
            except ValueError:
                raise RateLimitConfigError(
                    f"bad rate limit name {name!r}: want <route group>:<ip|client|person>"
                ) from None
            if (RouteGroup(group), KeyKind(kind)) not in DEFAULT_LIMITS:
                # a pair no route counts (say admin:client) would limit nothing, silently
                raise RateLimitConfigError(
                    f"no rate limit named {name!r}: the limits are "
                    + ", ".join(f"{g.value}:{k.value}" for g, k in DEFAULT_LIMITS)
                )
            texts[name] = value
        limits: dict[tuple[RouteGroup, KeyKind], RateLimitItem] = {}
        for name, value in texts.items():
            if value.strip().lower() == "off":
                continue
            group, _, kind = name.partition(":")
            limits[(RouteGroup(group), KeyKind(kind))] = _parse_limit(value)
        nets = []
        for text in exempt:
            try:
                nets.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise RateLimitConfigError(f"bad exempt network {text!r}") from None
        policy = cls(limits=MappingProxyType(limits), exempt=tuple(nets), texts=texts, **kw)  # type: ignore[arg-type]
        if policy.penalty_base_s < 1 or policy.penalty_max_s < policy.penalty_base_s:
            raise RateLimitConfigError("penalty_base_s >= 1 and penalty_max_s >= penalty_base_s")
        return policy

    def with_limit(self, group: RouteGroup, kind: KeyKind, limit: str) -> RateLimitPolicy:
        """A copy with one limit changed (runtime configuration)."""
        name = f"{group.value}:{kind.value}"
        return RateLimitPolicy.build(
            {**self.texts, name: limit},
            [str(n) for n in self.exempt],
            penalty_base_s=self.penalty_base_s,
            penalty_max_s=self.penalty_max_s,
            penalty_memory_s=self.penalty_memory_s,
            enabled=self.enabled,
        )

    def exempted(self, ip: str | None) -> bool:
        if ip is None or not self.exempt:
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self.exempt)

    def rules_for(self, group: RouteGroup) -> list[tuple[KeyKind, RateLimitItem]]:
        return [(k, item) for (g, k), item in self.limits.items() if g is group]
