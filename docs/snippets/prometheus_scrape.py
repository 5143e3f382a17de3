"""The example of the "Integrations" page: a Prometheus scrape of a real pool.

A pool of TCP connections to an in-process echo server is registered with
the collector (in a registry of its own, as an application may), used by a
few greenlets, and scraped; the script checks the lines the page shows and
prints the scrape.  Run by tests/docs.
"""
# ruff: noqa: I001 (the imports the page shows come after a marker)

from __future__ import annotations

import sys
import time

import gevent
from gevent import socket

from geventpool.testing import EchoServer

# [scrape-code]
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from geventpool import ConnectionPool
from geventpool.contrib.prometheus import register_pool


class EchoPool(ConnectionPool):
    address = ("127.0.0.1", 0)

    def _new_connection(self):
        return socket.create_connection(self.address)


def instrument(pool, registry):
    register_pool(pool, registry)  # stats and server health, read at each scrape
    held = Histogram("myapp_connection_held_seconds", "Time a connection is checked out",
                     ["pool"], registry=registry)
    started = {}
    # listeners: your own metrics or tracing spans
    pool.on("checkout", lambda pool, conn: started.__setitem__(id(conn), time.monotonic()))
    pool.on("checkin", lambda pool, conn, error:
            held.labels(pool.name).observe(time.monotonic() - started.pop(id(conn))))
# [/scrape-code]


def check(condition: object, claim: str) -> None:
    if not condition:
        raise SystemExit(f"FAILED: {claim}")
    print(f"ok: {claim}", flush=True)


def main() -> None:
    with EchoServer() as server:
        pool = EchoPool(3, name="backend")
        pool.address = server.address
        registry = CollectorRegistry()
        instrument(pool, registry)

        def work() -> None:
            with pool.get() as conn:
                conn.sendall(b"x")
                conn.recv(1)

        gevent.joinall([gevent.spawn(work) for _ in range(10)], raise_error=True, timeout=30)
        scrape = generate_latest(registry).decode()
        lines = [line for line in scrape.splitlines() if not line.startswith("#")]
        check('geventpool_connections{pool="backend",state="idle"} 3.0' in lines, "idle connections by pool")
        check('geventpool_pool_max_size{pool="backend"} 3.0' in lines, "the pool's bounds")
        check(any(line.startswith('geventpool_requests_total{pool="backend"} ') for line in lines),
              "requests counted")
        check('myapp_connection_held_seconds_count{pool="backend"} 10.0' in lines,
              "the listener timed 10 checkouts")
        print("\n".join(line for line in lines if line.startswith("geventpool_")))
        pool.close()
    print("prometheus_scrape: all checks passed")


if __name__ == "__main__":
    sys.exit(main())
