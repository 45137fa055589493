"""The audit trail unwritable under a running service: whatever would have been recorded
is refused with 503 ``audit_unavailable`` and the request id (never done unaudited, never
a 500), and the service records again once the audit database is back."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from admin_harness import AdminStack, admin_stack
from sqlalchemy import select, update
from test_database_down import refusing_connections

from kroonika.db.tokens import access_list, signing_keys, tokens

LIMITS = {"ratelimit_enabled": True, "ratelimit_limits": {"login_start:ip": "2/minute"}}


def _assert_refused(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.json() == {"error": "audit_unavailable", "request_id": r.headers["x-request-id"]}


@pytest.mark.postgres
def test_a_login_and_a_rate_limited_request_are_refused(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    """A login start (audited by the route) and a request over its rate limit (audited by
    the limiter, before any route runs) both answer 503 while the audit store refuses
    connections; once it is back, the next request is recorded."""
    overrides = {"audit_store_url": fresh_postgres_url, **LIMITS}
    with admin_stack(tmp_path, overrides=overrides) as stack:
        assert httpx.get(stack.url + "/auth/login").status_code == 302
        with refusing_connections(fresh_postgres_url):
            login = httpx.get(stack.url + "/auth/login")
            limited = httpx.get(stack.url + "/auth/login")
        _assert_refused(login)
        _assert_refused(limited)
        after = stack.call("GET", "/admin/sessions")
        assert after.status_code == 200
        assert stack.events(types=("admin.request",), correlation=after.headers["x-request-id"])


@pytest.mark.postgres
def test_sessions_ended_while_the_trail_is_down_are_ended_again_later(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    """The sessions job cannot record the endings: it leaves the lapsed sessions for the
    next run, which ends them with their session.terminate and revokes their tokens
    (instead of ending them silently and leaving their tokens active)."""
    with admin_stack(tmp_path, overrides={"audit_store_url": fresh_postgres_url}) as stack:
        with stack.stack.browser() as b:
            assert b.get(stack.url + "/auth/login").status_code == 200
        stack.stack.clock.advance(stack.stack.settings.session_idle_s + 60)
        with refusing_connections(fresh_postgres_url):
            _assert_refused(stack.call("POST", "/admin/jobs/sessions/run"))
        again = stack.call("POST", "/admin/jobs/sessions/run")
        assert again.json()["counts"] == {"sessions_idle": 1, "tokens_revoked": 1}
        (ended,) = stack.events(types=("session.terminate",))
        assert ended["reason"] == "idle"
        (token,) = stack.call("GET", "/admin/tokens").json()["tokens"]
        assert token["state"] == "revoked"


def _token_state(stack: AdminStack) -> str:
    (token,) = stack.call("GET", "/admin/tokens").json()["tokens"]
    return str(token["state"])


@pytest.mark.postgres
def test_tokens_expired_while_the_trail_is_down_are_expired_again_later(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    """The token_metadata job cannot record token.expire: the run fails and the overdue
    token is left active (it is past its exp, so no verifier accepts it either way); the
    next run marks it expired with its event."""
    with admin_stack(tmp_path, overrides={"audit_store_url": fresh_postgres_url}) as stack:
        with stack.stack.browser() as b:
            assert b.get(stack.url + "/auth/login").status_code == 200
        with stack.stack.services.engine.begin() as conn:
            conn.execute(update(tokens).values(exp=int(time.time()) - 10))
        with refusing_connections(fresh_postgres_url):
            _assert_refused(stack.call("POST", "/admin/jobs/token_metadata/run"))
        assert _token_state(stack) == "active"
        assert (
            stack.call("GET", "/admin/jobs/token_metadata/runs").json()["runs"][0]["outcome"]
            == "failure"
        )
        again = stack.call("POST", "/admin/jobs/token_metadata/run")
        assert again.json()["counts"] == {"tokens_expired": 1}
        assert len(stack.events(types=("token.expire",))) == 1
        assert _token_state(stack) == "expired"


@pytest.mark.postgres
def test_list_entries_removed_while_the_trail_is_down_are_removed_again_later(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    """The access_lists job cannot record access_list.remove: the run fails and the
    expired entry stays (expired entries are not enforced); the next run removes it with
    its event."""
    with admin_stack(tmp_path, overrides={"audit_store_url": fresh_postgres_url}) as stack:
        added = stack.call(
            "POST",
            "/admin/lists",
            json={"list": "deny", "kind": "client", "value": "c-1", "reason": "test"},
        )
        assert added.status_code == 201, added.text
        with stack.stack.services.engine.begin() as conn:
            conn.execute(update(access_list).values(expires_at=1))
        with refusing_connections(fresh_postgres_url):
            _assert_refused(stack.call("POST", "/admin/jobs/access_lists/run"))
        (entry,) = stack.call("GET", "/admin/lists").json()["entries"]
        assert entry["id"] == added.json()["id"]
        again = stack.call("POST", "/admin/jobs/access_lists/run")
        assert again.json()["counts"] == {"access_list_entries_removed": 1}
        (removed,) = stack.events(types=("access_list.remove",))
        assert removed["details"]["why"] == "expired"
        assert stack.call("GET", "/admin/lists").json()["entries"] == []


@pytest.mark.postgres
def test_a_key_rotation_the_trail_cannot_record_is_discarded(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    """The token_keys job cannot record key.rotate: the run fails and the new key is
    discarded: it never signed and is no longer published; the next run rotates with
    its event."""
    overrides = {"audit_store_url": fresh_postgres_url, "token_key_rotation_interval_s": 1}
    with admin_stack(tmp_path, overrides=overrides) as stack:
        (first,) = httpx.get(stack.url + "/.well-known/jwks.json").json()["keys"]
        time.sleep(1.1)  # the key is due for rotation
        with refusing_connections(fresh_postgres_url):
            _assert_refused(stack.call("POST", "/admin/jobs/token_keys/run"))
        assert httpx.get(stack.url + "/.well-known/jwks.json").json()["keys"] == [first]
        with stack.stack.services.engine.connect() as conn:
            assert conn.execute(select(signing_keys.c.kid)).scalars().all() == [first["kid"]]
        again = stack.call("POST", "/admin/jobs/token_keys/run")
        assert again.json()["counts"]["keys_rotated"] == 1
        _first_key, rotated = stack.events(types=("key.rotate",))
        assert rotated["details"]["old_kid"] == first["kid"]
        kids = [k["kid"] for k in httpx.get(stack.url + "/.well-known/jwks.json").json()["keys"]]
        assert kids == [first["kid"], rotated["details"]["new_kid"]]


@pytest.mark.postgres
def test_signing_key_rotation_unrecorded_leaves_no_key(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    """POST /admin/keys/signing/rotate while the audit store refuses connections: 503,
    and the key set and the signing key are as they were (no unrecorded key signs)."""
    with admin_stack(tmp_path, overrides={"audit_store_url": fresh_postgres_url}) as stack:
        before = httpx.get(stack.url + "/.well-known/jwks.json").json()
        with refusing_connections(fresh_postgres_url):
            _assert_refused(stack.call("POST", "/admin/keys/signing/rotate"))
        after = httpx.get(stack.url + "/.well-known/jwks.json").json()
        assert after == before
        rotated = stack.call("POST", "/admin/keys/signing/rotate")
        assert rotated.status_code == 200, rotated.text
        _first_key, event = stack.events(types=("key.rotate",))
        assert event["details"]["new_kid"] == rotated.json()["new_kid"]


@pytest.mark.postgres
def test_checkpoint_key_rotation_unrecorded_leaves_no_key(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    """POST /admin/keys/checkpoint/rotate while the audit store refuses connections: 503,
    and the checkpoint keys are as they were, on disk too: no head is ever signed by a key
    whose rotation was not recorded. Recorded, the new key signs from then on."""
    with admin_stack(tmp_path, overrides={"audit_store_url": fresh_postgres_url}) as stack:
        keys_dir = stack.stack.settings.resolved_audit_keys_dir()
        files = sorted(p.name for p in keys_dir.iterdir())
        before = stack.call("GET", "/admin/keys").json()["checkpoint"]
        with refusing_connections(fresh_postgres_url):
            _assert_refused(stack.call("POST", "/admin/keys/checkpoint/rotate"))
        assert stack.call("GET", "/admin/keys").json()["checkpoint"] == before
        assert sorted(p.name for p in keys_dir.iterdir()) == files
        rotated = stack.call("POST", "/admin/keys/checkpoint/rotate")
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["new_kid"]
        (event,) = [
            e
            for e in stack.events(types=("key.rotate",))
            if e["details"]["purpose"] == "checkpoint"
        ]
        assert (event["details"]["old_kid"], event["details"]["new_kid"]) == (before["active"], new)
        after = stack.call("GET", "/admin/keys").json()["checkpoint"]
        assert after["active"] == new
        assert sorted(after["kids"]) == sorted([*before["kids"], new])
