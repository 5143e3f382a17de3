"""sqlite3, the embedded default: F1 and F7 (writers wait green), attributes, a shared-cache URI."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import gevent
import gevent.event
import pytest

from geventpool.dbapi import ConnectionPool
from geventpool.testing.monitor import HubMonitor

MakePool = Callable[..., ConnectionPool]


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "t.db")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.commit()
    conn.close()
    return path


def test_f1_uncommitted_write_rolled_back(db: str, make_pool: MakePool) -> None:
    pool = make_pool(sqlite3, db, max_size=2)
    conn = pool.get()
    conn.execute("INSERT INTO t VALUES (1)")
    assert conn.in_transaction
    pool.put(conn)
    with pool.item() as conn:
        assert not conn.in_transaction
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    with pool.connection() as conn:
        conn.execute("INSERT INTO t VALUES (2)")
    with pool.item() as conn:
        assert [tuple(r) for r in conn.execute("SELECT x FROM t")] == [(2,)]


def test_session_attributes_restored(db: str, make_pool: MakePool) -> None:
    pool = make_pool(sqlite3, db, max_size=1)
    with pool.item() as conn:
        conn.row_factory = sqlite3.Row
        conn.isolation_level = None
        first = conn.raw
    with pool.item() as conn:
        assert conn.raw is first
        assert conn.row_factory is None and conn.isolation_level == ""


def test_f7_writers_wait_green_not_in_c(db: str, make_pool: MakePool) -> None:
    pool = make_pool(sqlite3, db, max_size=2, timeout=5)
    order: list[str] = []
    holding = gevent.event.Event()

    def holder() -> None:
        with pool.connection() as conn:
            conn.execute("INSERT INTO t VALUES (1)")  # takes the write lock
            holding.set()
            gevent.sleep(0.3)
            order.append("holder commits")

    def writer() -> None:
        holding.wait()
        with pool.connection() as conn:
            conn.executemany("INSERT INTO t VALUES (?)", iter([(2,), (3,)]))
            order.append("writer wrote")

    with HubMonitor() as monitor:
        gevent.joinall([gevent.spawn(holder), gevent.spawn(writer)], raise_error=True)
    assert order == ["holder commits", "writer wrote"]
    assert monitor.max_stall < 0.05  # sqlite's C busy wait would stall 0.3 s
    with pool.item() as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (3,)


def test_f7_with_conn_commit_waits_green(db: str, make_pool: MakePool) -> None:
    """sqlite3's ``with conn:`` commits on exit: that commit waits for a reader's lock green too."""
    pool = make_pool(sqlite3, db, max_size=1, timeout=5)
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT * FROM t").fetchall()  # a shared lock: a commit must wait for it
    gevent.spawn_later(0.3, reader.rollback)
    try:
        with HubMonitor() as monitor, pool.item() as conn:
            started = time.monotonic()
            with conn:
                conn.execute("INSERT INTO t VALUES (4)")
            assert time.monotonic() - started > 0.2  # it waited for the reader...
            assert not conn.in_transaction
        assert monitor.max_stall < 0.05  # ...in the hub, not in C
        with pool.item() as conn:
            with pytest.raises(ZeroDivisionError), conn:
                conn.execute("INSERT INTO t VALUES (5)")
                raise ZeroDivisionError
            assert conn.execute("SELECT x FROM t").fetchall() == [(4,)]  # the failed block rolled back
    finally:
        reader.close()


def test_f7_lock_timeout_raises_like_sqlite(db: str, make_pool: MakePool) -> None:
    pool = make_pool(sqlite3, db, max_size=2, timeout=5, check_same_thread=True)
    blocker = sqlite3.connect(db)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        pool2 = make_pool(sqlite3, db, 0.2, max_size=1)  # positional timeout: 0.2 s
        with HubMonitor() as monitor, pool2.item() as conn:
            started = time.monotonic()
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                conn.execute("INSERT INTO t VALUES (9)")
            assert 0.15 < time.monotonic() - started < 1.0
        assert monitor.max_stall < 0.05
        assert pool2.stats()["connections_discarded"] == 0  # a lock error is not a disconnect
    finally:
        blocker.rollback()
        blocker.close()
    del pool


def test_shared_cache_memory_database(make_pool: MakePool) -> None:
    uri = f"file:shared{os.getpid()}?mode=memory&cache=shared"
    keeper = sqlite3.connect(uri, uri=True)  # the database lives while a connection is open
    try:
        pool = make_pool(sqlite3, uri, uri=True, max_size=3)
        with pool.connection() as a, pool.connection() as b:
            a.execute("CREATE TABLE m (x)")
            a.commit()
            assert b.execute("SELECT count(*) FROM m").fetchone() == (0,)
    finally:
        keeper.close()


def test_connect_callable(db: str, make_pool: MakePool) -> None:
    pool = make_pool(lambda: sqlite3.connect(db), max_size=1)
    with pool.item() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert pool.driver.name == "sqlite3"


def test_f7_executescript_waits_green(db: str, make_pool: MakePool) -> None:
    """``executescript`` on the connection and on a cursor waits for another greenlet's write lock
    green (sqlite's C busy wait would freeze the hub for as long as the lock is held)."""
    pool = make_pool(sqlite3, db, max_size=2, timeout=5)
    holding = gevent.event.Event()
    order: list[str] = []

    def holder() -> None:
        with pool.connection() as conn:
            conn.execute("INSERT INTO t VALUES (1)")  # takes the write lock
            holding.set()
            gevent.sleep(0.5)
            order.append("holder commits")

    def writer(on_cursor: bool) -> None:
        holding.wait()
        with pool.item() as conn:
            target = conn.cursor() if on_cursor else conn
            target.executescript("INSERT INTO t VALUES (2); INSERT INTO t VALUES (3);")
            order.append("writer wrote")

    for on_cursor in (False, True):
        holding.clear()
        order.clear()
        with HubMonitor() as monitor:
            gevent.joinall([gevent.spawn(holder), gevent.spawn(writer, on_cursor)], raise_error=True)
        assert order == ["holder commits", "writer wrote"]
        # sqlite's busy wait would stop the hub for the whole 0.5 s; allow a loaded machine's noise
        assert monitor.max_stall < 0.25, (on_cursor, monitor.worst[:3])
        assert monitor.beats > 40  # the heartbeat (every 5 ms) ran through the wait
    with pool.item() as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (6,)


def test_f7_executescript_lock_timeout_raises_like_sqlite(db: str, make_pool: MakePool) -> None:
    blocker = sqlite3.connect(db)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        pool = make_pool(sqlite3, db, 0.2, max_size=1)  # positional: sqlite3's own timeout
        with HubMonitor() as monitor, pool.item() as conn:
            started = time.monotonic()
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                conn.executescript("INSERT INTO t VALUES (9);")
            assert 0.15 < time.monotonic() - started < 1.0
        assert monitor.max_stall < 0.05
    finally:
        blocker.rollback()
        blocker.close()


def test_executescript_keeps_sqlite_semantics(db: str, make_pool: MakePool) -> None:
    """Pending work committed first, no implicit BEGIN, triggers and quoted ';' kept whole."""
    pool = make_pool(sqlite3, db, max_size=1)
    with pool.item() as conn:
        conn.execute("INSERT INTO t VALUES (1)")  # opens a transaction (legacy mode)
        cursor = conn.executescript(
            """
            CREATE TABLE log (msg TEXT);
            CREATE TRIGGER t_log AFTER INSERT ON t BEGIN
                INSERT INTO log VALUES ('a;b');
                INSERT INTO log VALUES ('c');
            END;
            INSERT INTO t VALUES (2);
            -- a comment at the end
            """
        )
        assert not conn.in_transaction  # committed, and the script opened none
        assert cursor.execute("SELECT msg FROM log").fetchall() == [("a;b",), ("c",)]
        with pytest.raises(TypeError, match="must be str"):
            conn.executescript(b"SELECT 1;")  # type: ignore[arg-type]
    with pool.item() as conn:
        assert conn.execute("SELECT x FROM t ORDER BY x").fetchall() == [(1,), (2,)]
