"""Timers used again (waits, return-path deadlines) give every use the full time.

A libev timer stopped early keeps only what was left of it, and one that fired keeps nothing:
started again with ``start()`` it fires that much sooner (at once, after firing).  These tests
fail on such reuse: a deadline or a wait cut short by the previous use of its timer.
"""

from __future__ import annotations

import time

import gevent
import pytest

from geventpool import PoolTimeout, _deadline
from geventpool.testing import check_invariants

from .helpers import LinePool, LineServer


def test_a_deadline_reused_after_a_block_that_ended_early_runs_in_full() -> None:
    timers: list[object] = []
    # each block uses 0.25 of the 1.5 s (a slow machine has 1.25 s to spare): a timer that kept
    # what was left would fire in the sixth, 1.5 s into its life
    for _ in range(7):
        with _deadline.limit(1.5, "block", timers=timers):
            gevent.sleep(0.25)
    assert len(timers) == 1  # one timer, used seven times


def test_a_deadline_after_one_that_expired_runs_in_full() -> None:
    timers: list[object] = []
    with pytest.raises(_deadline.Expired):
        with _deadline.limit(0.2, "first", timers=timers):
            gevent.sleep(1)
    started = time.monotonic()
    with _deadline.limit(0.2, "second", timers=timers):
        gevent.sleep(0.1)
    assert time.monotonic() - started >= 0.1


def test_each_wait_gets_the_pool_timeout_in_full(server: LineServer) -> None:
    pool = LinePool(server.address, 1, timeout=2.0)
    held = pool.get()

    def give_back_later() -> None:
        gevent.sleep(0.3)
        held.release()

    gevent.spawn(give_back_later)
    # waits 0.3 s of its 2.0 (a slow machine has 1.7 s to spare): its timer is stopped early, kept
    with pool.get():
        started = time.monotonic()
        with pytest.raises(PoolTimeout):
            pool.get()  # the same timer again: must wait the whole 2 s (one that kept 1.7 s fails)
        assert time.monotonic() - started >= 1.9
        started = time.monotonic()
        with pytest.raises(PoolTimeout):
            pool.get()  # after a timer that fired (one that kept nothing fires at once)
        assert time.monotonic() - started >= 1.9
    check_invariants(pool)
    pool.close()
