"""Fixtures of the DB-API tests: a private PostgreSQL and MariaDB (shared, or one per destructive
test), pools."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from geventpool.dbapi import ConnectionPool
from geventpool.testing.invariants import check_invariants
from geventpool.testing.mariadb import MariaDBServer
from geventpool.testing.postgres import PostgresServer

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresServer]:
    """One PostgreSQL for the non-destructive tests (never stopped by them)."""
    with PostgresServer() as server:
        yield server


@pytest.fixture
def pg_private() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test only: it may stop, kill and restart it."""
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDBServer]:
    """One MariaDB for the non-destructive tests (never stopped by them)."""
    with MariaDBServer() as server:
        yield server


@pytest.fixture
def mariadb_private() -> Iterator[MariaDBServer]:
    """A MariaDB of this test only: it may stop, kill and restart it."""
    with MariaDBServer() as server:
        yield server


@pytest.fixture
def make_pool(request: pytest.FixtureRequest) -> Iterator[Callable[..., ConnectionPool]]:
    """Build pools that are invariant-checked and closed at the end of the test."""
    pools: list[ConnectionPool] = []

    def make(*args: Any, **kwargs: Any) -> ConnectionPool:
        if _is_pg(args):
            kwargs.setdefault("application_name", request.node.name[:60])
        pool_class = kwargs.pop("pool_class", ConnectionPool)
        pool = pool_class(*args, **kwargs)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        check_invariants(pool)
        pool.close(timeout=2)


def _is_pg(args: tuple[Any, ...]) -> bool:
    return bool(args) and getattr(args[0], "__name__", "") in ("psycopg2", "psycopg")


@pytest.fixture
def deaf_port() -> Iterator[int]:
    """A port that accepts TCP connections (kernel backlog) but never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture
def closed_port() -> int:
    """A port nobody listens on (connections are refused)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port
