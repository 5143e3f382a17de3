"""Internal time limits that user code cannot swallow.

The pool bounds ``_new_connection``, ``_keepalive``, ``_reset`` and
``_close_connection`` with timers whose exception is a ``BaseException``
(as ``gevent.Timeout`` is): an ``except Exception`` or ``except OSError`` in
a hook never catches it.  Callers only ever see the documented errors
(:class:`~geventpool.ConnectTimeout`, or a discarded connection).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import gevent
from gevent import getcurrent

__all__ = ["Expired", "limit"]


class Expired(BaseException):
    """An internal time limit passed (never raised to a pool's callers)."""


class limit:
    """Bound a ``with`` block by ``seconds``; on expiry raise :class:`Expired` into it.

    Outside the block the expiry becomes ``to(what)`` when ``to`` is given
    (``from None``: the hook's frames say nothing a caller needs), else stays
    :class:`Expired`.  An ``Expired`` of another, outer limit passes through.
    ``seconds=None``: no limit.  ``timers``: a list, private to one hub and
    to this value of ``seconds``, where stopped timers wait to be used again
    (a timer costs more to make than to start).  (A class, not a generator:
    it is on the return path of every checkout that does I/O.)
    """

    __slots__ = ("_seconds", "_what", "_to", "_timer", "_expired", "_timers")

    def __init__(
        self,
        seconds: float | None,
        what: str,
        to: type[BaseException] | None = None,
        timers: list[Any] | None = None,
    ) -> None:
        self._seconds = seconds
        self._what = what
        self._to = to
        self._timer: Any = None
        self._expired: Expired | None = None
        self._timers = timers

    def __enter__(self) -> None:
        if self._seconds is not None:
            timers = self._timers
            if timers:
                timer = timers.pop()
            else:
                # repeating, started with again(): each use runs the full `seconds` (a libev timer
                # stopped early keeps only what was left of it, and one that fired nothing at all)
                timer = gevent.get_hub().loop.timer(self._seconds, self._seconds, ref=True, priority=-1)
            self._timer = timer
            timer.again(self._expire, getcurrent())

    def _expire(self, greenlet: Any) -> None:
        self._expired = error = Expired(self._what)
        greenlet.throw(error)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        timer = self._timer
        expired = self._expired
        if timer is not None:
            self._timer = None
            if self._timers is not None and expired is None:
                timer.stop()
                self._timers.append(timer)
            else:
                timer.close()
        if expired is None or exc is not expired:
            return  # none, or another error (an outer limit's Expired included): passes through
        self._expired = None
        if self._to is not None:
            # Keep no frame of the hook alive (it may hold a half-open socket).
            expired.__traceback__ = None
            raise self._to(self._what) from None
