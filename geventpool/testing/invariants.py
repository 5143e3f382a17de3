"""check_invariants: assert that a pool's bookkeeping is consistent.

Call it after every step of a test, and above all after every failure
mode: a pool can survive a fault and still have lost count of a slot.
"""

from __future__ import annotations

from typing import Any

from .._slot import SlotState
from .._state import Snapshot
from ..pool import ConnectionPool

__all__ = ["check_invariants", "pool_problems"]


def check_invariants(pool: ConnectionPool[Any], *, max_size: int | None = None) -> None:
    """Assert that ``pool``'s internal state is consistent.

    Checks, without I/O and without yielding:

    - ``idle + in use + checking + opening + closing <= max_size``, and no
      negative count; the inlined fast paths are off when closed or oversize;
    - every idle slot is IDLE, every checked-out slot IN_USE or CHECKING,
      filed under its own connection's id, and belongs to this pool;
    - no connection or slot is filed twice;
    - no greenlet waits while a connection is idle, and no queued waiter
      already has a result; at most ``max_waiting`` waiters;
    - once closed: no idle connection, no waiter, nothing opening, and (after
      :meth:`~geventpool.ConnectionPool.close` returned) no background
      greenlet alive.

    A pool shrunk by :meth:`~geventpool.ConnectionPool.resize` may hold
    connections checked out before the shrink beyond its new bound until
    they come back; pass the old bound as ``max_size`` meanwhile.

    Greenlet-safe (it does not yield); works for every subclass of
    :class:`~geventpool.ConnectionPool`.

    :raises AssertionError: an invariant is broken; the message shows the
        pool's repr and every problem found.
    :raises TypeError: ``pool`` is not a :class:`~geventpool.ConnectionPool`.
    """
    problems = pool_problems(pool, max_size=max_size)
    if problems:
        lines = "\n".join(f"  - {problem}" for problem in problems)
        raise AssertionError(f"pool invariants broken in {pool!r}:\n{lines}")


def pool_problems(pool: ConnectionPool[Any], *, max_size: int | None = None) -> list[str]:
    """Return the broken invariants of ``pool`` as sentences (empty when all hold).

    The checks of :func:`check_invariants`, for callers that want to report
    rather than assert.

    :raises TypeError: ``pool`` is not a :class:`~geventpool.ConnectionPool`.
    """
    if not isinstance(pool, ConnectionPool):
        raise TypeError(f"check_invariants needs a geventpool.ConnectionPool, got {pool!r}")
    bound = pool.max_size if max_size is None else max_size
    problems: list[str] = []
    state = pool.snapshot()
    _check_counts(problems, pool, state, bound)
    _check_slots(problems, state)
    _check_waiters(problems, pool, state)
    if pool.closed:
        _check_closed(problems, pool, state)
    return problems


def _check_counts(problems: list[str], pool: ConnectionPool[Any], state: Snapshot, bound: int) -> None:
    for label in ("idle", "in_use", "checking", "opening", "closing"):
        value = getattr(state, label)
        if value < 0:
            problems.append(f"negative {label} count: {value}")
    connecting = pool._connector.running
    if connecting < 0:
        problems.append(f"negative connector count: {connecting}")
    elif connecting > pool.max_connecting:
        problems.append(f"{connecting} connector greenlets, more than max_connecting={pool.max_connecting}")
    if state.size > bound:
        problems.append(
            f"idle ({state.idle}) + in use ({state.in_use}) + checking ({state.checking}) + opening "
            f"({state.opening}) + closing ({state.closing}) = {state.size} exceeds max_size={bound}"
        )
    # the inlined checkout/return paths may run only in an open pool within its bound
    if state.fast and (pool.closed or state.size > pool.max_size):
        why = "closed" if pool.closed else f"size {state.size} > max_size {pool.max_size}"
        problems.append(f"the fast path is enabled although the pool is {why}")


def _check_slots(problems: list[str], state: Snapshot) -> None:
    idle_ids = set()
    for position, slot in enumerate(state.idle_slots):
        where = f"idle[{position}]"
        if slot.state is not SlotState.IDLE:
            problems.append(f"{where}: connection {slot.number} is idle but its state is {slot.state.name}")
        if slot.lease is not None:
            problems.append(f"{where}: connection {slot.number} is idle but still leased")
        if id(slot) in idle_ids:
            problems.append(f"connection {slot.number} is filed twice as idle")
        idle_ids.add(id(slot))
    filed = {id(slot) for slot in state.slots}
    for slot in state.idle_slots:
        if id(slot) not in filed:
            problems.append(f"idle connection {slot.number} is not counted as open")
    conns: dict[int, int] = {}
    for slot in state.slots:
        if slot.key != id(slot.conn):
            problems.append(f"connection {slot.number} has a stale key (not its connection's id)")
        if id(slot.conn) in conns:
            other = conns[id(slot.conn)]
            problems.append(f"connection of slot {slot.number} is filed twice (also slot {other})")
        conns[id(slot.conn)] = slot.number
        if id(slot) not in idle_ids and slot.state not in (SlotState.IN_USE, SlotState.CHECKING):
            problems.append(
                f"in use (connection {slot.number}): checked out but its state is {slot.state.name}"
            )
    checking = sum(1 for slot in state.slots if slot.state is SlotState.CHECKING)
    if checking != state.checking:
        problems.append(f"{checking} connection(s) being checked, but {state.checking} counted")


def _check_waiters(problems: list[str], pool: ConnectionPool[Any], state: Snapshot) -> None:
    waiters = state.waiters
    asleep = sum(1 for waiter in waiters if not waiter.woken)
    if asleep and state.idle:
        problems.append(f"{asleep} greenlet(s) wait while {state.idle} connection(s) are idle")
    if asleep != len(waiters):
        problems.append(f"{len(waiters) - asleep} queued waiter(s) already have a result")
    if pool.max_waiting and len(waiters) > pool.max_waiting:
        problems.append(f"{len(waiters)} waiters queued, more than max_waiting={pool.max_waiting}")


def _check_closed(problems: list[str], pool: ConnectionPool[Any], state: Snapshot) -> None:
    if state.idle:
        problems.append(f"closed, yet {state.idle} connection(s) are idle")
    if state.waiting:
        problems.append(f"closed, yet {state.waiting} greenlet(s) are queued for a connection")
    if state.opening:
        problems.append(f"closed, yet {state.opening} connection(s) are counted as opening")
    alive = pool._workers.alive()
    if alive:
        problems.append(f"closed, yet {len(alive)} background greenlet(s) are alive: {alive!r}")
