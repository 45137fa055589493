"""X-Forwarded-For over real HTTP: honoured only through trusted proxies, and in a spoofed
chain the rightmost address that is not a trusted proxy is the client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from login_harness import Stack, running_stack

FULL_IP = {"audit_ip_v4_prefix": 32, "audit_ip_v6_prefix": 128, "jobs_enabled": False}


@pytest.fixture
def behind_proxy(tmp_path: Path) -> Iterator[Stack]:
    """The service behind a proxy on loopback, with an internal proxy tier in 10.0.0.0/8."""
    overrides = {**FULL_IP, "trusted_proxies": ["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"]}
    with running_stack(tmp_path, settings_overrides=overrides) as s:
        yield s


def client_ip(stack: Stack, headers: list[tuple[str, str]]) -> str:
    """The source address the service recorded for one /auth/login request."""
    r = httpx.get(
        stack.service + "/auth/login", headers=httpx.Headers(headers), follow_redirects=False
    )
    assert r.status_code == 302, r.text
    (event,) = stack.events(types=("auth.flow.transition",), correlation=r.headers["x-request-id"])[
        :1
    ]
    return str(event["source"]["ip"])


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        ([], "127.0.0.1"),
        ([("x-forwarded-for", "198.51.100.7")], "198.51.100.7"),
        ([("x-forwarded-for", "6.6.6.6, 198.51.100.7")], "198.51.100.7"),
        ([("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.2.3")], "198.51.100.7"),
        ([("x-forwarded-for", "junk, 198.51.100.7")], "198.51.100.7"),
        ([("x-forwarded-for", "198.51.100.7, not-an-address")], "127.0.0.1"),
        ([("x-forwarded-for", "10.0.0.5, 10.0.0.6")], "10.0.0.5"),
        ([("x-forwarded-for", "2001:db8::7, fd00::1")], "2001:db8::7"),
        # a client's own header line first, the proxy's appended line second
        ([("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "198.51.100.7")], "198.51.100.7"),
    ],
    ids=[
        "no-header",
        "one-hop",
        "spoofed-left",
        "internal-proxy-skipped",
        "garbage-left",
        "garbage-rightmost",
        "all-trusted",
        "ipv6",
        "two-header-lines",
    ],
)
def test_trusted_proxy_chain(
    behind_proxy: Stack, forwarded: list[tuple[str, str]], expected: str
) -> None:
    """Through a trusted peer the rightmost untrusted hop is the client address."""
    assert client_ip(behind_proxy, forwarded) == expected


def test_untrusted_peer_is_the_client(tmp_path: Path) -> None:
    """When the peer (loopback) is not a trusted proxy, X-Forwarded-For is ignored."""
    overrides = {**FULL_IP, "trusted_proxies": ["10.0.0.0/8"]}
    with running_stack(tmp_path, settings_overrides=overrides) as s:
        assert client_ip(s, [("x-forwarded-for", "198.51.100.7")]) == "127.0.0.1"
        assert client_ip(s, [("x-forwarded-for", "10.0.0.1")]) == "127.0.0.1"


def test_no_trusted_proxies_ignores_the_header(tmp_path: Path) -> None:
    """With no trusted proxies configured (the default) the header never counts."""
    with running_stack(tmp_path, settings_overrides=FULL_IP) as s:
        assert client_ip(s, [("x-forwarded-for", "198.51.100.7")]) == "127.0.0.1"
