"""The example of the "Testing your code" page, run by tests/docs.

A test of an application's pool under network faults, written with
geventpool.testing: a real echo server on 127.0.0.1, a fault proxy in front
of it, a hub monitor, the pool's invariants and a file-descriptor count.
Run it with pytest (``pytest docs/snippets/testing_faults.py``) or as a
script.
"""
# ruff: noqa: I001 (the imports the page shows come after a marker)

from __future__ import annotations

# [test-code]
import gevent
import pytest
from gevent import socket

from geventpool import ConnectionPool, retry
from geventpool.testing import (EchoServer, FaultProxy, HubMonitor, check_invariants,
                                fd_count, wait_until)


class EchoPool(ConnectionPool):  # the application's pool
    address = ("127.0.0.1", 0)

    def _new_connection(self):
        return socket.create_connection(self.address, timeout=2)


@retry(max_failures=5, interval=0.01)
def call(pool, data):  # the application's idempotent call
    with pool.get(timeout=5) as conn:
        conn.sendall(data)
        reply = conn.recv(len(data))
        if not reply:
            raise socket.error("closed by the server")
        return reply


@pytest.fixture
def proxy():
    with EchoServer() as server, FaultProxy(server.address) as proxy:
        yield proxy


def test_calls_survive_resets_and_delays(proxy):
    fds = fd_count()
    pool = EchoPool(4, name="echo")
    pool.address = proxy.address  # the code under test talks to the proxy
    with gevent.Timeout(30), HubMonitor() as hub:
        pool.wait(timeout=5)
        proxy.reset_all()  # every pooled connection is reset (RST)
        proxy.set_mode("delay", ms=20)  # and the network gets slow
        jobs = [gevent.spawn(call, pool, b"hello\n") for _ in range(40)]
        gevent.joinall(jobs, raise_error=True)
        assert all(job.value == b"hello\n" for job in jobs)
        check_invariants(pool)  # no slot lost or counted twice after the faults
    assert hub.max_stall < 1.0  # nothing blocked the hub for long
    pool.close()
    check_invariants(pool)
    wait_until(lambda: fd_count() <= fds, timeout=5)  # every socket was closed
# [/test-code]


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-q", "-p", "no:cacheprovider"]))
