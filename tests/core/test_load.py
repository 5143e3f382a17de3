"""Rows J1, J2: steady load and load with chaos (short profiles; `make soak` runs long ones)."""

from __future__ import annotations

import random
import time

import gevent
import pytest

from geventpool import PoolError
from geventpool.testing import FaultProxy, HubMonitor, check_invariants, fd_count, wait_until

from .helpers import LinePool, LineServer, echo


def test_j1_steady_load(server: LineServer) -> None:
    pool = LinePool(server.address, 10)
    pool.wait(5)
    wait_until(lambda: len(server.open) == 10)  # the server has accepted them all
    waits: list[float] = []

    def worker(n: int) -> None:
        for _ in range(n):
            started = time.monotonic()
            with pool.get() as conn:
                waits.append(time.monotonic() - started)
                echo(conn)

    with HubMonitor() as monitor:
        baseline = fd_count()
        gevent.joinall([gevent.spawn(worker, 50) for _ in range(200)], raise_error=True)
        assert fd_count() <= baseline  # (earlier tests' sockets may be collected meanwhile)
    assert len(waits) == 10_000
    assert server.max_open == 10 and server.accepted == 10
    assert pool.stats()["pool_in_use"] == 0
    waits.sort()
    print(f"checkout wait p50={waits[5000]*1e3:.2f} ms p99={waits[9900]*1e3:.2f} ms "
          f"max={waits[-1]*1e3:.2f} ms; hub max stall {monitor.max_stall*1e3:.1f} ms")
    check_invariants(pool)
    pool.close()


def chaos_run(server: LineServer, operations: int, seconds_between_faults: float) -> dict[str, int]:
    rng = random.Random(2)
    with FaultProxy(server.address) as proxy:
        pool = LinePool(proxy.address, 10, timeout=2.0, connect_timeout=0.5)
        pool.reconnect_backoff_max = 0.2
        pool.wait(5)
        counts = {"ok": 0, "typed": 0, "killed": 0, "started": 0}

        def op() -> None:
            counts["started"] += 1
            try:
                with pool.get() as conn, gevent.Timeout(1.0, OSError("op timeout")):
                    echo(conn)
                counts["ok"] += 1
            except (OSError, PoolError):
                counts["typed"] += 1

        def faults() -> None:
            while True:
                gevent.sleep(seconds_between_faults)
                fault = rng.choice(["reset", "restart", "stall", "pass"])
                if fault == "reset":
                    proxy.reset_all()
                elif fault == "restart":
                    server.restart()
                elif fault == "stall":
                    proxy.set_mode("stall")
                    gevent.sleep(0.3)
                    proxy.set_mode("pass")

        chaos = gevent.spawn(faults)
        greenlets: list[gevent.Greenlet] = []
        for i in range(operations):
            greenlets.append(gevent.spawn(op))
            if rng.random() < 0.05:
                victim = rng.choice(greenlets[-50:])
                if not victim.dead:
                    victim.kill(block=False)
                    counts["killed"] += 1
            if i % 200 == 199:
                gevent.joinall(greenlets[-200:], timeout=30)
        gevent.joinall(greenlets, timeout=60)
        chaos.kill()
        assert all(g.dead for g in greenlets)
        proxy.set_mode("pass")
        wait_until(lambda: pool.stats()["pool_in_use"] == 0 and pool.size <= 10, timeout=10)
        check_invariants(pool)
        pool.close(timeout=1)
    return counts


def test_j2_load_with_chaos_balances(server: LineServer) -> None:
    counts = chaos_run(server, 3000, 0.3)
    # every operation either succeeded, raised a typed error, or was killed before finishing
    finished = counts["ok"] + counts["typed"]
    assert finished + counts["killed"] >= counts["started"] >= finished
    assert counts["ok"] > 0


@pytest.mark.slow
def test_j2_soak(server: LineServer) -> None:
    counts = chaos_run(server, 100_000, 2.0)
    assert counts["ok"] > 0
