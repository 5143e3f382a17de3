"""One lease per checkout: what ``pool.get()`` returns.

A lease is valid once: returning it a second time, or after the pool took its
connection back (its borrower ended without returning it, the pool was
forked), raises ``ValueError`` and never touches the connection.  The lease
holds no reference to its borrower.  A lease dropped without being returned
gives its slot back at the pool's next housekeeping pass: the connection is
discarded (its state is unknown) and one warning names where it was acquired.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import _accel
from ._slot import Slot, SlotState

if TYPE_CHECKING:
    from .pool import ConnectionPool

__all__ = ["Lease", "PyLease"]

C = TypeVar("C")

_IDLE = SlotState.IDLE


class Lease(Generic[C]):
    """One checkout of one connection: ``with pool.get() as conn:``.

    Entering gives the connection; leaving returns it to the pool, which
    applies the discard rule to whatever ended the block.  :meth:`release`
    returns it early.  Belongs to the greenlet that checked it out.
    """

    __slots__ = ("conn", "_pool", "_slot")

    def __init__(self, pool: ConnectionPool[C], slot: Slot[C]) -> None:
        self.conn: C = slot.conn
        self._pool = pool
        self._slot = slot

    @property
    def active(self) -> bool:
        """Whether this lease still holds its connection."""
        return self._slot.lease is self

    def __enter__(self) -> C:
        if self._slot.lease is not self:
            raise ValueError(f"{self._pool.name}: this checkout was already returned")
        conn: C = self.conn
        return conn

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        slot = self._slot
        pool = self._pool
        table = pool._table
        # The common case, inlined (the rest of the discard rule is pool._finish): a clean
        # return of a valid lease into a pool on its fast path.
        if exc_type is None and slot.lease is self and table.fast:
            now = table.clock()
            if now < slot.expires_at:
                # check-then-update: no greenlet switch in here
                slot.lease = None
                slot.holder = None
                table.usage += now - slot.checked_out_at
                slot.state = _IDLE
                slot.last_used = now
                if table.pinging and slot.good_until >= 0:
                    good_until = now + table.ping_window
                    slot.good_until = good_until if good_until < slot.expires_at else slot.expires_at
                if table.waiters:
                    table.offer(slot, now)  # to the oldest waiter
                else:
                    table.idle.append(slot)
                return
        pool._return(self, exc)

    def release(self, error: BaseException | None = None) -> None:
        """Return the connection as if the ``with`` block ended with ``error``.

        :raises ValueError: the lease was already returned, or the pool took it back.
        """
        self.__exit__(type(error) if error is not None else None, error, None)

    def __reduce__(self) -> Any:
        raise TypeError("leases cannot be pickled")

    def __repr__(self) -> str:
        state = "active" if self.active else "returned"
        return f"<Lease of connection {self._slot.number} of {self._pool.name!r} {state}>"


PyLease = Lease  # the pure-Python lease (the C one, when built, behaves the same)
_speedups = _accel.load()
if _speedups is not None and not TYPE_CHECKING:
    Lease = _speedups.Lease  # the same class, in C: see _speedups.c
