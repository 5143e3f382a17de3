"""ConnectionPool: a greenlet-safe pool of connections of any protocol.

Subclass it and override :meth:`ConnectionPool._new_connection` (and, if you
like, :meth:`~ConnectionPool._keepalive`, :meth:`~ConnectionPool._reset`,
:meth:`~ConnectionPool._close_connection`, :meth:`~ConnectionPool._is_broken`).
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from typing import Any, Callable, Generic, Iterable, TypeVar

from gevent import getcurrent

from . import _deadline, _fork
from ._checkout import Checkout
from ._closer import Closer
from ._config import PoolSettings
from ._connector import Connector
from ._housekeeping import Housekeeper
from ._lease import Lease, _speedups
from ._listeners import EVENTS, Listeners
from ._loans import Loans
from ._report import COUNTERS, counts_text, server_stats, stats_of, status_table
from ._slot import Slot, SlotState
from ._state import SlotTable, Snapshot
from ._workers import Workers
from .errors import BackendUnavailable, ConfigurationError, ConnectTimeout, PoolClosed
from .retry import DEFAULT_EXC_CLASSES
from .servers import Server, ServerLike, ServerPool

__all__ = ["ConnectionPool", "DEFAULT_EXC_CLASSES", "EVENTS"]

C = TypeVar("C")
T = TypeVar("T")

logger = logging.getLogger("geventpool")

_IN_USE = SlotState.IN_USE
_FORGOTTEN = SlotState.FORGOTTEN
_names = itertools.count(1)
_new_lease = object.__new__
#: The C checkout (geventpool/_speedups.c), or None: the Python one below runs.
_take: Callable[[SlotTable[Any], Any], Lease[Any] | None] | None = (
    _speedups.take if _speedups is not None else None
)
_lend: Callable[[SlotTable[Any], Any, Slot[Any], float], Lease[Any] | None] | None = (
    _speedups.lend if _speedups is not None else None
)



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
    #: Whether a connect that overruns ``connect_timeout`` fails the oldest waiting ``get()``
    #: with :class:`~geventpool.ConnectTimeout` at once (eventlet's contract), instead of
    #: letting it wait out its own timeout while the pool retries.
    fail_waiter_on_connect_timeout: bool = False
    #: Whether a connect that failed for want of a server (every server tried) fails the oldest
    #: waiting ``get()`` at once with :class:`~geventpool.BackendUnavailable` (ldappool's contract:
    #: the caller learns it after one round of attempts), instead of the pool retrying meanwhile.
    fail_waiter_on_connect_error: bool = False
    #: Whether the pool keeps connecting in the background after connects failed (refilling
    #: ``min_size``, probing a server whose circuit is open).  False: once a connect failed,
    #: nothing connects until a caller asks (ldappool's contract: no traffic to a dead server
    #: for a pool nobody uses).
    retry_in_background: bool = True

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
        max_connecting: int = 2,
        num_workers: int | None = None,
        reconnect_timeout: float = 300.0,
        reconnect_failed: Callable[[ConnectionPool[Any]], None] | None = None,
        leak_threshold: float | None = None,
        servers: ServerPool | Iterable[ServerLike] | ServerLike | None = None,
        lifo: bool = True,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        owner = type(self).__name__
        self._can_check = type(self)._keepalive is not ConnectionPool._keepalive
        settings = PoolSettings.check(
            owner, size=size, exc_classes=exc_classes, keepalive=keepalive, min_size=min_size,
            max_size=max_size, name=name if name is not None else f"{owner}-{next(_names)}",
            timeout=timeout, connect_timeout=connect_timeout, keepalive_timeout=keepalive_timeout,
            max_waiting=max_waiting, max_idle=max_idle, max_lifetime=max_lifetime, ping_after=ping_after,
            max_connecting=max_connecting if num_workers is None else num_workers,
            connecting_label="max_connecting" if num_workers is None else "num_workers",
            reconnect_timeout=reconnect_timeout, reconnect_failed=reconnect_failed,
            leak_threshold=leak_threshold, servers=servers, clock=clock, rng=rng,
            can_check=self._can_check,
        )
        self.name: str = settings.name
        self.min_size = settings.min_size
        self.max_size = settings.max_size
        self.exc_classes = settings.exc_classes
        self.timeout = settings.timeout
        self.connect_timeout = settings.connect_timeout
        self.keepalive = settings.keepalive
        self.keepalive_timeout = settings.keepalive_timeout
        self.max_waiting = settings.max_waiting
        self.max_idle = settings.max_idle
        self.max_lifetime = settings.max_lifetime
        self.ping_after = settings.ping_after
        self.max_connecting = settings.max_connecting
        self.reconnect_timeout = settings.reconnect_timeout
        self.reconnect_failed = reconnect_failed
        self.leak_threshold = settings.leak_threshold
        #: Where new connections go: a ServerPool (a plain list is given the default strategy), or None.
        self.server_pool: ServerPool | None = settings.server_pool
        self._lifo = bool(lifo)
        self._clock = clock
        self._rng = rng
        self._connect_errors: tuple[type[BaseException], ...] = (
            *self.exc_classes, OSError, ConnectTimeout, BackendUnavailable,
        )
        self._has_reset = type(self)._reset is not ConnectionPool._reset
        self._slot_numbers = itertools.count(1)
        self._track_frames = self.leak_threshold is not None
        self._ping_window = float("inf") if self.ping_after is None else self.ping_after
        self._listeners = Listeners()
        self._set_fresh_state()
        if self.server_pool is not None and not self._connector.takes_server:
            raise ConfigurationError(f"{owner}: servers= needs a _new_connection(self, server) method")
        _fork.register(self)

    @property
    def num_workers(self) -> int:
        """The former name of ``max_connecting``."""
        return self.max_connecting

    def _set_fresh_state(self) -> None:
        """Empty the pool's state; used by __init__ and in a forked child (no I/O)."""
        self._table: SlotTable[C] = SlotTable(self._lifo, self._clock, self._ping_window)
        self._connector: Connector[C] = Connector(self)
        self._housekeeper: Housekeeper[C] = Housekeeper(self)
        self._checkout: Checkout[C] = Checkout(self)
        self._closer: Closer[C] = Closer(self)
        self._loans: Loans[C] = Loans(self)
        self._workers: Workers = Workers(self)
        self._started = False
        self._closed = False
        self._table.observed = self._track_frames
        self._inherited: list[Any] = []
        self._counters: dict[str, float] = dict.fromkeys(COUNTERS, 0)

    # -- hooks for subclasses -------------------------------------------------

    def _new_connection(self) -> C:
        """Open and return a new connection; raise on failure.

        Runs in a background greenlet; ``connect_timeout`` bounds the whole
        call (every address tried included) with a timer whose exception is
        not an ``Exception``, so the hook cannot swallow it.  Errors in
        ``exc_classes`` (and ``OSError``) are retried with backoff; any other
        error is passed to a waiting caller unchanged.  With ``servers=``,
        the signature is ``_new_connection(self, server)``.
        """
        raise NotImplementedError(f"{type(self).__name__} must override _new_connection()")

    def _keepalive(self, conn: C) -> None:
        """Check (and keep alive) an idle connection; raise if it is broken."""
        raise NotImplementedError

    def _reset(self, conn: C) -> None:
        """Make a connection clean for the next user after an ordinary exception; raise if impossible."""

    def _close_connection(self, conn: C) -> None:
        """Close a connection (its ``close()`` method, if it has one); bounded by ``keepalive_timeout``."""
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

    def _has_served(self, conn: C) -> bool:
        """Tell whether ``conn`` already answered its server (a bind, a query) when it was opened.

        Such a connection breaking on its first use says nothing against the
        connect: it is not counted as a failed connect.  Default False.
        """
        return False

    # -- checkout ----------------------------------------------------------------

    def get(self, timeout: float | None = None) -> Lease[C]:
        """Check out a connection: ``with pool.get() as conn: ...``.

        Returns a new :class:`~geventpool.Lease`, valid once.  Waits up to
        ``timeout`` (default: the pool's) in FIFO order.  On exit of the block
        the connection is returned; it is discarded (closed and replaced in
        the background) if the block raised one of ``exc_classes`` or a
        ``BaseException`` that is not an ``Exception`` (``gevent.Timeout``,
        ``GreenletExit``, ``KeyboardInterrupt``).

        :raises PoolTimeout: no connection within the timeout
            (:class:`BackendUnavailable` when connecting keeps failing).
        :raises TooManyWaiters: ``max_waiting`` greenlets are already waiting.
        :raises PoolClosed: the pool was closed.
        """
        table = self._table
        if timeout is None and table.fast:  # started and open: Checkout.take's checks hold
            if _take is not None:  # the C speedups: the checkout below in one call
                lease = _take(table, self)
                if lease is not None:
                    return lease
                if table.idle:  # one due for a check, say: the general path
                    slot, now = self._checkout.take(timeout)
                else:
                    slot, now = self._checkout.wait(self.timeout)
            elif table.idle:
                slot, now = table.take_idle()
                if now < slot.good_until:
                    if not table.observed:
                        # check-then-update: no greenlet switch from taking the slot to here
                        slot.state = _IN_USE
                        slot.checked_out_at = now
                        slot.uses += 1
                        slot.holder = getcurrent()
                        slot.lease = lease = _new_lease(Lease)  # Lease.__init__, inlined
                        lease.conn = slot.conn
                        lease._pool = self
                        lease._slot = slot
                        return lease
                else:  # due for a check: the slow path decides
                    table.idle.append(slot)
                    slot, now = self._checkout.take(timeout)
            else:
                slot, now = self._checkout.wait(self.timeout)
        else:
            slot, now = self._checkout.take(timeout)
        if _lend is not None:  # the C speedups: Checkout.lend in one call (None: observed)
            lease = _lend(self._table, self, slot, now)
            if lease is not None:
                return lease
        return self._checkout.lend(slot, now)

    def _get_new(self) -> Lease[C]:
        """Check out a new connection if the pool has room and nobody waits, else as :meth:`get`
        (for a subclass whose idle connections may each cost more to use than a new one)."""
        table = self._table
        if not self._started or self._closed or table.waiters or table.size >= self.max_size:
            return self.get()
        slot, now = self._checkout.wait(self.timeout)
        return self._checkout.lend(slot, now)

    def acquire(self, timeout: float | None = None) -> C:
        """Check out a connection; give it back with :meth:`release`.  Raises as :meth:`get`."""
        return self._loans.record(self.get(timeout))

    def release(self, conn: C, error: BaseException | None = None) -> None:
        """Return a connection got from :meth:`acquire`, applying the discard rule to ``error``.

        From the greenlet that acquired it.  A checkout belongs to its
        borrower: once that greenlet has ended, the next housekeeping pass
        takes the connection back (until then another greenlet may still
        release it).

        :raises ValueError: ``conn`` is not checked out from this pool (returned
            already, or lent to another greenlet since).
        """
        self._loans.take_back(conn).release(error)

    def _check_all_before_reuse(self) -> None:
        """Have every connection, idle or lent, checked with ``_keepalive`` before its next use
        (for a subclass whose connections may have become unfit: new credentials, say).  No switch."""
        self._table.mark_all_suspect()

    def _check_timeout(self, server: Server) -> float:
        """Seconds an ACTIVE strategy's reachability check of ``server`` may take (the time one
        connect attempt may take; a subclass whose connect makes several attempts says less)."""
        return min(self.connect_timeout, server.connect_timeout or self.connect_timeout)

    def _open_on_any_server(self, open_one: Callable[[Server], T]) -> tuple[T, Server]:
        """Run ``open_one(server)`` on the first of the pool's servers that takes it, with the
        pool's failover and health (for a subclass that opens connections outside the pool).

        :raises BackendUnavailable: no server may be tried now; else what ``open_one`` raised.
        """
        return self._connector.connect_any(open_one)

    def _lease_of(self, conn: C) -> Lease[C] | None:
        """The active lease of ``conn``, for a subclass whose callers return connections, not
        leases (``put(raw_conn)``); None if it is not checked out.

        :raises ValueError: another greenlet, still alive, holds it (as :meth:`release`).
        """
        return self._loans.lease_of(conn)

    # -- checkin and the discard rule ----------------------------------------------

    def _return(self, lease: Lease[C], error: BaseException | None) -> None:
        """A lease comes back (the slow path of ``Lease.__exit__``).

        :raises ValueError: it came back before, or the pool took it back.
        """
        slot = lease._slot
        if slot.lease is not lease:
            if slot.state is _FORGOTTEN:
                return  # borrowed in the parent before fork(): forgotten, never touched
            self._counters["returns_bad"] += 1
            raise ValueError(
                f"{self.name}: connection {slot.number} returned twice, or after the pool took it back"
            )
        slot.lease = None
        slot.holder = None
        self._finish(slot, error)

    def _finish(self, slot: Slot[C], error: BaseException | None) -> None:
        """The discard rule, in one place: return, reset and return, or discard."""
        if self._listeners["checkin"]:
            try:
                self._emit("checkin", slot.conn, error)
            except BaseException as interrupted:
                self._closer.discard(slot, interrupted)
                raise
        now = self._clock()
        self._table.usage += now - slot.checked_out_at
        if error is not None and self._is_broken(error):
            self._closer.discard(slot, error)
            return
        if self._has_reset and (error is not None or self.reset_on_return):
            try:
                self._run_reset(slot.conn)
            except BaseException as reset_error:
                self._closer.discard(slot, reset_error)
                if not isinstance(reset_error, (Exception, _deadline.Expired)):
                    raise
                return
            now = self._clock()
        if slot.leak_reported:
            self._housekeeper.unleak(slot)
            logger.info("%s: connection %d returned (unleaked)", self.name, slot.number)
        if not slot.proved and error is None:
            slot.proved = True
            self._connector.proved()
        slot.last_used = now
        if slot.good_until >= 0:
            slot.good_until = min(slot.expires_at, now + self._ping_window)
        reason = self._retire_reason(slot, now)
        if reason is not None:
            self._closer.close(slot, reason)
            return
        self._table.offer(slot, now)  # refused (nothing done) if inherited through fork() meanwhile

    def _retire_reason(self, slot: Slot[C], now: float) -> str | None:
        """Why a returned connection is closed instead of reused (None: it is reused)."""
        if self._closed:
            return "pool closed"
        if slot.retire is not None:
            return slot.retire
        if now >= slot.expires_at:
            return "lifetime"
        if self._table.size > self.max_size:
            return "resize"
        if slot.server is not None and self.server_pool is not None and slot.server not in self.server_pool:
            return "server removed"
        return None

    def _run_reset(self, conn: C) -> None:
        """Run ``_reset(conn)`` within ``keepalive_timeout``: a reset that hangs condemns the connection."""
        if not self.reset_waits:
            self._reset(conn)
            return
        seconds = self.keepalive_timeout
        with _deadline.limit(seconds, f"{self.name}: reset took longer than {seconds:g} s"):
            self._reset(conn)

    def _give_back(self, slot: Slot[C]) -> None:
        """Put back a free connection: offer it, or close it if the pool is closed."""
        if self._closed:
            self._closer.close(slot, "pool closed")
        else:
            self._table.offer(slot, self._clock())

    def _refresh_fast(self) -> None:
        table = self._table
        table.observed = self._track_frames or bool(self._listeners["checkout"])
        table.fast = (
            self._started
            and not self._closed
            and self._table.size <= self.max_size
            and not self._listeners["checkout"]
            and not self._listeners["checkin"]
            and not (self._has_reset and self.reset_on_return)
            and not self._housekeeper.leaks_out
            and not self._connector.failures
        )

    # -- listeners ---------------------------------------------------------------------

    def on(self, event: str, callback: Callable[..., None]) -> None:
        """Call ``callback(pool, conn, ...)`` on ``event``; for tracing and metrics.

        Events: ``"connect"`` (a new connection opened), ``"checkout"``,
        ``"checkin"`` (``callback(pool, conn, error)``: before the discard
        rule applies), ``"discard"`` (``callback(pool, conn, error)``: a broken
        connection) and ``"close"`` (``callback(pool, conn, reason)``, for every
        connection closed: ``"pool closed"``, ``"idle"``, ``"lifetime"``,
        ``"broken"``, ``"drop_idle"``, ``"server removed"``, ``"failback"``,
        ``"resize"``, ``"reclaimed"``, ``"unchecked"``).  Callbacks run in the
        greenlet concerned; their exceptions are logged and swallowed.
        Checkout and checkin listeners move ``get()`` off its inlined fast path.

        :raises ConfigurationError: unknown event, or ``callback`` not callable.
        """
        self._listeners.add(self.name, event, callback)
        self._refresh_fast()

    def _emit(self, event: str, *args: Any) -> None:
        self._listeners.emit(self, event, *args)

    # -- background work ----------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Connections counted against ``max_size``: idle, in use, opening and closing."""
        return self._table.size

    def _start(self) -> None:
        """Start background work on first use (never in __init__)."""
        self._started = True
        workers = self._workers
        workers.start()
        self._table.wake = workers.hub.loop.run_callback
        self._refresh_fast()
        if self.server_pool is not None:
            self.server_pool.watch(self)
            if self.retry_in_background:
                for server in self.server_pool:  # this pool can probe them from now on
                    server.health.set_probe(self._probe_server)
        workers.spawn(self._housekeeper.loop, workers.epoch)
        self._connector.ensure()

    def _server_removed(self, server: Server) -> None:
        """``server`` left the ServerPool: its connections are closed when next idle or returned
        (the inlined paths see an expired connection).  No switch, no I/O."""
        for slot in self._table.open.values():
            if slot.server is server:
                slot.retire = "server removed"
                slot.expires_at = slot.good_until = -1.0

    def _probe_server(self, server: Server) -> None:
        """Probe ``server`` for its circuit breaker (runs in the server's probe greenlet)."""
        if self._closed:
            raise PoolClosed(f"{self.name} is closed")
        self._connector.probe(server)

    def run_housekeeping(self) -> None:
        """Run one housekeeping pass now: expire, shrink, keepalive, reclaim, report leaks, refill.

        Called every ``housekeeping_interval`` by a background greenlet; tests
        call it to step the pool deterministically.
        """
        if self._closed:
            return
        if not self._started:
            self._start()
        self._housekeeper.run_pass()

    # -- lifecycle -------------------------------------------------------------------------------

    def wait(self, timeout: float = 30.0) -> None:
        """Block until ``min_size`` connections are open (fail-fast start-up).

        :raises PoolTimeout: not filled in time (:class:`BackendUnavailable`
            with the last connect error as ``__cause__`` if connecting failed).
        :raises PoolClosed: the pool is closed.
        """
        PoolSettings.seconds(self.name, "timeout", timeout)
        if self._closed:
            raise PoolClosed(f"{self.name} is closed")
        if not self._started:
            self._start()
        self._connector.fill(timeout)

    def drop_idle(self) -> int:
        """Close every idle connection now (the pool refills to ``min_size``); return how many.

        Connections in use are not touched.
        """
        return self._closer.close_idle(list(self._table.idle), "drop_idle")

    def resize(self, min_size: int | None = None, max_size: int | None = None) -> None:
        """Change the pool's bounds; extra idle connections are closed at once.

        :raises ConfigurationError: the new bounds are invalid.
        """
        new_min = self.min_size if min_size is None else min_size
        new_max = self.max_size if max_size is None else max_size
        PoolSettings.sizes(self.name, new_min, new_max)
        self.min_size, self.max_size = new_min, new_max
        self._closer.close_over_max("resize")
        self._refresh_fast()
        self._connector.ensure()

    def close(self, timeout: float = 5.0) -> None:
        """Close the pool: idempotent; returns within about ``timeout`` seconds.

        Wakes waiters with :class:`PoolClosed`, closes idle connections, waits
        up to ``timeout`` for checked-out ones to come back (they are closed
        on return, however late), then stops every background greenlet.
        """
        PoolSettings.seconds(self.name, "timeout", timeout)
        if self._closed:
            return
        self._closed = True
        self._table.fast = False
        if self.server_pool is not None:
            for server in self.server_pool:
                server.health.drop_probe(self)  # a closed pool connects no more, probes included
        self._table.fail_all(PoolClosed(f"{self.name} is closed"))
        self._closer.close_all(timeout)
        self._connector.filled.set()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _after_fork_in_child(self) -> None:
        """In a forked child: forget inherited connections without I/O, start afresh."""
        inherited = list(self._table.open.values())
        was_closed = self._closed
        self._set_fresh_state()
        self._closed = was_closed
        for slot in inherited:
            slot.state = _FORGOTTEN
            slot.lease = None  # the parent's leases are stale; leaving their block is quiet
            self._forget_connection(slot.conn)

    def __reduce__(self) -> Any:
        raise TypeError(f"{type(self).__name__} objects cannot be pickled")

    # -- reporting ---------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The pool's accounting at this instant (counts, slots, waiters): what reports read."""
        return self._table.snapshot()

    def stats(self) -> dict[str, float]:
        """Return counters and gauges (psycopg_pool's names, plus a few)."""
        return stats_of(self)

    def server_stats(self) -> dict[str, dict[str, Any]]:
        """Per-server health (circuit state, failures, last error, open time, connections)."""
        return server_stats(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self.name!r} {state} {counts_text(self)}>"

    def __str__(self) -> str:
        return status_table(self)

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return True
