"""Opening one connection: the connect timeout, the choice of server, its health.

Functions of the pool's internals, kept apart from the checkout path.  They
run in the pool's connector greenlets (and in a server's probe greenlet).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, TypeVar

import gevent

from ._slot import Slot
from .errors import BackendUnavailable, ConnectTimeout
from .servers import Server

if TYPE_CHECKING:
    from .pool import ConnectionPool

__all__ = ["open_slot", "probe_server", "takes_server"]

C = TypeVar("C")


def takes_server(pool: ConnectionPool[Any]) -> bool:
    """Whether the pool's ``_new_connection`` accepts the chosen server as an argument."""
    parameters = inspect.signature(pool._new_connection).parameters.values()
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in parameters
    )


def connect(pool: ConnectionPool[C], server: Server | None) -> C:
    """Call ``_new_connection`` under the connect timeout (the server's, if it has one)."""
    limit = pool.connect_timeout
    if server is not None and server.connect_timeout is not None:
        limit = server.connect_timeout
    where = f" to {server.name}" if server is not None else ""
    with gevent.Timeout(limit, ConnectTimeout(f"{pool.name}: connect{where} took longer than {limit:g} s")):
        conn = pool._new_connection(server) if pool._takes_server else pool._new_connection()  # type: ignore[call-arg]
    if conn is None:
        raise TypeError(f"{type(pool).__name__}._new_connection() returned None")
    return conn


def open_slot(pool: ConnectionPool[C]) -> Slot[C]:
    """Open one connection (failing over across the pool's servers) and wrap it in a slot.

    Connection errors on one server move on to the next candidate and feed
    that server's circuit breaker; any other error stops at once (an auth
    error must never be tried on every replica).

    :raises BackendUnavailable: no server may be tried now.
    """
    started = pool._clock()
    server: Server | None = None
    if pool.server_pool is None:
        conn = connect(pool, None)
    else:
        conn, server = _connect_any(pool)
    now = pool._clock()
    pool._counters["connections_num"] += 1
    pool._counters["connections_ms"] += (now - started) * 1000.0
    lifetime = pool.max_lifetime * (1.0 - pool.lifetime_jitter * pool._rng())
    slot = Slot(pool, conn, next(pool._slot_numbers), now, now + lifetime, server)
    # a new connection idles like a returned one: checked once idle past ping_after
    slot.good_until = min(slot.expires_at, now + pool._ping_window)
    if pool._listeners["connect"]:
        try:
            pool._emit("connect", conn)
        except BaseException:
            pool._close_connection(conn)
            raise
    return slot


def _connect_any(pool: ConnectionPool[C]) -> tuple[C, Server]:
    assert pool.server_pool is not None
    last_error: BaseException | None = None
    for server in pool.server_pool.candidates():
        health = server.health
        if not health.begin_attempt():
            continue
        health.set_probe(pool._probe_server)
        try:
            conn = connect(pool, server)
            if health.failures and pool._can_check:
                # A recovering server must answer, not merely accept: check it once.
                _verify(pool, conn)
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


def _verify(pool: ConnectionPool[C], conn: C) -> None:
    try:
        with gevent.Timeout(pool.keepalive_timeout, ConnectTimeout(f"{pool.name}: check timed out")):
            pool._keepalive(conn)
    except BaseException:
        pool._close_connection(conn)
        raise


def probe_server(pool: ConnectionPool[C], server: Server) -> None:
    """Check a server at the protocol level: a fresh connection, ``_keepalive`` on it, close.

    :raises Exception: whatever connecting or checking raised.
    """
    conn = connect(pool, server)
    try:
        if pool._can_check:
            pool._keepalive(conn)
    finally:
        pool._close_connection(conn)
