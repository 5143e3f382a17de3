"""check_invariants: assert that a pool's bookkeeping is consistent.

Call it after every step of a test, and above all after every failure
mode: a pool can survive a fault and still have lost count of a slot.
"""

from __future__ import annotations

from typing import Any

from gevent import getcurrent

from .._slot import Slot, SlotState
from ..pool import ConnectionPool

__all__ = ["check_invariants", "pool_problems"]


def check_invariants(pool: ConnectionPool[Any], *, max_size: int | None = None) -> None:
    """Assert that ``pool``'s internal state is consistent.

    Checks, without I/O and without yielding:

    - ``idle + in use (or being checked) + opening <= max_size``, and no
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
    idle: list[Slot[Any]] = list(pool._idle)
    busy: dict[int, Slot[Any]] = dict(pool._busy)
    opening = pool._opening
    _check_counts(problems, pool, len(idle), len(busy), opening, bound)
    _check_slots(problems, pool, idle, busy)
    _check_waiters(problems, pool, idle)
    if pool._closed:
        _check_closed(problems, pool, idle, opening)
    return problems


def _check_counts(
    problems: list[str], pool: ConnectionPool[Any], idle: int, busy: int, opening: int, bound: int
) -> None:
    if opening < 0:
        problems.append(f"negative opening count: {opening}")
    if pool._connectors < 0:
        problems.append(f"negative connector count: {pool._connectors}")
    elif pool._connectors > pool.num_workers:
        problems.append(f"{pool._connectors} connector greenlets, more than num_workers={pool.num_workers}")
    total = idle + busy + opening
    if total > bound:
        problems.append(
            f"idle ({idle}) + in use/checking ({busy}) + opening ({opening}) = {total}"
            f" exceeds max_size={bound}"
        )
    # the inlined checkout/return paths may run only in an open pool within its bound
    if getattr(pool, "_fast", False) and (pool._closed or total > pool.max_size):
        state = "closed" if pool._closed else f"size {total} > max_size {pool.max_size}"
        problems.append(f"the fast path is enabled although the pool is {state}")


def _check_slots(
    problems: list[str], pool: ConnectionPool[Any], idle: list[Slot[Any]], busy: dict[int, Slot[Any]]
) -> None:
    seen_conns: dict[int, str] = {}
    seen_slots: dict[int, str] = {}

    def seen(slot: Slot[Any], where: str) -> None:
        # getattr: these two fields are newer than the checker's oldest pools
        if getattr(slot, "pool", pool) is not pool:
            problems.append(f"{where}: connection {slot.number} belongs to another pool")
        if getattr(slot, "key", id(slot.conn)) != id(slot.conn):
            problems.append(f"{where}: connection {slot.number} has a stale key (not its connection's id)")
        for table, key, what in ((seen_slots, id(slot), "slot"), (seen_conns, id(slot.conn), "connection")):
            if key in table:
                problems.append(
                    f"{what} of connection {slot.number} is filed twice ({table[key]} and {where})"
                )
            else:
                table[key] = where

    for position, slot in enumerate(idle):
        where = f"idle[{position}]"
        if slot.state is not SlotState.IDLE:
            problems.append(f"{where}: connection {slot.number} is idle but its state is {slot.state.name}")
        seen(slot, where)
    for key, slot in busy.items():
        where = f"in use (connection {slot.number})"
        if slot.state not in (SlotState.IN_USE, SlotState.CHECKING):
            problems.append(f"{where}: checked out but its state is {slot.state.name}")
        if key != id(slot.conn):
            problems.append(f"{where}: filed under a key that is not the id of its connection")
        seen(slot, where)


def _check_waiters(problems: list[str], pool: ConnectionPool[Any], idle: list[Slot[Any]]) -> None:
    waiters = list(pool._waiters)
    asleep = sum(1 for waiter in waiters if not waiter.woken)
    if asleep and idle:
        problems.append(f"{asleep} greenlet(s) wait while {len(idle)} connection(s) are idle")
    if asleep != len(waiters):
        problems.append(f"{len(waiters) - asleep} queued waiter(s) already have a result")
    if pool.max_waiting and len(waiters) > pool.max_waiting:
        problems.append(f"{len(waiters)} waiters queued, more than max_waiting={pool.max_waiting}")


def _check_closed(
    problems: list[str], pool: ConnectionPool[Any], idle: list[Slot[Any]], opening: int
) -> None:
    if idle:
        problems.append(f"closed, yet {len(idle)} connection(s) are idle")
    if pool._waiters:
        problems.append(f"closed, yet {len(pool._waiters)} greenlet(s) are queued for a connection")
    if opening:
        problems.append(f"closed, yet {opening} connection(s) are counted as opening")
    group = pool._group
    if group is not None:
        current = getcurrent()
        alive = [g for g in list(group) if not g.dead and g is not current]
        if alive:
            problems.append(f"closed, yet {len(alive)} background greenlet(s) are alive: {alive!r}")
