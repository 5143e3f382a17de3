"""The new side of the geventconnpool guide, run by tests/docs against a real TCP server.

``python docs/migration/geventconnpool_new.py`` starts an echo server on
127.0.0.1 (geventpool.testing.EchoServer), runs the code the guide shows,
restarts the server under load, and checks what the guide claims: one
``ok:`` line per claim, exit status 1 if one fails.
"""
# ruff: noqa: I001 (the imports the guide shows come after a marker)

from __future__ import annotations

import sys

import gevent

from geventpool.testing import EchoServer, wait_until

# [new-code]
import logging

from gevent import socket

# was: from geventconnpool import ConnectionPool, retry
from geventpool import ConnectionPool, retry

ADDRESS = ("127.0.0.1", 0)  # (set by main() to the echo server's)
log = logging.getLogger("myapp")


class EchoPool(ConnectionPool):
    # unchanged; if it raises, the pool retries with backoff
    def _new_connection(self):
        return socket.create_connection(ADDRESS)

    # unchanged: raise if the connection is broken
    def _keepalive(self, conn):
        conn.sendall(b"ping\n")
        if read_exactly(conn, 5) != b"ping\n":
            raise socket.error("bad keepalive reply")


def read_exactly(conn, size):
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise socket.error("connection closed by the server")
        data += chunk
    return data


# size, exc_classes, keepalive: the same three arguments, in the same places
pool = EchoPool(5, (socket.error,), 30)


# with arguments: works (on Python 3 too)
@retry(max_failures=5, interval=0.05, logger=log)
def echo(data):
    # new: a timeout (PoolTimeout when it passes)
    with pool.get(timeout=10) as conn:
        conn.sendall(data)
        return read_exactly(conn, len(data))
# [/new-code]


def check(condition: object, claim: str) -> None:
    if not condition:
        raise SystemExit(f"FAILED: {claim}")
    print(f"ok: {claim}", flush=True)


def main() -> None:
    global ADDRESS
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    server = EchoServer().start()
    ADDRESS = server.address

    # [new-startup]
    # new: fail fast at start-up if the server is unreachable
    pool.wait(timeout=10)
    # [/new-startup]
    check(pool.size == 5 and server.connections == 5, "pool.wait() returned with 5 connections open")

    results = []
    workers = [gevent.spawn(lambda i=i: results.append(echo(b"hello %d\n" % i))) for i in range(100)]
    gevent.joinall(workers, raise_error=True, timeout=30)
    check(sorted(results) == sorted(b"hello %d\n" % i for i in range(100)),
          "100 greenlets shared the 5 connections")
    check(server.accepted == 5, "no connection beyond the 5 was opened")

    # A server restart breaks every pooled connection: @retry carries the calls
    # over to new connections; the broken ones are closed and replaced.
    server.stop()
    server.start()
    workers = [gevent.spawn(echo, b"after restart\n") for _ in range(20)]
    gevent.joinall(workers, raise_error=True, timeout=30)
    check(all(w.value == b"after restart\n" for w in workers),
          "every call succeeded across the server restart")
    wait_until(lambda: server.connections == 5, timeout=10)
    check(pool.stats()["connections_lost"] >= 1, "the broken connections were discarded and replaced")

    # A timeout in the middle of a request discards the connection instead of
    # handing it, with the late reply still in flight, to the next caller.
    discarded = pool.stats()["connections_discarded"]
    with gevent.Timeout(0.05, False), pool.get() as conn:
        conn.sendall(b"x\n")
        gevent.sleep(1)  # the Timeout hits here
    check(pool.stats()["connections_discarded"] == discarded + 1, "a gevent.Timeout discarded the connection")
    check(echo(b"clean\n") == b"clean\n", "the next caller reads its own reply")

    # [new-shutdown]
    pool.close()  # new: stops the keepalive and closes every connection
    # [/new-shutdown]
    check(pool.closed, "pool.close() closed the pool")
    wait_until(lambda: server.connections == 0, timeout=10)
    check(server.connections == 0, "the server sees no connection left")
    server.stop()
    print("geventconnpool_new: all checks passed")


if __name__ == "__main__":
    main()
