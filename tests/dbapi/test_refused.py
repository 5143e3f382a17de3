"""A connect that no retry can fix reaches the caller at once (wrong password, unknown database).

Retrying these until the checkout timeout only delays the error (and, for a
password, counts against the account's lockout).  The pool hands the
driver's own error to the waiting caller, opens nothing in the background,
and tries again only when a caller asks; a fixed password is picked up.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable

import psycopg2
import pytest

from geventpool.dbapi import ConnectionPool
from geventpool.testing import wait_until
from geventpool.testing.postgres import PostgresServer

MakePool = Callable[..., ConnectionPool]
#: Far longer than the test: reaching it would mean the refusal was retried.
CHECKOUT_TIMEOUT = 120.0


@pytest.fixture
def pg_password(pg_private: PostgresServer) -> Iterator[PostgresServer]:
    pg_private.require_password("app", "right")
    yield pg_private


def _pool(make_pool: MakePool, pg: PostgresServer, **overrides: Any) -> ConnectionPool:
    kwargs = {"host": pg.host, "port": pg.port, "user": "app", "password": "right", "dbname": pg.dbname,
              "max_size": 4, "timeout": CHECKOUT_TIMEOUT, "connect_timeout": 5}
    kwargs.update(overrides)
    return make_pool(psycopg2, **kwargs)


def _assert_refused_once(pool: ConnectionPool, expected: str) -> None:
    with pytest.raises(psycopg2.OperationalError, match=expected):
        pool.get()
    assert pool.stats()["connections_errors"] == 1
    wait_until(lambda: pool._connector.running == 0, timeout=10)  # nothing retries in the background
    assert pool.stats()["connections_errors"] == 1


@pytest.mark.guard(60)
def test_wrong_password_is_raised_at_once_and_retried_only_on_demand(
    pg_password: PostgresServer, make_pool: MakePool
) -> None:
    pool = _pool(make_pool, pg_password, password="wrong")
    _assert_refused_once(pool, "password authentication failed")
    with pytest.raises(psycopg2.OperationalError):
        pool.get()
    assert pool.stats()["connections_errors"] == 2  # one attempt per caller
    # the password is fixed on the server: the next caller gets through
    pg_password.execute("ALTER ROLE app PASSWORD 'wrong'")
    conn = pool.get()
    try:
        cur = conn.cursor()
        cur.execute("SELECT current_user")
        assert cur.fetchone() == ("app",)
    finally:
        pool.put(conn)


@pytest.mark.guard(60)
def test_unknown_database_and_role_are_raised_at_once(
    pg_password: PostgresServer, make_pool: MakePool
) -> None:
    _assert_refused_once(_pool(make_pool, pg_password, dbname="no_such_db"), "does not exist")
    _assert_refused_once(_pool(make_pool, pg_password, user="no_such_role"), "password authentication failed")


@pytest.mark.guard(60)
def test_every_waiter_gets_an_answer_not_a_timeout(pg_password: PostgresServer, make_pool: MakePool) -> None:
    """Ten callers wait at once: each one gets the refusal (one attempt each), none waits out the timeout."""
    import gevent

    pool = _pool(make_pool, pg_password, password="wrong")
    callers = [gevent.spawn(pool.get) for _ in range(10)]
    gevent.joinall(callers, timeout=60)
    assert all(c.dead for c in callers)
    assert all(isinstance(c.exception, psycopg2.OperationalError) for c in callers)
    assert pool.stats()["connections_errors"] <= 10


@pytest.mark.guard(60)
def test_server_down_is_still_retried(pg_private: PostgresServer, make_pool: MakePool) -> None:
    """The other side of the rule: a stopped server is transient; the pool waits and retries."""
    from geventpool import PoolTimeout

    pg_private.stop()
    pool = _pool(make_pool, pg_private, user=pg_private.user, password=None, timeout=1.0)
    with pytest.raises(PoolTimeout):
        pool.get()
    assert pool.stats()["connections_errors"] >= 1
