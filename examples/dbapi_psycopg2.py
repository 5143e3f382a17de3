"""eventlet's db_pool example, for gevent and psycopg2 (in place of MySQLdb).

Run: python examples/dbapi_psycopg2.py [DSN]
Without a DSN it starts a private PostgreSQL (geventpool.testing.postgres).
"""

from __future__ import annotations

import sys

import gevent
import psycopg2

from geventpool.dbapi import ConnectionPool
from geventpool.testing.postgres import PostgresServer


def main(dsn: str) -> None:
    # eventlet: db_pool.ConnectionPool(MySQLdb, host=..., user=..., passwd=...)
    pool = ConnectionPool(psycopg2, dsn, max_size=4)

    conn = pool.get()
    try:
        cur = conn.cursor()
        cur.execute("CREATE TABLE IF NOT EXISTS greetings (id serial PRIMARY KEY, who text)")
        conn.commit()
    finally:
        pool.put(conn)

    def greet(who: str) -> None:
        with pool.item() as conn:  # put back (and rolled back if uncommitted) at the end
            cur = conn.cursor()
            cur.execute("INSERT INTO greetings (who) VALUES (%s)", (who,))
            conn.commit()

    gevent.joinall([gevent.spawn(greet, f"greenlet {i}") for i in range(20)], raise_error=True)

    with pool.item() as conn:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM greetings")
        print("greetings:", cur.fetchone()[0])
    print(pool)
    pool.close()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with PostgresServer() as server:
            main(server.dsn)
