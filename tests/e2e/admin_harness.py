"""The login stack with administration: people with roles, an API key per role, and
helpers to call the admin API over real HTTP with or without a justification."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from login_harness import Stack, running_stack

from kroonika.admin import ApiKeys

ADMIN = "38001085718"
SECOND_ADMIN = "60001019906"
AUDITOR = "60001017716"
SECURITY = "40404040009"
PRIVACY = "37101010021"
PEOPLE = {ADMIN: ["admin"], SECOND_ADMIN: ["admin"], AUDITOR: ["auditor"]}
WHY = "INC-1234 checking the admin API in a test"


@dataclass
class AdminStack:
    stack: Stack
    keys: dict[str, str]  # role -> bearer API key

    @property
    def url(self) -> str:
        return self.stack.service

    def call(
        self,
        method: str,
        path: str,
        *,
        role: str | None = "admin",
        why: str | None = WHY,
        **kw: Any,
    ) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if role is not None:
            headers["authorization"] = f"Bearer {self.keys[role]}"
        if why is not None:
            headers["x-justification"] = why
        return httpx.request(method, self.url + path, headers=headers, timeout=60, **kw)

    def events(self, **query: Any) -> list[dict[str, Any]]:
        return self.stack.events(**query)


@contextmanager
def admin_stack(
    tmp_path: Path, *, overrides: dict[str, Any] | None = None, **kw: Any
) -> Iterator[AdminStack]:
    values: dict[str, Any] = {
        "admin_bootstrap": PEOPLE,
        "jobs_enabled": False,
        "ratelimit_enabled": False,  # the admin:ip limit is tested with the limiter
        **(overrides or {}),
    }
    with running_stack(tmp_path, settings_overrides=values, **kw) as stack:
        api_keys = ApiKeys(stack.services.engine, clock=stack.services.clock)
        keys = {}
        for role in ("admin", "auditor", "security", "privacy"):
            _, value = api_keys.create(f"test-{role}", [role], by="test", ttl_s=3600)
            keys[role] = value
        yield AdminStack(stack, keys)
