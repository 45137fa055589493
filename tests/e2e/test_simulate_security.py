"""``kroonika simulate`` against a live service and mock: the traffic kinds (logins,
tokens, administration) and each ``--attack`` leave the expected event types."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from admin_harness import HOLDERS, holder_key
from login_harness import free_socket, mock_keys, serve
from pydantic import SecretStr
from security_harness import SecStack, security_stack

from kroonika.security.simulate_attacks import ATTACKS, AttackContext, run_attack
from kroonika.tara.mock import MockConfig, RegisteredClient
from kroonika.tara.mock import create_app as create_mock
from kroonika.web.simulate import Credentials, simulate


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[SecStack]:
    overrides = {"admin_bootstrap": {"38001085718": ["admin"]}, "jobs_enabled": False}
    with security_stack(tmp_path, settings_overrides=overrides) as s:
        yield s


def _credentials(stack: SecStack) -> Credentials:
    client = stack.tokens.clients.register("simulated", allowed_audiences=["svc-a"])
    admin = holder_key(stack.services, "admin", HOLDERS["admin"], name="sim-admin")
    auditor = holder_key(stack.services, "auditor", HOLDERS["auditor"], name="sim-auditor")
    return Credentials(client.client.client_id, client.secret, admin, auditor)


def _types(stack: SecStack) -> set[str]:
    stack.drain()
    return {e["type"] for e in stack.events()}


ADMIN_KINDS = (
    "admin_list_change",
    "admin_config_change",
    "admin_bulk_revoke",
    "admin_cleanup_run",
    "auditor_query",
)


def test_traffic_kinds_leave_login_token_and_admin_events(stack: SecStack) -> None:
    """A few seconds of all traffic, then of the admin kinds: login, token and admin
    event types appear, and no kind was skipped."""
    creds = _credentials(stack)
    counts = asyncio.run(simulate(stack.service, people=6, duration=4, seed=7, credentials=creds))
    counts += asyncio.run(
        simulate(stack.service, people=2, duration=3, seed=8, credentials=creds, kinds=ADMIN_KINDS)
    )
    kinds = {k for k, _ in counts}
    assert {"login", "token_mint", "token_validate", "token_forged", *ADMIN_KINDS} <= kinds
    assert not [k for k, o in counts if o == "skipped"]
    types = _types(stack)
    expected = {
        "auth.login",
        "session.create",
        "token.issue",
        "token.validate",
        "token.introspect",
        "token.revoke",
        "admin.request",
        "access_list.add",
        "config.change",
        "admin.bulk",
        "job.run",
        "audit.access",
    }
    assert expected <= types, expected - types
    # each browser comes from its own public address, not all from loopback
    logins = stack.events(types=("auth.login",))
    assert len({e["source"]["ip"] for e in logins}) >= 3
    assert not [e for e in logins if e["source"]["ip"].startswith("127.")]


def test_traffic_without_credentials_skips_token_and_admin_kinds(stack: SecStack) -> None:
    """No client or keys given: those kinds answer skipped and make no token events."""
    counts = asyncio.run(simulate(stack.service, people=2, duration=2, seed=3))
    assert {o for (k, o) in counts if k.startswith(("token_", "admin_"))} <= {"skipped"}
    assert "token.validate" not in _types(stack)


@pytest.mark.parametrize(
    ("attack", "kind"),
    [
        ("brute-force", "brute_force"),
        ("credential-stuffing", "credential_stuffing"),
        ("impossible-travel", "impossible_travel"),
    ],
)
def test_attack_gives_its_anomaly(stack: SecStack, attack: str, kind: str) -> None:
    """Each login attack ends in the security.anomaly of its kind."""
    asyncio.run(run_attack(attack, stack.service, mock_url=stack.mock))
    stack.drain()
    found = {a["details"]["kind"] for a in stack.events(types=("security.anomaly",))}
    assert kind in found


def test_rate_limit_attack(stack: SecStack) -> None:
    """A burst of login starts from one address: 429s and security.rate_limit events."""
    counts = asyncio.run(run_attack("rate-limit", stack.service))
    assert counts[("rate-limit", "rate_limited")] > 0
    (first, *_) = stack.events(types=("security.rate_limit",))
    assert first["details"]["limit"] == "login_start:ip"
    assert first["source"]["geo"]["city"] == "Mountain View"


def test_every_attack_is_listed() -> None:
    """The CLI's attack names are exactly the four of the issue."""
    assert sorted(ATTACKS) == [
        "brute-force",
        "credential-stuffing",
        "impossible-travel",
        "rate-limit",
    ]


def test_mock_switches_carry_the_control_token(tmp_path: Path) -> None:
    """Against a mock that needs a control token, the attack's switches are sent with
    the token it is given (``kroonika simulate`` reads KROONIKA_MOCK_TARA_CONTROL_TOKEN);
    without it they are refused and the attack says the control API is unavailable."""
    token = "sim-control-token-0123456789"
    sock = free_socket()
    config = MockConfig(
        issuer=f"http://127.0.0.1:{sock.getsockname()[1]}",
        clients=(
            RegisteredClient(
                client_id="rp", secret=SecretStr("rp-secret-0123"), redirect_uris=("http://x/cb",)
            ),
        ),
        keys=mock_keys(),
        control_api=True,
        control_token=SecretStr(token),
    )
    with serve(create_mock(config), sock, lifespan="off") as mock:
        with_token = AttackContext("http://127.0.0.1:9", mock, mock_token=token)
        assert asyncio.run(with_token.mock_switch(low_acr=True)) is True
        without = asyncio.run(
            run_attack("credential-stuffing", "http://127.0.0.1:9", mock_url=mock)
        )
    assert without == {("credential-stuffing", "mock_control_api_unavailable"): 1}
