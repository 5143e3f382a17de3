"""Every snippet of eventlet's db_pool documentation page, run with geventpool.

The page is ``doc/source/modules/db_pool.rst`` of eventlet 0.41.3 (its sdist
on PyPI; eventlet is MIT-licensed, (c) Bob Ippolito, Linden Research and the
Eventlet contributors); the lines marked ``[page: ...]`` below are its
snippets, quoted so that they run.

``python docs/migration/eventlet_db_pool_snippets.py`` starts a private
MariaDB and a private PostgreSQL on 127.0.0.1.  The page's
``ConnectionPool(MySQLdb, host='localhost', user='root', passwd='')`` runs
as written: for MySQLdb (libmariadb) ``host='localhost'`` means the server's
Unix socket, which ``MYSQL_UNIX_PORT`` points at the private server's, and
that server's ``root@localhost`` has an empty password.  Each snippet runs
as the page shows it, only the import changed (the page leaves it out:
``from eventlet.db_pool import ConnectionPool``), followed by the checks of
what the page says: one ``ok:`` line per claim, exit status 1 if one fails.
"""
# ruff: noqa: I001 (each snippet's import sits beside it)

from __future__ import annotations

import logging
import os
import time
from typing import Any

import gevent

from geventpool.testing import wait_until
from geventpool.testing.mariadb import MariaDBServer
from geventpool.testing.postgres import PostgresServer


def check(condition: object, claim: str) -> None:
    if not condition:
        raise SystemExit(f"FAILED: {claim}")
    print(f"ok: {claim}", flush=True)


class Warnings(logging.Handler):
    """The warnings geventpool.dbapi logs (eventlet print()s its own)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def eventually(predicate: Any, timeout: float = 10.0) -> bool:
    """Whether ``predicate()`` comes true within ``timeout`` seconds (polled, green)."""
    try:
        wait_until(predicate, timeout=timeout, interval=0.05)
    except AssertionError:
        return False
    return True


def root_sessions(db: MariaDBServer) -> int:
    """Client sessions of MariaDB's root login (the page's user) open now."""
    rows = db.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'root'")
    return int(rows[0][0])


def page_snippets(db: MariaDBServer, warnings: Warnings) -> None:
    from geventpool.dbapi import ConnectionPool  # was: from eventlet.db_pool import ConnectionPool

    # [page: the pool]
    import MySQLdb
    cp = ConnectionPool(MySQLdb, host='localhost', user='root', passwd='')
    # [/page]
    check((cp.min_size, cp.max_size, cp.max_idle, cp.max_age, cp.connect_timeout) == (0, 4, 10, 30, 5)
          and cp.threaded,
          "ConnectionPool(MySQLdb, host='localhost', user='root', passwd=''): eventlet's defaults, "
          "MySQLdb in OS threads as eventlet's tpool")

    # [page: get]
    conn = cp.get()
    # [/page]
    cursor = conn.cursor()
    cursor.execute("SELECT CURRENT_USER()")
    check(cursor.fetchone()[0] == "root@localhost" and "UNIX socket" in conn.get_host_info(),
          "cp.get(): a connection as root@localhost, over the Unix socket")
    first = conn

    # [page: get, use, put]
    conn = cp.get()
    try:
        result = conn.cursor().execute('SELECT NOW()')
    finally:
        cp.put(conn)
    # [/page]
    check(result == 1, "conn.cursor().execute('SELECT NOW()') in try/finally cp.put(conn): "
                       "MySQLdb's row count, 1")
    check(conn is not first, "the second get() lent another connection (the first one is still out)")

    # The page never puts the first connection back: its name is reused above, so the proxy is
    # dropped while still checked out.  eventlet then loses that slot for good (max_size 4 becomes
    # 3); geventpool's next housekeeping pass (within a second) discards the connection and frees
    # the slot, with a warning.
    del first
    reclaimed = eventually(lambda: cp.free() == 4)
    check(reclaimed and any("dropped without being returned" in m for m in warnings.messages),
          "the page's first get(), never put back: the connection is discarded, its slot freed, "
          "with a warning")

    # "After you've returned a connection object to the pool, it becomes useless and will
    # raise exceptions if any of its methods are called."
    try:
        conn.cursor()
    except AttributeError as error:  # geventpool's ConnectionReturned is an AttributeError
        raised = type(error).__name__
    else:
        raised = ""
    check(raised == "ConnectionReturned" and not conn,
          "a connection put back is useless: any method raises (ConnectionReturned, an AttributeError)")
    cp.close()


def constructor_arguments(db: MariaDBServer) -> None:
    import MySQLdb

    from geventpool.dbapi import ConnectionPool, ConnectTimeout

    credentials = {"host": "localhost", "user": "root", "passwd": ""}  # the page's

    # max_size: the number of concurrent connections to the database
    cp = ConnectionPool(MySQLdb, max_size=2, **credentials)
    peak = 0

    def query() -> None:
        nonlocal peak
        conn = cp.get()
        try:
            peak = max(peak, root_sessions(db))
            conn.cursor().execute("SELECT SLEEP(0.2)")
        finally:
            cp.put(conn)

    gevent.joinall([gevent.spawn(query) for _ in range(6)], raise_error=True, timeout=60)
    check(peak == 2, "max_size=2: 6 greenlets, at most 2 connections open at the server")
    cp.close()
    check(eventually(lambda: root_sessions(db) == 0), "max_size=2: close() left no connection at the server")

    # min_size: "not very useful" in eventlet (it opens them once); geventpool keeps them open
    cp = ConnectionPool(MySQLdb, min_size=2, **credentials)
    cp.put(cp.get())
    check(eventually(lambda: root_sessions(db) == 2), "min_size=2: two connections kept open")
    cp.close()
    check(eventually(lambda: root_sessions(db) == 0), "min_size=2: close() left no connection at the server")

    # max_idle: a timer closes connections idle for longer
    cp = ConnectionPool(MySQLdb, max_idle=1, **credentials)
    cp.put(cp.get())
    check(root_sessions(db) == 1 and len(cp.free_items) == 1,
          "max_idle=1: the connection put back stays open at first")
    started = time.monotonic()
    closed = eventually(lambda: root_sessions(db) == 0)
    waited = time.monotonic() - started
    check(closed and 0.9 <= waited < 5 and not cp.free_items,
          f"max_idle=1: an idle connection is closed by the pool's timer ({waited:.1f} s)")
    cp.close()

    cp = ConnectionPool(MySQLdb, max_idle=0, **credentials)
    conn = cp.get()
    check(root_sessions(db) == 1, "max_idle=0: one connection open while it is out")
    cp.put(conn)
    check(not cp.free_items and eventually(lambda: root_sessions(db) == 0),
          "max_idle=0: every connection is closed upon its return")
    cp.close()

    # max_age: measured from the connection's creation, throughout its life
    cp = ConnectionPool(MySQLdb, max_age=1, **credentials)
    conn = cp.get()
    gevent.sleep(1.2)  # holding it past max_age
    cursor = conn.cursor()
    cursor.execute("SELECT 1")
    check(cursor.fetchone() == (1,), "max_age=1: a connection held past max_age is not closed while out")
    cp.put(conn)
    check(not cp.free_items and eventually(lambda: root_sessions(db) == 0),
          "max_age=1: it is closed when put back")
    cp.put(cp.get())  # a new connection, idle from now on: max_idle (10 s) is not what closes it
    started = time.monotonic()
    closed = eventually(lambda: root_sessions(db) == 0)
    waited = time.monotonic() - started
    check(closed and waited < 5 and not cp.free_items,
          f"max_age=1: an idle connection older than max_age is closed by the timer ({waited:.1f} s)")
    cp.close()

    cp = ConnectionPool(MySQLdb, max_age=0, **credentials)
    cp.put(cp.get())
    check(not cp.free_items and eventually(lambda: root_sessions(db) == 0),
          "max_age=0: every connection is closed when put back")
    cp.close()

    # connect_timeout: a connect() that takes too long raises ConnectTimeout from get()
    cp = ConnectionPool(MySQLdb, connect_timeout=1, **credentials)
    db.pause()  # SIGSTOP: the socket accepts, the server never greets
    started = time.monotonic()
    try:
        cp.get()
    except ConnectTimeout:
        waited = time.monotonic() - started
    else:
        waited = -1.0
    finally:
        db.resume()
    check(0.9 <= waited < 5, f"connect_timeout=1: get() raises ConnectTimeout ({waited:.1f} s)")
    cp.put(cp.get())
    check(len(cp.free_items) == 1, "connect_timeout=1: once the server answers, get() connects")
    cp.close()


def database_connector(db: MariaDBServer) -> None:
    import MySQLdb

    from geventpool.dbapi import ConnectionPool, DatabaseConnector  # was: from eventlet.db_pool import ...

    # [page: DatabaseConnector]
    dc = DatabaseConnector(MySQLdb,
         {'db.internal.example.com': {'user': 'internal', 'passwd': 's33kr1t'},
          'localhost': {'user': 'root', 'passwd': ''}})
    # [/page]
    pool = dc.get('localhost', db.database)
    conn = pool.get()
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT CURRENT_USER(), DATABASE()")
        row = cursor.fetchone()
    finally:
        pool.put(conn)
    check(row == ("root@localhost", db.database) and dc.get('localhost', db.database) is pool,
          "DatabaseConnector: dc.get('localhost', db) is a pool with the 'localhost' credentials, "
          "one per (host, database)")
    # db.internal.example.com is the page's made-up host: its pool is made (no I/O), never used
    made: list[dict[str, Any]] = []

    class Recorded(ConnectionPool):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made.append(kwargs)
            super().__init__(*args, **kwargs)

    other = DatabaseConnector(MySQLdb,
         {'db.internal.example.com': {'user': 'internal', 'passwd': 's33kr1t'},
          'localhost': {'user': 'root', 'passwd': ''}}, conn_pool=Recorded)
    other.get('db.internal.example.com', 'accounts')
    check(made == [{"database": "accounts", "host": "db.internal.example.com", "user": "internal",
                    "passwd": "s33kr1t"}],
          "conn_pool=: the pool class used; a host's own credentials go to its pool, unused until get()")
    other.close()
    dc.close()

    # 'default': used for every host without an entry of its own; the rest goes to the pools
    dc = DatabaseConnector(MySQLdb, {'default': {'user': 'root', 'passwd': ''}}, max_size=1)
    pool = dc.get('localhost', 'mysql')
    with pool.item() as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT CURRENT_USER(), DATABASE()")
        row = cursor.fetchone()
    check(row == ("root@localhost", "mysql"), "credentials['default'] serves a host without an entry")
    check(pool.max_size == 1, "the other arguments of DatabaseConnector go to each ConnectionPool")
    dc.close()


def other_drivers_and_classes(db: MariaDBServer, pg: PostgresServer) -> None:
    import MySQLdb
    import psycopg2

    from geventpool.dbapi import ConnectionPool, RawConnectionPool, TpooledConnectionPool

    # "It has currently been tested and used with both MySQLdb and psycopg2."  The page's
    # get/use/put snippet with psycopg2 against PostgreSQL (port: the private server's; psycopg2
    # knows no passwd=, its keyword is password=).
    for pool_class in (ConnectionPool, RawConnectionPool, TpooledConnectionPool):
        cp = pool_class(psycopg2, host='localhost', user=pg.user, password='', port=pg.port)
        conn = cp.get()
        try:
            cursor = conn.cursor()
            result = cursor.execute('SELECT NOW()')
            now = cursor.fetchone()[0]
        finally:
            cp.put(conn)
        threaded = cp.threaded
        cp.close()
        check(result is None and now is not None and threaded == (pool_class is TpooledConnectionPool),
              f"psycopg2, {pool_class.__name__}: get(), execute('SELECT NOW()'), put() "
              f"({'OS threads' if threaded else 'no threads'})")

    # TpooledConnectionPool (eventlet's ConnectionPool) and RawConnectionPool with MySQLdb
    for pool_class in (TpooledConnectionPool, RawConnectionPool):
        cp = pool_class(MySQLdb, host='localhost', user='root', passwd='')
        conn = cp.get()
        try:
            result = conn.cursor().execute('SELECT NOW()')
        finally:
            cp.put(conn)
        threaded = cp.threaded
        cp.close()
        check(result == 1 and threaded == (pool_class is TpooledConnectionPool),
              f"MySQLdb, {pool_class.__name__}: the page's snippet "
              f"({'OS threads' if threaded else 'no threads: MySQLdb blocks the hub, as under eventlet'})")


def main() -> None:
    warnings = Warnings()
    logging.getLogger("geventpool").addHandler(warnings)
    with MariaDBServer() as db, PostgresServer() as pg:
        # the page's host='localhost' is MySQLdb's Unix socket: the private server's
        os.environ["MYSQL_UNIX_PORT"] = db.socket_path
        with gevent.Timeout(150):
            page_snippets(db, warnings)
            constructor_arguments(db)
            database_connector(db)
            other_drivers_and_classes(db, pg)
    print("eventlet_db_pool_snippets: all checks passed")


if __name__ == "__main__":
    main()
