"""``@retry``: re-run a function when its connection breaks.

geventconnpool's retry examples with only the import changed: the bare
``@retry``, and ``@retry(exc_classes=..., logger=..., max_failures=...,
interval=...)`` with a logger (the form geventconnpool documents but cannot
run on Python 3).  The in-process server resets the connection on chosen
requests.

Because the pool discards a connection that raised ``socket.error``, each
attempt runs on a different connection.  Retry only idempotent work: the
server may have acted on a request whose reply was lost.

Run: ``python examples/core_retry.py``
"""

from __future__ import annotations

import logging
import sys

from _servers import LineServer, expect
from gevent import socket

from geventpool import ConnectionPool, retry

ADDRESS = ("127.0.0.1", 0)  # set by main() once the server listens
log = logging.getLogger("example.retry")


class MyPool(ConnectionPool):
    def _new_connection(self):
        return socket.create_connection(ADDRESS)


pool = MyPool(2)  # safe at import time: nothing starts until the first get()


@retry
def senddata(data):
    with pool.get() as c:
        c.send(data)
        if c.recv(2) != b"OK":
            raise socket.error("something awful happened")


@retry(exc_classes=(socket.error,), logger=log, max_failures=5, interval=0.05)
def senddata_logged(data):
    with pool.get() as c:
        c.send(data)
        if c.recv(2) != b"OK":
            raise socket.error("something awful happened")


@retry(exc_classes=(socket.error,), logger=log, max_failures=2, interval=0.01)
def senddata_impatient(data):
    with pool.get() as c:
        c.send(data)
        if c.recv(2) != b"OK":
            raise socket.error("something awful happened")


def main():
    global ADDRESS
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("geventpool").setLevel(logging.WARNING)
    server = LineServer().start()
    ADDRESS = server.address

    # 1. bare @retry: two broken connections, then success on a third
    server.inject("reset", 2)
    senddata(b"hello\n")
    expect(server.requests["DATA"] == 3, "@retry: 2 resets, then the 3rd attempt succeeded")
    expect(pool.stats()["connections_lost"] == 2, "each failed attempt discarded its connection")

    # 2. with a logger: each retry is logged at INFO
    server.inject("reset", 2)
    senddata_logged(b"hello again\n")
    expect(server.requests["DATA"] == 6, "@retry(logger=...): 2 resets logged, then success")

    # 3. out of retries: the last error is raised, and logged at ERROR
    server.inject("reset", 3)
    try:
        senddata_impatient(b"hello once more\n")
    except socket.error as error:
        print(f"gave up as expected with {type(error).__name__}")
    else:
        raise SystemExit("FAILED: senddata_impatient should have given up")
    expect(server.requests["DATA"] == 9, "max_failures=2: 3 attempts, then the error")

    senddata(b"bye\n")
    print(pool)
    pool.close()
    server.stop()
    print("core_retry: all checks passed")


if __name__ == "__main__":
    main()
