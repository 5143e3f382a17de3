"""Quickstart: a pool of plain TCP connections speaking PING/PONG.

geventconnpool's first example, with only the import changed (and bytes for
Python 3), run against an in-process server:

- subclass ``ConnectionPool`` and say how to open a connection;
- ``MyPool(20)`` keeps 20 connections open;
- ``with pool.get() as c:`` lends one; a ``socket.error`` inside the block
  discards that connection and the pool opens a new one in the background.

Run: ``python examples/core_ping_pong.py``
"""

from __future__ import annotations

import gevent
from _servers import LineServer, expect, wait_until
from gevent import socket

from geventpool import ConnectionPool

ADDRESS = ("127.0.0.1", 0)  # set by main() once the server listens


class MyPool(ConnectionPool):
    def _new_connection(self):
        return socket.create_connection(ADDRESS)

    def _keepalive(self, c):
        c.send(b"PING\n")
        if c.recv(5) != b"PONG\n":
            raise socket.error("no PONG")


def ping(pool):
    with pool.get() as c:
        c.send(b"PING\n")
        if c.recv(5) != b"PONG\n":
            raise socket.error("something awful happened")


def main():
    global ADDRESS
    server = LineServer().start()
    ADDRESS = server.address

    pool = MyPool(20)  # always keep 20 connections open
    pool.wait(timeout=10)
    wait_until(lambda: server.accepted == 20, 10, "the server accepted 20 connections")
    expect(pool.size == 20, "the pool opened 20 connections")

    # 50 greenlets share the 20 connections
    workers = [gevent.spawn(lambda: [ping(pool) for _ in range(10)]) for _ in range(50)]
    gevent.joinall(workers, raise_error=True, timeout=30)
    expect(server.requests["PING"] == 500, "500 PINGs answered through 20 connections")
    expect(server.accepted == 20, "no extra connection was opened")

    # the server answers garbage once: the block raises socket.error, the
    # connection is discarded (closed) and replaced in the background
    server.inject("garbage")
    try:
        ping(pool)
    except socket.error as error:
        print(f"the block raised {error!r}")
    wait_until(lambda: server.accepted == 21 and pool.stats()["pool_available"] == 20, 10,
               "the pool replaced the broken connection")
    stats = pool.stats()
    expect(stats["connections_discarded"] == 1, "the broken connection was discarded and replaced")
    ping(pool)
    print(pool)
    pool.close()
    server.stop()
    print("core_ping_pong: all checks passed")


if __name__ == "__main__":
    main()
