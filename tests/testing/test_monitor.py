"""HubMonitor sees a deliberate hub stall; wait_until and the resource counters."""

from __future__ import annotations

import time

import gevent
import pytest

from geventpool import ConfigurationError
from geventpool.testing import HubMonitor, fd_count, greenlet_count, wait_until


def test_detects_a_deliberate_stall() -> None:
    with HubMonitor(interval=0.005) as monitor:
        wait_until(lambda: monitor.beats >= 3, message="the heartbeat runs")
        time.sleep(0.05)  # blocks the hub on purpose
        wait_until(lambda: monitor.max_stall >= 0.04, message="the stall is measured")
        worst = monitor.worst
        assert worst[0].seconds == monitor.max_stall
        assert worst == sorted(worst, reverse=True)
        assert len(worst) <= monitor.keep
        now = time.monotonic()
        assert now - 1.0 < worst[0].due < now
    assert not monitor.running
    assert monitor.max_stall >= 0.04  # the figures survive stop()


def test_reset_forgets_and_keeps_running() -> None:
    with HubMonitor(interval=0.002, keep=3) as monitor:
        wait_until(lambda: monitor.beats >= 5)
        monitor.reset()
        assert (monitor.beats, monitor.max_stall, monitor.worst) == (0, 0.0, [])
        wait_until(lambda: monitor.beats >= 5, message="the heartbeat still runs after reset")
        assert len(monitor.worst) == 3
        assert monitor.running


def test_start_and_stop_are_idempotent() -> None:
    greenlets = greenlet_count()
    monitor = HubMonitor()
    monitor.stop()
    assert monitor.start() is monitor.start()
    monitor.stop()
    monitor.stop()
    assert "stopped" in repr(monitor)
    wait_until(lambda: greenlet_count() <= greenlets)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [({"interval": 0}, "interval"), ({"interval": float("nan")}, "interval"), ({"keep": 0}, "keep")],
)
def test_bad_arguments(kwargs: dict[str, float], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        HubMonitor(**kwargs)  # type: ignore[arg-type]


def test_wait_until_returns_the_true_value() -> None:
    box: list[int] = []
    gevent.spawn_later(0.01, box.append, 7)
    assert wait_until(lambda: box) == [7]


def test_wait_until_times_out_with_a_description() -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"the moon.*0\.05 s.*last value: 0"):
        wait_until(lambda: 0, timeout=0.05, message="the moon")
    assert time.monotonic() - started >= 0.05


def test_wait_until_checks_its_arguments() -> None:
    with pytest.raises(ConfigurationError, match="interval"):
        wait_until(lambda: True, interval=-1)


def test_fd_count_sees_a_socket() -> None:
    import socket

    before = fd_count()
    sock = socket.socket()
    assert fd_count() == before + 1
    sock.close()
    assert fd_count() == before
