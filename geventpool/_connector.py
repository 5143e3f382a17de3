"""Opening connections for a pool: how many at once, where, and how long to back off.

The :class:`Connector` owns the pool's connector greenlets (at most
``max_connecting`` connects in flight), picks the server and fails over,
bounds each connect by ``connect_timeout`` (all addresses included), and
judges connects by their outcome: a connection that breaks on its first
use or check soon after it opened counts as a failed connect, for the
backoff and for its server's health.  A connector greenlet never dies of
an error: it counts it, tells the oldest waiter, backs off and goes on.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any, Callable, Generic, TypeVar

import gevent
import gevent.event
from gevent import GreenletExit

from . import _deadline
from ._report import all_down_error, timeout_error
from ._slot import Slot
from .backoff import backoff_delay
from .errors import BackendUnavailable, ConnectTimeout, PoolClosed, PoolError
from .servers import Server

if TYPE_CHECKING:
    from .pool import ConnectionPool

__all__ = ["Connector", "takes_server"]

C = TypeVar("C")
T = TypeVar("T")

logger = logging.getLogger("geventpool")


def takes_server(pool: ConnectionPool[Any]) -> bool:
    """Whether the pool's ``_new_connection`` accepts the chosen server as an argument."""
    parameters = inspect.signature(pool._new_connection).parameters.values()
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in parameters
    )


class Connector(Generic[C]):
    """The pool's connects, their failures and their backoff.  Greenlet-safe; no I/O but connects."""

    def __init__(self, pool: ConnectionPool[C]) -> None:
        self.pool = pool
        self.takes_server = takes_server(pool)
        self.running = 0  # connector greenlets alive
        self.failures = 0  # consecutive failed connects (by outcome)
        self.failing_since: float | None = None
        self.retry_at = 0.0  # no connect before this time
        self.last_error: BaseException | None = None
        self.refused: BaseException | None = None  # not transient: retried only on demand
        self.filled = gevent.event.Event()  # set by close(): fill() stops waiting at once

    # -- how many ------------------------------------------------------------------------------

    def wanted(self) -> bool:
        """Whether one more connect should start now."""
        pool = self.pool
        table = pool._table
        if pool._closed or table.size >= pool.max_size:
            return False
        waiting = len(table.waiters)
        if self.refused is not None or (self.failures and not pool.retry_in_background):
            return waiting > table.opening
        if len(table.open) + table.opening < pool.min_size:
            return True
        return table.opening < min(waiting, pool.max_connecting)

    def fill(self, timeout: float) -> None:
        """Connect until ``min_size`` connections are open (``ConnectionPool.wait()``); the pool
        is started and open.

        :raises PoolTimeout: not filled in time (:class:`BackendUnavailable` with the last
            connect error as ``__cause__`` if connecting failed).
        :raises PoolClosed: the pool was closed meanwhile.
        """
        pool = self.pool
        deadline = pool._clock() + timeout
        while len(pool._table.open) < pool.min_size:
            if pool._closed:
                raise PoolClosed(f"{pool.name} is closed")
            connector = pool._connector  # read each turn: a fork() gives the child a new one
            remaining = deadline - pool._clock()
            if remaining <= 0:
                raise timeout_error(pool, timeout) from connector.last_error
            connector.filled.clear()
            connector.ensure()
            connector.filled.wait(min(remaining, 0.05))

    def ensure(self) -> None:
        """Start connector greenlets while connects are wanted (at most ``max_connecting``)."""
        pool = self.pool
        while pool._started and self.running < pool.max_connecting and self.wanted():
            self.running += 1
            pool._workers.spawn(self._run, pool._workers.epoch)
            if self.retry_at > pool._clock():
                return  # backing off: one greenlet waits for the next attempt

    def _run(self, epoch: object) -> None:
        pool = self.pool
        table = pool._table
        try:
            while epoch is pool._workers.epoch and self.wanted():
                delay = self.retry_at - pool._clock()
                if delay > 0:
                    gevent.sleep(delay)
                    continue
                table.reserve()
                try:
                    slot = self.open_slot()
                except (GreenletExit, KeyboardInterrupt, SystemExit):
                    if epoch is pool._workers.epoch:
                        table.release_reservation()
                    raise
                except BaseException as error:
                    if epoch is not pool._workers.epoch:
                        return
                    table.release_reservation()
                    self.failed(error, None)
                    continue
                if epoch is not pool._workers.epoch:
                    pool._forget_connection(slot.conn)
                    return
                table.admit(slot)
                self.refused = None  # a connect went through: whatever refused it is fixed
                pool._give_back(slot)
        finally:
            if epoch is pool._workers.epoch:
                self.running -= 1

    # -- one connect -----------------------------------------------------------------------------

    def open_slot(self) -> Slot[C]:
        """Open one connection (failing over across the pool's servers) and wrap it in a slot.

        :raises BackendUnavailable: no server may be tried now.
        :raises ConnectTimeout: the connect took longer than ``connect_timeout``.
        """
        pool = self.pool
        started = pool._clock()
        server: Server | None = None
        if pool.server_pool is None:
            conn = self.connect(None)
        else:
            conn, server = self._connect_any()
        now = pool._clock()
        pool._counters["connections_num"] += 1
        pool._counters["connections_ms"] += (now - started) * 1000.0
        lifetime = pool.max_lifetime * (1.0 - pool.lifetime_jitter * pool._rng())
        slot = Slot(conn, next(pool._slot_numbers), now, now + lifetime, server, pool._table.generation)
        # a new connection idles like a returned one: checked once idle past ping_after
        slot.good_until = min(slot.expires_at, now + pool._ping_window)
        if pool._listeners["connect"]:
            try:
                pool._emit("connect", conn)
            except BaseException:
                pool._closer.close_quietly(conn)
                raise
        return slot

    def connect(self, server: Server | None) -> C:
        """Call ``_new_connection`` bounded by the connect timeout (the server's, if it has one)."""
        pool = self.pool
        seconds = pool.connect_timeout
        if server is not None and server.connect_timeout is not None:
            seconds = server.connect_timeout
        where = f" to {server.name}" if server is not None else ""
        what = f"{pool.name}: connect{where} took longer than {seconds:g} s"
        with _deadline.limit(seconds, what, ConnectTimeout):
            conn = pool._new_connection(server) if self.takes_server else pool._new_connection()  # type: ignore[call-arg]
        if conn is None:
            raise TypeError(f"{type(pool).__name__}._new_connection() returned None")
        return conn

    def _connect_any(self) -> tuple[C, Server]:
        return self.connect_any(self._connect_verified)

    def _connect_verified(self, server: Server) -> C:
        conn = self.connect(server)
        if server.health.failures and self.pool._can_check:
            self._verify(conn)  # a recovering server must answer, not merely accept
        return conn

    def connect_any(self, open_one: Callable[[Server], T]) -> tuple[T, Server]:
        """``open_one(server)`` on the pool's servers in the order of their strategy, until one
        works: the one place that fails over.  Connection errors feed each server's health and
        move on; any other error stops at once (an auth error is never tried on every replica).

        :raises BackendUnavailable: no server may be tried now.
        """
        pool = self.pool
        server_pool = pool.server_pool
        assert server_pool is not None
        last_error: BaseException | None = None
        gated = server_pool.skips_open_circuits  # else every server is tried: circuits only report
        for _cycle in range(server_pool.cycles):
            for server in server_pool.candidates():
                health = server.health
                if gated and not health.begin_attempt():
                    continue
                if pool.retry_in_background:
                    health.set_probe(pool._probe_server)
                if server_pool.needs_check(server):  # ACTIVE: is anything listening there?
                    try:
                        server_pool.check_reachable(server, pool._check_timeout(server))
                    except OSError as error:
                        health.record_unreachable(error)  # its circuit opens: skipped until it answers
                        last_error = error
                        continue
                    except BaseException:
                        health.end_attempt()
                        raise
                try:
                    conn = open_one(server)
                except BaseException as error:
                    if pool._is_connect_error(error):
                        health.record_failure(error)
                        last_error = error
                        continue
                    health.end_attempt()
                    raise
                health.record_success()
                return conn, server
        if last_error is not None:
            raise last_error
        raise BackendUnavailable(f"{pool.name}: every server is down ({pool.server_pool!r})")

    def _verify(self, conn: C) -> None:
        pool = self.pool
        try:
            with _deadline.limit(pool.keepalive_timeout, f"{pool.name}: check timed out", ConnectTimeout):
                pool._keepalive(conn)
        except BaseException:
            pool._closer.close_quietly(conn)
            raise

    def probe(self, server: Server) -> None:
        """Check ``server`` for its circuit breaker: a fresh connection, ``_keepalive``, close.

        :raises Exception: whatever connecting or checking raised.
        """
        pool = self.pool
        conn = self.connect(server)
        try:
            if pool._can_check:
                with _deadline.limit(pool.keepalive_timeout, f"{pool.name}: probe check timed out",
                                     ConnectTimeout):
                    pool._keepalive(conn)
        finally:
            pool._closer.close_quietly(conn)

    # -- outcomes ------------------------------------------------------------------------------

    def failed(self, error: BaseException, slot: Slot[C] | None) -> None:
        """A connect failed, or the connection ``slot`` broke before it ever served.

        Counted, backed off; a refusal no retry can fix (and any error that is
        not an ``Exception``) goes to the oldest waiter now.
        """
        pool = self.pool
        pool._counters["connections_errors"] += 1
        self.last_error = error.with_traceback(None)  # not its frames: they may hold the socket open
        self.failures += 1
        now = pool._clock()
        if self.failing_since is None:
            self.failing_since = now
        pool._refresh_fast()
        if slot is not None and slot.server is not None:
            slot.server.health.record_failure(error)
        transient = isinstance(error, Exception) and pool._is_connect_error(error)
        if transient and now - self.failing_since >= pool.reconnect_timeout:
            self.failing_since = now  # a new window: the delay below ends with it at the latest
            if pool.reconnect_failed is not None:
                try:
                    pool.reconnect_failed(pool)
                except Exception:
                    logger.exception("%s: reconnect_failed callback raised", pool.name)
        delay = self._delay(now)
        self.retry_at = now + delay
        handed: PoolError
        if not isinstance(error, Exception):
            # the hook raised a BaseException (its own gevent.Timeout...): the oldest waiter learns it
            handed = BackendUnavailable(f"{pool.name}: _new_connection raised {error!r}")
            handed.__cause__ = error
            pool._table.fail_oldest(handed)
        elif not pool._is_connect_error(error):
            self.refused = error  # wrong credentials, a bug: retried only when a caller asks
            logger.warning("%s: connect failed (%r); not retried until a caller asks", pool.name, error)
            pool._table.fail_oldest(error)
            return
        elif pool.fail_waiter_on_connect_timeout and isinstance(error, ConnectTimeout):
            handed = ConnectTimeout(str(error))
            handed.__cause__ = error
            pool._table.fail_oldest(handed)
        elif pool.fail_waiter_on_connect_error:
            handed = BackendUnavailable(f"{pool.name}: no server could be reached (last error: {error!r})")
            handed.__cause__ = error
            pool._table.fail_oldest(handed)
        logger.warning("%s: connect failed (%r); next attempt in %.3f s", pool.name, error, delay)
        if pool.server_pool is not None and pool.server_pool.all_down():
            pool._table.fail_all(all_down_error(pool))  # waiters learn it now, not at their timeout

    def proved(self) -> None:
        """A connection served (a clean return, a passed check): connecting works again."""
        if self.failures or self.refused is not None:
            self.failures = 0
            self.failing_since = None
            self.refused = None
            self.retry_at = 0.0
            self.pool._refresh_fast()

    def _delay(self, now: float) -> float:
        """Full jitter, never past the end of the ``reconnect_timeout`` window (so that
        ``reconnect_failed`` fires on time even when attempts are sparse)."""
        pool = self.pool
        delay = backoff_delay(
            self.failures, pool.reconnect_backoff, 2.0, pool.reconnect_backoff_max, 1.0, pool._rng
        )
        if self.failing_since is not None:
            until_window_ends = self.failing_since + pool.reconnect_timeout - now
            if 0 < until_window_ends < delay:
                delay = until_window_ends
        return delay
