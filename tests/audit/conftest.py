"""Fixtures for the audit library tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from audit_kit import TrailKit, make_kit


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that takes this runs on SQLite and on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


@pytest.fixture
def kit_factory(tmp_path: Path) -> Iterator[Callable[..., TrailKit]]:
    made: list[TrailKit] = []

    def factory(url: str | None = None, **kw: object) -> TrailKit:
        kit = make_kit(url or f"sqlite:///{tmp_path / 'audit.db'}", tmp_path / "keys", **kw)  # type: ignore[arg-type]
        made.append(kit)
        return kit

    yield factory
    for kit in made:
        kit.store.close()


@pytest.fixture
def kit(kit_factory: Callable[..., TrailKit]) -> TrailKit:
    return kit_factory()
