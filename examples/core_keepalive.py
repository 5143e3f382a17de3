"""Keepalive: TCP-level, and application-level with ``_keepalive`` + ``keepalive=``.

geventconnpool's keepalive examples with only the import changed, run
against an in-process server.  The README uses ``keepalive=30``; this script
uses 0.2 s so that it finishes quickly.

What it shows:

- TCP keepalive is a socket option set in ``_new_connection``;
- with ``keepalive=`` the pool pings *idle* connections only, in the
  background, and never takes a connection from a caller to do it;
- when something in between drops idle connections (here the server resets
  them all, as a firewall or load balancer might), the next keepalive round
  finds them broken, discards them and opens new ones before any caller
  sees an error.

Run: ``python examples/core_keepalive.py``
"""

from __future__ import annotations

import logging

from _servers import LineServer, expect, wait_until
from gevent import socket

from geventpool import ConnectionPool

ADDRESS = ("127.0.0.1", 0)  # set by main() once the server listens


class TcpKeepalivePool(ConnectionPool):
    def _new_connection(self):
        s = socket.create_connection(ADDRESS)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return s


class MyPool(ConnectionPool):
    def _new_connection(self):
        return socket.create_connection(ADDRESS)

    def _keepalive(self, c):
        c.send(b"PING\n")
        if c.recv(5) != b"PONG\n":
            raise socket.error


def main():
    global ADDRESS
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    server = LineServer().start()
    ADDRESS = server.address

    # 1. TCP keepalive: the kernel probes the connection; nothing to do in the pool
    tcp_pool = TcpKeepalivePool(2)
    with tcp_pool.get() as c:
        expect(c.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1,
               "SO_KEEPALIVE is set on the pooled socket")
    tcp_pool.wait(timeout=10)  # both open (and accepted) before the pool is closed
    wait_until(lambda: server.accepted == 2, 10, "the server accepted the first pool's 2 connections")
    tcp_pool.close()
    before = server.accepted

    # 2. application-level keepalive: PING every idle connection every 0.2 s
    pool = MyPool(3, keepalive=0.2)
    pool.wait(timeout=10)
    wait_until(lambda: server.accepted == before + 3, 10, "the server accepted 3 more connections")
    wait_until(lambda: server.requests["PING"] >= 6, 10, "each idle connection was pinged about twice")
    stats = pool.stats()
    print(f"keepalive pings so far: {server.requests['PING']}; pool: {pool!r}")
    expect(stats["keepalives"] >= 6 and stats["requests_num"] == 0,
           "the pings ran in the background, without any caller's checkout")

    # 3. the idle connections are dropped behind the pool's back
    reset = server.reset_all()
    print(f"the server reset all {reset} idle connections")
    wait_until(lambda: pool.stats()["connections_lost"] >= 3 and pool.stats()["pool_available"] == 3, 10,
               "keepalive found the 3 broken connections and the pool replaced them")
    wait_until(lambda: server.accepted == before + 6, 10, "the server accepted the 3 new connections")
    expect(server.accepted == before + 6, "3 new connections were opened")
    with pool.get() as c:
        c.send(b"PING\n")
        expect(c.recv(5) == b"PONG\n", "the next caller gets a working connection, no error")
    print(pool)
    pool.close()
    server.stop()
    print("core_keepalive: all checks passed")


if __name__ == "__main__":
    main()
