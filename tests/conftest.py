"""Shared test fixtures: real services (skip by hand, fail in CI), audit trails."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REQUIRE_SERVICES = os.environ.get("KROONIKA_REQUIRE_SERVICES") == "1"
POSTGRES_ADMIN_URL = os.environ.get(
    "KROONIKA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def service_reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip when a real service is missing; fail instead in CI
    (``KROONIKA_REQUIRE_SERVICES=1``) so a test can never skip there."""
    if service_reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} and KROONIKA_REQUIRE_SERVICES=1")
    pytest.skip(message)


def require_binary(name: str, path: str) -> None:
    if Path(path).exists():
        return
    message = f"{name} ({path}) is not installed"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} and KROONIKA_REQUIRE_SERVICES=1")
    pytest.skip(message)


@contextmanager
def temporary_database(prefix: str) -> Iterator[str]:
    """Create a uniquely named PostgreSQL database and drop it afterwards."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = POSTGRES_ADMIN_URL
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture
def redis_url() -> str:
    """The real Redis on this machine (skip by hand, fail in CI)."""
    require_service("Redis", "127.0.0.1", 6379)
    return "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    with temporary_database("kroonika_test") as url:
        yield url


@pytest.fixture(scope="module")
def module_postgres_url(postgres_url: str) -> Iterator[str]:
    """A database of its own for one test module (a module fixture's deployment)."""
    with temporary_database("kroonika_m") as url:
        yield url


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """A database of its own for one test (the audit store is append-only, so tests
    that tamper with it cannot share one)."""
    with temporary_database("kroonika_t") as url:
        yield url


@pytest.fixture
def second_postgres_url(postgres_url: str) -> Iterator[str]:
    """Another database of its own for one test (an audit store apart from the business
    database in ``fresh_postgres_url``)."""
    with temporary_database("kroonika_t") as url:
        yield url
