"""LDAPConnectionManager: ldap_core_shared's documented manager, working, over :class:`LDAPPool`.

``manager.connect()`` reports (a :class:`ConnectionResult`: connected? to
which server? how long did it take? which encryption?) instead of raising;
``with manager.get_connection() as conn:`` lends a cooperative python-ldap
connection from the pool; ``health_check()`` runs an LDAP round trip;
``get_metrics()`` counts the operations really run; ``set_thresholds()`` and
``check_performance()`` turn them into alerts; ``start_monitoring()`` runs
the health check in a background greenlet.  Several :class:`ConnectionInfo`
(``with_failover``, :func:`create_ha_cluster`) give one pool that fails
over in priority order and, with ``auto_failback``, comes back to the
preferred server when it answers again.

Every method is greenlet-safe; none is thread-safe (one manager per
thread).  Nothing here blocks the hub.  No result, alert, log line or
message contains the password.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import gevent
import gevent.socket
import ldap

from ..._config import check_count, check_seconds
from ...errors import ConfigurationError, PoolError
from ..connection import LDAPConnection
from ..errors import AuthenticationFailed, TLSVerificationError
from ..pool import LDAPPool
from ._facade import (
    Lease,
    OperationCounters,
    ProcessFigures,
    build_pool,
    check_pool_options,
    checkout,
    server_of,
    sorted_infos,
)
from .info import ConnectionInfo

__all__ = ["LDAPConnectionManager", "ConnectionResult", "PerformanceMetrics", "create_ha_cluster"]

logger = logging.getLogger("geventpool.ldap.compat.manager")

_REPORTED = (PoolError, ldap.LDAPError, OSError)


@dataclass
class ConnectionResult:
    """What :meth:`LDAPConnectionManager.connect` or ``health_check`` found (times in ms).

    ``connection_error`` / ``auth_error``: the reason when ``connected`` is
    False (an error class name and message; never a password).
    ``last_activity``: ``time.time()`` of the last successful round trip.
    """

    connected: bool
    host: str | None = None
    port: int | None = None
    connection_time: float = 0.0
    response_time: float = 0.0
    auth_method: str = "anonymous"
    encryption: str = "none"
    connection_error: str | None = None
    auth_error: str | None = None
    last_activity: float | None = None

    def __bool__(self) -> bool:
        return self.connected


@dataclass
class PerformanceMetrics:
    """The figures of :meth:`LDAPConnectionManager.get_metrics` (rates in %, durations in ms).

    ``memory_peak_mb``: the process's peak resident memory; ``cpu_usage_percent``:
    the process's CPU time over the wall time since the previous ``get_metrics()``
    (or the manager's creation; 100 = one CPU busy).

    Operations are ``connect()``, ``health_check()`` and each
    ``get_connection()`` use (a failure: it raised, or no connection came).
    """

    total_operations: int = 0
    successful_operations: int = 0
    failed_operations: int = 0
    success_rate: float = 100.0
    average_duration: float = 0.0
    pool_size: int = 0
    max_pool_size: int = 0
    pool_in_use: int = 0
    pool_utilization: float = 0.0
    connection_reuse_rate: float = 0.0
    connections_opened: int = 0
    average_connection_time: float = 0.0
    checkouts: int = 0
    memory_peak_mb: float = 0.0
    cpu_usage_percent: float = 0.0


@dataclass
class _Window:
    """Counters at the previous check_performance(): the next one judges what happened since."""

    ops: OperationCounters = field(default_factory=OperationCounters)
    connections: float = 0.0
    connection_ms: float = 0.0


class _UnpooledLease:
    """``use_pool=False``: a connection opened and unbound around one ``with`` block."""

    def __init__(self, pool: LDAPPool, record: Callable[[bool, float], None] | None) -> None:
        self._cm = pool.connection()
        self._record = record
        self._started = time.monotonic()

    def __enter__(self) -> LDAPConnection:
        try:
            conn: LDAPConnection = self._cm.__enter__()
        except BaseException:
            if self._record is not None:
                self._record(False, time.monotonic() - self._started)
            raise
        return conn

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            self._cm.__exit__(exc_type, exc, tb)
        finally:
            if self._record is not None:
                self._record(exc is None, time.monotonic() - self._started)


class LDAPConnectionManager:
    """One LDAP service (a server, or several in priority order) behind a pool, with health and metrics.

    ``connection_info``: a :class:`ConnectionInfo` (or a list: failover).
    ``use_pool=False`` opens and unbinds a connection per ``get_connection()``.
    ``health_check_interval``: seconds between the monitoring greenlet's
    checks (and the keepalive of idle connections).  ``enable_monitoring``:
    count operations for :meth:`get_metrics`.  ``auto_reconnect``: keep
    reconnecting in the background after a failed :meth:`connect` (False:
    the pool is closed, the next call starts afresh).
    ``reconnect_attempts``/``reconnect_delay``: connect attempts per server
    and seconds between them (default: the info's ``max_retries`` and
    ``retry_delay``).  ``failover_timeout``: seconds one connect attempt may
    take (default: the info's ``timeout``).  ``auto_failback``: the monitor
    retires idle connections on a less preferred server once the preferred
    one accepts connections again.  The guide's recovery keywords are the
    same settings: ``auto_recovery`` is ``auto_reconnect``,
    ``recovery_attempts`` ``reconnect_attempts``, ``recovery_delay``
    ``reconnect_delay``; ``circuit_breaker_threshold``: consecutive failed
    connects that open a server's circuit (its health is shared by every
    pool of the process using that address).  Other keyword arguments go to
    :class:`LDAPPool` (``max_lifetime``, ``ping_after``...); an unknown one
    is refused here.

    :raises ConfigurationError: an invalid ConnectionInfo (every problem
        listed) or argument.
    """

    def __init__(
        self,
        connection_info: ConnectionInfo | Sequence[ConnectionInfo],
        use_pool: bool = True,
        health_check_interval: float = 60,
        enable_monitoring: bool = True,
        auto_reconnect: bool = True,
        reconnect_attempts: int | None = None,
        reconnect_delay: float | None = None,
        *,
        failover_timeout: float | None = None,
        auto_failback: bool = False,
        auto_recovery: bool | None = None,
        recovery_attempts: int | None = None,
        recovery_delay: float | None = None,
        circuit_breaker_threshold: int | None = None,
        name: str | None = None,
        **pool_options: Any,
    ) -> None:
        owner = name or type(self).__name__
        check_pool_options(owner, pool_options)
        # the guide's recovery keywords: the same settings under their other names
        if auto_recovery is not None:
            if not isinstance(auto_recovery, bool):
                raise ConfigurationError(
                    f"{owner}: auto_recovery must be True or False, got {auto_recovery!r}"
                )
            auto_reconnect = auto_recovery
        for alias, value, target, current in (
            ("recovery_attempts", recovery_attempts, "reconnect_attempts", reconnect_attempts),
            ("recovery_delay", recovery_delay, "reconnect_delay", reconnect_delay),
        ):
            if value is not None and current is not None and value != current:
                raise ConfigurationError(f"{owner}: {alias} and {target} disagree ({value!r}, {current!r})")
        if recovery_attempts is not None:
            reconnect_attempts = recovery_attempts
        if recovery_delay is not None:
            reconnect_delay = recovery_delay
        if circuit_breaker_threshold is not None:
            circuit_breaker_threshold = check_count(
                owner, "circuit_breaker_threshold", circuit_breaker_threshold, 1
            )
        self.circuit_breaker_threshold = circuit_breaker_threshold
        self.connection_infos = sorted_infos(owner, connection_info)  # type: ignore[arg-type]
        self.connection_info = self.connection_infos[0]
        interval = check_seconds(owner, "health_check_interval", health_check_interval, allow_zero=False)
        assert interval is not None
        self.health_check_interval: float = interval
        if reconnect_attempts is not None and (
            isinstance(reconnect_attempts, bool) or not isinstance(reconnect_attempts, int)
            or reconnect_attempts < 1
        ):
            raise ConfigurationError(
                f"{owner}: reconnect_attempts must be an int >= 1, got {reconnect_attempts!r}"
            )
        if reconnect_delay is not None:
            check_seconds(owner, "reconnect_delay", reconnect_delay)
        if failover_timeout is not None:
            check_seconds(owner, "failover_timeout", failover_timeout, allow_zero=False)
        self.name = owner
        self.use_pool = bool(use_pool)
        self.enable_monitoring = bool(enable_monitoring)
        self.auto_reconnect = bool(auto_reconnect)
        self.auto_failback = bool(auto_failback)
        self.failover_timeout = failover_timeout
        self._retry_max = reconnect_attempts
        self._retry_delay = reconnect_delay
        self._pool_options = pool_options
        self._pool: LDAPPool | None = None
        self._connected = False
        self._auto_monitor = False
        self._last_activity: float | None = None
        self._ops = OperationCounters()
        self._leases: dict[int, Lease] = {}
        self._thresholds: dict[str, float] = {}
        self._process = ProcessFigures()
        self._window = _Window()
        self._monitor_window = _Window()
        self._monitor: gevent.Greenlet | None = None
        #: The monitoring greenlet's latest health result and alerts, and how many rounds it ran.
        self.last_health: ConnectionResult | None = None
        self.last_alerts: list[dict[str, Any]] = []
        self.monitor_rounds = 0
        #: How many times auto_failback retired connections on a less preferred server.
        self.failbacks = 0

    # -- HA constructors -------------------------------------------------------------------------

    @classmethod
    def with_failover(
        cls, connection_infos: Sequence[ConnectionInfo], **kwargs: Any
    ) -> LDAPConnectionManager:
        """A manager over several servers, tried by ``priority`` (then list order) for each new connection."""
        if isinstance(connection_infos, ConnectionInfo) or len(list(connection_infos)) < 1:
            raise ConfigurationError("with_failover needs a list of ConnectionInfo")
        kwargs.setdefault("reconnect_attempts", 1)
        return cls(list(connection_infos), **kwargs)

    @classmethod
    def create_ha_cluster(
        cls,
        connection_infos: Sequence[ConnectionInfo],
        failover_timeout: float = 5,
        health_check_interval: float = 10,
        auto_failback: bool = True,
        **kwargs: Any,
    ) -> LDAPConnectionManager:
        """See :func:`create_ha_cluster`."""
        manager = cls.with_failover(
            connection_infos, failover_timeout=failover_timeout, health_check_interval=health_check_interval,
            auto_failback=auto_failback, **kwargs,
        )
        manager._auto_monitor = True
        return manager

    # -- the pool ---------------------------------------------------------------------------------

    @property
    def pool(self) -> LDAPPool | None:
        """The :class:`LDAPPool` underneath (None before the first use or after :meth:`disconnect`)."""
        return self._pool

    def _ensure_pool(self) -> LDAPPool:
        pool = self._pool
        if pool is None or pool.closed:
            info = self.connection_info
            options = dict(self._pool_options)
            options.setdefault("keepalive", min(self.health_check_interval, 300.0))
            pool = self._pool = build_pool(
                self.connection_infos, name=self.name, min_size=info.pool_size, max_size=info.max_pool_size,
                checkout_timeout=info.pool_timeout, connect_timeout=self.failover_timeout,
                retry_max=self._retry_max, retry_delay=self._retry_delay, use_pool=self.use_pool, **options,
            )
            threshold = self.circuit_breaker_threshold
            if threshold is not None and pool.server_pool is not None:
                for server in pool.server_pool:  # shared by every pool using the address
                    server.health.failure_threshold = threshold
            if self._auto_monitor:
                self.start_monitoring()
        return pool

    def _record(self, ok: bool, seconds: float) -> None:
        if self.enable_monitoring:
            self._ops.record(ok, seconds)
        if ok:
            self._last_activity = time.time()

    # -- the documented calls -------------------------------------------------------------------------

    def connect(self) -> ConnectionResult:
        """Open the pool and prove it works (a connection, bound, answers a WhoAmI); report, never raise.

        Waits at most the info's ``timeout`` for the first connection.
        """
        started = time.monotonic()
        info = self.connection_info
        result = ConnectionResult(False, info.host, info.port, auth_method=info.auth_method,
                                  encryption=info.encryption)
        try:
            pool = self._ensure_pool()
            self._round_trip(pool, info.timeout, result)
        except AuthenticationFailed as error:
            result.auth_error = _describe(error)
        except TLSVerificationError as error:
            result.connection_error = _describe(error)
        except _REPORTED as error:
            result.connection_error = _describe(error)
        result.connection_time = (time.monotonic() - started) * 1000.0
        self._record(result.connected, result.connection_time / 1000.0)
        self._connected = result.connected
        if result.connected:
            logger.info("%s: connected to %s:%s in %.1f ms (%s, %s)", self.name, result.host, result.port,
                        result.connection_time, result.auth_method, result.encryption)
        else:
            logger.warning("%s: connect failed: %s", self.name, result.auth_error or result.connection_error)
            if not self.auto_reconnect and self._pool is not None:
                pool, self._pool = self._pool, None  # before closing yields: a new pool must not be lost
                pool.close(timeout=0)
        return result

    def _round_trip(self, pool: LDAPPool, timeout: float, result: ConnectionResult) -> None:
        started = time.monotonic()
        conn = checkout(pool, timeout)
        try:
            conn.whoami_s()
        except BaseException as error:
            pool.release(conn, error)
            raise
        pool.release(conn)
        result.response_time = (time.monotonic() - started) * 1000.0
        result.host, result.port = server_of(conn)
        result.connected = True
        self._last_activity = result.last_activity = time.time()

    def disconnect(self) -> bool:
        """Close the pool (connections in use are closed when they come back); True when done.

        The monitoring greenlet, if running, is stopped too.
        """
        self.stop_monitoring()
        pool, self._pool = self._pool, None
        self._connected = False
        if pool is not None:
            pool.close(timeout=5)
            logger.info("%s: disconnected", self.name)
        return True

    def is_connected(self) -> bool:
        """Whether the last connect() or health check succeeded and the pool is open."""
        return self._connected and self._pool is not None and not self._pool.closed

    def get_connection(self, timeout: float | None = None) -> Any:
        """Lend a connection: ``with manager.get_connection() as conn:`` (opens the pool if needed).

        The connection is checked out at once (``timeout``: seconds to wait,
        default the info's ``pool_timeout``); without ``with``, the returned
        lease stands for the connection and goes back with
        :meth:`return_connection`.  An error raised in the block propagates
        unchanged.

        :raises PoolTimeout, PoolExhausted, ConnectionTimeout, ConnectionUnhealthy,
            AuthenticationFailed, SSLError: see :mod:`geventpool.ldap.compat.apierrors`.
        """
        pool = self._ensure_pool()
        record = self._record
        if not self.use_pool:
            return _UnpooledLease(pool, record)
        started = time.monotonic()
        try:
            conn = checkout(pool, timeout)
        except BaseException:
            record(False, time.monotonic() - started)
            raise
        lease = _ManagedLease(self, pool, conn, started, record)
        self._leases[id(conn)] = lease
        return lease

    def return_connection(self, connection: Any, error: BaseException | None = None) -> bool:
        """Give back a connection got from :meth:`get_connection` without ``with``; False if not ours."""
        lease = connection if isinstance(connection, Lease) else self._leases.get(id(connection))
        if lease is None or self._leases.get(id(lease.conn)) is not lease:
            return False
        return lease.finish(error)

    def health_check(self) -> ConnectionResult:
        """An LDAP round trip (WhoAmI) on a pooled connection; reports, never raises."""
        return self._health(record=True)

    def _health(self, record: bool) -> ConnectionResult:
        info = self.connection_info
        result = ConnectionResult(False, info.host, info.port, auth_method=info.auth_method,
                                  encryption=info.encryption, last_activity=self._last_activity)
        pool = self._pool
        started = time.monotonic()
        if pool is None or pool.closed:
            result.connection_error = "not connected"
        else:
            try:
                self._round_trip(pool, min(info.timeout, info.pool_timeout), result)
            except AuthenticationFailed as error:
                result.auth_error = _describe(error)
            except _REPORTED as error:
                result.connection_error = _describe(error)
        if record:
            self._record(result.connected, time.monotonic() - started)
        if pool is not None and not pool.closed:
            self._connected = result.connected
        result.last_activity = self._last_activity
        return result

    def get_metrics(self) -> PerformanceMetrics:
        """Operation counts and durations, plus the pool's figures (see :class:`PerformanceMetrics`)."""
        ops = self._ops
        memory_peak_mb, cpu_usage_percent = self._process.sample()
        metrics = PerformanceMetrics(
            memory_peak_mb=memory_peak_mb, cpu_usage_percent=cpu_usage_percent,
            total_operations=ops.total, successful_operations=ops.successful, failed_operations=ops.failed,
            success_rate=100.0 * ops.successful / ops.total if ops.total else 100.0,
            average_duration=1000.0 * ops.seconds / ops.total if ops.total else 0.0,
        )
        pool = self._pool
        if pool is not None:
            stats = pool.stats()
            metrics.pool_size = int(stats["pool_size"])
            metrics.max_pool_size = int(stats["pool_max"])
            metrics.pool_in_use = int(stats["pool_in_use"])
            metrics.pool_utilization = 100.0 * stats["pool_in_use"] / stats["pool_max"]
            checkouts = int(stats["requests_num"])
            opened = int(stats["connections_num"])
            metrics.checkouts = checkouts
            metrics.connections_opened = opened
            if checkouts:
                metrics.connection_reuse_rate = 100.0 * max(checkouts - opened, 0) / checkouts
            if opened:
                metrics.average_connection_time = stats["connections_ms"] / opened
        return metrics

    # -- thresholds and alerts ---------------------------------------------------------------------------

    def set_thresholds(
        self,
        max_connection_time: float | None = None,
        min_success_rate: float | None = None,
        max_pool_utilization: float | None = None,
    ) -> None:
        """Set the alert thresholds (ms, %, %); ``None`` turns one off.

        :raises ConfigurationError: a negative number, or a rate outside 0..100.
        """
        given = {"max_connection_time": max_connection_time, "min_success_rate": min_success_rate,
                 "max_pool_utilization": max_pool_utilization}
        for key, value in given.items():
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigurationError(f"{self.name}: {key} must be a number >= 0, got {value!r}")
            if key != "max_connection_time" and value > 100:
                raise ConfigurationError(f"{self.name}: {key} is a percentage (0..100), got {value!r}")
        self._thresholds = {k: float(v) for k, v in given.items() if v is not None}

    def check_performance(self) -> list[dict[str, Any]]:
        """The alerts for what happened since the previous call (utilization: now).

        Each alert is a dict: ``metric``, ``message``, ``current_value``,
        ``threshold``.  ``max_connection_time`` judges the connections opened
        since the previous call, ``min_success_rate`` the operations run
        since then; an alert clears once a window is within its threshold.
        """
        return self._evaluate(self._window)

    def _evaluate(self, window: _Window) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = []
        limits = self._thresholds
        ops = self._ops.copy()
        done = OperationCounters(ops.total - window.ops.total, ops.successful - window.ops.successful,
                                 ops.failed - window.ops.failed, ops.seconds - window.ops.seconds)
        window.ops = ops
        pool = self._pool
        stats = pool.stats() if pool is not None else {}
        opened = stats.get("connections_num", 0.0) - window.connections
        spent = stats.get("connections_ms", 0.0) - window.connection_ms
        window.connections = stats.get("connections_num", 0.0)
        window.connection_ms = stats.get("connections_ms", 0.0)
        limit = limits.get("max_connection_time")
        if limit is not None and opened > 0 and spent / opened > limit:
            alerts.append(_alert("max_connection_time", "connection time above threshold",
                                 round(spent / opened, 3), limit))
        limit = limits.get("min_success_rate")
        if limit is not None and done.total > 0:
            rate = 100.0 * done.successful / done.total
            if rate < limit:
                alerts.append(
                    _alert("min_success_rate", "success rate below threshold", round(rate, 3), limit)
                )
        limit = limits.get("max_pool_utilization")
        if limit is not None and stats:
            utilization = 100.0 * stats["pool_in_use"] / stats["pool_max"]
            if utilization > limit:
                alerts.append(_alert("max_pool_utilization", "pool utilization above threshold",
                                     round(utilization, 3), limit))
        return alerts

    # -- monitoring --------------------------------------------------------------------------------------

    def start_monitoring(self) -> None:
        """Start the monitoring greenlet (idempotent): every ``health_check_interval`` seconds a
        health check, the thresholds (alerts logged as WARNING) and, with ``auto_failback``, failback."""
        if self._monitor is not None and not self._monitor.dead:
            return
        self._monitor = gevent.spawn(self._monitor_loop)
        self._monitor.name = f"{self.name}-monitor"

    def stop_monitoring(self, timeout: float = 5.0) -> None:
        """Stop the monitoring greenlet and wait for it to end (idempotent)."""
        monitor, self._monitor = self._monitor, None
        if monitor is not None and monitor is not gevent.getcurrent():
            monitor.kill(block=True, timeout=timeout)

    @property
    def monitoring(self) -> bool:
        """Whether the monitoring greenlet runs."""
        return self._monitor is not None and not self._monitor.dead

    def _monitor_loop(self) -> None:
        while True:
            try:
                self.monitor_once()
            except Exception:
                logger.exception("%s: monitoring round failed", self.name)
            gevent.sleep(self.health_check_interval)

    def monitor_once(self) -> ConnectionResult:
        """One monitoring round, now (what the greenlet runs); returns the health result."""
        was = self._connected
        result = self._health(record=False)
        if was and not result.connected:
            logger.warning(
                "%s: health check failed: %s", self.name, result.auth_error or result.connection_error
            )
        elif result.connected and not was and self.last_health is not None:
            logger.info("%s: health check passes again", self.name)
        self.last_health = result
        self.last_alerts = self._evaluate(self._monitor_window)
        for alert in self.last_alerts:
            logger.warning("%s: %s", self.name, alert["message"])
        if self.auto_failback and len(self.connection_infos) > 1:
            self._failback()
        self.monitor_rounds += 1
        return result

    def _failback(self) -> None:
        """Retire idle connections on a less preferred server once the preferred one accepts connections."""
        pool = self._pool
        if pool is None or pool.closed:
            return
        preferred = self.connection_infos[0]
        target = (preferred.host, preferred.port)
        elsewhere = [slot for slot in pool.snapshot().idle_slots if server_of(slot.conn) != target]
        if not elsewhere:
            return
        limit = self.failover_timeout or preferred.timeout
        try:
            sock = gevent.socket.create_connection(target, timeout=limit)
        except OSError:
            return
        sock.close()
        dropped = pool.drop_idle()
        self.failbacks += 1
        logger.info("%s: %s:%s accepts connections again: %d idle connection(s) retired (failback)",
                    self.name, preferred.host, preferred.port, dropped)

    def __enter__(self) -> LDAPConnectionManager:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.disconnect()

    def __repr__(self) -> str:
        servers = ", ".join(f"{i.host}:{i.port}" for i in self.connection_infos)
        state = "connected" if self.is_connected() else "not connected"
        return f"<{type(self).__name__} {self.name!r} [{servers}] {state}>"

    def __reduce__(self) -> Any:
        raise TypeError(f"{type(self).__name__} objects cannot be pickled")

    def iter_leases(self) -> Iterator[Lease]:
        """The connections lent without ``with`` and not yet returned."""
        return iter(list(self._leases.values()))


class _ManagedLease(Lease):
    __slots__ = ("_manager",)

    def __init__(self, manager: LDAPConnectionManager, pool: LDAPPool, conn: LDAPConnection, started: float,
                 record: Callable[[bool, float], None]) -> None:
        super().__init__(pool, conn, started, record)
        self._manager = manager

    def finish(self, error: BaseException | None = None) -> bool:
        leases = self._manager._leases
        if leases.get(id(self.conn)) is self:
            del leases[id(self.conn)]
        return super().finish(error)


def create_ha_cluster(
    connection_infos: Sequence[ConnectionInfo],
    failover_timeout: float = 5,
    health_check_interval: float = 10,
    auto_failback: bool = True,
    **kwargs: Any,
) -> LDAPConnectionManager:
    """A manager over several servers: priority order, automatic failover, failback.

    Each new connection tries the servers by ``priority`` (lower first),
    each attempt bounded by ``failover_timeout`` seconds; a connection whose
    server went away is not lent again (the caller gets one on a live
    server).  A monitoring greenlet (started at the first use) checks health
    every ``health_check_interval`` seconds and, with ``auto_failback``,
    retires idle connections on a less preferred server once the preferred
    one accepts connections again.

    :raises ConfigurationError: an invalid ConnectionInfo, or servers disagreeing on identity or TLS.
    """
    return LDAPConnectionManager.create_ha_cluster(
        connection_infos, failover_timeout=failover_timeout, health_check_interval=health_check_interval,
        auto_failback=auto_failback, **kwargs,
    )


def _alert(metric: str, message: str, current: float, threshold: float) -> dict[str, Any]:
    return {"metric": metric, "message": f"{message}: {current} (threshold {threshold})",
            "current_value": current, "threshold": threshold}


def _describe(error: BaseException) -> str:
    if isinstance(error, ldap.LDAPError) and error.args and isinstance(error.args[0], dict):
        info = error.args[0]
        text = "; ".join(str(info[k]) for k in ("desc", "info") if info.get(k))
        return f"{type(error).__name__}: {text}"
    return f"{type(error).__name__}: {error}"

