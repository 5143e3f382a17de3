"""Checkouts known by their connection: ``acquire()``/``release()`` and ``put(raw_conn)``.

A lease is returned through itself; a bare connection needs a register to find
its lease, and a rule for who may give it back.  :class:`Loans` keeps both: the
leases of ``acquire()`` by ``id(conn)``, and the check that a connection comes
back from its borrower (or from anyone once the borrower has ended), never as
a stale second return of a connection lent to someone else since.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from gevent import getcurrent

from ._lease import Lease
from ._slot import Slot

if TYPE_CHECKING:
    from .pool import ConnectionPool

__all__ = ["Loans"]

C = TypeVar("C")


class Loans(Generic[C]):
    """The register of checkouts by connection.  Greenlet-safe (nothing here switches)."""

    def __init__(self, pool: ConnectionPool[C]) -> None:
        self.pool = pool
        self.acquired: dict[int, Lease[C]] = {}  # id(conn) -> lease, for acquire()/release()

    def record(self, lease: Lease[C]) -> C:
        """``acquire()``: remember ``lease`` by its connection; return the connection."""
        conn = lease.conn
        self.acquired[id(conn)] = lease
        return conn

    def take_back(self, conn: C) -> Lease[C]:
        """``release(conn)``: the lease ``acquire()`` made for ``conn``, forgotten.

        :raises ValueError: ``conn`` is not checked out by ``acquire()`` (returned already, or
            lent to another greenlet since).
        """
        lease = self.acquired.get(id(conn))
        if lease is None or lease.conn is not conn or not lease.active:
            self.pool._counters["returns_bad"] += 1
            raise ValueError(f"{self.pool.name}: {conn!r} is not checked out from this pool")
        self.check_returner(lease._slot)
        del self.acquired[id(conn)]
        return lease

    def holds(self, slot: Slot[C]) -> bool:
        """Whether ``slot``'s current lease was made by ``acquire()`` (its borrower holds the
        connection, not the lease)."""
        lease = self.acquired.get(slot.key)
        return lease is not None and lease is slot.lease

    def forget(self, slot: Slot[C]) -> None:
        """The pool took ``slot`` back: a later ``release()`` of its connection is refused."""
        lease = self.acquired.get(slot.key)
        if lease is not None and lease._slot is slot:
            del self.acquired[slot.key]

    def lease_of(self, conn: C) -> Lease[C] | None:
        """The active lease of ``conn``, however it was checked out; None if it is not.

        :raises ValueError: another greenlet, still alive, holds it.
        """
        slot = self.pool._table.open.get(id(conn))
        if slot is None or slot.conn is not conn or slot.lease is None:
            return None
        self.check_returner(slot)
        lease: Lease[C] = slot.lease
        return lease

    def check_returner(self, slot: Slot[C]) -> None:
        """A connection (not a lease) comes back: only its borrower may return it, or another
        greenlet once the borrower ended (before the housekeeping pass that reclaims it).

        :raises ValueError: another greenlet, still alive, holds it: maybe a stale second
            return of a connection lent to someone else since.
        """
        holder = slot.holder
        if holder is not None and holder is not getcurrent() and not holder.dead:
            self.pool._counters["returns_bad"] += 1
            raise ValueError(
                f"{self.pool.name}: connection {slot.number} is checked out by another greenlet "
                f"({holder!r}); only its borrower may return it"
            )
