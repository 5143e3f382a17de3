"""Row A1 (bad sizes and timeouts), A7 (misbehaving hooks), A8 (close, reuse, foreign returns)."""

from __future__ import annotations

import gc
import math
import pickle
import socket

import gevent
import greenlet
import pytest

from geventpool import ConfigurationError, ConnectionPool, PoolClosed
from geventpool.testing import check_invariants, fd_count, wait_until

from .helpers import LinePool, LineServer, echo


class Plain(ConnectionPool[object]):
    def _new_connection(self) -> object:
        return object()


BAD_ARGUMENTS = [
    ({"size": -1}, "size"),
    ({"size": 0}, "size"),
    ({"size": 1.5}, "size"),
    ({"size": True}, "size"),
    ({"size": "10"}, "size"),
    ({"max_size": 0}, "max_size"),
    ({"max_size": None, "min_size": -1}, "min_size"),
    ({"min_size": 5, "max_size": 2}, "min_size"),
    ({"min_size": 0, "max_size": 0}, "max_size"),
    ({"size": 2, "max_size": 3}, "not both"),
    ({"timeout": -1}, "timeout"),
    ({"timeout": math.nan}, "timeout"),
    ({"timeout": math.inf}, "timeout"),
    ({"timeout": "5"}, "timeout"),
    ({"connect_timeout": 0}, "connect_timeout"),
    ({"connect_timeout": None}, "connect_timeout"),
    ({"keepalive_timeout": -2}, "keepalive_timeout"),
    ({"max_idle": 0}, "max_idle"),
    ({"max_lifetime": math.inf}, "max_lifetime"),
    ({"max_waiting": -1}, "max_waiting"),
    ({"num_workers": 0}, "num_workers"),
    ({"reconnect_timeout": 0}, "reconnect_timeout"),
    ({"leak_threshold": 0}, "leak_threshold"),
    ({"ping_after": -1}, "ping_after"),
    ({"exc_classes": (ValueError, "x")}, "exc_classes"),
    ({"exc_classes": ()}, "exc_classes"),
    ({"exc_classes": 5}, "exc_classes"),
    ({"reconnect_failed": 3}, "reconnect_failed"),
    ({"name": ""}, "name"),
    ({"keepalive": 30}, "_keepalive"),  # Plain has no _keepalive to run
]


@pytest.mark.parametrize(("kwargs", "named"), BAD_ARGUMENTS)
def test_bad_arguments_raise_at_construction(kwargs: dict[str, object], named: str) -> None:
    fds = fd_count()
    greenlets_before = count_greenlets()
    with pytest.raises(ConfigurationError) as info:
        Plain(**kwargs)  # type: ignore[arg-type]
    assert named in str(info.value)
    assert isinstance(info.value, ValueError)
    # nothing opened or spawned (earlier tests' leftovers may finish meanwhile: <=, not ==)
    assert fd_count() <= fds
    assert count_greenlets() <= greenlets_before


def count_greenlets() -> int:
    return sum(1 for obj in gc.get_objects() if isinstance(obj, greenlet.greenlet))


def test_keepalive_must_be_shorter_than_lifetime(server: LineServer) -> None:
    with pytest.raises(ConfigurationError, match="keepalive"):
        LinePool(server.address, 2, keepalive=100, max_lifetime=50)


def test_geventconnpool_signatures_work(server: LineServer) -> None:
    pools = [
        LinePool(server.address, 3),
        LinePool(server.address, 3, exc_classes=(socket.error, EOFError)),
        LinePool(server.address, 3, keepalive=30),
        LinePool(server.address, 3, (socket.error,), 30),
    ]
    for pool in pools:
        with pool.get() as conn:
            echo(conn)
        pool.wait(5)
        assert pool.size == 3
        check_invariants(pool)
        pool.close()


def test_nothing_is_spawned_or_opened_in_init(server: LineServer) -> None:
    pool = LinePool(server.address, 4)
    gevent.sleep(0.05)
    assert pool.connects == 0 and server.accepted == 0
    assert pool._workers.group is None
    pool.wait(5)
    assert pool.connects == 4
    pool.close()


class BrokenHook(ConnectionPool[object]):
    def __init__(self, result: object, **kwargs: object) -> None:
        self.result = result
        self.calls = 0
        super().__init__(1, **kwargs)  # type: ignore[arg-type]

    def _new_connection(self) -> object:
        self.calls += 1
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


def test_programming_error_in_new_connection_reaches_the_caller() -> None:
    pool = BrokenHook(ValueError("bad host name"))
    with pytest.raises(ValueError, match="bad host name"):
        pool.get(timeout=5)
    calls = pool.calls
    # no retry loop for a programming error: the pool waits for the next demand
    gevent.sleep(0.2)
    assert pool.calls == calls
    with pytest.raises(ValueError):
        pool.get(timeout=5)
    check_invariants(pool)
    assert pool.size == 0
    pool.close()


def test_new_connection_returning_none_is_a_clear_error() -> None:
    pool = BrokenHook(None)
    with pytest.raises(TypeError, match="returned None"):
        pool.get(timeout=5)
    check_invariants(pool)
    pool.close()


class BadKeepalive(LinePool):
    mode = "raise"

    def _keepalive(self, conn: socket.socket) -> None:
        if self.mode == "raise":
            raise OSError("keepalive failed")
        gevent.sleep(60)


@pytest.mark.parametrize("mode", ["raise", "hang"])
def test_keepalive_that_raises_or_hangs_discards_the_connection(server: LineServer, mode: str) -> None:
    now = [0.0]
    pool = BadKeepalive(server.address, 1, keepalive=0.5, keepalive_timeout=0.2, clock=lambda: now[0])
    pool.mode = mode
    pool.wait(5)
    now[0] = 1.0  # every idle connection is now due for a keepalive
    first = pool.snapshot().idle_slots[0].conn
    pool.run_housekeeping()
    wait_until(lambda: pool.stats()["connections_discarded"] >= 1, timeout=5)
    assert first.fileno() == -1  # closed, not leaked
    check_invariants(pool)
    pool.close()


def test_close_then_get_raises_and_close_is_idempotent(server: LineServer) -> None:
    pool = LinePool(server.address, 2)
    pool.wait(5)
    pool.close()
    pool.close()
    with pytest.raises(PoolClosed):
        pool.get()
    with pytest.raises(PoolClosed):
        pool.wait(1)
    check_invariants(pool)
    wait_until(lambda: not server.open, timeout=5)


def test_return_twice_and_to_the_wrong_pool(server: LineServer) -> None:
    one = LinePool(server.address, 2)
    other = LinePool(server.address, 2)
    conn = one.acquire()
    with pytest.raises(ValueError):
        other.release(conn)
    one.release(conn)
    with pytest.raises(ValueError):
        one.release(conn)
    lease = one.get()
    with lease as c:
        echo(c)
    with pytest.raises(ValueError):
        lease.__exit__(None, None, None)
    with pytest.raises(ValueError):
        with lease:
            pass
    assert one.stats()["returns_bad"] >= 2
    assert one.stats()["pool_in_use"] == 0
    check_invariants(one)
    check_invariants(other)
    one.close()
    other.close()


def test_connections_returned_after_close_are_closed(server: LineServer) -> None:
    pool = LinePool(server.address, 2)
    conn = pool.acquire()
    pool.close(timeout=0)
    pool.release(conn)
    assert conn.fileno() == -1
    check_invariants(pool)


def test_pools_refuse_pickling(server: LineServer) -> None:
    pool = LinePool(server.address, 1)
    with pytest.raises(TypeError):
        pickle.dumps(pool)
