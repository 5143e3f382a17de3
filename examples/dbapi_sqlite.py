"""sqlite3, the embedded default: no server; writers wait for the lock without freezing gevent.

Run: python examples/dbapi_sqlite.py [PATH]
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile

import gevent

from geventpool.dbapi import ConnectionPool


def main(path: str) -> None:
    pool = ConnectionPool(sqlite3, path, max_size=4, timeout=10)
    with pool.connection() as conn:  # commits at the end of the block
        conn.execute("CREATE TABLE IF NOT EXISTS counter (n INTEGER)")

    def add(i: int) -> None:
        with pool.connection() as conn:
            conn.execute("INSERT INTO counter VALUES (?)", (i,))
            gevent.sleep(0.001)  # hold the write lock a moment: others wait green

    gevent.joinall([gevent.spawn(add, i) for i in range(100)], raise_error=True)
    with pool.item() as conn:
        print("rows:", conn.execute("SELECT count(*) FROM counter").fetchone()[0])
    pool.close()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(os.path.join(tmp, "example.db"))
