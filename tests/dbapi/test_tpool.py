"""Thread-pool mode (issue 13, item 2) with sqlite3, whose queries run in C: a query that sleeps in a
user function stands for a slow statement; psycopg2 in threads (its cancel).  MySQLdb's cases
(KILL QUERY) are in test_mysql.py."""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import psycopg2
import pytest

from geventpool import ConfigurationError
from geventpool.dbapi import (
    ConnectionAbandoned,
    ConnectionBusy,
    ConnectionPool,
    RawConnectionPool,
    TpooledConnectionPool,
)
from geventpool.dbapi.threaded import ThreadedConnection
from geventpool.testing.invariants import check_invariants
from geventpool.testing.monitor import HubMonitor
from geventpool.testing.postgres import PostgresServer
from geventpool.testing.waiting import wait_until

MakePool = Callable[..., ConnectionPool]


class Sleeper:
    """An SQL function ``sleep(seconds)`` that records how many threads run it at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.finished = 0
        self.threads: set[int] = set()

    def __call__(self, seconds: float) -> int:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.threads.add(threading.get_ident())
        try:
            time.sleep(seconds)  # releases the GIL, as a driver waiting for its server does
        finally:
            with self.lock:
                self.running -= 1
                self.finished += 1
        return 1

    def install(self, conn: Any) -> None:
        conn.create_function("sleep", 1, self)


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "t.db")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.commit()
    conn.close()
    return path


def test_mode_chosen_by_driver_or_class(db: str, make_pool: MakePool) -> None:
    import MySQLdb
    import pymysql

    assert not make_pool(sqlite3, db).threaded  # its lock waits are green; its queries are short
    assert make_pool(MySQLdb, host="127.0.0.1").threaded  # blocking C: threads (nothing opened yet)
    assert not make_pool(pymysql, host="127.0.0.1").threaded  # gevent sockets
    assert make_pool(sqlite3, db, pool_class=TpooledConnectionPool).threaded
    assert not make_pool(MySQLdb, host="127.0.0.1", pool_class=RawConnectionPool).threaded
    with pytest.raises(ConfigurationError, match="check_same_thread=True"):
        TpooledConnectionPool(sqlite3, db, check_same_thread=True)
    with pytest.raises(ConfigurationError, match="threads"):
        TpooledConnectionPool(sqlite3, db, threads=0)


def stall_of(query: Callable[[], Any], attempts: int = 3) -> float:
    """The hub's longest stall while ``query()`` runs (about 1 s): the best of up to ``attempts``
    runs, so that another process taking the CPU for a moment does not fail the test; a blocked
    hub (a stall near the query's whole second) fails every attempt at once."""
    best = math.inf
    for _ in range(attempts):
        with HubMonitor(interval=0.002) as monitor:
            started = time.monotonic()
            query()
            elapsed = time.monotonic() - started
        assert elapsed >= 0.95
        assert monitor.beats > 200  # the hub ran the heartbeat all along
        assert monitor.max_stall < 0.1, monitor.worst[:3]
        best = min(best, monitor.max_stall)
        if best < 0.020:
            break
    return best


def test_hub_stall_during_a_1s_query_under_20ms(db: str, make_pool: MakePool) -> None:
    sleeper = Sleeper()
    pool = make_pool(sqlite3, db, max_size=2, configure=sleeper.install, pool_class=TpooledConnectionPool)
    with pool.item() as conn:
        assert isinstance(conn.raw, ThreadedConnection)
        assert conn.execute("SELECT sleep(0.01)").fetchone() == (1,)
        assert stall_of(lambda: conn.execute("SELECT sleep(1.0)").fetchone()) < 0.020
    assert threading.get_ident() not in sleeper.threads


def test_threads_bounded_per_pool(db: str, make_pool: MakePool) -> None:
    sleeper = Sleeper()
    pool = make_pool(sqlite3, db, max_size=4, threads=2, configure=sleeper.install,
                     pool_class=TpooledConnectionPool)

    def query() -> None:
        with pool.item() as conn:
            conn.execute("SELECT sleep(0.1)").fetchall()

    gevent.joinall([gevent.spawn(query) for _ in range(6)], raise_error=True)
    assert sleeper.finished == 6
    assert sleeper.most == 2


@pytest.mark.parametrize("how", ["timeout", "kill"])
def test_interrupted_call_is_abandoned_and_discarded(db: str, make_pool: MakePool, how: str) -> None:
    """The thread finishes on its own; nobody uses the connection meanwhile; it is closed after."""
    sleeper = Sleeper()
    closes: list[tuple[int, int]] = []  # (id of the connection, calls finished when it was closed)

    class Tracked(sqlite3.Connection):
        def close(self) -> None:
            closes.append((id(self), sleeper.finished))
            super().close()

    pool = make_pool(sqlite3, db, max_size=1, threads=2, configure=sleeper.install, factory=Tracked,
                     pool_class=TpooledConnectionPool)
    seen: list[Any] = []

    def slow() -> None:
        with pool.item() as conn:
            seen.append(conn.raw)
            if how == "timeout":
                with gevent.Timeout(0.1):
                    conn.execute("SELECT sleep(0.5)")
            else:
                conn.execute("SELECT sleep(0.5)")

    worker = gevent.spawn(slow)
    wait_until(lambda: sleeper.running == 1, 5)
    if how == "kill":
        worker.kill()
    else:
        worker.join(5)
        assert isinstance(worker.exception, gevent.Timeout)
    abandoned: ThreadedConnection = seen[0]
    assert abandoned.abandoned
    assert sleeper.running == 1  # the thread still runs: it was not interrupted
    with pytest.raises(ConnectionAbandoned):
        abandoned.cursor()
    with pool.item() as conn:  # a new connection, while the old one's thread still runs
        assert conn.raw is not abandoned
        assert conn.execute("SELECT 7").fetchone() == (7,)
    assert pool.stats()["connections_discarded"] >= 1
    raw = abandoned.wrapped
    assert (id(raw), 0) not in closes
    # never touched here: closing it while its call runs is what the pool must not do either
    closed = wait_until(lambda: [c for c in closes if c[0] == id(raw)], 5,
                        message="the abandoned connection is closed once its call ends")
    assert closed == [(id(raw), 1)]  # closed after its call had finished, and once
    check_invariants(pool)


def test_caught_timeout_then_return_discards(db: str, make_pool: MakePool) -> None:
    """A borrower that swallows its own timeout and returns normally still gets the connection
    discarded: its thread may still be using it."""
    sleeper = Sleeper()
    pool = make_pool(sqlite3, db, max_size=1, threads=2, configure=sleeper.install,
                     pool_class=TpooledConnectionPool)
    conn = pool.get()
    first = conn.raw
    with pytest.raises(gevent.Timeout), gevent.Timeout(0.05):
        conn.execute("SELECT sleep(0.3)")
    with pytest.raises(ConnectionAbandoned):
        conn.execute("SELECT 1")
    pool.put(conn)
    with pool.item() as again:
        assert again.raw is not first
    check_invariants(pool)


def test_sqlite_lock_waits_in_the_thread(db: str, make_pool: MakePool) -> None:
    """In thread-pool mode sqlite's own busy wait runs in a worker thread: the hub stays free."""
    pool = make_pool(sqlite3, db, timeout=5, max_size=1, pool_class=TpooledConnectionPool)
    blocker = sqlite3.connect(db, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    gevent.spawn_later(0.3, blocker.rollback)
    try:
        with HubMonitor() as monitor, pool.connection() as conn:
            started = time.monotonic()
            conn.executescript("INSERT INTO t VALUES (1); INSERT INTO t VALUES (2);")
            assert time.monotonic() - started > 0.2
        assert monitor.max_stall < 0.02
        with pool.item() as conn:
            assert [tuple(r) for r in conn.execute("SELECT x FROM t ORDER BY x")] == [(1,), (2,)]
    finally:
        blocker.close()


def test_one_call_at_a_time_per_connection(db: str, make_pool: MakePool) -> None:
    """A connection shared by two greenlets (a misuse): the second call is refused, not run
    concurrently in another thread."""
    sleeper = Sleeper()
    pool = make_pool(sqlite3, db, max_size=1, threads=2, configure=sleeper.install,
                     pool_class=TpooledConnectionPool)
    with pool.item() as conn:
        first = gevent.spawn(lambda: conn.execute("SELECT sleep(0.2)").fetchone())
        wait_until(lambda: sleeper.running == 1, 5)
        with pytest.raises(ConnectionBusy, match="another greenlet"):
            conn.execute("SELECT 1")
        assert first.get(timeout=5) == (1,)
        assert conn.execute("SELECT 2").fetchone() == (2,)
    assert sleeper.most == 1


def test_psycopg2_in_threads_cancels_an_abandoned_query(pg: PostgresServer, make_pool: MakePool) -> None:
    """TpooledConnectionPool with psycopg2 (eventlet's default shape): a killed greenlet's query is
    cancelled with libpq's cancel request, sent from a thread."""
    pool = make_pool(psycopg2, pg.dsn, max_size=1, pool_class=TpooledConnectionPool)
    assert pool.threaded and not pool.green

    def slow() -> None:
        with pool.item() as conn:
            conn.cursor().execute("SELECT pg_sleep(30) /* tpool_pg */")

    worker = gevent.spawn(slow)
    wait_until(lambda: pg.running_queries("tpool_pg"), 5)
    worker.kill()
    wait_until(lambda: not pg.running_queries("tpool_pg"), 5, message="the query is cancelled")
    with pool.item() as conn:
        cur = conn.cursor()
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    check_invariants(pool)
