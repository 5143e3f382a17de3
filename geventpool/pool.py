"""ConnectionPool: a greenlet-safe pool of connections of any protocol.

Subclass it and override :meth:`ConnectionPool._new_connection` (and, if you
like, :meth:`~ConnectionPool._keepalive`, :meth:`~ConnectionPool._reset`,
:meth:`~ConnectionPool._close_connection`, :meth:`~ConnectionPool._is_broken`).
"""

from __future__ import annotations

import itertools
import logging
import random
import socket
import sys
import time
from collections import deque
from typing import Any, Callable, Generic, Iterable, TypeVar

import gevent
import gevent.event
import gevent.pool
from gevent import getcurrent
from gevent.hub import Waiter

from . import _fork, _housekeeping, _opening
from ._config import check_count, check_exc_classes, check_optional_seconds, check_seconds
from ._report import leak_message, server_stats, stats_of, status_table
from ._slot import Slot, SlotState
from .errors import (
    BackendUnavailable,
    ConfigurationError,
    ConnectTimeout,
    PoolClosed,
    PoolError,
    PoolTimeout,
    TooManyWaiters,
)
from .servers import Server, ServerLike, ServerPool, as_server_pool

__all__ = ["ConnectionPool", "DEFAULT_EXC_CLASSES"]

C = TypeVar("C")

#: Errors that mark a connection as broken when ``exc_classes`` is not given.
DEFAULT_EXC_CLASSES: tuple[type[BaseException], ...] = (socket.error,)

logger = logging.getLogger("geventpool")

_IDLE = SlotState.IDLE
_IN_USE = SlotState.IN_USE
_CHECKING = SlotState.CHECKING
_CLOSED = SlotState.CLOSED
_names = itertools.count(1)

#: Events a listener can subscribe to with :meth:`ConnectionPool.on`.
EVENTS = ("connect", "checkout", "checkin", "discard")


class ConnectionPool(Generic[C]):
    """A pool of connections, shared by the greenlets of one process.

    Every method is greenlet-safe; none is thread-safe (use one pool per
    thread/hub).  ``get()`` yields to other greenlets only when it has to wait
    for a connection or check one.  Nothing runs in the background until the
    pool is first used, so a pool built at import time (``gunicorn
    --preload``) is safe, and a forked child starts afresh.

    ``MyPool(20)`` keeps 20 connections open (``size`` sets ``min_size`` and
    ``max_size``).  ``exc_classes`` are the errors that mean "this connection
    is broken".  ``keepalive`` (seconds) pings idle connections with
    ``_keepalive()``.  See the docs for every option; bad values raise
    :class:`~geventpool.ConfigurationError` here, naming the argument.
    """

    #: Seconds between housekeeping passes (expiry, shrink, keepalive, leaks).
    housekeeping_interval: float = 1.0
    #: First reconnect delay after a failed connect; doubles on each failure.
    reconnect_backoff: float = 0.05
    #: Cap of the reconnect delay (before full jitter).
    reconnect_backoff_max: float = 5.0
    #: Fraction of ``max_lifetime`` taken off at random, so connections do not expire together.
    lifetime_jitter: float = 0.1
    #: Whether :meth:`_reset` also runs when a block ends without an error.
    reset_on_return: bool = False
    #: Whether :meth:`_reset` may wait on I/O, and so runs under ``keepalive_timeout``.  A
    #: subclass whose reset only checks state sets False: no timer on every return.
    reset_waits: bool = True

    def __init__(
        self,
        size: int | None = None,
        exc_classes: Iterable[type[BaseException]] = DEFAULT_EXC_CLASSES,
        keepalive: float | None = None,
        *,
        min_size: int | None = None,
        max_size: int | None = None,
        name: str | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        keepalive_timeout: float = 5.0,
        max_waiting: int = 0,
        max_idle: float = 600.0,
        max_lifetime: float = 1800.0,
        ping_after: float | None = None,
        num_workers: int = 3,
        reconnect_timeout: float = 300.0,
        reconnect_failed: Callable[[ConnectionPool[Any]], None] | None = None,
        leak_threshold: float | None = None,
        servers: ServerPool | Iterable[ServerLike] | ServerLike | None = None,
        lifo: bool = True,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        owner = type(self).__name__
        if size is not None and (min_size is not None or max_size is not None):
            raise ConfigurationError(f"{owner}: give size, or min_size/max_size, not both")
        if size is not None:
            min_size = max_size = check_count(owner, "size", size, 1)
        if min_size is None and max_size is None:
            min_size = max_size = 10
        elif max_size is None:
            max_size = max(check_count(owner, "min_size", min_size), 1)
        elif min_size is None:
            min_size = check_count(owner, "max_size", max_size, 1)
        self._check_sizes(owner, min_size, max_size)
        assert min_size is not None and max_size is not None
        self.name: str = name if name is not None else f"{owner}-{next(_names)}"
        if not isinstance(self.name, str) or not self.name:
            raise ConfigurationError(f"{owner}: name must be a non-empty str, got {name!r}")
        self.min_size = min_size
        self.max_size = max_size
        self.exc_classes = check_exc_classes(owner, exc_classes)
        self.timeout = check_seconds(owner, "timeout", timeout)
        self.connect_timeout = check_seconds(owner, "connect_timeout", connect_timeout, allow_zero=False)
        self.keepalive = check_optional_seconds(owner, "keepalive", keepalive, allow_zero=False)
        self.keepalive_timeout = check_seconds(
            owner, "keepalive_timeout", keepalive_timeout, allow_zero=False
        )
        self.max_waiting = check_count(owner, "max_waiting", max_waiting)
        self.max_idle = check_seconds(owner, "max_idle", max_idle, allow_zero=False)
        self.max_lifetime = check_seconds(owner, "max_lifetime", max_lifetime, allow_zero=False)
        self.ping_after = check_optional_seconds(owner, "ping_after", ping_after)
        self.num_workers = check_count(owner, "num_workers", num_workers, 1)
        self.reconnect_timeout = check_seconds(
            owner, "reconnect_timeout", reconnect_timeout, allow_zero=False
        )
        self.leak_threshold = check_optional_seconds(
            owner, "leak_threshold", leak_threshold, allow_zero=False
        )
        if reconnect_failed is not None and not callable(reconnect_failed):
            raise ConfigurationError(f"{owner}: reconnect_failed must be callable, got {reconnect_failed!r}")
        if not callable(clock) or not callable(rng):
            raise ConfigurationError(f"{owner}: clock and rng must be callables")
        self.reconnect_failed = reconnect_failed
        self._can_check = type(self)._keepalive is not ConnectionPool._keepalive
        if (self.keepalive is not None or self.ping_after is not None) and not self._can_check:
            raise ConfigurationError(
                f"{owner}: keepalive and ping_after need a _keepalive(conn) method to check connections"
            )
        if self.keepalive is not None and self.keepalive >= self.max_lifetime:
            raise ConfigurationError(
                f"{owner}: keepalive ({self.keepalive!r}) must be shorter than "
                f"max_lifetime ({self.max_lifetime!r})"
            )
        if self.timeout and self.keepalive_timeout > self.timeout and self.ping_after is not None:
            raise ConfigurationError(
                f"{owner}: keepalive_timeout ({self.keepalive_timeout!r}) must not exceed "
                f"timeout ({self.timeout!r})"
            )
        self._lifo = bool(lifo)
        #: Where new connections go: a ServerPool (a plain list is given the default strategy), or None.
        self.server_pool: ServerPool | None = None if servers is None else as_server_pool(servers)
        self._takes_server = _opening.takes_server(self)
        if self.server_pool is not None and not self._takes_server:
            raise ConfigurationError(f"{owner}: servers= needs a _new_connection(self, server) method")
        self._connect_errors: tuple[type[BaseException], ...] = (
            *self.exc_classes, OSError, ConnectTimeout, BackendUnavailable,
        )
        self._clock = clock
        self._rng = rng
        self._has_reset = type(self)._reset is not ConnectionPool._reset
        self._slot_numbers = itertools.count(1)
        self._track_frames = self.leak_threshold is not None
        self._ping_window = float("inf") if self.ping_after is None else self.ping_after
        self._pinging = self.ping_after is not None
        self._listeners: dict[str, list[Callable[..., None]]] = {event: [] for event in EVENTS}
        self._set_fresh_state()
        _fork.register(self)

    @staticmethod
    def _check_sizes(owner: str, min_size: Any, max_size: Any) -> None:
        check_count(owner, "min_size", min_size)
        check_count(owner, "max_size", max_size, 1)
        if min_size > max_size:
            raise ConfigurationError(
                f"{owner}: min_size ({min_size}) must not exceed max_size ({max_size})"
            )

    def _set_fresh_state(self) -> None:
        """Empty the pool's state; used by __init__ and in a forked child (no I/O)."""
        self._idle: deque[Slot[C]] = deque()  # mutated in place, never replaced
        self._pop_idle = self._idle.pop if self._lifo else self._idle.popleft
        self._busy: dict[int, Slot[C]] = {}  # id(conn) -> slot, in use or being checked
        self._opening = 0
        self._connectors = 0
        self._waiters: deque[_Waiter] = deque()
        self._group: gevent.pool.Group | None = None
        self._filled = gevent.event.Event()
        self._started = False
        self._closed = False
        self._fast = False  # started, open, not above max_size: the inlined paths apply
        self._closed_uses = 0  # checkouts served by connections since closed
        self._leaks_out = 0  # connections reported as leaked and not yet returned
        self._usage = 0.0
        self._epoch = object()  # background greenlets of an older epoch stop
        self._failures = 0
        self._failing_since: float | None = None
        self._last_error: BaseException | None = None
        self._broken_hook: BaseException | None = None
        self._inherited: list[Any] = []
        self._counters: dict[str, float] = dict.fromkeys(
            (
                "requests_queued",
                "requests_wait_ms",
                "requests_errors",
                "requests_too_many",
                "returns_bad",
                "connections_num",
                "connections_ms",
                "connections_errors",
                "connections_lost",
                "connections_discarded",
                "keepalives",
                "leaks",
            ),
            0,
        )

    # -- hooks for subclasses -------------------------------------------------

    def _new_connection(self) -> C:
        """Open and return a new connection; raise on failure.

        Runs in a background greenlet under ``connect_timeout``.  Errors in
        ``exc_classes`` (and ``OSError``) are retried with backoff; any other
        error is passed to a waiting caller unchanged.
        """
        raise NotImplementedError(f"{type(self).__name__} must override _new_connection()")

    def _keepalive(self, conn: C) -> None:
        """Check (and keep alive) an idle connection; raise if it is broken."""
        raise NotImplementedError

    def _reset(self, conn: C) -> None:
        """Make a connection clean for the next user after an ordinary exception."""

    def _close_connection(self, conn: C) -> None:
        """Close a discarded connection (its ``close()`` method, if it has one)."""
        close = getattr(conn, "close", None)
        if close is not None:
            close()

    def _forget_connection(self, conn: C) -> None:
        """Drop a connection inherited through ``fork()`` without any I/O on it.

        The default keeps a reference for the pool's lifetime, so that no
        finalizer talks on the parent's socket.
        """
        self._inherited.append(conn)

    def _is_broken(self, error: BaseException) -> bool:
        """Tell whether ``error`` (raised while a connection was in use) condemns it."""
        return isinstance(error, self.exc_classes) or not isinstance(error, Exception)

    def _is_connect_error(self, error: BaseException) -> bool:
        """Tell whether a failed connect is worth retrying (and counts against its server).

        True for ``exc_classes``, ``OSError`` and timeouts.  Anything else
        (wrong credentials, a certificate that cannot be verified, a bug)
        is handed to the oldest waiter at once and retried only on demand;
        with several servers, the next one is not tried.
        """
        return isinstance(error, self._connect_errors)

    # -- checkout ----------------------------------------------------------------

    def get(self, timeout: float | None = None) -> Slot[C]:
        """Check out a connection: ``with pool.get() as conn: ...``.

        Waits up to ``timeout`` (default: the pool's) in FIFO order.  On exit
        of the block the connection is returned; it is discarded (closed and
        replaced in the background) if the block raised one of
        ``exc_classes`` or a ``BaseException`` that is not an ``Exception``
        (``gevent.Timeout``, ``GreenletExit``, ``KeyboardInterrupt``).

        :raises PoolTimeout: no connection within the timeout
            (:class:`BackendUnavailable` when connecting keeps failing).
        :raises TooManyWaiters: ``max_waiting`` greenlets are already waiting.
        :raises PoolClosed: the pool was closed.
        """
        if timeout is not None:
            timeout = check_seconds(self.name, "timeout", timeout)  # refused even when not waiting
        # The common case, inlined: an idle connection that needs no check.
        if self._fast and self._idle:
            slot = self._pop_idle()
            now = self._clock()
            if now < slot.good_until:
                # check-then-update: no greenlet switch in here
                slot.state = _IN_USE
                slot.checked_out_at = now
                slot.holder = getcurrent()
                slot.uses += 1
                self._busy[slot.key] = slot
                if self._track_frames:
                    slot.frame = frame = sys._getframe(1)
                    slot.frame_line = frame.f_lasti  # the line is worked out only for a report
                return slot
            self._idle.append(slot)
        return self._checkout(timeout)

    def acquire(self, timeout: float | None = None) -> C:
        """Check out a connection; give it back with :meth:`release`.  Raises as :meth:`get`."""
        return self.get(timeout).conn

    def release(self, conn: C, error: BaseException | None = None) -> None:
        """Return a connection got from :meth:`acquire`, applying the discard rule to ``error``.

        :raises ValueError: ``conn`` is not checked out from this pool.
        """
        slot = self._busy.get(id(conn))
        if slot is None or slot.conn is not conn or slot.state is not _IN_USE:
            self._counters["returns_bad"] += 1
            raise ValueError(f"{self.name}: {conn!r} is not checked out from this pool")
        slot.__exit__(None if error is None else type(error), error, None)

    def _checkout(self, timeout: float | None) -> Slot[C]:
        if not self._started:
            self._start()
        if self._closed:
            raise PoolClosed(f"{self.name} is closed")
        if timeout is None:
            timeout = self.timeout
        deadline = 0.0  # set by the first check: checking idle connections counts against timeout
        idle = self._idle
        while idle:
            slot = self._pop_idle()
            now = self._clock()
            if now >= slot.expires_at:
                self._drop(slot, None)
                continue
            if now >= slot.good_until:
                if not deadline:
                    deadline = now + timeout
                remaining = deadline - now
                if remaining <= 0:
                    if self._lifo:  # put it back where it came from, unchecked
                        idle.append(slot)
                    else:
                        idle.appendleft(slot)
                    self._counters["requests_errors"] += 1
                    raise self._timeout_error(timeout) from self._last_error
                self._lend(slot, now)
                if not self._check_lent(slot, remaining):
                    continue
            else:
                self._lend(slot, now)
            if self._listeners["checkout"]:
                self._emit_checkout(slot)
            return slot
        if deadline:
            timeout = max(deadline - self._clock(), 0.0)
        slot = self._wait(timeout)
        if self._listeners["checkout"]:
            self._emit_checkout(slot)
        return slot

    def _lend(self, slot: Slot[C], now: float) -> None:
        # check-then-update: no greenlet switch in here
        slot.state = _IN_USE
        slot.checked_out_at = now
        slot.uses += 1
        slot.holder = getcurrent()
        if self._track_frames:
            slot.frame = frame = sys._getframe(3)
            slot.frame_line = frame.f_lasti
        self._busy[slot.key] = slot

    def _check_lent(self, slot: Slot[C], limit: float | None = None) -> bool:
        """Check a just-lent connection with ``_keepalive`` (within ``keepalive_timeout``, or
        ``limit`` if shorter: the caller's time left); discard it if broken."""
        slot.uses -= 1  # counted again only if the check passes
        if not self._can_check:
            self._busy.pop(slot.key, None)
            self._drop(slot, None)
            return False
        slot.state = _CHECKING
        try:
            seconds = self.keepalive_timeout if limit is None else min(limit, self.keepalive_timeout)
            with gevent.Timeout(seconds, _CheckTimeout(self.name)):
                self._keepalive(slot.conn)
        except BaseException as error:
            self._discard(slot, error)
            if not isinstance(error, Exception) and not isinstance(error, _CheckTimeout):
                raise
            return False
        slot.state = _IN_USE
        slot.uses += 1
        self._mark_checked(slot)
        return True

    def _mark_checked(self, slot: Slot[C]) -> None:
        """A check passed: the connection is good until its next ping is due."""
        now = slot.checked_at = self._clock()
        slot.good_until = min(slot.expires_at, now + self._ping_window)

    def _wait(self, timeout: float) -> Slot[C]:
        if self.max_waiting and len(self._waiters) >= self.max_waiting:
            self._counters["requests_too_many"] += 1
            raise TooManyWaiters(
                f"{self.name}: {len(self._waiters)} greenlets already waiting "
                f"(max_waiting={self.max_waiting})"
            )
        if self.server_pool is not None and self.server_pool.all_down():
            self._counters["requests_errors"] += 1
            raise self._all_down_error()
        waiter = _Waiter()
        self._waiters.append(waiter)
        self._counters["requests_queued"] += 1
        self._ensure_connectors()
        started = self._clock()
        try:
            waiter.wait(timeout)
        except BaseException:
            self._abandon(waiter)
            raise
        finally:
            self._counters["requests_wait_ms"] += (self._clock() - started) * 1000.0
        slot = waiter.slot
        if slot is None:
            self._abandon(waiter)
            self._counters["requests_errors"] += 1
            if waiter.error is not None:
                raise waiter.error
            raise self._timeout_error(timeout) from self._last_error
        slot.holder = getcurrent()
        if self._track_frames:
            slot.frame = frame = sys._getframe(3)
            slot.frame_line = frame.f_lasti
        return slot

    def _abandon(self, waiter: _Waiter) -> None:
        """A waiter leaves: take it out of the queue, or pass on what it was given."""
        slot = waiter.slot
        if slot is not None:
            waiter.slot = None
            self._busy.pop(slot.key, None)
            self._give_back(slot)
        elif waiter.error is None:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass

    def _fail_oldest_waiter(self, error: BaseException) -> None:
        """Wake the greenlet that has waited longest with ``error`` (no switch here)."""
        if self._waiters:
            self._waiters.popleft().fail(error)

    def _fail_all_waiters(self, error: BaseException) -> None:
        while self._waiters:
            self._waiters.popleft().fail(error)

    def _timeout_error(self, timeout: float) -> PoolTimeout:
        counts = self._counts_text()
        if self._failing_since is not None and self._last_error is not None:
            return BackendUnavailable(
                f"{self.name}: no connection within {timeout:g} s; connecting keeps failing "
                f"({self._failures} failures, last: {self._last_error!r}) [{counts}]"
            )
        return PoolTimeout(f"{self.name}: no connection within {timeout:g} s [{counts}]")

    def _all_down_error(self) -> BackendUnavailable:
        error = BackendUnavailable(
            f"{self.name}: every server is down ({self.server_pool!r}) [{self._counts_text()}]"
        )
        error.__cause__ = self._last_error
        return error

    def _counts_text(self) -> str:
        return (
            f"size={self.size} idle={len(self._idle)} in_use={len(self._busy)} "
            f"opening={self._opening} waiting={len(self._waiters)} max_size={self.max_size}"
        )

    # -- checkin and the discard rule ----------------------------------------------

    def _finish(self, slot: Slot[C], error: BaseException | None) -> None:
        """The discard rule, in one place: return, reset and return, or discard."""
        if slot.state is not _IN_USE or self._busy.get(slot.key) is not slot:
            self._counters["returns_bad"] += 1
            raise ValueError(f"{self.name}: connection returned twice or to the wrong pool")
        if self._listeners["checkin"]:
            try:
                self._emit("checkin", slot.conn, error)
            except BaseException as interrupted:
                self._discard(slot, interrupted)
                raise
        now = self._clock()
        self._usage += now - slot.checked_out_at
        if error is not None and self._is_broken(error):
            self._discard(slot, error)
            return
        if self._has_reset and (error is not None or self.reset_on_return):
            try:
                self._run_reset(slot.conn)
            except BaseException as reset_error:
                self._discard(slot, reset_error)
                if not isinstance(reset_error, Exception):
                    raise
                return
            now = self._clock()
        if slot.leak_reported:
            slot.leak_reported = False
            self._leaks_out -= 1
            self._refresh_fast()
            logger.info("%s: connection %d returned (unleaked)", self.name, slot.number)
        del self._busy[slot.key]
        slot.holder = None
        slot.frame = None
        slot.last_used = now
        slot.good_until = min(slot.expires_at, now + self._ping_window)
        retired_server = (
            slot.server is not None and self.server_pool is not None and slot.server not in self.server_pool
        )
        if self._closed or now >= slot.expires_at or self.size >= self.max_size or retired_server:
            self._drop(slot, None)
            self._refresh_fast()
            return
        self._offer(slot)

    def _refresh_fast(self) -> None:
        self._fast = (
            self._started
            and not self._closed
            and self.size <= self.max_size
            and not self._listeners["checkout"]
            and not self._listeners["checkin"]
            and not (self._has_reset and self.reset_on_return)
            and not self._leaks_out
        )

    # -- listeners ---------------------------------------------------------------------

    def on(self, event: str, callback: Callable[..., None]) -> None:
        """Call ``callback(pool, conn)`` on ``event``; for tracing and metrics.

        Events: ``"connect"`` (a new connection opened), ``"checkout"``,
        ``"checkin"`` (``callback(pool, conn, error)``: before the discard
        rule applies) and ``"discard"`` (``callback(pool, conn, error)``).
        Callbacks run in the greenlet concerned; their exceptions are logged
        and swallowed.  Checkout and checkin listeners move ``get()`` off its
        inlined fast path.

        :raises ConfigurationError: unknown event, or ``callback`` not callable.
        """
        if event not in EVENTS:
            raise ConfigurationError(f"{self.name}: event must be one of {EVENTS}, got {event!r}")
        if not callable(callback):
            raise ConfigurationError(f"{self.name}: callback must be callable, got {callback!r}")
        self._listeners[event].append(callback)
        self._refresh_fast()

    def _emit(self, event: str, *args: Any) -> None:
        for callback in list(self._listeners[event]):
            try:
                callback(self, *args)
            except Exception:
                logger.exception("%s: %s listener %r raised", self.name, event, callback)

    def _emit_checkout(self, slot: Slot[C]) -> None:
        try:
            self._emit("checkout", slot.conn)
        except BaseException as interrupted:
            self._discard(slot, interrupted)
            raise

    def _run_reset(self, conn: C) -> None:
        """Run ``_reset(conn)`` within ``keepalive_timeout``: a reset that hangs condemns the connection.

        :raises Exception: what ``_reset`` raised, or an internal timeout error.
        """
        if not self.reset_waits:
            self._reset(conn)
            return
        limit = self.keepalive_timeout
        with gevent.Timeout(limit, _CheckTimeout(f"{self.name}: reset took longer than {limit:g} s")):
            self._reset(conn)

    def _give_back(self, slot: Slot[C]) -> None:
        """Put back a connection counted nowhere: offer it, or close it if the pool is closed."""
        if self._closed:
            self._drop(slot, None)
        else:
            self._offer(slot)

    def _offer(self, slot: Slot[C]) -> None:
        """Hand a free connection to the oldest waiter, or make it idle (no switch)."""
        waiters = self._waiters
        if waiters:
            waiter = waiters.popleft()
            slot.state = _IN_USE
            slot.checked_out_at = self._clock()
            slot.uses += 1
            self._busy[slot.key] = slot
            waiter.hand(slot)
            return
        slot.state = _IDLE
        self._idle.append(slot)

    def _discard(self, slot: Slot[C], error: BaseException | None) -> None:
        """Take a broken connection out of the pool and close it; refill behind it."""
        self._busy.pop(slot.key, None)
        self._counters["connections_discarded"] += 1
        if error is not None and isinstance(error, (*self.exc_classes, OSError)):
            self._counters["connections_lost"] += 1
            # A server restart breaks every older connection: check idle ones before reuse.
            for idle in self._idle:
                idle.good_until = -1.0
            if (
                slot.server is not None
                and slot.uses <= 1
                and self._clock() - slot.created < max(self.connect_timeout, 1.0)
            ):
                # broken on its first use, just opened: the server accepts but does not serve
                slot.server.health.record_failure(error)
        logger.debug("%s: discarding connection %d after %r", self.name, slot.number, error)
        if self._listeners["discard"]:
            try:
                self._emit("discard", slot.conn, error)
            finally:
                self._drop(slot, error)
            return
        self._drop(slot, error)

    def _drop(self, slot: Slot[C], error: BaseException | None) -> None:
        """Close a connection that is no longer counted anywhere, then top the pool up."""
        if slot.leak_reported:
            slot.leak_reported = False
            self._leaks_out -= 1
            self._refresh_fast()
        slot.state = _CLOSED
        slot.holder = None
        slot.frame = None
        self._closed_uses += slot.uses
        self._ensure_connectors()
        try:
            self._close_connection(slot.conn)
        except Exception as close_error:
            logger.debug("%s: closing connection %d failed: %r", self.name, slot.number, close_error)

    # -- connecting ----------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Connections open or being opened (idle + in use + opening)."""
        return len(self._idle) + len(self._busy) + self._opening

    def _wants_connection(self) -> bool:
        size = len(self._idle) + len(self._busy) + self._opening
        if self._closed or size >= self.max_size:
            return False
        if self._broken_hook is not None:
            return len(self._waiters) > self._opening
        if size < self.min_size:
            return True
        # grow one connection at a time, and only for greenlets that wait
        return bool(self._waiters) and self._opening == 0

    def _ensure_connectors(self) -> None:
        while (
            self._started
            and self._connectors < self.num_workers
            and self._wants_connection()
        ):
            self._connectors += 1
            self._opening += 1  # reserved before the greenlet runs
            self._spawn(self._connector, self._epoch)

    def _connector(self, epoch: object) -> None:
        """Open connections while the pool wants them; back off on failure."""
        try:
            while True:
                try:
                    slot = self._open_one()
                except BaseException as error:
                    if epoch is not self._epoch:
                        return
                    self._opening -= 1
                    if not isinstance(error, Exception):
                        raise
                    self._connect_failed(error)
                    delay = self._backoff_delay()
                    if self._broken_hook is not None:
                        logger.warning(
                            "%s: connect failed (%r); not retried until a caller asks", self.name, error
                        )
                    else:
                        logger.warning(
                            "%s: connect failed (%r); next attempt in %.3f s", self.name, error, delay
                        )
                    gevent.sleep(delay)
                else:
                    if epoch is not self._epoch:
                        return
                    self._opening -= 1
                    self._connect_succeeded()
                    self._give_back(slot)
                    if len(self._idle) + len(self._busy) >= self.min_size:
                        self._filled.set()
                if epoch is not self._epoch or not self._wants_connection():
                    return
                self._opening += 1
        finally:
            if epoch is self._epoch:
                self._connectors -= 1

    def _open_one(self) -> Slot[C]:
        """Open one connection and wrap it in a new slot (see ``_opening.open_slot``)."""
        return _opening.open_slot(self)

    def _probe_server(self, server: Server) -> None:
        """Probe ``server`` for its circuit breaker (runs in the server's probe greenlet)."""
        if self._closed:
            raise PoolClosed(f"{self.name} is closed")
        _opening.probe_server(self, server)

    def _connect_failed(self, error: Exception) -> None:
        self._counters["connections_errors"] += 1
        # Keep the error, not its frames: they may hold the half-built socket open.
        self._last_error = error.with_traceback(None)
        self._failures += 1
        now = self._clock()
        if self._failing_since is None:
            self._failing_since = now
        if not self._is_connect_error(error):
            # Not a transient failure: hand it to the oldest waiter; retry only on demand.
            self._broken_hook = error
            self._fail_oldest_waiter(error)
            return
        if self.server_pool is not None and self.server_pool.all_down():
            # Every circuit is open: waiters learn it now instead of at their timeout.
            self._fail_all_waiters(self._all_down_error())
        if now - self._failing_since >= self.reconnect_timeout:
            self._failing_since = now
            if self.reconnect_failed is not None:
                try:
                    self.reconnect_failed(self)
                except Exception:
                    logger.exception("%s: reconnect_failed callback raised", self.name)

    def _connect_succeeded(self) -> None:
        self._failures = 0
        self._failing_since = None
        self._broken_hook = None

    def _backoff_delay(self) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2 ** (failures - 1))].

        Never past the end of the current ``reconnect_timeout`` window, so that
        ``reconnect_failed`` fires on time even when attempts are sparse.
        """
        cap = min(self.reconnect_backoff_max, self.reconnect_backoff * 2.0 ** (self._failures - 1))
        delay = float(cap * self._rng())
        if self._failing_since is not None:
            until_window_ends = self._failing_since + self.reconnect_timeout - self._clock()
            if 0 < until_window_ends < delay:
                delay = until_window_ends
        return delay

    # -- background work ----------------------------------------------------------------------

    def _start(self) -> None:
        """Start background work on first use (never in __init__)."""
        self._started = True
        self._refresh_fast()
        self._group = gevent.pool.Group()
        if self.server_pool is not None:
            for server in self.server_pool:  # this pool can probe them from now on
                server.health.set_probe(self._probe_server)
        self._spawn(self._housekeeper, self._epoch)
        self._ensure_connectors()

    def _spawn(self, func: Callable[..., None], *args: Any) -> None:
        assert self._group is not None
        self._group.spawn(func, *args)

    def _housekeeper(self, epoch: object) -> None:
        while epoch is self._epoch and not self._closed:
            gevent.sleep(self._housekeeping_period())
            if epoch is not self._epoch or self._closed:
                return
            try:
                self.run_housekeeping()
            except Exception:
                logger.exception("%s: housekeeping failed", self.name)

    def _housekeeping_period(self) -> float:
        period = self.housekeeping_interval
        if self.keepalive is not None:
            period = min(period, self.keepalive / 2)
        if self.leak_threshold is not None:
            period = min(period, self.leak_threshold / 2)
        return period

    def run_housekeeping(self) -> None:
        """Run one housekeeping pass now: expire, shrink, keepalive, report leaks, refill.

        Called every ``housekeeping_interval`` by a background greenlet; tests
        call it to step the pool deterministically.
        """
        if self._closed:
            return
        if not self._started:
            self._start()
        now = self._clock()
        # check-then-update: decide and re-file without switching; I/O after
        plan = _housekeeping.plan(self, self._idle, now)
        self._idle.clear()
        self._idle.extend(plan.keep)
        for slot in plan.check:
            slot.state = _CHECKING
            self._busy[slot.key] = slot
            self._spawn(self._keepalive_one, slot)
        for slot in plan.retire_on_return:
            slot.expires_at = now  # the return path closes it instead of re-filing it
        for slot in plan.close:
            self._drop(slot, None)
        if self.leak_threshold is not None:
            self._report_leaks(now)
        self._ensure_connectors()

    def _keepalive_one(self, slot: Slot[C]) -> None:
        self._counters["keepalives"] += 1
        try:
            with gevent.Timeout(self.keepalive_timeout, _CheckTimeout(self.name)):
                self._keepalive(slot.conn)
        except BaseException as error:
            if slot.state is not _CHECKING:
                raise
            self._discard(slot, error)
            if not isinstance(error, (Exception, _CheckTimeout)):
                raise
            return
        if slot.state is not _CHECKING:
            return
        del self._busy[slot.key]
        self._mark_checked(slot)
        self._give_back(slot)

    def _report_leaks(self, now: float) -> None:
        assert self.leak_threshold is not None
        for slot in list(self._busy.values()):
            if (
                slot.state is _IN_USE
                and not slot.leak_reported
                and now - slot.checked_out_at >= self.leak_threshold
            ):
                slot.leak_reported = True
                self._leaks_out += 1
                self._fast = False
                self._counters["leaks"] += 1
                logger.warning("%s", leak_message(self.name, slot, now))

    # -- lifecycle -------------------------------------------------------------------------------

    def wait(self, timeout: float = 30.0) -> None:
        """Block until ``min_size`` connections are open (fail-fast start-up).

        :raises PoolTimeout: not filled in time (:class:`BackendUnavailable`
            with the last connect error as ``__cause__`` if connecting failed).
        :raises PoolClosed: the pool is closed.
        """
        check_seconds(self.name, "timeout", timeout)
        if self._closed:
            raise PoolClosed(f"{self.name} is closed")
        if not self._started:
            self._start()
        deadline = self._clock() + timeout
        while len(self._idle) + len(self._busy) < self.min_size:
            if self._closed:
                raise PoolClosed(f"{self.name} is closed")
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise self._timeout_error(timeout) from self._last_error
            self._filled.clear()
            self._ensure_connectors()
            self._filled.wait(min(remaining, 0.05))

    def drop_idle(self) -> int:
        """Close every idle connection now (the pool refills to ``min_size``); return how many.

        Connections in use are not touched.
        """
        # check-then-update: take them all out before the first close (which may switch)
        idle = list(self._idle)
        self._idle.clear()
        for slot in idle:
            self._drop(slot, None)
        return len(idle)

    def resize(self, min_size: int | None = None, max_size: int | None = None) -> None:
        """Change the pool's bounds; extra idle connections are closed at once.

        :raises ConfigurationError: the new bounds are invalid.
        """
        new_min = self.min_size if min_size is None else min_size
        new_max = self.max_size if max_size is None else max_size
        self._check_sizes(self.name, new_min, new_max)
        self.min_size, self.max_size = new_min, new_max
        while self._idle and self.size > self.max_size:
            self._drop(self._idle.popleft(), None)
        self._refresh_fast()
        self._ensure_connectors()

    def close(self, timeout: float = 5.0) -> None:
        """Close the pool: idempotent; returns within about ``timeout`` seconds.

        Wakes waiters with :class:`PoolClosed`, closes idle connections, waits
        up to ``timeout`` for checked-out ones to come back (they are closed
        on return, however late), then stops every background greenlet.
        """
        check_seconds(self.name, "timeout", timeout)
        if self._closed:
            return
        self._closed = True
        self._fast = False
        if self.server_pool is not None:
            for server in self.server_pool:
                server.health.drop_probe(self)  # a closed pool connects no more, probes included
        self._fail_all_waiters(PoolClosed(f"{self.name} is closed"))
        while self._idle:
            self._drop(self._idle.popleft(), None)
        deadline = self._clock() + timeout
        while any(s.state is _IN_USE for s in self._busy.values()) and self._clock() < deadline:
            gevent.sleep(min(0.01, max(deadline - self._clock(), 0)))
        group = self._group
        if group is not None:
            current = getcurrent()
            for greenlet in list(group):
                if greenlet is not current:
                    greenlet.kill(block=False)
            group.join(timeout=max(deadline - self._clock(), 0.1))
            if all(greenlet.dead for greenlet in group):
                # connectors killed before they ran never released their reservation
                self._opening = 0
                self._connectors = 0
        self._filled.set()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _after_fork_in_child(self) -> None:
        """In a forked child: forget inherited connections without I/O, start afresh."""
        inherited = [slot.conn for slot in itertools.chain(self._idle, self._busy.values())]
        was_closed = self._closed
        self._set_fresh_state()
        self._closed = was_closed
        self._fast = False
        for conn in inherited:
            self._forget_connection(conn)

    def __reduce__(self) -> Any:
        raise TypeError(f"{type(self).__name__} objects cannot be pickled")

    # -- reporting ---------------------------------------------------------------------------

    def stats(self) -> dict[str, float]:
        """Return counters and gauges (psycopg_pool's names, plus a few)."""
        return stats_of(self)

    def server_stats(self) -> dict[str, dict[str, Any]]:
        """Per-server health (circuit state, failures, last error, open time, connections)."""
        return server_stats(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self.name!r} {state} {self._counts_text()}>"

    def __str__(self) -> str:
        return status_table(self)

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return True


class _Waiter:
    """One greenlet waiting for a connection: woken with a slot, an error, or by its timeout.

    The outcome is recorded before the wake-up is scheduled, so a greenlet
    woken by its timer (or killed) in the same loop iteration still sees
    what it was handed and can pass it on.
    """

    __slots__ = ("_waiter", "_hub", "error", "slot")

    def __init__(self) -> None:
        self._hub = gevent.get_hub()
        self._waiter = Waiter(self._hub)
        self.slot: Slot[Any] | None = None
        self.error: BaseException | None = None

    def wait(self, timeout: float) -> None:
        """Sleep until handed a slot or an error, or ``timeout`` passes (no wait if 0)."""
        if timeout <= 0:
            return
        timer = self._hub.loop.timer(timeout)
        timer.start(self._waiter.switch, None)
        try:
            self._waiter.get()
        finally:
            timer.close()

    def hand(self, slot: Slot[Any]) -> None:
        self.slot = slot
        self._hub.loop.run_callback(self._waiter.switch, None)

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._hub.loop.run_callback(self._waiter.switch, None)

    @property
    def woken(self) -> bool:
        """Whether a slot or an error was handed to this waiter."""
        return self.slot is not None or self.error is not None


class _CheckTimeout(PoolError):
    """A connection check overran ``keepalive_timeout`` (internal, never raised to callers)."""

