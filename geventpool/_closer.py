"""How a connection leaves a pool: discarded when broken, closed when retired.

The :class:`Closer` takes a slot out of the table (no switch), then closes its
connection within ``keepalive_timeout``; the slot counts against ``max_size``
as closing until its close returned.  A close interrupted in the caller's
greenlet (a timeout, a kill) is finished by a greenlet of its own, which
nothing kills.  A connection lost to a connection error makes every other
one suspect, and (lost on its first use, just opened) counts as a failed connect.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Generic, TypeVar

import gevent

from . import _deadline
from ._report import leak_message
from ._slot import Slot, SlotState

if TYPE_CHECKING:
    from .pool import ConnectionPool

__all__ = ["Closer"]

C = TypeVar("C")

logger = logging.getLogger("geventpool")


class Closer(Generic[C]):
    """The pool's closes, their reasons and their listeners.  Greenlet-safe; closes may switch."""

    def __init__(self, pool: ConnectionPool[C]) -> None:
        self.pool = pool
        self.closed_uses = 0  # checkouts served by connections since closed

    def discard(self, slot: Slot[C], error: BaseException | None) -> None:
        """Take a broken connection out of the pool and close it; refill behind it.

        The slot is taken out first (no switch), so whatever may switch or be interrupted
        after (the connector's callback, listeners) can never leave it half-counted.
        """
        pool = self.pool
        if not pool._table.take_out(slot):
            return
        try:
            pool._counters["connections_discarded"] += 1
            if error is not None and isinstance(error, (*pool.exc_classes, OSError, _deadline.Expired)):
                pool._counters["connections_lost"] += 1
                # A server restart breaks every older connection: check each before its next use.
                pool._table.mark_all_suspect()
                if (
                    not slot.proved
                    and slot.last_used == slot.created  # never returned: its first use or check
                    and pool._clock() - slot.created < max(pool.connect_timeout, 1.0)
                    and not pool._has_served(slot.conn)
                ):
                    # broken on its first use, just opened: the server accepts but does not serve
                    pool._connector.failed(error, slot)
            logger.debug("%s: discarding connection %d after %r", pool.name, slot.number, error)
            if pool._listeners["discard"]:
                pool._emit("discard", slot.conn, error)
        finally:
            self.finish_close(slot, "broken")

    def close(self, slot: Slot[C], reason: str) -> None:
        """Take ``slot`` out and close its connection (it counts against ``max_size`` until closed)."""
        if self.pool._table.take_out(slot):
            self.finish_close(slot, reason)

    def close_idle(self, slots: list[Slot[C]], reason: str) -> int:
        """Close those of ``slots`` that are still idle, one at a time: each is taken out just
        before its close, so an interruption (a timeout, a kill) leaves the others idle and
        counted, never half-closed.  Returns how many were closed."""
        closed = 0
        for slot in slots:
            if self.close_if_idle(slot, reason):
                closed += 1
        return closed

    def close_if_idle(self, slot: Slot[C], reason: str) -> bool:
        """Take ``slot`` out and close it if it is idle now (not lent meanwhile); whether it was."""
        if not self.pool._table.take_out_idle(slot):
            return False
        self.finish_close(slot, reason)
        return True

    def close_over_max(self, reason: str) -> None:
        """Close idle connections while the pool holds more than ``max_size`` (after a shrink)."""
        pool = self.pool
        table = pool._table
        extra: list[Slot[C]] = []
        while table.idle and table.size - len(extra) > pool.max_size:
            extra.append(table.idle[0])
            table.idle.rotate(-1)
        self.close_idle(extra, reason)

    def close_all(self, timeout: float) -> None:
        """The pool is closing: close the idle connections now, then wait up to ``timeout`` for the
        lent ones (each is closed on return, however late), then stop the background greenlets
        (a check one of them never ran closes its connection here)."""
        pool = self.pool
        table = pool._table
        self.close_idle(list(table.idle), "pool closed")
        deadline = pool._clock() + timeout
        while table.in_use + table.checking > 0 and pool._clock() < deadline:
            gevent.sleep(min(0.01, max(deadline - pool._clock(), 0)))
        if pool._workers.stop(deadline):
            # a greenlet killed before it ran never ran its cleanup: a check never started
            # leaves its slot checking, a connector its count
            pool._connector.running = 0
            for slot in [s for s in table.open.values() if s.state is SlotState.CHECKING]:
                self.close(slot, "pool closed")

    def finish_close(self, slot: Slot[C], reason: str) -> None:
        """Close the connection of a slot taken out of the table (may switch; bounded).

        The slot counts as closing until its close returned.  A close interrupted in the
        caller's greenlet (a timeout, a kill) is finished by a greenlet of its own, which
        nothing kills: the connection is still closed, and only then uncounted.

        :raises BaseException: what interrupted the close (it goes on in its own greenlet).
        """
        pool = self.pool
        table = pool._table
        if slot.leak_reported:
            pool._housekeeper.unleak(slot)
        closed = False
        try:
            seconds = pool.keepalive_timeout
            with _deadline.limit(seconds, f"{pool.name}: close took longer than {seconds:g} s"):
                pool._close_connection(slot.conn)
            closed = True
        except (Exception, _deadline.Expired) as close_error:
            closed = True  # it failed, but it returned: nothing more to do for it
            logger.debug("%s: closing connection %d failed: %r", pool.name, slot.number, close_error)
        finally:
            if not closed:
                gevent.spawn(self.finish_close, slot, reason)
        self.closed_uses += slot.uses
        table.closed_one(slot)
        pool._refresh_fast()  # back within max_size after a shrink, say
        if pool._listeners["close"]:
            pool._emit("close", slot.conn, reason)
        pool._connector.ensure()

    def close_quietly(self, conn: C) -> None:
        """Close a connection no slot holds (a half-built one), logging any failure."""
        pool = self.pool
        try:
            with _deadline.limit(pool.keepalive_timeout, f"{pool.name}: close timed out"):
                pool._close_connection(conn)
        except (Exception, _deadline.Expired) as error:
            logger.debug("%s: closing a connection failed: %r", pool.name, error)

    def reclaim(self, slot: Slot[C], why: str) -> None:
        """Take back a connection whose borrower is gone; discard it (its state is unknown)."""
        pool = self.pool
        pool._counters["connections_reclaimed"] += 1
        pool._loans.forget(slot)
        logger.warning("%s", leak_message(pool.name, slot, pool._clock(), f"reclaimed: {why}"))
        slot.lease = None  # the lease is stale from here on
        self.close(slot, "reclaimed")
