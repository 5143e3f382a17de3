"""HubMonitor: measure how late the gevent hub runs a heartbeat greenlet.

Code that blocks the hub (a blocking syscall, a long computation, an
un-patched driver) delays every other greenlet.  A heartbeat that asks to
wake every ``interval`` seconds sees that delay as lateness; the worst
lateness is the longest time the hub was not scheduling anything.
"""

from __future__ import annotations

import heapq
import math
import time
from types import TracebackType
from typing import Callable, NamedTuple

import gevent

from ..errors import ConfigurationError

__all__ = ["HubMonitor", "Stall"]


class Stall(NamedTuple):
    """One late heartbeat."""

    #: How late the heartbeat ran, in seconds.
    seconds: float
    #: When the heartbeat was due, on the monitor's clock (``time.monotonic`` by default).
    due: float
    #: When the heartbeat was due, as ``time.time()`` (for logs).
    wall: float


class HubMonitor:
    """A heartbeat greenlet that records the hub's worst lateness.

    ``with HubMonitor() as monitor: ...; assert monitor.max_stall < 0.05``.
    The heartbeat runs in the hub of the thread that calls :meth:`start`.
    Greenlet-safe; not thread-safe.  Lateness is measured, not explained:
    to find the code that blocked, run gevent's monitor thread
    (``gevent.config.monitor_thread``) as well.

    :param interval: seconds between heartbeats; lateness below the loop's
        timer resolution (about a millisecond) is noise.
    :param keep: how many of the worst stalls :attr:`worst` keeps.
    :param clock: monotonic clock in seconds.
    :raises ConfigurationError: ``interval`` is not a finite number > 0, or
        ``keep`` is not an int >= 1.
    """

    def __init__(
        self,
        interval: float = 0.005,
        *,
        keep: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not (
            math.isfinite(interval) and interval > 0
        ):
            raise ConfigurationError(f"HubMonitor: interval must be a finite number > 0, got {interval!r}")
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ConfigurationError(f"HubMonitor: keep must be an int >= 1, got {keep!r}")
        self.interval = float(interval)
        self.keep = keep
        self._clock = clock
        self._greenlet: gevent.Greenlet | None = None
        self._heap: list[Stall] = []
        self._max_stall = 0.0
        self._beats = 0

    @property
    def max_stall(self) -> float:
        """The worst lateness seen since start or :meth:`reset`, in seconds."""
        return self._max_stall

    @property
    def worst(self) -> list[Stall]:
        """The ``keep`` worst stalls since start or :meth:`reset`, worst first."""
        return sorted(self._heap, reverse=True)

    @property
    def beats(self) -> int:
        """Heartbeats run since start or :meth:`reset`."""
        return self._beats

    @property
    def running(self) -> bool:
        """Whether the heartbeat greenlet is alive."""
        return self._greenlet is not None and not self._greenlet.dead

    def start(self) -> HubMonitor:
        """Start the heartbeat (no-op if it runs); return ``self``."""
        if not self.running:
            self._greenlet = gevent.spawn(self._run)
        return self

    def stop(self) -> None:
        """Stop the heartbeat and wait for it to end; idempotent.  The figures stay readable."""
        greenlet, self._greenlet = self._greenlet, None
        if greenlet is not None:
            greenlet.kill(block=True)

    def reset(self) -> None:
        """Forget the figures measured so far (the heartbeat keeps running)."""
        self._heap = []
        self._max_stall = 0.0
        self._beats = 0

    def _run(self) -> None:
        clock = self._clock
        interval = self.interval
        while True:
            due = clock() + interval
            gevent.sleep(interval)
            late = max(clock() - due, 0.0)
            self._beats += 1
            self._max_stall = max(self._max_stall, late)
            if len(self._heap) < self.keep:
                heapq.heappush(self._heap, Stall(late, due, time.time() - late))
            elif late > self._heap[0].seconds:
                heapq.heapreplace(self._heap, Stall(late, due, time.time() - late))

    def __enter__(self) -> HubMonitor:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f"<HubMonitor {state} interval={self.interval:g} "
            f"max_stall={self._max_stall:.4f} beats={self._beats}>"
        )
