"""Fixtures for the sink tests (helpers are in ``sink_kit``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sink_kit import Kit, Rsyslog, make_kit, start_rsyslog, stop_rsyslog


@pytest.fixture
def kit_factory(tmp_path: Path) -> Iterator[Callable[..., Kit]]:
    made: list[Kit] = []

    def factory(url: str | None = None, **kw: object) -> Kit:
        kit = make_kit(url or f"sqlite:///{tmp_path / 'audit.db'}", tmp_path / "keys", **kw)  # type: ignore[arg-type]
        made.append(kit)
        return kit

    yield factory
    for kit in made:
        kit.store.close()


@pytest.fixture
def kit(kit_factory: Callable[..., Kit]) -> Kit:
    return kit_factory()


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    r = start_rsyslog(tmp_path / "rsyslog")
    yield r
    stop_rsyslog(r)
