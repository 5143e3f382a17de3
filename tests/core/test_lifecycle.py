"""Rows I4-I6: leak detection, logging with a slow handler, shutdown."""

from __future__ import annotations

import logging
import socket
import time

import gevent
import gevent.event
import pytest

from geventpool import ConfigurationError, PoolClosed
from geventpool.testing import check_invariants, fd_count, wait_until

from .helpers import LinePool, LineServer, echo


def hold_a_connection_too_long(pool: LinePool) -> socket.socket:
    return pool.acquire()


def test_i4_leak_warning_once_with_the_acquisition_stack(
    server: LineServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="geventpool")
    now = [0.0]
    pool = LinePool(server.address, 2, leak_threshold=2.0, clock=lambda: now[0])
    conn = hold_a_connection_too_long(pool)
    now[0] = 1.0
    pool.run_housekeeping()
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    now[0] = 3.0
    pool.run_housekeeping()
    pool.run_housekeeping()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "possible leak" in warnings[0] and "hold_a_connection_too_long" in warnings[0]
    pool.release(conn)
    assert any("returned (unleaked)" in r.getMessage() for r in caplog.records)
    assert pool.stats()["leaks"] == 1
    pool.close()


def test_i5_debug_logging_through_a_slow_handler(server: LineServer) -> None:
    class SlowHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            gevent.sleep(0.01)

    log = logging.getLogger("geventpool")
    handler = SlowHandler()
    log.addHandler(handler)
    old_level = log.level
    log.setLevel(logging.DEBUG)
    try:
        pool = LinePool(server.address, 4)
        pool.wait(5)
        for _ in range(3):
            with pytest.raises(ConnectionResetError), pool.get():
                raise ConnectionResetError("forces a discard log line")
        wait_until(lambda: pool.size == 4 and pool.snapshot().opening == 0)
        check_invariants(pool)
        pool.close()
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)


def test_i6_close_with_connections_checked_out(server: LineServer) -> None:
    baseline = fd_count()
    pool = LinePool(server.address, 3)
    pool.wait(5)
    held = pool.acquire()
    waiter_done = gevent.event.Event()
    waiter_error: list[BaseException] = []

    def waiter() -> None:
        try:
            pool.acquire(timeout=10)
            pool.acquire(timeout=10)
            pool.acquire(timeout=10)
        except PoolClosed as error:
            waiter_error.append(error)
        waiter_done.set()

    gevent.spawn(waiter)
    gevent.sleep(0.01)
    started = time.monotonic()
    pool.close(timeout=0.3)
    assert time.monotonic() - started < 2
    waiter_done.wait(5)
    assert waiter_error
    assert all(g.dead for g in (pool._workers.group or []))
    echo(held)
    pool.release(held)
    assert held.fileno() == -1
    check_invariants(pool)
    wait_until(lambda: fd_count() <= baseline + 2, timeout=5)  # the waiter kept two, closed on GC


def test_i6_close_during_start_up_and_refill(server: LineServer) -> None:
    class Slow(LinePool):
        def _new_connection(self) -> socket.socket:
            gevent.sleep(0.5)
            return super()._new_connection()

    baseline = fd_count()
    pool = Slow(server.address, 5)
    pool.run_housekeeping()  # starts the refill
    gevent.sleep(0.05)
    assert pool.snapshot().opening > 0
    started = time.monotonic()
    pool.close(timeout=1)
    assert time.monotonic() - started < 2
    assert pool.snapshot().opening == 0 and pool.size == 0
    assert all(g.dead for g in (pool._workers.group or []))
    check_invariants(pool)
    wait_until(lambda: fd_count() <= baseline, timeout=5)
    wait_until(lambda: not server.open, timeout=5)


def test_close_waits_for_a_connection_returned_in_time(server: LineServer) -> None:
    pool = LinePool(server.address, 1)
    lease = pool.get()
    gevent.spawn_later(0.1, lease.release)
    pool.close(timeout=5)
    assert lease.conn.fileno() == -1
    assert pool.size == 0


def test_listeners_see_every_event(server: LineServer) -> None:
    seen: list[tuple[str, object]] = []
    pool = LinePool(server.address, 1)
    pool.on("connect", lambda p, conn: seen.append(("connect", conn)))
    pool.on("checkout", lambda p, conn: seen.append(("checkout", conn)))
    pool.on("checkin", lambda p, conn, error: seen.append(("checkin", error)))
    pool.on("discard", lambda p, conn, error: seen.append(("discard", type(error))))
    pool.on("checkout", lambda p, conn: 1 / 0)  # a broken listener is logged, not raised
    with pool.get() as conn:
        echo(conn)
    error = ConnectionResetError("gone")
    with pytest.raises(ConnectionResetError), pool.get():
        raise error
    names = [name for name, _ in seen]
    assert names == ["connect", "checkout", "checkin", "checkout", "checkin", "discard"]
    assert seen[-2] == ("checkin", error) and seen[-1] == ("discard", ConnectionResetError)
    with pytest.raises(ConfigurationError):
        pool.on("explode", print)
    check_invariants(pool)
    pool.close()
