"""The documented ``ConnectionPool(connection_info, ...)``: a thin face over :class:`LDAPPool`.

ldap_core_shared documented a pool with ``get_connection()``,
``return_connection()``, ``health_check()``, ``get_metrics()`` and
``cleanup()``; this is that API on geventpool's LDAP pool, so every
guarantee of the core holds (no leak on a kill or timeout, FIFO waiters,
bounded waits, background reconnection, fork safety).  Every method is
greenlet-safe; none is thread-safe.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gevent

from ..._config import check_count, check_seconds
from ..._report import counts_text
from ...errors import ConfigurationError, PoolError
from ..connection import LDAPConnection
from ..pool import LDAPPool
from ._facade import (
    Lease,
    OperationCounters,
    build_pool,
    check_pool_options,
    checkout,
    sorted_infos,
    warn_compression,
)
from .info import ConnectionInfo

__all__ = ["ConnectionPool"]

logger = logging.getLogger("geventpool.ldap.compat.manager")


class ConnectionPool:
    """A pool of connections to the server of ``connection_info`` (the documented signature).

    ``min_connections`` are kept open, at most ``max_connections``;
    ``timeout``: seconds a caller waits for a free connection;
    ``max_idle_time``: seconds before an idle connection above the minimum
    is closed; ``health_check_interval``: idle connections are checked
    (WhoAmI) this often; ``enable_metrics``: measure acquisition times;
    ``preload_connections``: open ``min_connections`` now, waiting up to
    ``timeout`` (a failure is logged, the pool keeps trying);
    ``enable_compression``: accepted, with one WARNING per process: LDAP has
    no compression.  Other keyword arguments go to :class:`LDAPPool` (an
    unknown one is refused here).

    :raises ConfigurationError: an invalid ConnectionInfo (every problem
        listed) or argument (named).
    """

    def __init__(
        self,
        connection_info: ConnectionInfo,
        min_connections: int = 5,
        max_connections: int = 50,
        timeout: float = 60,
        max_idle_time: float = 300,
        health_check_interval: float = 60,
        enable_metrics: bool = True,
        *,
        preload_connections: bool = False,
        enable_compression: bool = False,
        name: str | None = None,
        **pool_options: Any,
    ) -> None:
        owner = name or type(self).__name__
        check_pool_options(owner, pool_options)
        warn_compression(owner, bool(enable_compression))
        self.enable_compression = bool(enable_compression)
        infos = sorted_infos(owner, [connection_info])
        check_count(owner, "min_connections", min_connections)
        check_count(owner, "max_connections", max_connections, 1)
        if min_connections > max_connections:
            raise ConfigurationError(
                f"{owner}: min_connections ({min_connections}) must not exceed "
                f"max_connections ({max_connections})"
            )
        check_seconds(owner, "timeout", timeout)
        check_seconds(owner, "max_idle_time", max_idle_time, allow_zero=False)
        check_seconds(owner, "health_check_interval", health_check_interval, allow_zero=False)
        self.connection_info = infos[0]
        self.min_connections = min_connections
        self.max_connections = max_connections
        self.timeout = timeout
        self.enable_metrics = bool(enable_metrics)
        pool_options.setdefault("keepalive", min(health_check_interval, 300.0))
        pool_options.setdefault("max_lifetime", max(600.0, float(health_check_interval) * 2))
        #: The :class:`LDAPPool` underneath.
        self.pool: LDAPPool = build_pool(
            infos, name=owner, min_size=min_connections, max_size=max_connections, checkout_timeout=timeout,
            max_idle=max_idle_time, **pool_options,
        )
        self.name = self.pool.name
        if preload_connections and min_connections:
            try:
                self.pool.wait(timeout)  # open the minimum now, not at the first use
            except PoolError as error:
                logger.warning("%s: preloading %d connections failed (%s); the pool keeps trying",
                               owner, min_connections, error)
        self._leases: dict[int, Lease] = {}
        self._acquired = OperationCounters()
        self._uses = OperationCounters()

    def get_connection(self, timeout: float | None = None) -> Any:
        """Check a connection out now: ``with pool.get_connection() as conn:``.

        Without ``with``, the returned lease stands for the connection
        (``lease.search_s(...)``) and goes back with :meth:`return_connection`.
        An error raised in the ``with`` block propagates unchanged; a lost
        connection is closed instead of reused.

        :raises PoolTimeout: none free within ``timeout`` (default: the pool's).
        :raises PoolExhausted: all in use and ``timeout=0``.
        :raises ConnectionTimeout, ConnectionUnhealthy: the server cannot be reached.
        :raises AuthenticationFailed, SSLError: the bind or TLS failed.
        :raises PoolClosed: after :meth:`close`.
        """
        started = time.monotonic()
        try:
            conn = checkout(self.pool, timeout)
        except BaseException:
            if self.enable_metrics:
                self._acquired.record(False, time.monotonic() - started)
            raise
        now = time.monotonic()
        if self.enable_metrics:
            self._acquired.record(True, now - started)
        lease = _PoolLease(self, conn, now)
        self._leases[id(conn)] = lease
        return lease

    def return_connection(self, connection: Any, error: BaseException | None = None) -> bool:
        """Return a connection (or its lease) got from :meth:`get_connection`; False if not out from here."""
        lease = connection if isinstance(connection, Lease) else self._leases.get(id(connection))
        if lease is None or self._leases.get(id(lease.conn)) is not lease:
            return False
        return lease.finish(error)

    def health_check(self) -> dict[str, Any]:
        """Check every idle connection with a WhoAmI now; discard those that fail.

        Returns ``active_connections`` (lent out, not checked),
        ``idle_connections`` (before the check), ``healthy_connections``,
        ``unhealthy_connections`` (found broken and discarded),
        ``opening_connections`` and ``healthy`` (no broken one found and at
        least one usable).
        """
        pool = self.pool
        stats = pool.stats()
        idle = int(stats["pool_available"])
        taken: list[LDAPConnection] = []
        while pool.snapshot().idle and len(taken) < idle:  # only what is idle now: never wait, never open
            try:
                taken.append(pool.acquire(0))
            except PoolError:
                break
        healthy = unhealthy = 0
        for conn in taken:
            expired = ConnectionError(f"{self.name}: health check timed out")
            try:
                with gevent.Timeout(pool.keepalive_timeout, expired):
                    conn.whoami_s()
            except Exception as error:  # a lost connection or the timeout above: discard it
                unhealthy += 1
                pool.release(conn, error)
            except BaseException as error:  # killed: give it back (discarded) and go on dying
                pool.release(conn, error)
                raise
            else:
                healthy += 1
                pool.release(conn)
        if unhealthy:
            logger.warning("%s: health check discarded %d broken idle connection(s)", self.name, unhealthy)
        return {
            "active_connections": int(stats["pool_in_use"]),
            "idle_connections": idle,
            "healthy_connections": healthy,
            "unhealthy_connections": unhealthy,
            "opening_connections": int(stats["pool_opening"]),
            "healthy": unhealthy == 0 and (healthy > 0 or int(stats["pool_in_use"]) > 0),
        }

    def get_metrics(self) -> dict[str, Any]:
        """Pool figures: ``pool_size``, ``active``, ``idle``, ``utilization`` (% of max in use),
        ``reuse_rate`` (% of checkouts served by an existing connection), ``avg_acquisition_time``
        and ``max_acquisition_time`` (ms), ``created``, ``closed``, ``checkouts``, ``failed_checkouts``,
        ``uses`` and ``failed_uses`` (blocks that raised)."""
        stats = self.pool.stats()
        checkouts = int(stats["requests_num"])
        created = int(stats["connections_num"])
        acquired = self._acquired
        return {
            "pool_size": int(stats["pool_size"]),
            "min_connections": self.min_connections,
            "max_connections": self.max_connections,
            "active": int(stats["pool_in_use"]),
            "idle": int(stats["pool_available"]),
            "utilization": 100.0 * stats["pool_in_use"] / stats["pool_max"],
            "reuse_rate": 100.0 * max(checkouts - created, 0) / checkouts if checkouts else 0.0,
            "avg_acquisition_time": 1000.0 * acquired.seconds / acquired.total if acquired.total else 0.0,
            "created": created,
            "closed": int(stats["connections_discarded"] + stats["connections_lost"]),
            "checkouts": checkouts,
            "failed_checkouts": acquired.failed,
            "uses": self._uses.total,
            "failed_uses": self._uses.failed,
            "waiting": int(stats["requests_waiting"]),
        }

    def cleanup(self) -> int:
        """Close every idle connection now (the pool refills to ``min_connections`` with fresh ones).

        Broken connections are never idle here (they are closed when they
        come back), so this closes idle ones; connections in use are not
        touched.  Returns how many were closed.
        """
        closed = self.pool.drop_idle()
        logger.info("%s: cleanup closed %d idle connection(s)", self.name, closed)
        return closed

    def close(self, timeout: float = 5.0) -> None:
        """Close the pool (see :meth:`LDAPPool.close`)."""
        self.pool.close(timeout)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self.pool.closed

    def __enter__(self) -> ConnectionPool:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        info = self.connection_info
        return f"<{type(self).__name__} {self.name!r} {info.host}:{info.port} {counts_text(self.pool)}>"

    def __reduce__(self) -> Any:
        raise TypeError(f"{type(self).__name__} objects cannot be pickled")


class _PoolLease(Lease):
    __slots__ = ("_owner",)

    def __init__(self, owner: ConnectionPool, conn: LDAPConnection, started: float) -> None:
        super().__init__(owner.pool, conn, started, owner._uses.record if owner.enable_metrics else None)
        self._owner = owner

    def finish(self, error: BaseException | None = None) -> bool:
        leases = self._owner._leases
        if leases.get(id(self.conn)) is self:
            del leases[id(self.conn)]
        return super().finish(error)
