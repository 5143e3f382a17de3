"""The slot table: the one owner of a pool's accounting.

Idle, in use, checking, opening and closing connections and the queue of
waiting greenlets live here and change only through the methods below.
None of them does I/O or switches greenlets, so a caller may chain them
inside a check-then-update region.  Everyone else reads a :class:`Snapshot`.

The bound the table keeps: ``idle + in_use + checking + opening + closing``
never exceeds the pool's ``max_size`` (a connection counts until its close
has returned).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable, Generic, NamedTuple, TypeVar

import gevent
from gevent.hub import Waiter as _HubWaiter

from ._slot import Slot, SlotState

__all__ = ["SlotTable", "Snapshot", "Waiter"]

C = TypeVar("C")

_IDLE = SlotState.IDLE
_IN_USE = SlotState.IN_USE
_CHECKING = SlotState.CHECKING
_CLOSING = SlotState.CLOSING


class Snapshot(NamedTuple):
    """A pool's state at one instant (copies: safe to keep and compare)."""

    idle: int
    in_use: int
    checking: int
    opening: int
    closing: int
    waiting: int
    generation: int
    slots: tuple[Slot[Any], ...]
    idle_slots: tuple[Slot[Any], ...]
    waiters: tuple[Waiter, ...]
    fast: bool = False  # whether the inlined checkout and return paths apply

    @property
    def size(self) -> int:
        """Every connection counted against ``max_size``."""
        return self.idle + self.in_use + self.checking + self.opening + self.closing


class Waiter(_HubWaiter):  # type: ignore[misc]
    """One greenlet waiting for a connection (``Checkout.wait`` sleeps on it): woken with a
    slot, an error, or by its timeout.

    The outcome is recorded before the wake-up is scheduled, so a greenlet
    woken by its timer (or killed) in the same loop iteration still sees
    what it was handed and can pass it on.  (gevent's own waiter, in C, with
    the two fields a pool hands over.)
    """

    __slots__ = ("error", "slot")

    def __init__(self, hub: Any = None) -> None:
        _HubWaiter.__init__(self, hub if hub is not None else gevent.get_hub())
        self.slot: Slot[Any] | None = None
        self.error: BaseException | None = None

    def hand(self, slot: Slot[Any]) -> None:
        self.slot = slot
        self.hub.loop.run_callback(self.switch, None)

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.hub.loop.run_callback(self.switch, None)

    @property
    def woken(self) -> bool:
        """Whether a slot or an error was handed to this waiter."""
        return self.slot is not None or self.error is not None


class SlotTable(Generic[C]):
    """Who holds which connection.  Greenlet-safe by construction: no method switches."""

    __slots__ = (
        "idle", "open", "opening", "closing", "checking", "waiters", "generation", "pop_idle", "lifo",
        "fast", "observed", "usage", "clock", "pinging", "ping_window", "wake",
    )

    def __init__(self, lifo: bool, clock: Callable[[], float] = time.monotonic,
                 ping_window: float = float("inf")) -> None:
        self.idle: deque[Slot[C]] = deque()  # mutated in place, never replaced
        self.lifo = lifo
        self.pop_idle = self.idle.pop if lifo else self.idle.popleft
        self.open: dict[int, Slot[C]] = {}  # id(conn) -> slot: idle, in use or checking
        self.opening = 0  # reserved for connects in flight
        self.closing = 0  # taken out, their close not yet returned
        self.checking = 0
        self.waiters: deque[Waiter] = deque()
        self.generation = 0  # bumped when a connection error suggests a server restart
        # What the inlined checkout and return read (here, so the C speedups find them at fixed
        # offsets): the pool's clock, whether its fast path applies, and the time lent so far.
        self.clock = clock
        self.fast = False  # started, open, within max_size, connecting works: the inlined paths apply
        self.observed = False  # leak tracking or checkout listeners: checkouts take the full path
        self.usage = 0.0  # seconds connections spent lent, summed at each return
        self.ping_window = ping_window  # a returned connection is lent unchecked this long
        self.pinging = ping_window != float("inf")
        #: the pool's hub's ``loop.run_callback`` once it started: how a waiter is woken
        self.wake: Callable[..., Any] | None = None

    @property
    def size(self) -> int:
        """Connections counted against ``max_size`` (open, opening and closing)."""
        return len(self.open) + self.opening + self.closing

    @property
    def in_use(self) -> int:
        return len(self.open) - len(self.idle) - self.checking

    # -- opening ---------------------------------------------------------------------

    def reserve(self) -> None:
        """Count one connection being opened."""
        self.opening += 1

    def release_reservation(self) -> None:
        """A connect failed (or was abandoned): it no longer counts."""
        self.opening -= 1

    def admit(self, slot: Slot[C]) -> None:
        """A reserved connect succeeded: file the new connection (the caller then offers it)."""
        self.opening -= 1
        slot.state = _IN_USE  # until offered
        self.open[slot.key] = slot

    # -- lending -----------------------------------------------------------------------

    def take_idle(self) -> tuple[Slot[C], float]:
        """Take the next idle slot (the caller files it again or lends it) and the clock's time;
        a clock that raises leaves the slot idle."""
        slot = self.pop_idle()
        try:
            return slot, self.clock()
        except BaseException:
            self.idle.append(slot)
            raise

    def owns(self, slot: Slot[C]) -> bool:
        """Whether ``slot`` is filed here (not taken out, not another table's: forked, say)."""
        return self.open.get(slot.key) is slot

    def start_check(self, slot: Slot[C]) -> None:
        """An idle or just-lent slot is being checked (not lent, not idle)."""
        slot.state = _CHECKING
        self.checking += 1

    def end_check(self, slot: Slot[C]) -> bool:
        """The check passed: the slot is in use again.  False if it is no longer filed here."""
        if slot.state is not _CHECKING or not self.owns(slot):
            return False
        self.checking -= 1
        slot.state = _IN_USE
        return True

    def offer(self, slot: Slot[C], now: float) -> bool:
        """Hand a free connection to the oldest waiter, or file it idle.  False (and nothing
        done) if the slot is not filed here: closed meanwhile, or inherited through fork()."""
        if self.open.get(slot.key) is not slot:
            return False
        waiters = self.waiters
        if waiters:
            waiter = waiters.popleft()
            slot.state = _IN_USE
            slot.holder = None  # until the waiter runs
            waiter.hand(slot)
            return True
        slot.state = _IDLE
        slot.holder = None
        slot.where = None
        self.idle.append(slot)
        return True

    def take_out(self, slot: Slot[C]) -> bool:
        """Take ``slot`` out for closing (from idle, in use or checking); it counts as closing.

        Returns False if it was not filed (already taken out).
        """
        if self.open.get(slot.key) is not slot:
            return False
        del self.open[slot.key]
        slot.lease = None  # any lease of it is stale now
        state = slot.state
        if state is _IDLE:
            try:
                self.idle.remove(slot)
            except ValueError:
                pass  # popped by a checkout that is deciding its fate
        elif state is _CHECKING:
            self.checking -= 1
        slot.state = _CLOSING
        slot.holder = None
        self.closing += 1
        return True

    def closed_one(self, slot: Slot[C]) -> None:
        """The close of a taken-out slot returned: it no longer counts."""
        self.closing -= 1
        slot.state = SlotState.CLOSED

    def prefer(self, wanted: Callable[[C], bool]) -> bool:
        """Put the idle connection that ``wanted`` accepts (the most recently returned such, with
        ``lifo``) next in line for checkout; return whether there was one.  O(idle)."""
        idle = self.idle
        if not idle:
            return False
        for slot in reversed(idle) if self.lifo else idle:
            if wanted(slot.conn):
                break
        else:
            return False
        if slot is not (idle[-1] if self.lifo else idle[0]):
            idle.remove(slot)
            if self.lifo:
                idle.append(slot)
            else:
                idle.appendleft(slot)
        return True

    def prefer_coldest(self) -> None:
        """Put the idle connection returned longest ago next in line for checkout."""
        if self.lifo and len(self.idle) > 1:
            self.idle.rotate(-1)

    def take_out_idle(self, slot: Slot[C]) -> bool:
        """Take ``slot`` out for closing if it is idle here now (not lent meanwhile)."""
        return slot.state is _IDLE and self.take_out(slot)

    def mark_all_suspect(self) -> None:
        """A connection error: every connection is checked before its next use."""
        self.generation += 1
        for slot in self.open.values():
            slot.good_until = -1.0

    # -- waiters -------------------------------------------------------------------------

    def abandon(self, waiter: Waiter) -> Slot[C] | None:
        """A waiter leaves: take it out of the queue; return a slot it was handed (to be offered)."""
        slot = waiter.slot
        if slot is not None:
            waiter.slot = None
            return slot
        if waiter.error is None:
            try:
                self.waiters.remove(waiter)
            except ValueError:
                pass
        return None

    def fail_oldest(self, error: BaseException) -> None:
        if self.waiters:
            self.waiters.popleft().fail(error)

    def fail_all(self, error: BaseException) -> None:
        while self.waiters:
            self.waiters.popleft().fail(error)

    # -- reading ---------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        slots = tuple(sorted(self.open.values(), key=lambda s: s.number))
        idle = len(self.idle)
        return Snapshot(
            idle=idle,
            in_use=len(self.open) - idle - self.checking,
            checking=self.checking,
            opening=self.opening,
            closing=self.closing,
            waiting=len(self.waiters),
            generation=self.generation,
            slots=slots,
            idle_slots=tuple(self.idle),
            waiters=tuple(self.waiters),
            fast=bool(self.fast),
        )
