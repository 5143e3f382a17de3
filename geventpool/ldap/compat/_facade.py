"""What the documented API's classes share: an LDAPPool built from ConnectionInfo, leases, counters.

Internal to :mod:`geventpool.ldap.compat.manager` and :mod:`geventpool.ldap.compat.documented`.
Everything here is greenlet-safe (no switch between a check and its update);
nothing is thread-safe.
"""

from __future__ import annotations

import errno
import inspect
import logging
import resource
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import ldap

from ...errors import BackendUnavailable, ConfigurationError, ConnectTimeout, TooManyWaiters
from ...errors import PoolTimeout as CorePoolTimeout
from ...pool import ConnectionPool as CorePool
from ...servers import POOLING_STRATEGY_FIRST_ACTIVE
from ..connection import LDAPConnection
from ..pool import LDAPPool
from ..servers import Server, ServerPool
from ..tls import TLSPolicy
from .apierrors import ConnectionTimeout, ConnectionUnhealthy, PoolExhausted, PoolTimeout
from .info import ConnectionInfo

__all__ = [
    "build_pool", "checkout", "Lease", "OperationCounters", "hung_up", "sorted_infos", "server_of",
    "warn_compression", "check_pool_options", "ProcessFigures",
]

logger = logging.getLogger("geventpool.ldap.compat.manager")

_TIMEOUTS = (ConnectTimeout, ldap.TIMEOUT, TimeoutError, socket.timeout)


def sorted_infos(owner: str, infos: Sequence[ConnectionInfo]) -> list[ConnectionInfo]:
    """Check every ConnectionInfo; return them by priority (stable).

    A cluster binds with one identity and one TLS set-up: those of the most
    preferred server; the others must agree or leave them unset.

    :raises ConfigurationError: no info, not ConnectionInfo, invalid (every problem), or disagreeing.
    """
    if isinstance(infos, ConnectionInfo):
        infos = [infos]
    infos = list(infos)
    if not infos:
        raise ConfigurationError(f"{owner}: at least one ConnectionInfo is needed")
    for info in infos:
        if not isinstance(info, ConnectionInfo):
            raise ConfigurationError(f"{owner}: expected ConnectionInfo, got {type(info).__name__}")
        info.check()
    ordered = sorted(infos, key=lambda i: i.priority)
    first = ordered[0]
    for info in ordered[1:]:
        for name in ("bind_dn", "use_tls", "ca_cert_path", "client_cert_path", "validate_cert"):
            mine, theirs = getattr(first, name), getattr(info, name)
            if theirs not in (None, mine) and not (name == "validate_cert" and theirs is True):
                raise ConfigurationError(
                    f"{owner}: {info.host}:{info.port} has {name}={theirs!r} but the preferred server "
                    f"has {mine!r}; a cluster uses one identity and one TLS set-up"
                )
        if info.password is not None and info.password != first.password:
            raise ConfigurationError(
                f"{owner}: {info.host}:{info.port} has another password than the preferred server"
            )
    return ordered


def build_pool(
    infos: Sequence[ConnectionInfo],
    *,
    name: str,
    min_size: int,
    max_size: int,
    checkout_timeout: float,
    connect_timeout: float | None = None,
    retry_max: int | None = None,
    retry_delay: float | None = None,
    use_pool: bool = True,
    **core_options: Any,
) -> LDAPPool:
    """An :class:`LDAPPool` over ``infos`` (already sorted and checked), URIs in priority order.

    The bind identity, TLS files and timeouts come from ``infos[0]``; with a
    ``password_callback`` the pool asks it for the password at each new bind.
    """
    first = infos[0]
    tls = TLSPolicy(
        verify=first.validate_cert, ca_file=first.ca_cert_path, cert_file=first.client_cert_path,
        key_file=first.client_key_path,
    )
    credentials = first.credentials()
    # priority order through the core's servers: shared health, circuit breaker, probe, failback
    servers = ServerPool(
        [Server(info.uri, priority=info.priority) for info in infos], POOLING_STRATEGY_FIRST_ACTIVE
    )
    pool = LDAPPool(
        servers,
        first.bind_dn or None,
        "placeholder" if first.password_callback is not None else (first.password or None),
        size=max_size,
        retry_max=max(1, first.max_retries) if retry_max is None else retry_max,
        retry_delay=first.retry_delay if retry_delay is None else retry_delay,
        use_tls=first.use_tls,
        timeout=first.timeout,
        use_pool=use_pool,
        connect_timeout=first.timeout if connect_timeout is None else connect_timeout,
        checkout_timeout=checkout_timeout,
        tls=tls,
        min_size=min(min_size, max_size),
        name=name,
        **core_options,
    )
    # the pool's identity: a callback-backed one asks for the password at each bind
    pool._credentials = credentials
    return pool


def checkout(pool: LDAPPool, timeout: float | None) -> LDAPConnection:
    """Check a connection out of ``pool``, skipping any whose server hung up while it idled.

    :raises PoolExhausted: all in use and ``timeout`` is 0, or the waiting queue is full.
    :raises PoolTimeout: none free within ``timeout``.
    :raises ConnectionTimeout: connecting keeps timing out.
    :raises ConnectionUnhealthy: connecting keeps failing (no server answers).
    :raises AuthenticationFailed, SSLError: the bind or TLS failed (not retried).
    :raises PoolClosed: the pool is closed.
    """
    limit = pool.timeout if timeout is None else timeout
    deadline = time.monotonic() + limit
    for _ in range(pool.max_size + 1):
        conn = _get(pool, max(deadline - time.monotonic(), 0.0), limit)
        if not hung_up(conn):
            return conn
        logger.info("%s: %r was closed by the server while idle; not lent", pool.name, conn)
        pool.release(conn, ldap.SERVER_DOWN({"desc": "Can't contact LDAP server",
                                             "info": "closed by the server while idle"}))
    return _get(pool, max(deadline - time.monotonic(), 0.0), limit)


def _get(pool: LDAPPool, timeout: float, limit: float) -> LDAPConnection:
    try:
        return pool.acquire(timeout)
    except TooManyWaiters as error:
        raise PoolExhausted(str(error)) from error
    except BackendUnavailable as error:
        cause = error.__cause__
        if isinstance(cause, _TIMEOUTS):
            raise ConnectionTimeout(str(error)) from cause
        raise ConnectionUnhealthy(str(error)) from cause
    except CorePoolTimeout as error:
        if limit == 0:
            raise PoolExhausted(f"{pool.name}: every connection is in use (timeout=0)") from None
        raise PoolTimeout(str(error)) from error.__cause__


def hung_up(conn: LDAPConnection) -> bool:
    """Tell, without waiting, whether the server closed an idle connection (EOF or reset pending)."""
    fd = conn.__dict__.get("_fd", -1)
    if conn.broken or conn.closed:
        return True
    if fd is None or fd < 0:
        return False
    try:
        peek = socket.socket(fileno=socket.dup(fd))  # a duplicate: closing it leaves the connection
    except OSError:
        return True
    try:
        data = peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False  # nothing to read: alive
    except OSError as error:
        return error.errno in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN, errno.EBADF)
    finally:
        peek.close()
    return data == b""


def server_of(conn: Any) -> tuple[str, int]:
    """``(host, port)`` of the server a pooled connection talks to."""
    uri = str(conn.__dict__.get("_uri") or "")
    rest = uri.split("://", 1)[-1].rstrip("/")
    host, _, port = rest.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return rest, 0


class Lease:
    """One checked-out connection: ``with lease as conn`` returns it when the block ends.

    Outside a ``with`` block the lease stands for the connection (attribute
    access goes to it) and goes back with ``return_connection(lease)``.
    An error raised in the block propagates unchanged; the pool's discard
    rule applies to it (a lost connection is closed, not reused).
    """

    __slots__ = ("_pool", "conn", "_started", "_done", "_record")

    def __init__(
        self, pool: LDAPPool, conn: LDAPConnection, started: float,
        record: Callable[[bool, float], None] | None,
    ) -> None:
        self._pool = pool
        self.conn = conn
        self._started = started
        self._done = False
        self._record = record

    def __enter__(self) -> LDAPConnection:
        return self.conn

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.finish(exc)

    def finish(self, error: BaseException | None = None) -> bool:
        """Give the connection back (once); False if it was already given back."""
        if self._done:
            return False
        self._done = True
        try:
            self._pool.release(self.conn, error)
        finally:
            if self._record is not None:
                self._record(error is None, time.monotonic() - self._started)
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    def __repr__(self) -> str:
        state = "returned" if self._done else "out"
        return f"<Lease {state} {self.conn!r}>"


@dataclass
class OperationCounters:
    """Counts and durations of operations (greenlet-safe: updates never switch)."""

    total: int = 0
    successful: int = 0
    failed: int = 0
    seconds: float = 0.0

    def record(self, ok: bool, seconds: float) -> None:
        """Count one operation."""
        self.total += 1
        if ok:
            self.successful += 1
        else:
            self.failed += 1
        self.seconds += seconds

    def copy(self) -> OperationCounters:
        """A snapshot (for windows: the difference of two snapshots)."""
        return OperationCounters(self.total, self.successful, self.failed, self.seconds)



_COMPRESSION_WARNED = False


def warn_compression(owner: str, enabled: bool) -> None:
    """``enable_compression=True``: LDAP has no compression; say so once per process."""
    global _COMPRESSION_WARNED
    if enabled and not _COMPRESSION_WARNED:
        _COMPRESSION_WARNED = True
        logger.warning(
            "%s: enable_compression has no effect: LDAP (RFC 4511) has no compression; "
            "accepted for ldap_core_shared compatibility", owner,
        )


def check_pool_options(owner: str, options: dict[str, Any]) -> None:
    """Refuse keyword arguments neither :class:`LDAPPool` nor the core pool takes (at construction,
    not at the first connect).

    :raises ConfigurationError: names the unknown ones.
    """
    known = set(inspect.signature(LDAPPool.__init__).parameters) | set(
        inspect.signature(CorePool.__init__).parameters
    )
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigurationError(f"{owner}: unknown keyword arguments: {', '.join(unknown)}")


class ProcessFigures:
    """The process's peak resident memory and its CPU use over a window (for ``get_metrics``)."""

    def __init__(self) -> None:
        self._cpu = time.process_time()
        self._wall = time.monotonic()

    def sample(self) -> tuple[float, float]:
        """``(memory_peak_mb, cpu_usage_percent)``: peak RSS since the process started, and the
        process's CPU time over the wall time since the previous sample (100 = one CPU busy)."""
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        cpu, wall = time.process_time(), time.monotonic()
        elapsed = wall - self._wall
        percent = 100.0 * (cpu - self._cpu) / elapsed if elapsed > 0 else 0.0
        self._cpu, self._wall = cpu, wall
        return peak_kb / 1024.0, percent
