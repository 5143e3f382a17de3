"""The slow path of a checkout: checking idle connections, and waiting in line.

``ConnectionPool.get()`` lends an idle connection that is known good itself
(inlined, or in C).  Everything else comes here: the :class:`Checkout` checks
idle connections due for a check with ``_keepalive`` (a broken one is
discarded, an expired one closed), and with none idle queues the caller in
FIFO order until a connection is returned or opened, the timeout passes, or
the pool fails the wait.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Generic, TypeVar

from gevent import getcurrent

from . import _deadline
from ._config import PoolSettings
from ._lease import Lease, _speedups
from ._report import all_down_error, timeout_error
from ._slot import Slot, SlotState
from ._state import SlotTable, Waiter
from .errors import PoolClosed, TooManyWaiters

if TYPE_CHECKING:
    from .pool import ConnectionPool

__all__ = ["Checkout"]

C = TypeVar("C")

_IN_USE = SlotState.IN_USE
#: The C lend (geventpool/_speedups.c), or None: the Python one in Checkout.lend runs.
_lend: Callable[[SlotTable[Any], Any, Slot[Any], float], Lease[Any] | None] | None = (
    _speedups.lend if _speedups is not None else None
)
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class Checkout(Generic[C]):
    """Checks and waits for ``get()``.  Greenlet-safe; yields while checking or waiting."""

    def __init__(self, pool: ConnectionPool[C]) -> None:
        self.pool = pool
        self.timers: dict[float, list[Any]] = {}  # seconds -> stopped timers, used again by waits

    def take(self, timeout: float | None) -> tuple[Slot[C], float]:
        """A slot ready to lend, and the time.

        Idle connections due for a check are checked (a broken one is
        replaced); with none idle, the caller waits in FIFO order.

        :raises PoolTimeout: no connection within ``timeout`` (default: the pool's).
        :raises TooManyWaiters: ``max_waiting`` greenlets are already waiting.
        :raises PoolClosed: the pool was closed.
        """
        pool = self.pool
        if timeout is not None:
            timeout = PoolSettings.seconds(pool.name, "timeout", timeout)  # refused even when not waiting
        if not pool._started:
            pool._start()
        if pool._closed:
            raise PoolClosed(f"{pool.name} is closed")
        if timeout is None:
            timeout = pool.timeout
        deadline = 0.0  # set by the first check: checking idle connections counts against timeout
        while pool._table.idle:  # the table is read again each turn: a check yields (a fork, say)
            table = pool._table
            slot, now = table.take_idle()
            if now >= slot.expires_at:
                pool._closer.close(slot, slot.retire or "lifetime")
                continue
            if now < slot.good_until:
                return slot, now
            if not pool._can_check:
                pool._closer.close(slot, "unchecked")
                continue
            if not deadline:
                deadline = now + timeout
            remaining = deadline - now
            if remaining <= 0:
                table.offer(slot, now)  # back where it came from, unchecked
                pool._counters["requests_errors"] += 1
                raise timeout_error(pool, timeout) from pool._connector.last_error
            table.start_check(slot)
            if self.check(slot, remaining):
                if pool.closed:  # closed while this caller checked it (a property: mypy keeps no narrowing)
                    pool._closer.close(slot, "pool closed")
                    raise PoolClosed(f"{pool.name} is closed")
                return slot, pool._clock()
            if deadline - pool._clock() <= 0:
                pool._counters["requests_errors"] += 1
                raise timeout_error(pool, timeout) from pool._connector.last_error
        if deadline:
            timeout = max(deadline - pool._clock(), 0.0)
        return self.wait(timeout)

    def lend(self, slot: Slot[C], now: float) -> Lease[C]:
        """Lend ``slot``, just taken for the caller of ``get()``: a new lease, the slot in use.

        :raises BaseException: what a checkout listener raised (the connection is discarded first).
        """
        pool = self.pool
        if _lend is not None:
            lease = _lend(pool._table, pool, slot, now)  # the C speedups, or None if observed
            if lease is not None:
                return lease
        # check-then-update: no greenlet switch from taking the slot to here
        slot.state = _IN_USE
        slot.checked_out_at = now
        slot.uses += 1
        slot.holder = getcurrent()
        slot.lease = lease = Lease(pool, slot)
        if pool._table.observed:  # leak tracking or checkout listeners
            if pool._track_frames:
                slot.where = _where(sys._getframe(1))
            if pool._listeners["checkout"]:
                try:
                    pool._emit("checkout", lease.conn)
                except BaseException as interrupted:
                    slot.lease = None
                    pool._closer.discard(slot, interrupted)
                    raise
        return lease

    def check(self, slot: Slot[C], limit: float | None = None) -> bool:
        """Check a connection being checked (``start_check``) with ``_keepalive`` within
        ``keepalive_timeout`` (or ``limit`` if shorter: the caller's time left); discard it if broken,
        else it is in use again.

        :raises BaseException: what ``_keepalive`` raised, if not an ``Exception`` (the connection
            is discarded first).
        """
        pool = self.pool
        pool._counters["keepalives"] += 1
        seconds = pool.keepalive_timeout if limit is None else min(limit, pool.keepalive_timeout)
        cut_short = seconds < pool.keepalive_timeout
        try:
            with _deadline.limit(seconds, f"{pool.name}: check took longer than {seconds:g} s"):
                pool._keepalive(slot.conn)
        except _deadline.Expired:
            if cut_short:
                # the caller's deadline, not the connection's fault: close it (its protocol state is
                # unknown) without taking it for a lost connection
                pool._closer.close(slot, "unchecked")
            else:
                pool._closer.discard(slot, sys.exc_info()[1])
            return False
        except BaseException as error:
            pool._closer.discard(slot, error)
            if not isinstance(error, Exception):
                raise
            return False
        if not pool._table.end_check(slot):  # closed meanwhile, or inherited through fork()
            return False
        self._mark_checked(slot)
        return True

    def _mark_checked(self, slot: Slot[C]) -> None:
        """A check passed: the connection is good until its next ping is due."""
        pool = self.pool
        now = slot.checked_at = pool._clock()
        slot.good_until = min(slot.expires_at, now + pool._ping_window)
        slot.generation = pool._table.generation
        if not slot.proved:
            slot.proved = True
            pool._connector.proved()

    def wait(self, timeout: float) -> tuple[Slot[C], float]:
        """Queue up (FIFO) for a returned or new connection; return it and the time.

        :raises PoolTimeout: none within ``timeout`` (or what the pool failed the wait with).
        :raises TooManyWaiters: ``max_waiting`` greenlets are already waiting.
        :raises BackendUnavailable: every server is down.
        :raises PoolClosed: the pool was closed.
        """
        pool = self.pool
        if pool._closed:  # closed while this caller checked an idle connection
            raise PoolClosed(f"{pool.name} is closed")
        table = pool._table
        if pool.max_waiting and len(table.waiters) >= pool.max_waiting:
            pool._counters["requests_too_many"] += 1
            raise TooManyWaiters(
                f"{pool.name}: {len(table.waiters)} greenlets already waiting "
                f"(max_waiting={pool.max_waiting})"
            )
        if pool.server_pool is not None and pool.server_pool.all_down():
            pool._counters["requests_errors"] += 1
            raise all_down_error(pool)
        hub = pool._workers.hub
        waiter = Waiter(hub)
        table.waiters.append(waiter)
        counters = pool._counters
        counters["requests_queued"] += 1
        if len(table.open) + table.opening + table.closing < pool.max_size:  # else no connect can start
            pool._connector.ensure()
        timers = self.timers.get(timeout)
        if timers is None:
            timers = self._timers_of(timeout)
        clock = pool._clock
        started = clock()
        try:
            if timeout > 0:  # the waiter's sleep, inlined: a timer (used again) and the hub
                # repeating, started with again(): each wait gets the full timeout (a libev timer
                # stopped early keeps only what was left of it, one that fired keeps nothing)
                timer = timers.pop() if timers else hub.loop.timer(timeout, timeout)
                timer.again(waiter.switch, None)
                try:
                    waiter.get()
                finally:
                    if timers is not None:
                        timer.stop()
                        timers.append(timer)
                    else:
                        timer.close()
        except BaseException:
            self._abandon(waiter)
            raise
        finally:
            now = clock()
            counters["requests_wait_ms"] += (now - started) * 1000.0
        slot = waiter.slot
        if slot is None:
            self._abandon(waiter)
            pool._counters["requests_errors"] += 1
            if waiter.error is not None:
                raise waiter.error
            raise timeout_error(pool, timeout) from pool._connector.last_error
        if pool._table.open.get(slot.key) is not slot:  # handed before a fork(), woken in the child
            return pool._checkout.take(max(timeout - (now - started), 0.0))  # the child's
        return slot, now

    def _timers_of(self, seconds: float) -> list[Any] | None:
        """Stopped timers of ``seconds`` to use again for waits (the pool's own ``timeout`` and up
        to three others), or None: make one per wait."""
        timers = self.timers.get(seconds)
        if timers is None and len(self.timers) < 4:
            timers = self.timers[seconds] = []
        return timers

    def _abandon(self, waiter: Waiter) -> None:
        slot = self.pool._table.abandon(waiter)
        if slot is not None:
            self.pool._give_back(slot)


def _where(frame: Any) -> tuple[Any, int]:
    """(code, bytecode offset) of the first frame outside geventpool: where a checkout was made."""
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    return frame.f_code, frame.f_lasti
