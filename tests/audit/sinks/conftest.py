"""Fixtures for the sink tests (helpers are in ``sink_kit``)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from http_collector import stop_leftovers
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


@pytest_asyncio.fixture
async def _servers_stopped() -> AsyncIterator[None]:
    yield
    await stop_leftovers()


@pytest.fixture(autouse=True)
def _no_server_outlives_its_test(request: pytest.FixtureRequest) -> None:
    """A test that fails (or times out) before it stops its HTTP collector or proxy:
    stop them after it, in its event loop, so that their sockets are closed now and
    not reported unclosed in whichever test the garbage collector next runs in."""
    if inspect.iscoroutinefunction(request.function):
        request.getfixturevalue("_servers_stopped")
