"""The DB-API pool behind PgBouncer in transaction pooling mode.

Run: python examples/dbapi_pgbouncer.py [DSN-of-a-transaction-mode-PgBouncer]
Without a DSN it starts a private PostgreSQL and a private PgBouncer in front
of it (geventpool.testing; needs the Debian packages postgresql and pgbouncer).

``pgbouncer="transaction"`` tells the pool that server sessions are shared:
a session setting is refused before it is sent (it would reach the bouncer's
other clients), ``SET LOCAL`` inside a transaction does the same job safely,
and a greenlet killed mid-query gets its query cancelled through the bouncer.
"""

from __future__ import annotations

import sys

import gevent
import psycopg2

from geventpool.dbapi import ConnectionPool
from geventpool.dbapi.pgbouncer import TransactionPoolingError
from geventpool.testing.pgbouncer import PgBouncerServer
from geventpool.testing.postgres import PostgresServer


def main(dsn: str) -> None:
    pool = ConnectionPool(psycopg2, dsn, max_size=4, pgbouncer="transaction")

    # 1. A session setting would stay on a server session other clients share: refused.
    with pool.item() as conn:
        conn.autocommit = True
        try:
            conn.cursor().execute("SET search_path TO pg_catalog")
        except TransactionPoolingError as error:
            print("refused:", str(error).split(";")[0])

    # 2. The transaction-scoped form works: the setting ends with the transaction.
    with pool.connection() as conn:  # commits at the end of the block
        cur = conn.cursor()
        cur.execute("SET LOCAL statement_timeout TO '2s'")
        cur.execute("SHOW statement_timeout")
        print("inside the transaction: statement_timeout =", cur.fetchone()[0])
    with pool.item() as conn:
        cur = conn.cursor()
        cur.execute("SHOW statement_timeout")
        print("next transaction: statement_timeout =", cur.fetchone()[0])

    # 3. Many greenlets, few server sessions: the bouncer multiplexes transactions.
    def work(i: int) -> int:
        with pool.connection() as conn:
            cur = conn.cursor()
            cur.execute("SELECT %s + 1", (i,))
            value: int = cur.fetchone()[0]
            return value

    jobs = [gevent.spawn(work, i) for i in range(50)]
    gevent.joinall(jobs, raise_error=True)
    print("answers:", sum(job.value for job in jobs))

    # 4. A killed greenlet's query is cancelled on the server, through the bouncer.
    def slow() -> None:
        with pool.item() as conn:
            conn.cursor().execute("SELECT pg_sleep(30)")

    worker = gevent.spawn(slow)
    gevent.sleep(0.3)  # let the query start (an example, not a test)
    worker.kill()
    with pool.item() as conn:
        cur = conn.cursor()
        for _ in range(100):  # the cancel was sent before kill() returned; the server takes a moment
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'")
            left = cur.fetchone()[0]
            if not left:
                break
            gevent.sleep(0.02)
        print("query left on the server after kill:", left)
    pool.close()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with PostgresServer() as server, PgBouncerServer(server, "transaction") as bouncer:
            main(bouncer.dsn)
