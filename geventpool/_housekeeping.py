"""One housekeeping pass of a pool: which connections to close, check, retire or reclaim.

A pure decision over a :class:`~geventpool._state.Snapshot` (no I/O, no
greenlet switch); the pool then files the slots and does the closing and
checking.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NamedTuple

from ._slot import Slot, SlotState
from ._state import Snapshot

if TYPE_CHECKING:
    from .pool import ConnectionPool

__all__ = ["Plan", "plan"]

_refcount = getattr(sys, "getrefcount", None)  # CPython: a dropped lease is found by its count


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
    if pool._acquired.get(slot.key) is lease:
        return None  # acquire(): the borrower holds the connection, not the lease
    # Held by nothing but the slot (this function's local and getrefcount's argument aside).
    if _refcount is not None and _refcount(lease) <= 3:
        return "its lease was dropped without being returned"
    return None


def _best_rank(pool: ConnectionPool[Any]) -> tuple[int, ...] | None:
    servers = pool.server_pool
    if servers is None:
        return None
    healthy = [servers.rank(s) for s in servers if s.health.state == "closed"]
    return min(healthy) if healthy else None
