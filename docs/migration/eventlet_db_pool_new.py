"""The new side of the eventlet db_pool guide, run by tests/docs against real databases.

``python docs/migration/eventlet_db_pool_new.py`` starts a private PostgreSQL
(geventpool.testing.postgres) for the psycopg2 part and uses a temporary
sqlite3 file for the sqlite3 part, runs the code the guide shows and checks
what the guide claims: one ``ok:`` line per claim, exit status 1 if one fails.
"""
# ruff: noqa: I001 (the imports the guide shows come after a marker)

from __future__ import annotations

import os
import tempfile

import gevent

from geventpool.testing.postgres import PostgresServer

# [new-code]
import psycopg2

# was: from eventlet.db_pool import ConnectionPool
from geventpool.dbapi import ConnectionPool


def make_pool(dsn):
    # eventlet's arguments and defaults; no tpool threads:
    # psycopg2 waits through gevent
    return ConnectionPool(psycopg2, dsn, min_size=0, max_size=4,
                          max_idle=10, max_age=30, connect_timeout=5)


def add_greeting(pool, who):
    conn = pool.get()  # get() and put(), as with eventlet
    try:
        cur = conn.cursor()
        cur.execute("INSERT INTO greetings (who) VALUES (%s)", (who,))
        conn.commit()
    finally:
        pool.put(conn)  # rolled back if uncommitted, then back in the pool


def count_greetings(pool):
    with pool.item() as conn:  # eventlet's item()
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM greetings")
        return cur.fetchone()[0]


def add_pair(pool, first, second):
    # new: commits at the end of the block, rolls back on error
    with pool.connection() as conn:
        cur = conn.cursor()
        cur.execute("INSERT INTO greetings (who) VALUES (%s)", (first,))
        cur.execute("INSERT INTO greetings (who) VALUES (%s)", (second,))
# [/new-code]


def check(condition: object, claim: str) -> None:
    if not condition:
        raise SystemExit(f"FAILED: {claim}")
    print(f"ok: {claim}", flush=True)


def with_postgres(pg: PostgresServer) -> None:
    pool = make_pool(pg.dsn)
    with pool.connection() as conn:
        conn.cursor().execute("CREATE TABLE IF NOT EXISTS greetings (id serial PRIMARY KEY, who text)")

    jobs = [gevent.spawn(add_greeting, pool, f"greenlet {i}") for i in range(50)]
    gevent.joinall(jobs, raise_error=True, timeout=60)
    check(count_greetings(pool) == 50, "50 greenlets inserted through get()/put()")
    check(pool.stats()["pool_size"] <= 4, "never more than max_size=4 connections")

    try:
        add_pair(pool, "first", "second")  # two rows, one transaction
        with pool.connection() as conn:
            cur = conn.cursor()
            cur.execute("INSERT INTO greetings (who) VALUES ('rolled back')")
            raise KeyError("an error in the block")
    except KeyError:
        pass
    check(count_greetings(pool) == 52, "connection() committed one block and rolled back the other")

    conn = pool.get()
    pool.put(conn)
    try:
        conn.cursor()
    except Exception as error:  # ConnectionReturned, a geventpool.PoolError
        used_after_put = type(error).__name__
    else:
        used_after_put = None
    check(used_after_put == "ConnectionReturned", "a connection used after put() raises ConnectionReturned")

    # A server restart: get() checks a connection idle longer than ping_after (0.5 s
    # by default) and replaces a dead one before the caller sees it.
    pg.restart()
    gevent.sleep(0.6)  # not a race: only makes the idle time exceed ping_after
    check(count_greetings(pool) == 52, "after a PostgreSQL restart the next query just works")
    check(pool.stats()["connections_discarded"] >= 1, "the dead connection was replaced unseen")

    # [new-connector]
    from geventpool.dbapi import DatabaseConnector

    # eventlet's signature; the 'default' credentials entry works
    connector = DatabaseConnector(psycopg2, {"default": {"user": pg.user}},
                                  port=pg.port, max_size=2)
    with connector.get(pg.host, pg.dbname).item() as conn:
        cur = conn.cursor()
        cur.execute("SELECT current_database()")
        database = cur.fetchone()[0]
    connector.close()
    # [/new-connector]
    check(database == pg.dbname, "DatabaseConnector: one pool per (host, database)")
    pool.close()


def with_sqlite(path: str) -> None:
    import sqlite3

    # [new-sqlite]
    # any DB-API 2.0 module
    pool = ConnectionPool(sqlite3, path, max_size=4, timeout=10)
    # [/new-sqlite]
    with pool.connection() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS greetings (who TEXT)")

    def add(i: int) -> None:
        with pool.connection() as conn:
            conn.execute("INSERT INTO greetings (who) VALUES (?)", (f"greenlet {i}",))

    gevent.joinall([gevent.spawn(add, i) for i in range(50)], raise_error=True, timeout=60)
    check(count_greetings(pool) == 50, "sqlite3: 50 greenlets wrote, waiting for the lock green")
    pool.close()


def main() -> None:
    with PostgresServer() as pg:
        with_postgres(pg)
    with tempfile.TemporaryDirectory() as tmp:
        with_sqlite(os.path.join(tmp, "greetings.db"))
    print("eventlet_db_pool_new: all checks passed")


if __name__ == "__main__":
    main()
