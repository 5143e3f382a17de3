"""The record of one pooled connection (:class:`Slot`) and its states.

A slot lives as long as its connection; each checkout of it is a separate,
short-lived :class:`~geventpool.Lease`.  The pool's :class:`~geventpool._state.SlotTable`
files slots; nothing else moves them between states.
"""

from __future__ import annotations

import enum
from typing import Any, Generic, TypeVar

__all__ = ["Slot", "SlotState"]

C = TypeVar("C")


class SlotState(enum.Enum):
    """Where a connection is in its life: idle <-> in use (or checking) -> closing -> closed.

    ``FORGOTTEN``: inherited through ``fork()``; never used or closed by the child.
    """

    IDLE = "idle"
    IN_USE = "in use"
    CHECKING = "checking"
    CLOSING = "closing"
    CLOSED = "closed"
    FORGOTTEN = "forgotten"


class Slot(Generic[C]):
    """One open connection of a pool: its connection, server, times and current lease.

    The slot holds its current lease, so the pool can tell a lease dropped
    unreturned (nothing else references it) from one still held.

    ``info`` is a dict a subclass may keep per-connection data in (set in
    :meth:`ConnectionPool._on_open`).  Read-only for everything but the pool.
    """

    __slots__ = (
        "conn",
        "key",
        "number",
        "server",
        "state",
        "created",
        "expires_at",
        "good_until",
        "last_used",
        "checked_at",
        "checked_out_at",
        "holder",
        "where",
        "leak_reported",
        "uses",
        "lease",
        "generation",
        "proved",
        "retire",
        "info",
    )

    def __init__(
        self, conn: C, number: int, now: float, expires_at: float, server: Any, generation: int
    ) -> None:
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
        self.holder: Any = None  # the borrowing greenlet, while lent (cleared on return)
        self.where: Any = None  # (code, lasti) of the checkout, for a leak warning
        self.leak_reported = False
        self.uses = 0
        self.lease: Any = None  # the current lease: any other is stale
        self.generation = generation  # the pool's generation when last known good
        self.proved = False  # served once (a clean return or a passed check)
        self.retire: str | None = None  # closed with this reason when it comes back
        self.info: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<Slot {self.number} {self.state.value}>"
