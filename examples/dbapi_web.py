"""A gevent web handler doing a query per request, for hundreds of concurrent requests.

Run: python examples/dbapi_web.py [DSN] [REQUESTS]
Serves http://127.0.0.1:<free port>/ with gevent.pywsgi, fires REQUESTS (default 500)
concurrent requests at it from greenlets, and prints what the pool did.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any, Callable

import gevent
import gevent.pool
import psycopg2
from gevent import socket
from gevent.pywsgi import WSGIServer

from geventpool import PoolTimeout
from geventpool.dbapi import ConnectionPool
from geventpool.testing.postgres import PostgresServer


def make_app(pool: ConnectionPool) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            with pool.item(timeout=10) as conn:
                cur = conn.cursor()
                cur.execute("SELECT pg_backend_pid(), pg_sleep(0.01)")
                pid = cur.fetchone()[0]
        except PoolTimeout:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"busy\n"]
        body = json.dumps({"backend": pid}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    return app


def fetch(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    backend: int = json.loads(data.split(b"\r\n\r\n", 1)[1])["backend"]
    return backend


def main(dsn: str, requests: int) -> None:
    pool = ConnectionPool(psycopg2, dsn, max_size=10)
    server = WSGIServer(("127.0.0.1", 0), make_app(pool), log=None, spawn=gevent.pool.Pool(1000))
    server.start()
    clients = gevent.pool.Pool(requests)
    backends = clients.map(fetch, [server.server_port] * requests)
    server.stop()
    print(f"{len(backends)} requests answered by {len(set(backends))} PostgreSQL sessions")
    print(pool.stats())
    pool.close()


if __name__ == "__main__":
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    if len(sys.argv) > 1 and sys.argv[1]:
        main(sys.argv[1], count)
    else:
        with PostgresServer() as pg:
            main(pg.dsn, count)
