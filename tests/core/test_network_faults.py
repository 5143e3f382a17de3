"""Rows E1-E7: network faults between the pool and a real server, through the fault proxy."""

from __future__ import annotations

import time
from collections.abc import Iterator

import gevent
import pytest

from geventpool import BackendUnavailable, ConnectTimeout, PoolError
from geventpool.testing import FaultProxy, check_invariants, fd_count, wait_until

from .helpers import LinePool, LineServer, echo


@pytest.fixture
def proxy(server: LineServer) -> Iterator[FaultProxy]:
    with FaultProxy(server.address) as p:
        yield p


class TimedPool(LinePool):
    """Every operation has a total deadline (t_op), as a careful user writes it."""

    op_timeout = 0.3

    def call(self, text: bytes = b"hello\n") -> bytes:
        with self.get() as conn, gevent.Timeout(self.op_timeout, TimeoutError("operation timed out")):
            return echo(conn, text)


@pytest.mark.parametrize("mode", ["reset", "half_close", "truncate", "corrupt", "blackhole", "stall"])
def test_e1_e2_e3_faulty_connection_is_discarded_then_refilled(proxy: FaultProxy, mode: str) -> None:
    pool = TimedPool(proxy.address, 2)
    pool.wait(5)
    assert pool.call() == b"hello\n"
    params = {"n": 3} if mode in ("truncate", "corrupt") else {}
    proxy.set_mode(mode, **params)
    started = time.monotonic()
    with pytest.raises((OSError, AssertionError)):
        pool.call(b"a longer line of text\n")
    assert time.monotonic() - started < 5  # bounded by t_op, never the kernel's timers
    assert pool.stats()["connections_discarded"] >= 1 or mode in ("corrupt",)
    proxy.set_mode("pass")
    wait_until(lambda: pool.size == 2 and pool.snapshot().opening == 0)
    for _ in range(3):
        try:
            pool.call()
        except (OSError, AssertionError):
            pass  # a sibling opened before the fault may fail once
    assert pool.call() == b"hello\n"
    check_invariants(pool)
    pool.close()


def test_e4_deaf_listener_fails_at_connect_timeout(proxy: FaultProxy) -> None:
    proxy.set_mode("deaf")
    baseline = fd_count()
    pool = LinePool(proxy.address, 1, connect_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as info:
        pool.get(timeout=1.0)
    assert time.monotonic() - started < 3
    assert isinstance(info.value.__cause__, ConnectTimeout)
    pool.close(timeout=1)
    wait_until(lambda: fd_count() <= baseline, timeout=5)


def test_e5_slow_drip_hits_the_total_deadline(proxy: FaultProxy) -> None:
    pool = TimedPool(proxy.address, 1)
    pool.wait(5)
    proxy.set_mode("drip", bytes_per_sec=10)
    with pytest.raises(OSError):
        pool.call(b"x" * 40 + b"\n")
    assert pool.stats()["connections_discarded"] == 1
    proxy.set_mode("pass")
    wait_until(lambda: pool.size == 1 and pool.snapshot().opening == 0)
    assert pool.call() == b"hello\n"
    pool.close()


def test_e6_latency_under_load_causes_no_growth_or_timeouts(proxy: FaultProxy, server: LineServer) -> None:
    proxy.set_mode("delay", ms=50)
    pool = LinePool(proxy.address, 10, timeout=30)
    pool.wait(10)

    def op() -> None:
        with pool.get() as conn:
            echo(conn)

    gevent.joinall([gevent.spawn(op) for _ in range(200)], raise_error=True)
    assert pool.connects == 10 and server.accepted == 10
    assert pool.stats()["requests_errors"] == 0
    check_invariants(pool)
    pool.close()


def test_e7_flapping_backend_every_call_succeeds_or_fails_typed(proxy: FaultProxy) -> None:
    proxy.set_mode("flap", period=0.2)
    pool = TimedPool(proxy.address, 4, timeout=0.5, connect_timeout=0.3)
    pool.reconnect_backoff_max = 0.1  # retry within a flap period (the default cap is 5 s)
    baseline = fd_count()
    outcomes = {"ok": 0, "typed": 0}
    deadline = time.monotonic() + 2.0

    def worker() -> None:
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                pool.call()
                outcomes["ok"] += 1
            except (OSError, PoolError, AssertionError):
                outcomes["typed"] += 1
            assert time.monotonic() - started < 3  # every call ends by its deadline
            gevent.sleep(0.01)

    gevent.joinall([gevent.spawn(worker) for _ in range(20)], raise_error=True)
    proxy.set_mode("pass")
    assert outcomes["ok"] > 0
    wait_until(lambda: pool.size <= 4)
    check_invariants(pool)
    pool.close(timeout=1)
    wait_until(lambda: fd_count() <= baseline + 1, timeout=5)


@pytest.mark.parametrize("lifo", [True, False])
def test_b1_checking_idle_connections_counts_against_the_callers_timeout(
    proxy: FaultProxy, lifo: bool
) -> None:
    """Twenty idle connections due for a check, the network cut: each check may take
    keepalive_timeout, but get(timeout) gives up at its own deadline (it once took 20 of them)."""
    pool = LinePool(proxy.address, 20, timeout=0.5, keepalive_timeout=0.5, ping_after=0.0, lifo=lifo,
                    connect_timeout=0.5)
    pool.wait(5)
    proxy.set_mode("blackhole")
    started = time.monotonic()
    with pytest.raises(PoolError):
        pool.get(timeout=0.5)
    assert time.monotonic() - started < 3  # about 0.5 s; twenty checks would take 10 s
    proxy.set_mode("pass")
    check_invariants(pool)
    pool.close()


@pytest.mark.parametrize("timeout", ["abc", -1, float("nan"), float("inf")])
def test_a1_a_bad_get_timeout_is_refused_even_when_a_connection_is_idle(
    proxy: FaultProxy, timeout: object
) -> None:
    pool = LinePool(proxy.address, 1)
    pool.wait(5)
    with pytest.raises(ValueError, match="timeout"):
        pool.get(timeout=timeout)  # type: ignore[arg-type]
    check_invariants(pool)
    pool.close()
