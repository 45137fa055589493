"""Token and administrative traffic kinds for ``kroonika simulate`` (issues 4 and 5).

Token kinds act as a registered relying service (``--client-id``/``--client-secret``):
minting, validating, introspecting, extending and revoking, and presenting invalid and
forged tokens. Admin kinds use API keys (``--admin-key``, ``--auditor-key``): list
changes, configuration changes, a bulk revoke, a manual cleanup run, an auditor querying
the trail. A kind whose credentials were not given answers ``skipped``.
"""

from __future__ import annotations

import base64

import httpx
import orjson

from kroonika.web.simulate import Browser, register

WHY = "SIM-1 simulated administrative traffic"


def _basic(b: Browser) -> dict[str, str] | None:
    c = b.creds
    if not c.client_id or not c.client_secret:
        return None
    raw = f"{c.client_id}:{c.client_secret}".encode()
    return {"authorization": "Basic " + base64.b64encode(raw).decode()}


def _label(r: httpx.Response) -> str:
    if r.status_code < 300:
        return "ok"
    try:
        body = r.json()
        described = str(body.get("error_description") or "")
        code = described if described.isidentifier() else None  # audience_required, ...
        return str(body.get("reason") or code or body.get("error") or f"http_{r.status_code}")
    except ValueError:
        return f"http_{r.status_code}"


async def _mint(b: Browser) -> tuple[str | None, str]:
    """A new token and ``ok``, or ``None`` and why it was refused."""
    auth = _basic(b)
    if auth is None:
        return None, "skipped"
    r = await b.client.post(
        b.base_url + "/tokens", json={"subject": f"sim-{b.rng.randrange(50)}"}, headers=auth
    )
    if r.status_code != 201:
        return None, _label(r)  # e.g. audience_required: register the client with -a
    token: str = r.json()["access_token"]
    b.tokens.append(token)
    del b.tokens[:-20]
    return token, "ok"


async def _held(b: Browser) -> str | None:
    return b.rng.choice(b.tokens) if b.tokens else (await _mint(b))[0]


@register("token_mint", 2)
async def _token_mint(b: Browser) -> str:
    return (await _mint(b))[1]


@register("token_validate", 2)
async def _token_validate(b: Browser) -> str:
    auth, token = _basic(b), await _held(b)
    if auth is None or token is None:
        return "skipped"
    r = await b.client.post(b.base_url + "/tokens/validate", json={"token": token}, headers=auth)
    return "valid" if r.status_code == 200 and r.json().get("valid") else _label(r)


@register("token_introspect", 2)
async def _token_introspect(b: Browser) -> str:
    auth, token = _basic(b), await _held(b)
    if auth is None or token is None:
        return "skipped"
    r = await b.client.post(b.base_url + "/introspect", data={"token": token}, headers=auth)
    return "active" if r.status_code == 200 and r.json().get("active") else _label(r)


@register("token_extend", 1)
async def _token_extend(b: Browser) -> str:
    auth, token = _basic(b), await _held(b)
    if auth is None or token is None:
        return "skipped"
    r = await b.client.post(b.base_url + "/tokens/extend", json={"token": token}, headers=auth)
    if r.status_code == 200:
        if token in b.tokens:
            b.tokens.remove(token)
        b.tokens.append(r.json()["access_token"])
    return _label(r)


@register("token_revoke", 1)
async def _token_revoke(b: Browser) -> str:
    auth, token = _basic(b), await _held(b)
    if auth is None or token is None:
        return "skipped"
    r = await b.client.post(b.base_url + "/revoke", data={"token": token}, headers=auth)
    # Keep it: using it again later is the replay the service must notice.
    return _label(r)


def _forged(b: Browser, token: str | None) -> str:
    kind = b.rng.choice(("alg_none", "tampered", "garbage"))
    if kind == "garbage" or token is None:
        return "not-a-token"
    header, payload, sig = token.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "someone-else"
    body = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    if kind == "alg_none":
        none = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
        return f"{none}.{body}."
    return f"{header}.{body}.{sig}"


@register("token_forged", 1)
async def _token_forged(b: Browser) -> str:
    auth = _basic(b)
    if auth is None:
        return "skipped"
    token = _forged(b, await _held(b))
    r = await b.client.post(b.base_url + "/tokens/validate", json={"token": token}, headers=auth)
    return str(r.json().get("reason", "accepted")) if r.status_code == 200 else _label(r)


def _admin(b: Browser, role: str = "admin") -> dict[str, str] | None:
    key = b.creds.admin_key if role == "admin" else b.creds.auditor_key
    return None if not key else {"authorization": f"Bearer {key}", "x-justification": WHY}


@register("admin_list_change", 0.3)
async def _admin_list(b: Browser) -> str:
    h = _admin(b)
    if h is None:
        return "skipped"
    value = f"198.51.100.{b.rng.randrange(1, 255)}"
    body = {"list": "deny", "kind": "ip", "value": value, "reason": "simulated abuse"}
    r = await b.client.post(b.base_url + "/admin/lists", json=body, headers=h)
    if r.status_code == 201:
        await b.client.delete(b.base_url + f"/admin/lists/{r.json()['id']}", headers=h)
    return _label(r)


@register("admin_config_change", 0.2)
async def _admin_config(b: Browser) -> str:
    h = _admin(b)
    if h is None:
        return "skipped"
    level = b.rng.choice(("INFO", "WARNING"))
    body = {"changes": {"log.levels": {"kroonika.jobs": level}}}
    return _label(await b.client.patch(b.base_url + "/admin/config", json=body, headers=h))


@register("admin_bulk_revoke", 0.2)
async def _admin_bulk(b: Browser) -> str:
    h = _admin(b)
    if h is None:
        return "skipped"
    items = [{"jti": f"sim-unknown-{b.rng.randrange(10**6)}"} for _ in range(3)]
    r = await b.client.post(b.base_url + "/admin/bulk/revoke", json={"items": items}, headers=h)
    return _label(r)


@register("admin_cleanup_run", 0.2)
async def _admin_cleanup(b: Browser) -> str:
    h = _admin(b)
    if h is None:
        return "skipped"
    return _label(await b.client.post(b.base_url + "/admin/jobs/login_flows/run", headers=h))


@register("auditor_query", 0.3)
async def _auditor_query(b: Browser) -> str:
    h = _admin(b, "auditor")
    if h is None:
        return "skipped"
    r = await b.client.get(
        b.base_url + "/audit/events", params={"type": "auth.login", "limit": 20}, headers=h
    )
    return _label(r)
