"""Rows B1-B8: checkout semantics, timeouts, fairness, growth and shrinking."""

from __future__ import annotations

import socket
import time
from typing import Any

import gevent
import gevent.event
import pytest

from geventpool import BackendUnavailable, PoolTimeout, TooManyWaiters
from geventpool.testing import FaultProxy, check_invariants, wait_until

from .helpers import LinePool, LineServer, echo


def test_b1_exhausted_pool_times_out_with_counts(server: LineServer) -> None:
    pool = LinePool(server.address, 2, name="b1")
    held = [pool.acquire(), pool.acquire()]
    started = time.monotonic()
    with pytest.raises(PoolTimeout) as info:
        pool.get(timeout=0.1)
    assert time.monotonic() - started >= 0.1
    message = str(info.value)
    assert "b1" in message and "in_use=2" in message and "max_size=2" in message
    assert not isinstance(info.value, BackendUnavailable)
    assert pool.stats()["requests_errors"] == 1
    for conn in held:
        pool.release(conn)
    check_invariants(pool)
    pool.close()


def test_b2_fifo_fairness_and_reuse(server: LineServer) -> None:
    pool = LinePool(server.address, 2)
    pool.wait(5)
    order: list[int] = []
    release = gevent.event.Event()

    def worker(n: int) -> None:
        with pool.get() as conn:
            order.append(n)
            echo(conn)
            release.wait()

    greenlets = []
    for n in range(6):
        greenlets.append(gevent.spawn(worker, n))
        gevent.sleep(0)  # each one asks in turn
    wait_until(lambda: len(order) == 2)
    assert pool.snapshot().waiting == 4
    release.set()
    gevent.joinall(greenlets, raise_error=True)
    assert order == [0, 1, 2, 3, 4, 5]
    assert pool.connects == 2 and server.accepted == 2
    check_invariants(pool)
    pool.close()


def test_b3_bounded_waiting_queue(server: LineServer) -> None:
    pool = LinePool(server.address, 1, max_waiting=3)
    held = pool.acquire()
    waiters = [gevent.spawn(pool.acquire, timeout=5) for _ in range(3)]
    gevent.sleep(0)
    with pytest.raises(TooManyWaiters, match="max_waiting=3"):
        pool.get(timeout=5)
    assert pool.stats()["requests_too_many"] == 1
    pool.release(held)
    for g in waiters:
        pool.release(g.get())
    check_invariants(pool)
    pool.close()


def test_b4_waiters_woken_on_discard(server: LineServer) -> None:
    pool = LinePool(server.address, 2)
    pool.wait(5)
    a, b = pool.acquire(), pool.acquire()
    got: list[int] = []

    def waiter(n: int) -> None:
        with pool.get(timeout=5) as conn:
            echo(conn)
            got.append(n)

    greenlets = [gevent.spawn(waiter, n) for n in range(5)]
    gevent.sleep(0)
    assert pool.snapshot().waiting == 5
    pool.release(a, ConnectionResetError("broken"))  # discarded: a replacement is opened
    wait_until(lambda: got[:1] == [0])
    pool.release(b)
    gevent.joinall(greenlets, raise_error=True)
    assert got == [0, 1, 2, 3, 4]
    assert pool.stats()["connections_lost"] == 1
    check_invariants(pool)
    pool.close()


def test_b5_a_hanging_connect_does_not_serialize_the_others(server: LineServer) -> None:
    with FaultProxy(server.address) as deaf:
        deaf.set_mode("deaf")

        class OneDeaf(LinePool):
            def _new_connection(self) -> socket.socket:
                self.connects += 1
                target = deaf.address if self.connects == 1 else self.address
                return gevent.socket.create_connection(target)

        pool = OneDeaf(server.address, 3, connect_timeout=1.0)
        started = time.monotonic()
        leases = [pool.acquire(timeout=5), pool.acquire(timeout=5)]
        assert time.monotonic() - started < 1.0  # not behind the stalled connect
        for conn in leases:
            echo(conn)
            pool.release(conn)
        pool.wait(5)  # the stalled one failed at connect_timeout and was retried
        assert pool.stats()["connections_errors"] >= 1
        check_invariants(pool)
        pool.close()


def test_b6_spike_is_absorbed_without_growing_to_max(server: LineServer) -> None:
    class SlowConnect(LinePool):
        def _new_connection(self) -> socket.socket:
            gevent.sleep(0.15)
            return super()._new_connection()

    pool = SlowConnect(server.address, min_size=5, max_size=10)
    pool.wait(5)

    def work() -> None:
        with pool.get(timeout=10) as conn:
            echo(conn)
            gevent.sleep(0.002)

    gevent.joinall([gevent.spawn(work) for _ in range(50)], raise_error=True)
    wait_until(lambda: pool.snapshot().opening == 0)
    assert pool.size <= 5 + pool.max_connecting  # grows by at most max_connecting at a time
    check_invariants(pool)
    pool.close()


def test_b7_grow_then_shrink_to_min_after_max_idle(server: LineServer) -> None:
    now = [1000.0]
    pool = LinePool(server.address, min_size=2, max_size=4, max_idle=0.2, clock=lambda: now[0])
    pool.wait(5)
    release = gevent.event.Event()

    def user() -> None:
        with pool.get(timeout=5):
            release.wait()

    users = [gevent.spawn(user) for _ in range(4)]
    wait_until(lambda: pool.stats()["pool_in_use"] == 4)
    assert pool.size == 4
    release.set()
    gevent.joinall(users, raise_error=True)
    now[0] += 0.1
    pool.run_housekeeping()
    assert pool.size == 4  # not idle long enough yet
    now[0] += 0.2
    pool.run_housekeeping()
    assert pool.size == 2  # never below min_size
    check_invariants(pool)
    pool.close()


@pytest.mark.parametrize("lifo", [True, False])
def test_b7_reuse_order(server: LineServer, lifo: bool) -> None:
    pool = LinePool(server.address, 3, lifo=lifo)
    pool.wait(5)
    conns = [pool.acquire() for _ in range(3)]
    for conn in conns:
        pool.release(conn)
    again = pool.acquire()
    assert again is (conns[-1] if lifo else conns[0])
    pool.release(again)
    pool.close()


def test_b8_wait_fills_and_fails_fast_when_down(server: LineServer) -> None:
    pool = LinePool(server.address, 4)
    pool.wait(5)
    assert pool.size == 4
    pool.close()
    server.stop()
    down = LinePool(server.address, 4)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as info:
        down.wait(0.5)
    assert time.monotonic() - started >= 0.5
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    check_invariants(down)
    down.close()


def test_backend_unavailable_from_get_when_the_server_is_down(server: LineServer) -> None:
    server.stop()
    pool = LinePool(server.address, 2)
    with pytest.raises(BackendUnavailable) as info:
        pool.get(timeout=0.3)
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    # the refill backs off: a handful of attempts, not a busy loop
    gevent.sleep(1.0)
    assert pool.connects < 40
    check_invariants(pool)
    pool.close()


def test_timeout_zero_does_not_wait(server: LineServer) -> None:
    pool = LinePool(server.address, 1)
    held = pool.acquire()
    with pytest.raises(PoolTimeout):
        pool.get(timeout=0)
    pool.release(held)
    pool.close()


def test_stats_repr_and_status_table(server: LineServer) -> None:
    pool = LinePool(server.address, 2, name="tbl")
    pool.wait(5)
    with pool.get() as conn:
        echo(conn)
        table = str(pool)
        assert "in use" in table and "idle" in table and "Holder" in table
    stats: dict[str, Any] = pool.stats()
    assert stats["pool_size"] == 2 and stats["requests_num"] == 1
    assert stats["connections_num"] == 2 and stats["pool_available"] == 2
    assert "'tbl'" in repr(pool) and "idle=2" in repr(pool)
    pool.close()


def test_resize(server: LineServer) -> None:
    pool = LinePool(server.address, min_size=2, max_size=2)
    pool.wait(5)
    pool.resize(4, 6)
    pool.wait(5)
    assert pool.size == 4
    held = [pool.acquire() for _ in range(3)]
    pool.resize(1, 2)
    assert pool.size <= 3
    for conn in held:
        pool.release(conn)
    assert pool.size == 2
    check_invariants(pool)
    pool.close()
