"""Rows D3-D6, D9: server down and back, reconnect herd, lifetime recycling, keepalive, invalidation."""

from __future__ import annotations

import logging
import socket
from typing import Any

import gevent
import pytest

from geventpool import BackendUnavailable, retry
from geventpool.testing import FaultProxy, check_invariants, wait_until

from .helpers import LinePool, LineServer, echo


def test_d3_down_then_up_with_retry(server: LineServer) -> None:
    pool = LinePool(server.address, 4, timeout=1.0)
    pool.reconnect_backoff_max = 0.2
    pool.wait(5)

    @retry(exc_classes=(OSError, BackendUnavailable), max_failures=20, interval=0.05)
    def ping() -> bytes:
        with pool.get() as conn:
            return echo(conn)

    assert ping() == b"hello\n"
    server.stop()
    restarter = gevent.spawn_later(0.5, server.start)
    results = [gevent.spawn(ping) for _ in range(20)]
    gevent.joinall(results, raise_error=True)
    assert all(g.value == b"hello\n" for g in results)
    restarter.join()
    wait_until(lambda: pool.size == 4)
    check_invariants(pool)
    pool.close()


def test_d3_first_success_soon_after_the_port_opens(server: LineServer) -> None:
    server.stop()
    pool = LinePool(server.address, 1, timeout=5.0)
    pool.reconnect_backoff_max = 0.2  # the refill polls at most ~0.2 s apart
    getter = gevent.spawn(pool.acquire)
    wait_until(lambda: pool.stats()["connections_errors"] >= 3)
    server.start()
    conn = getter.get(timeout=3)
    echo(conn)
    pool.release(conn)
    check_invariants(pool)
    pool.close()


def test_d4_reconnect_failed_fires_once_per_window(server: LineServer) -> None:
    server.stop()
    now = [0.0]
    calls: list[float] = []
    pool = LinePool(
        server.address,
        1,
        reconnect_timeout=10,
        reconnect_failed=lambda p: calls.append(now[0]),
        clock=lambda: now[0],
    )
    pool.reconnect_backoff = pool.reconnect_backoff_max = 0.001
    pool.run_housekeeping()  # starts the pool, the refill begins failing

    def errors() -> float:
        return pool.stats()["connections_errors"]

    for step in range(35):
        seen = errors()
        wait_until(lambda: errors() > seen)  # noqa: B023
        now[0] = step + 1.0
    assert len(calls) == 3  # at t = 10, 20, 30
    assert calls == sorted(calls) and calls[0] >= 10
    pool.close()


def test_d5_reconnect_herd_is_bounded(server: LineServer) -> None:
    pool = LinePool(server.address, 10, num_workers=3, timeout=10)
    pool.reconnect_backoff_max = 0.2
    pool.wait(5)
    server.stop()
    in_flight = [0]
    peak = [0]
    original = pool._new_connection

    def counting() -> socket.socket:
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        try:
            return original()
        finally:
            in_flight[0] -= 1

    pool._new_connection = counting  # type: ignore[method-assign]

    def op() -> None:
        with pool.get() as conn:
            echo(conn)

    def tolerant() -> None:
        try:
            op()
        except OSError:
            op()  # the one failed call a restart may cost

    gevent.sleep(0.05)
    greenlets = [gevent.spawn(tolerant) for _ in range(200)]
    gevent.sleep(0.3)
    server.start()
    gevent.joinall(greenlets, raise_error=True)
    assert peak[0] <= 3
    assert server.max_open <= 10
    check_invariants(pool)
    pool.close()


def test_d6_lifetimes_are_jittered_and_in_use_never_recycled(server: LineServer) -> None:
    now = [0.0]
    draws = iter([i / 10 for i in range(10)] + [0.5] * 100)
    pool = LinePool(server.address, 10, max_lifetime=2.0, clock=lambda: now[0], rng=lambda: next(draws))
    pool.wait(5)
    expiries = sorted(slot.expires_at for slot in pool.snapshot().idle_slots)
    assert expiries[-1] - expiries[0] >= 0.15  # spread by up to 10% of 2 s
    held = pool.acquire()
    now[0] = 5.0
    pool.run_housekeeping()
    assert held.fileno() != -1  # in use: not recycled mid-use
    echo(held)
    pool.release(held)
    assert held.fileno() == -1  # recycled on return
    wait_until(lambda: pool.size == 10)
    check_invariants(pool)
    pool.close()


def test_d9_keepalive_discards_a_dead_idle_connection_and_skips_busy_ones(server: LineServer) -> None:
    with FaultProxy(server.address) as proxy:
        pinged: list[socket.socket] = []

        class Recording(LinePool):
            def _keepalive(self, conn: socket.socket) -> None:
                pinged.append(conn)
                super()._keepalive(conn)

        now = [0.0]
        pool = Recording(proxy.address, 3, keepalive=0.5, keepalive_timeout=1, clock=lambda: now[0])
        pool.wait(5)
        held = pool.acquire()
        now[0] = 1.0
        pool.run_housekeeping()
        wait_until(lambda: len(pinged) == 2 and pool.stats()["pool_available"] == 2)
        assert held not in pinged
        proxy.reset_all()
        gevent.sleep(0.05)
        pinged.clear()
        now[0] = 2.0
        pool.run_housekeeping()
        wait_until(lambda: pool.stats()["connections_discarded"] == 2)
        wait_until(lambda: pool.size == 3 and pool.stats()["pool_available"] == 2)
        assert held not in pinged
        with pytest.raises(OSError):
            echo(held)
        pool.release(held, ConnectionResetError())
        check_invariants(pool)
        pool.close()


def test_restart_costs_at_most_one_failed_call(server: LineServer) -> None:
    pool = LinePool(server.address, 5)
    pool.wait(5)
    server.restart()
    gevent.sleep(0.05)
    failures = 0
    for _ in range(10):
        try:
            with pool.get(timeout=5) as conn:
                echo(conn)
        except OSError:
            failures += 1
    assert failures == 1  # the others were checked (or replaced) before use
    check_invariants(pool)
    pool.close()


def test_discard_logs_and_refills_in_background(server: LineServer, debug_log: Any) -> None:
    pool = LinePool(server.address, 2)
    pool.wait(5)
    with pytest.raises(ConnectionResetError):
        with pool.get():
            raise ConnectionResetError("peer reset")
    wait_until(lambda: pool.size == 2 and pool.snapshot().opening == 0)
    assert pool.connects == 3
    assert any("discarding connection" in r.getMessage() for r in debug_log.records)
    assert all(r.levelno < logging.ERROR for r in debug_log.records)
    pool.close()
