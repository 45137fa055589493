"""anonymise_ip: keep the client address in clear only as its /24 (IPv4) or /48 (IPv6).

A threat-intelligence match names the feed entry that listed the address; an entry
more specific than that prefix (a listed /32 is the address itself) is recorded as
the covering network at the prefix, so it does not publish what ``source.ip`` hides.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from functools import lru_cache

from kroonika.audit._model import AuditEvent, ThreatMatch

#: The IPv6 network a per-source counter (rate limit, brute force, credential
#: stuffing) keys on: one subscriber's allocation, inside which an attacker rotates
#: addresses for free (decision 0029).
V6_SOURCE_PREFIX = 64


@lru_cache(maxsize=65536)
def source_network(ip: str, prefix: int | None = None) -> str:
    """The key of a per-source counter for ``ip`` (an address, or a network address
    with its ``prefix`` as the trail records it): IPv4 as given, IPv6 never narrower
    than its /64, an IPv4-mapped IPv6 address as the IPv4 address. Text that is no
    address is returned as it is."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip if prefix is None else f"{ip}/{prefix}"
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
        prefix = None if prefix is None else max(0, prefix - 96)
    if addr.version == 4 or (prefix is not None and prefix <= V6_SOURCE_PREFIX):
        return str(addr) if prefix is None else f"{addr}/{prefix}"
    return str(ipaddress.ip_network(f"{addr}/{V6_SOURCE_PREFIX}", strict=False))


@lru_cache(maxsize=4096)
def coarsen_indicator(indicator: str, v4_prefix: int, v6_prefix: int) -> str:
    """``indicator`` (a network) widened to the prefix of its family if narrower."""
    try:
        net = ipaddress.ip_network(indicator, strict=False)
    except ValueError:
        return indicator
    prefix = v4_prefix if net.version == 4 else v6_prefix
    return indicator if net.prefixlen <= prefix else str(net.supernet(new_prefix=prefix))


def coarsen_matches(
    matches: list[ThreatMatch], v4_prefix: int, v6_prefix: int
) -> list[ThreatMatch]:
    out = []
    for m in matches:
        wide = coarsen_indicator(m.indicator, v4_prefix, v6_prefix)
        out.append(m if wide == m.indicator else dataclasses.replace(m, indicator=wide))
    return out


class AnonymiseIp:
    """Replace ``source.ip`` by its network address and set ``source.ip_prefix``.
    The full address stays only in ``source.raw_ip`` (never serialised) for the
    enrichers that follow, and in the encrypted ``pii`` block. ``keep_clear=True``
    (an operator's explicit choice) keeps the full address."""

    def __init__(
        self, *, v4_prefix: int = 24, v6_prefix: int = 48, keep_clear: bool = False
    ) -> None:
        if not (0 <= v4_prefix <= 32 and 0 <= v6_prefix <= 128):
            raise ValueError("prefix lengths out of range")
        self._keep_clear = keep_clear
        self._prefixes = (v4_prefix, v6_prefix)

        @lru_cache(maxsize=65536)
        def anonymise(ip: str) -> tuple[str, int]:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                return "invalid", 0
            if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
                addr = addr.ipv4_mapped
            if keep_clear:
                return str(addr), addr.max_prefixlen
            prefix = v4_prefix if addr.version == 4 else v6_prefix
            net = ipaddress.ip_network(f"{addr}/{prefix}", strict=False)
            return str(net.network_address), prefix

        self._anonymise = anonymise

    def __call__(self, event: AuditEvent) -> AuditEvent:
        src = event.source
        if src is not None and src.ip is not None and src.ip_prefix is None:
            src.raw_ip = src.ip
            src.ip, src.ip_prefix = self._anonymise(src.ip)
        if event.threat and not self._keep_clear:  # matches a route found before
            event.threat = coarsen_matches(event.threat, *self._prefixes)
        return event
