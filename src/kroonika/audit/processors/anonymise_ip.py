"""anonymise_ip: keep the client address in clear only as its /24 (IPv4) or /48 (IPv6)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from kroonika.audit._model import AuditEvent


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
        return event
