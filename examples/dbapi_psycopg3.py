"""psycopg 3 in the same pool: cooperative once gevent has patched the process.

Run: python examples/dbapi_psycopg3.py [DSN]
Patches first (psycopg 3 detects gevent's monkey-patching), then pools as usual;
a greenlet killed mid-query has its query cancelled on the server.
"""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

import gevent  # noqa: E402
import psycopg  # noqa: E402

from geventpool.dbapi import ConnectionPool  # noqa: E402
from geventpool.testing.postgres import PostgresServer  # noqa: E402


def main(server: PostgresServer) -> None:
    pool = ConnectionPool(psycopg, server.dsn, max_size=4, application_name="psycopg3-example")
    ticks = []
    ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.01)) for _ in iter(int, 1)])

    def sleepy() -> None:
        with pool.item() as conn:
            conn.execute("SELECT pg_sleep(0.2)")

    gevent.joinall([gevent.spawn(sleepy) for _ in range(4)], raise_error=True)
    print("hub ticks during 4 parallel 0.2 s queries:", len(ticks) >= 10)

    def forever() -> None:
        with pool.item() as conn:
            conn.execute("SELECT pg_sleep(30) /* p3 */")

    slow = gevent.spawn(forever)
    gevent.sleep(0.3)
    slow.kill()
    gevent.sleep(0.3)
    print("query left on the server after kill:", len(server.running_queries("p3")))
    ticker.kill()
    pool.close()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        raise SystemExit("this example starts its own server")
    with PostgresServer() as pg:
        main(pg)
