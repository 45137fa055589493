"""Fixtures shared by the job tests."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

sys.path.insert(0, str(Path(__file__).parents[1] / "audit"))

from audit_kit import make_kit


@pytest_asyncio.fixture
async def pg_trail(fresh_postgres_url: str, tmp_path: Path) -> AsyncIterator[Any]:
    """A started trail (an ``audit_kit.TrailKit``) on the test's own PostgreSQL database."""
    k = make_kit(fresh_postgres_url, tmp_path / "keys")
    await k.trail.start()
    yield k
    await k.trail.stop()
    k.store.close()
