"""Housekeeping: the pool's periodic pass over its connections.

:func:`plan` is a pure decision over a :class:`~geventpool._state.Snapshot`
(no I/O, no greenlet switch): which connections to close, check, retire or
reclaim.  The :class:`Housekeeper` runs it every ``housekeeping_interval``,
files the slots, then does the closing and checking.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

import gevent

from ._report import leak_message
from ._slot import Slot, SlotState
from ._state import Snapshot

if TYPE_CHECKING:
    from .pool import ConnectionPool

__all__ = ["Plan", "plan", "Housekeeper"]

C = TypeVar("C")

logger = logging.getLogger("geventpool")

_refcount = getattr(sys, "getrefcount", None)  # CPython: a dropped lease is found by its count


def _held_only_here(holder: Any) -> int:
    lease = holder.lease  # as _orphaned reads it
    assert _refcount is not None
    return int(_refcount(lease))


class _Probe:
    lease: Any = None


def _baseline() -> int | None:
    """What ``getrefcount`` says of a lease held by nothing but its slot, measured the way
    :func:`_orphaned` measures (CPython versions count their own argument differently)."""
    if _refcount is None:
        return None
    probe = _Probe()
    probe.lease = object()
    return _held_only_here(probe)


_DROPPED_AT = _baseline()


class Plan(NamedTuple):
    """What to do with the pool's connections in this pass."""

    close: list[tuple[Slot[Any], str]]  # idle ones, with the reason
    check: list[Slot[Any]]  # idle ones due for a keepalive
    retire_on_return: list[Slot[Any]]  # busy ones to close when they come back
    orphaned: list[tuple[Slot[Any], str]]  # lent, but their borrower is gone, with why


def plan(pool: ConnectionPool[Any], state: Snapshot, now: float) -> Plan:
    """Decide the fate of the pool's connections.

    Closed: past their lifetime; idle longer than ``max_idle`` while the pool
    is above ``min_size`` (never below it: only ``keepalive`` and ``ping_after``
    keep those alive through a firewall's idle cut-off); on a server no
    longer in the pool; and (one per pass, for a gradual failback) on a
    server less preferred than the best healthy one — a busy one is then
    retired when it comes back if no idle one could be.  Checked: due for a
    keepalive, when nobody waits.  The least recently used go first.
    Reclaimed: lent to a greenlet that has ended, or through a lease that
    nothing references any more.
    """
    result = Plan([], [], [], [])
    servers = pool.server_pool
    removable = len(state.slots) - pool.min_size
    best_rank = _best_rank(pool)
    failback_done = False
    for slot in sorted(state.idle_slots, key=lambda s: s.last_used):
        server = slot.server
        if now >= slot.expires_at:
            removable -= 1
            result.close.append((slot, "lifetime"))
        elif removable > 0 and now - slot.last_used >= pool.max_idle:
            removable -= 1
            result.close.append((slot, "idle"))
        elif server is not None and servers is not None and server not in servers:
            result.close.append((slot, "server removed"))
        elif (
            best_rank is not None
            and server is not None
            and servers is not None
            and servers.rank(server) > best_rank
            and not failback_done
        ):
            failback_done = True
            result.close.append((slot, "failback"))
        elif (
            pool.keepalive is not None
            and not state.waiting
            and now - max(slot.last_used, slot.checked_at) >= pool.keepalive
        ):
            result.check.append(slot)
    busy = [slot for slot in state.slots if slot.state is SlotState.IN_USE]
    for slot in busy:
        why = _orphaned(pool, slot)
        if why is not None:
            result.orphaned.append((slot, why))
    if best_rank is not None and not failback_done:
        # A saturated pool has no idle connection to fail back with: retire a busy
        # one on a less preferred server when it comes back (as max_lifetime does).
        for slot in busy:
            server = slot.server
            if (
                server is not None
                and slot.expires_at > now
                and servers is not None
                and servers.rank(server) > best_rank
            ):
                result.retire_on_return.append(slot)
                break
    return result


def _orphaned(pool: ConnectionPool[Any], slot: Slot[Any]) -> str | None:
    """Why ``slot``'s checkout can never come back (None: it can)."""
    lease = slot.lease
    if lease is None:
        return None  # handed to a waiter that has not run yet
    holder = slot.holder
    if holder is not None and holder.dead:
        return "its borrower ended without returning it"
    if pool._loans.holds(slot):
        return None  # acquire(): the borrower holds the connection, not the lease
    del lease
    if _DROPPED_AT is not None and _held_only_here(slot) <= _DROPPED_AT:  # held by the slot alone
        return "its lease was dropped without being returned"
    return None


def _best_rank(pool: ConnectionPool[Any]) -> tuple[int, ...] | None:
    servers = pool.server_pool
    if servers is None:
        return None
    healthy = [servers.rank(s) for s in servers if s.health.state == "closed"]
    return min(healthy) if healthy else None


class Housekeeper(Generic[C]):
    """Runs a pool's housekeeping passes (in the pool's greenlet group; ``close()`` kills it) and
    counts the leaks they report until each connection comes back."""

    def __init__(self, pool: ConnectionPool[C]) -> None:
        self.pool = pool
        self.leaks_out = 0  # connections reported as leaked and not yet returned

    def period(self) -> float:
        """Seconds between passes: shorter when ``keepalive`` or ``leak_threshold`` need it."""
        pool = self.pool
        period = pool.housekeeping_interval
        if pool.keepalive is not None:
            period = min(period, pool.keepalive / 2)
        if pool.leak_threshold is not None:
            period = min(period, pool.leak_threshold / 2)
        return period

    def loop(self, epoch: object) -> None:
        """Run a pass every :meth:`period` until the pool closes (or forks: a new epoch)."""
        pool = self.pool
        while epoch is pool._workers.epoch and not pool.closed:
            gevent.sleep(self.period())
            if epoch is not pool._workers.epoch or pool.closed:
                return
            try:
                pool.run_housekeeping()
            except Exception:
                logger.exception("%s: housekeeping failed", pool.name)

    def run_pass(self) -> None:
        """Decide, file the slots (no switch), then close, check and reclaim; refill."""
        pool = self.pool
        table = pool._table
        now = pool._clock()
        # check-then-update: decide and re-file without switching; I/O after
        decided = plan(pool, table.snapshot(), now)
        for slot in decided.check:
            table.idle.remove(slot)
            table.start_check(slot)
            pool._workers.spawn(self._check_idle, slot)
        for slot in decided.retire_on_return:
            slot.retire = "failback"
            slot.expires_at = now  # the inlined return path sees it too
        if pool.leak_threshold is not None:
            self._report_leaks(now)
        for slot, reason in decided.close:
            # one at a time, each taken out just before its close: an interruption (close()
            # killing this greenlet) leaves the others idle and counted; one lent meanwhile stays lent
            pool._closer.close_if_idle(slot, reason)
        for slot, why in decided.orphaned:
            pool._closer.reclaim(slot, why)
        pool._connector.ensure()

    def _check_idle(self, slot: Slot[C]) -> None:
        if self.pool._checkout.check(slot):
            self.pool._give_back(slot)

    def _report_leaks(self, now: float) -> None:
        pool = self.pool
        assert pool.leak_threshold is not None
        for slot in list(pool._table.open.values()):
            held = now - slot.checked_out_at
            lent = slot.state is SlotState.IN_USE and slot.lease is not None  # not a waiter's yet
            if lent and not slot.leak_reported and held >= pool.leak_threshold:
                slot.leak_reported = True
                self.leaks_out += 1
                pool._table.fast = False
                pool._counters["leaks"] += 1
                logger.warning("%s", leak_message(pool.name, slot, now, "possible leak"))

    def unleak(self, slot: Slot[C]) -> None:
        """A connection reported as leaked came back (or is being closed): no longer counted."""
        slot.leak_reported = False
        self.leaks_out -= 1
        self.pool._refresh_fast()
