"""MySQL/MariaDB under gevent: mysqlclient (MySQLdb) in thread-pool mode, PyMySQL on gevent sockets.

Run: python examples/dbapi_mysql.py
Starts a private MariaDB (the Debian package mariadb-server) in a temporary
directory, then:

- MySQLdb blocks in C, so ``ConnectionPool`` runs its calls in the pool's
  OS threads: four 0.5 s queries run side by side and the hub keeps ticking;
- PyMySQL is pure Python: the pool connects it over gevent sockets, no
  monkey-patching needed;
- a greenlet killed in the middle of a query: the connection is discarded
  and the query stopped on the server (``KILL QUERY``).
"""

from __future__ import annotations

import sys
import time

import gevent
import MySQLdb
import pymysql

from geventpool.dbapi import ConnectionPool
from geventpool.testing.mariadb import MariaDBServer
from geventpool.testing.monitor import HubMonitor
from geventpool.testing.waiting import wait_until


def check(condition: bool, claim: str) -> None:
    if not condition:
        print(f"FAILED: {claim}")
        sys.exit(1)
    print(f"ok: {claim}")


def parallel_sleeps(module: object, server: MariaDBServer) -> None:
    pool = ConnectionPool(module, max_size=4, **server.connect_kwargs())
    mode = "thread-pool mode" if pool.threaded else "green"

    def sleepy() -> None:
        with pool.item() as conn:
            cur = conn.cursor()
            cur.execute("SELECT SLEEP(0.5)")
            cur.fetchall()

    with HubMonitor() as monitor:
        started = time.monotonic()
        gevent.joinall([gevent.spawn(sleepy) for _ in range(4)], raise_error=True)
        elapsed = time.monotonic() - started
    name = module.__name__  # type: ignore[attr-defined]
    check(elapsed < 1.5, f"{name} ({mode}): four 0.5 s queries took {elapsed:.2f} s together")
    check(monitor.max_stall < 0.1, f"{name}: the hub never stopped for 0.1 s (longest: "
          f"{monitor.max_stall * 1000:.0f} ms)")
    pool.close()


def kill_mid_query(server: MariaDBServer) -> None:
    pool = ConnectionPool(MySQLdb, max_size=1, **server.connect_kwargs())

    def forever() -> None:
        with pool.item() as conn:
            conn.cursor().execute("SELECT SLEEP(30) /* example */")

    slow = gevent.spawn(forever)
    wait_until(lambda: server.processlist("example"), 5)
    slow.kill()
    wait_until(lambda: not server.processlist("example"), 5)
    check(True, "the killed greenlet's query is gone from SHOW PROCESSLIST (KILL QUERY)")
    with pool.item() as conn:
        cur = conn.cursor()
        cur.execute("SELECT 1")
        check(cur.fetchone() == (1,), "the next caller gets a fresh connection")
    pool.close()


def main() -> None:
    with MariaDBServer() as server:
        parallel_sleeps(MySQLdb, server)
        parallel_sleeps(pymysql, server)
        kill_mid_query(server)
    print("dbapi_mysql: all checks passed")


if __name__ == "__main__":
    main()
