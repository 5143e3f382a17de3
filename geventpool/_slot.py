"""The long-lived record of one pooled connection, and the short-lived lease.

A :class:`Slot` lives as long as its connection; a :class:`Lease` lives for
one checkout and is what ``pool.get()`` returns.
"""

from __future__ import annotations

import enum
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from .pool import ConnectionPool

__all__ = ["Slot", "SlotState", "Lease"]

C = TypeVar("C")


class SlotState(enum.Enum):
    """Where a connection is in its life: idle <-> in use (or checking) -> closed."""

    IDLE = "idle"
    IN_USE = "in use"
    CHECKING = "checking"
    CLOSED = "closed"


class Slot(Generic[C]):
    """Bookkeeping for one open connection; never shared between pools."""

    __slots__ = (
        "conn",
        "state",
        "server",
        "created",
        "expires_at",
        "last_used",
        "checked_at",
        "checked_out_at",
        "holder",
        "frame",
        "frame_line",
        "leak_reported",
        "uses",
        "number",
        "__weakref__",
    )

    def __init__(self, conn: C, number: int, now: float, expires_at: float, server: Any) -> None:
        self.conn = conn
        self.number = number
        self.server = server
        self.state = SlotState.IDLE
        self.created = now
        self.expires_at = expires_at
        self.last_used = now
        self.checked_at = now  # last time the connection was known to be good
        self.checked_out_at = 0.0
        self.holder: Any = None
        self.frame: FrameType | None = None
        self.frame_line = 0
        self.leak_reported = False
        self.uses = 0


class Lease(Generic[C]):
    """One checkout of a connection: a context manager that returns or discards it.

    ``with pool.get() as conn:`` — on exit the pool applies the discard rule
    to whatever ended the block.  A lease is used once; not greenlet-safe to
    share between greenlets.
    """

    __slots__ = ("_pool", "_slot", "connection")

    def __init__(self, pool: ConnectionPool[C], slot: Slot[C]) -> None:
        self._pool = pool
        self._slot: Slot[C] | None = slot
        #: The connection checked out by this lease.
        self.connection = slot.conn

    def __enter__(self) -> C:
        return self.connection

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        slot = self._slot
        if slot is None:
            raise ValueError(f"{self!r} was already returned to its pool")
        self._slot = None
        self._pool._finish(slot, exc)

    def release(self, error: BaseException | None = None) -> None:
        """Return the connection as if the ``with`` block ended with ``error``."""
        self.__exit__(type(error) if error is not None else None, error, None)

    def __repr__(self) -> str:
        state = "returned" if self._slot is None else "active"
        return f"<Lease {state} of {self._pool.name!r}>"
