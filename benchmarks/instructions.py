"""Instructions per ``SELECT 1``: geventpool.dbapi against a naive gevent Queue pool, under callgrind.

Wall-clock ratios on a shared or virtual machine move by 10-15% from one run to the next (the
host's load changes the CPU's speed); the number of instructions the client executes does not.
This script counts them with valgrind's callgrind: each contender runs 10 greenlets on 10
psycopg2 connections to a private PostgreSQL on 127.0.0.1 twice, with two numbers of queries,
and the difference divided by the difference in queries is what one query costs (start-up,
imports and connects cancel out).

    .venv/bin/python benchmarks/instructions.py            # needs valgrind (Debian: valgrind)
    .venv/bin/python benchmarks/instructions.py --queries 4000 12000

Prints instructions per query for each contender and geventpool's ratio to the naive pool
(1.00x: the same work as a pool that does nothing on return).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_WORKER = r'''
import os, sys
import gevent, gevent.queue, psycopg2, psycopg2.extensions
name, dsn, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
workers = 10

def green_callback(conn):
    from gevent.socket import wait_read, wait_write
    while True:
        state = conn.poll()
        if state == psycopg2.extensions.POLL_OK:
            break
        elif state == psycopg2.extensions.POLL_READ:
            wait_read(conn.fileno())
        else:
            wait_write(conn.fileno())

if name == "naive-queue":
    psycopg2.extensions.set_wait_callback(green_callback)
    queue = gevent.queue.Queue()
    for _ in range(workers):
        conn = psycopg2.connect(dsn); conn.autocommit = True; queue.put(conn)
    def op():
        c = queue.get()
        try:
            cur = c.cursor(); cur.execute("SELECT 1"); cur.fetchall(); cur.close()
        finally:
            queue.put(c)
else:
    from geventpool.dbapi import ConnectionPool
    pool = ConnectionPool(psycopg2, dsn, min_size=workers, max_size=workers, max_age=3600,
                          configure=lambda c: setattr(c, "autocommit", True))
    get, put = pool.get, pool.put
    def op():
        conn = get()
        cur = conn.cursor(); cur.execute("SELECT 1"); cur.fetchall(); cur.close()
        put(conn)

for _ in range(500):
    op()
def loop():
    for _ in range(total // workers):
        op()
gevent.joinall([gevent.spawn(loop) for _ in range(workers)])
'''

CONTENDERS = ("geventpool", "naive-queue")


def _instructions(name: str, dsn: str, queries: int, workdir: Path) -> int:
    out = workdir / f"callgrind.{name}.{queries}"
    run = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c", _WORKER,
         name, dsn, str(queries)],
        capture_output=True, text=True, check=False,
    )
    found = re.search(r"Collected : (\d+)", run.stderr)
    if run.returncode != 0 or found is None:
        raise SystemExit(f"{name}: valgrind failed (exit {run.returncode}):\n{run.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, nargs=2, default=(4000, 12000), metavar=("FEW", "MANY"))
    args = parser.parse_args(argv)
    few, many = args.queries
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    if many <= few:
        raise SystemExit("--queries: the second number must be larger than the first")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from geventpool.testing.postgres import PostgresServer

    with PostgresServer() as server, tempfile.TemporaryDirectory() as tmp:
        per_query = {}
        for name in CONTENDERS:
            counts = [_instructions(name, server.dsn, n, Path(tmp)) for n in (few, many)]
            per_query[name] = (counts[1] - counts[0]) / (many - few)
            print(f"{name:<12} {per_query[name]:>9,.0f} instructions per SELECT 1", flush=True)
    ratio = per_query["geventpool"] / per_query["naive-queue"]
    print(f"geventpool / naive-queue: {ratio:.3f}x the instructions ({os.cpu_count()} CPUs, CPython "
          f"{sys.version.split()[0]}; callgrind counts the client only)")


if __name__ == "__main__":
    main()
