"""The record of one pooled connection; also the context manager ``pool.get()`` returns.

A :class:`Slot` lives as long as its connection.  Using the record itself as
the checkout context manager keeps the hot path free of allocations.
"""

from __future__ import annotations

import enum
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from .pool import ConnectionPool

__all__ = ["Slot", "SlotState"]

C = TypeVar("C")


class SlotState(enum.Enum):
    """Where a connection is in its life: idle <-> in use (or checking) -> closed."""

    IDLE = "idle"
    IN_USE = "in use"
    CHECKING = "checking"
    CLOSED = "closed"


_IDLE = SlotState.IDLE
_IN_USE = SlotState.IN_USE


class Slot(Generic[C]):
    """One open connection of a pool, and its checkout context manager.

    ``with pool.get() as conn:`` enters the slot (giving its connection) and
    on exit hands the slot back to the pool, which applies the discard rule
    to whatever ended the block.  A checkout is for the greenlet that made
    it; entering a slot after it was returned raises ``ValueError``.
    """

    __slots__ = (
        "pool",
        "conn",
        "key",
        "state",
        "server",
        "created",
        "expires_at",
        "good_until",
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

    def __init__(
        self,
        pool: ConnectionPool[C],
        conn: C,
        number: int,
        now: float,
        expires_at: float,
        server: Any,
    ) -> None:
        self.pool = pool
        self.conn = conn
        self.key = id(conn)
        self.number = number
        self.server = server
        self.state = SlotState.IDLE
        self.created = now
        self.expires_at = expires_at
        self.good_until = expires_at  # handed out unchecked until then
        self.last_used = now
        self.checked_at = now  # last time the connection was known to be good
        self.checked_out_at = 0.0
        self.holder: Any = None
        self.frame: FrameType | None = None
        self.frame_line = 0
        self.leak_reported = False
        self.uses = 0

    def __enter__(self) -> C:
        if self.state is not _IN_USE:
            raise ValueError(f"connection {self.number} of {self.pool.name!r} is not checked out")
        return self.conn

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pool = self.pool
        # The common case, inlined: a clean return with nobody waiting (and no
        # leak reported: reporting one turns pool._fast off).
        if exc_type is None and pool._fast and self.state is _IN_USE and not pool._waiters:
            now = pool._clock()
            if now < self.expires_at:
                # check-then-update: no greenlet switch in here
                pool._usage += now - self.checked_out_at
                del pool._busy[self.key]
                self.state = _IDLE
                self.holder = None
                if pool._track_frames:  # set only then: otherwise it is None already
                    self.frame = None
                self.last_used = now
                if pool._pinging:
                    good_until = now + pool._ping_window
                    self.good_until = good_until if good_until < self.expires_at else self.expires_at
                pool._idle.append(self)
                return
        pool._finish(self, exc)

    def release(self, error: BaseException | None = None) -> None:
        """Return the connection as if the ``with`` block ended with ``error``."""
        self.__exit__(type(error) if error is not None else None, error, None)

    def __repr__(self) -> str:
        return f"<Slot {self.number} of {self.pool.name!r} {self.state.value}>"
