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
from geventpool.testing.pgbouncer import POOL_MODES, PgBouncerServer
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
def pgbouncers(pg: PostgresServer) -> Iterator[dict[str, PgBouncerServer]]:
    """A PgBouncer per pooling mode in front of ``pg``, started when first asked for (never stopped
    by the tests)."""
    started: dict[str, PgBouncerServer] = {}

    class Lazy(dict[str, PgBouncerServer]):
        def __missing__(self, mode: str) -> PgBouncerServer:
            bouncer = started[mode] = self[mode] = PgBouncerServer(pg, mode).start()
            return bouncer

    yield Lazy()
    for bouncer in started.values():
        bouncer.cleanup()


@pytest.fixture(params=POOL_MODES)
def pgbouncer(request: pytest.FixtureRequest, pgbouncers: dict[str, PgBouncerServer]) -> PgBouncerServer:
    """The shared PgBouncer, once per pooling mode (session, transaction)."""
    bouncer: PgBouncerServer = pgbouncers[request.param]
    return bouncer


@pytest.fixture(params=POOL_MODES)
def pgbouncer_private(
    request: pytest.FixtureRequest, pg_private: PostgresServer
) -> Iterator[PgBouncerServer]:
    """A PgBouncer of this test only, in front of its own PostgreSQL, once per pooling mode: the
    test may restart, kill or pause either."""
    with PgBouncerServer(pg_private, request.param) as bouncer:
        yield bouncer


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
