"""One housekeeping pass of a pool: which idle connections to close, check or keep.

A pure decision over the pool's idle slots (no I/O, no greenlet switch); the
pool then re-files them and does the closing and checking.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from ._slot import Slot

if TYPE_CHECKING:
    from .pool import ConnectionPool

__all__ = ["Plan", "plan"]

C = TypeVar("C")


class Plan(NamedTuple):
    """What to do with each idle connection (and which busy one to retire on return)."""

    close: list[Slot[Any]]
    check: list[Slot[Any]]
    keep: list[Slot[Any]]
    retire_on_return: list[Slot[Any]]


def plan(pool: ConnectionPool[Any], idle: Iterable[Slot[Any]], now: float) -> Plan:
    """Decide the fate of the idle connections.

    Closed: past their lifetime; idle longer than ``max_idle`` while the pool
    is above ``min_size``; on a server no longer in the pool; and (one per
    pass, for a gradual failback) on a server less preferred than the best
    healthy one — a busy one is then retired when it comes back if no idle one
    could be.  Checked: due for a keepalive, when nobody waits.  The
    least recently used go first.
    """
    result = Plan([], [], [], [])
    removable = len(pool._idle) + len(pool._busy) - pool.min_size
    best_rank = _best_rank(pool)
    failback_done = False
    for slot in sorted(idle, key=lambda s: s.last_used):
        server = slot.server
        if now >= slot.expires_at or (removable > 0 and now - slot.last_used >= pool.max_idle):
            removable -= 1
            result.close.append(slot)
        elif server is not None and pool.server_pool is not None and server not in pool.server_pool:
            result.close.append(slot)
        elif (
            best_rank is not None
            and server is not None
            and pool.server_pool is not None
            and pool.server_pool.rank(server) > best_rank
            and not failback_done
        ):
            failback_done = True
            result.close.append(slot)
        elif (
            pool.keepalive is not None
            and not pool._waiters
            and now - max(slot.last_used, slot.checked_at) >= pool.keepalive
        ):
            result.check.append(slot)
        else:
            result.keep.append(slot)
    if best_rank is not None and not failback_done:
        # A saturated pool has no idle connection to fail back with: retire a busy
        # one on a less preferred server when it comes back (as max_lifetime does).
        for slot in pool._busy.values():
            server = slot.server
            if (
                server is not None
                and slot.expires_at > now
                and pool.server_pool is not None
                and pool.server_pool.rank(server) > best_rank
            ):
                result.retire_on_return.append(slot)
                break
    return result


def _best_rank(pool: ConnectionPool[Any]) -> tuple[int, ...] | None:
    servers = pool.server_pool
    if servers is None:
        return None
    healthy = [servers.rank(s) for s in servers if s.health.state == "closed"]
    return min(healthy) if healthy else None
