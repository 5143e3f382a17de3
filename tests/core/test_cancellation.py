"""Rows C1-C6: gevent.Timeout, Greenlet.kill and other BaseExceptions at every point."""

from __future__ import annotations

import random
import socket

import gevent
import gevent.event
import pytest

from geventpool import PoolTimeout
from geventpool.testing import check_invariants, fd_count, wait_until

from .helpers import LinePool, LineServer, echo, read_line


def test_c1_timeout_or_kill_while_waiting_costs_no_slot(server: LineServer) -> None:
    pool = LinePool(server.address, 2)
    pool.wait(5)
    held = [pool.acquire(), pool.acquire()]
    with pytest.raises(gevent.Timeout):
        with gevent.Timeout(0.05):
            pool.get(timeout=5)
    killed = gevent.spawn(pool.acquire, timeout=5)
    gevent.sleep(0)
    killed.kill()
    assert not pool.snapshot().waiting
    live = gevent.spawn(pool.acquire, timeout=5)
    gevent.sleep(0)
    pool.release(held.pop())
    conn = live.get(timeout=5)
    echo(conn)
    pool.release(conn)
    pool.release(held.pop())
    assert pool.size == 2 and pool.connects == 2
    check_invariants(pool)
    pool.close()


def test_c1_dead_clients_among_live_ones(server: LineServer) -> None:
    # waiters with timeouts 0.4, 0.4, 0.1, 0.4, 0.4 on a pool of 2 (psycopg's test_dead_client)
    pool = LinePool(server.address, 2)
    pool.wait(5)
    results: list[str] = []

    def worker(timeout: float) -> None:
        try:
            with pool.get(timeout=timeout) as conn:
                echo(conn)
                gevent.sleep(0.2)
                results.append("ok")
        except PoolTimeout:
            results.append("timeout")

    gevent.joinall([gevent.spawn(worker, t) for t in (0.4, 0.4, 0.1, 0.4, 0.4)], raise_error=True)
    assert results.count("timeout") >= 1
    assert pool.size == 2 and pool.connects == 2
    check_invariants(pool)
    pool.close()


def test_a_waiter_handed_a_connection_as_it_is_killed_passes_it_on(server: LineServer) -> None:
    pool = LinePool(server.address, 1)
    pool.wait(5)
    held = pool.acquire()
    doomed = gevent.spawn(pool.acquire, timeout=5)
    gevent.sleep(0)
    doomed.kill(block=False)  # the kill is scheduled first...
    pool.release(held)  # ...then the connection is handed to the waiter, before it runs
    doomed.join(5)
    assert doomed.dead and isinstance(doomed.value, gevent.GreenletExit)
    assert pool.stats()["pool_available"] == 1
    with pool.get(timeout=1) as conn:
        echo(conn)
    check_invariants(pool)
    pool.close()


@pytest.mark.parametrize("how", ["timeout", "kill"])
def test_c2_interrupted_connect_frees_the_slot_and_fd(server: LineServer, how: str) -> None:
    entered = gevent.event.Event()

    class Stalling(LinePool):
        def _new_connection(self) -> socket.socket:
            sock = gevent.socket.create_connection(self.address)
            entered.set()
            sock.recv(1)  # the server never speaks first: stalls mid-handshake
            return sock

    baseline = fd_count()
    pool = Stalling(server.address, 1, connect_timeout=0.2 if how == "timeout" else 10)
    with pytest.raises(PoolTimeout):
        pool.get(timeout=0.1)
    entered.wait(5)
    if how == "kill":
        pool.close(timeout=1)
    else:
        wait_until(lambda: pool.stats()["connections_errors"] >= 1)
        pool.close(timeout=1)
    wait_until(lambda: fd_count() <= baseline, timeout=5)
    assert pool.snapshot().opening == 0
    check_invariants(pool)


@pytest.mark.parametrize("error", ["timeout", "kill", "keyboard"])
def test_c3_interrupted_request_discards_the_connection(server: LineServer, error: str) -> None:
    pool = LinePool(server.address, 1)
    pool.wait(5)
    first = pool.snapshot().idle_slots[0].conn
    sent = gevent.event.Event()

    def user() -> None:
        with pool.get() as conn:
            conn.sendall(b"SLOW 0.3\n")
            sent.set()
            if error == "keyboard":
                raise KeyboardInterrupt
            read_line(conn)

    if error == "timeout":
        with pytest.raises(gevent.Timeout):
            with gevent.Timeout(0.05):
                user()
    elif error == "kill":
        g = gevent.spawn(user)
        sent.wait(5)
        g.kill()
    else:
        with pytest.raises(KeyboardInterrupt):
            user()
    assert first.fileno() == -1  # discarded, not reused: its late answer is never read
    with pool.get(timeout=5) as conn:
        assert conn is not first
        echo(conn)  # the next user reads its own answer
    check_invariants(pool)
    pool.close()


def test_c4_timeout_inside_the_return_path(server: LineServer) -> None:
    class SlowReset(LinePool):
        def _reset(self, conn: socket.socket) -> None:
            gevent.sleep(1)

    pool = SlowReset(server.address, 1)
    pool.wait(5)
    with pytest.raises(gevent.Timeout):
        with gevent.Timeout(0.05):
            with pool.get():
                raise LookupError("ordinary error -> reset on return")
    assert pool.stats()["pool_in_use"] == 0
    wait_until(lambda: pool.stats()["pool_available"] == 1)
    check_invariants(pool)
    pool.close()


def test_c4_ordinary_error_resets_and_returns(server: LineServer) -> None:
    resets: list[socket.socket] = []

    class Resetting(LinePool):
        def _reset(self, conn: socket.socket) -> None:
            resets.append(conn)

    pool = Resetting(server.address, 1)
    with pytest.raises(LookupError):
        with pool.get() as conn:
            raise LookupError("user error")
    assert resets == [conn]
    assert pool.stats()["pool_available"] == 1 and pool.stats()["connections_discarded"] == 0
    pool.close()


def test_c5_kill_storm(server: LineServer) -> None:
    pool = LinePool(server.address, 10)
    pool.wait(5)
    baseline = fd_count()
    rng = random.Random(5)
    done = [0]

    def op() -> None:
        with pool.get(timeout=10) as conn:
            echo(conn)
        done[0] += 1

    greenlets = []
    for _ in range(2000):
        greenlets.append(gevent.spawn(op))
        if rng.random() < 0.05:
            victim = rng.choice(greenlets)
            victim.kill(block=False)
        if len(greenlets) % 200 == 0:
            gevent.sleep(rng.random() * 0.01)
    gevent.joinall(greenlets, timeout=60)
    assert all(g.dead for g in greenlets)
    wait_until(lambda: pool.size == 10 and pool.stats()["pool_in_use"] == 0, timeout=10)
    assert done[0] > 1000
    assert server.max_open <= 10 + pool.stats()["connections_discarded"]
    wait_until(lambda: len(server.open) == 10, timeout=10)
    assert abs(fd_count() - baseline) <= 1
    check_invariants(pool)
    pool.close()


def test_c6_foreign_and_nested_timeouts(server: LineServer) -> None:
    pool = LinePool(server.address, 1)
    held = pool.acquire()
    outer = gevent.Timeout(0.05)
    with pytest.raises(gevent.Timeout) as info:
        with outer:
            pool.get(timeout=5)
    assert info.value is outer  # re-raised unchanged, not turned into a pool error
    with gevent.Timeout(5):
        with pytest.raises(PoolTimeout):
            pool.get(timeout=0.05)
    assert not pool.snapshot().waiting
    pool.release(held)
    check_invariants(pool)
    pool.close()
