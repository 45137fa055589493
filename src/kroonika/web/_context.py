"""Per-request context (request id, trace id, client address) in ``contextvars``."""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass

_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{7,127}")
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")


@dataclass(frozen=True, slots=True)
class RequestInfo:
    request_id: str
    trace_id: str
    client_ip: str | None
    user_agent: str | None


current_request: ContextVar[RequestInfo | None] = ContextVar("kroonika_request", default=None)


def request_id_from(header: str | None) -> str | None:
    """An incoming ``X-Request-ID`` if it is safe to reuse (8-128 plain characters)."""
    if header and _REQUEST_ID.fullmatch(header):
        return header
    return None


def trace_id_from(traceparent: str | None) -> str | None:
    """The trace id of a valid W3C ``traceparent`` (version 00, ids not all zero)."""
    if not traceparent:
        return None
    m = _TRACEPARENT.fullmatch(traceparent.strip())
    if m is None or set(m.group(1)) == {"0"} or set(m.group(2)) == {"0"}:
        return None
    return m.group(1)


def new_request_id() -> str:
    return secrets.token_hex(16)


def new_trace_id() -> str:
    return secrets.token_hex(16)


def plain_ip(ip: str) -> str:
    """An IPv4-mapped IPv6 address (``::ffff:192.0.2.1``: how a socket bound to ``::``
    shows an IPv4 peer) as the IPv4 address, so that trusted proxies, rate-limit keys and
    audit sources see one address whatever the listener; anything else unchanged."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    mapped = addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) else None
    return str(mapped) if mapped is not None else ip


class TrustedProxies:
    """Client address resolution: ``X-Forwarded-For`` counts only through trusted proxies."""

    def __init__(self, networks: Sequence[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(n, strict=False) for n in networks)

    def trusted(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(plain_ip(ip))
        except ValueError:
            return False
        return any(addr in n for n in self.networks)

    def client_ip(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """Walk ``X-Forwarded-For`` from the right while the hop is a trusted proxy; the first
        untrusted address is the client."""
        if peer is None:
            return None
        peer = plain_ip(peer)
        if not self.networks or not self.trusted(peer) or not forwarded_for:
            return peer
        hops = [plain_ip(h.strip()) for h in forwarded_for.split(",") if h.strip()]
        candidate = peer
        for hop in reversed(hops):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                return candidate
            candidate = hop
            if not self.trusted(hop):
                return hop
        return candidate
