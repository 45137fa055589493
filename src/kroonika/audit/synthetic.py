"""Realistic synthetic events for trying the trail out and for benchmarks.

Logins with every method (and their failures), flow transitions, sessions, token
operations and admin actions, by many people from many addresses. Deterministic
for a given seed. Personal codes are valid isikukood numbers made up here.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from kroonika.audit import events
from kroonika.audit._model import (
    Actor,
    ActorType,
    AuditEvent,
    Correlation,
    Outcome,
    PersonalData,
    Source,
    Target,
)
from kroonika.audit.personal_codes import check_digit

_GIVEN = ["JAAK-KRISTJAN", "MARY ÄNN", "MARI-LIIS", "IGOR", "KÄRT", "TÕNU", "ŽANNA", "ÜLO"]
_FAMILY = ["JÕEORG", "O’CONNEŽ-ŠUSLIK", "MÄNNIK", "ŽAIKOVSKI", "TAMM", "SAAR", "KASK"]
_METHODS = [("idcard", "high"), ("mID", "high"), ("smartid", "high"), ("eidas", "substantial")]
_UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
]
_FAIL_REASONS = [
    "user_cancel",
    "id_token.nonce_mismatch",
    "state_expired",
    "acr_too_low",
    "idp_unavailable",
]
_ADMIN_ROUTES = ["/admin/config", "/admin/lists/deny", "/admin/tokens/revoke", "/admin/jobs"]


def personal_code(rng: random.Random) -> str:
    """A valid Estonian personal code (check digit per the isikukood rules)."""
    first = rng.choice("3456")
    body = f"{first}{rng.randint(50, 99) if first in '34' else rng.randint(0, 8):02d}"
    body += f"{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
    return body + str(check_digit(body))


def public_address(rng: random.Random) -> str:
    """A public IPv4 address in networks Estonian providers announce (synthetic)."""
    return (
        f"{rng.choice([90, 176, 194, 213, 62, 84])}.{rng.randint(0, 255)}."
        f"{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    )


def generate_events(count: int, *, seed: int = 1, people: int = 5000) -> Iterator[AuditEvent]:
    rng = random.Random(seed)
    persons = [
        (f"EE{personal_code(rng)}", rng.choice(_GIVEN), rng.choice(_FAMILY)) for _ in range(people)
    ]
    ips = [public_address(rng) for _ in range(people // 2 + 1)]
    for i in range(count):
        subject, given, family = rng.choice(persons)
        ip = rng.choice(ips)
        method, acr = rng.choice(_METHODS)
        corr = Correlation(request_id=f"req-{i:08x}", flow_id=f"flow-{i // 4:08x}")
        source = Source(ip=ip, port=rng.randint(1024, 65535), user_agent=rng.choice(_UAS))
        roll = rng.random()
        if roll < 0.55:
            failed = rng.random() < 0.12
            yield events.auth_login(
                outcome=Outcome.FAILURE if failed else Outcome.SUCCESS,
                reason=rng.choice(_FAIL_REASONS) if failed else None,
                actor=Actor(ActorType.USER, subject=None if failed else subject),
                source=source,
                correlation=corr,
                personal=None if failed else PersonalData(given_name=given, family_name=family),
                method=method,
                acr=acr,
                amr=[method],
                idp="tara",
            )
        elif roll < 0.70:
            yield events.auth_flow_transition(
                source=source,
                correlation=corr,
                from_state="redirected",
                to_state="callback_received",
                method=method,
            )
        elif roll < 0.80:
            yield events.session_create(
                actor=Actor(ActorType.USER, subject=subject),
                source=source,
                correlation=corr,
                target=Target("session", f"s1:{rng.getrandbits(64):016x}"),
                method=method,
                acr=acr,
                idle_timeout_s=900,
            )
        elif roll < 0.93:
            jti = f"{rng.getrandbits(96):024x}"
            yield events.token_issue(
                actor=Actor(ActorType.CLIENT, client_id=f"service-{rng.randint(1, 20)}"),
                source=source,
                correlation=corr,
                target=Target("token", jti),
                jti=jti,
                kid="k1",
                alg="ES256",
                token_type="access_token",  # noqa: S106
                audience=["eteenus"],
                issued_at=1_764_000_000 + i,
                expires_at=1_764_000_900 + i,
                claim_names=["iss", "sub", "aud", "exp", "iat", "jti"],
            )
        elif roll < 0.98:
            yield events.token_validate(
                actor=Actor(ActorType.CLIENT, client_id=f"service-{rng.randint(1, 20)}"),
                source=source,
                correlation=corr,
                outcome=Outcome.SUCCESS,
                verdict="valid",
                jti=f"{rng.getrandbits(96):024x}",
            )
        else:
            yield events.admin_request(
                actor=Actor(ActorType.ADMIN, subject=subject, roles=("admin",)),
                source=source,
                correlation=corr,
                method="PATCH",
                route=rng.choice(_ADMIN_ROUTES),
                status=200,
                duration_ms=rng.randint(2, 40),
                justification="INC-1234 rotating after incident review",
            )
