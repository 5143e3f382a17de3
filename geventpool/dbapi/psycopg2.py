"""A gevent wait callback for psycopg2 that honours connect_timeout and cancels on kill.

psycopg2 calls a process-wide "wait callback" whenever libpq would block;
:func:`wait_callback` waits for the socket with gevent instead, so psycopg2
stops freezing the hub.  Unlike psycogreen's callback it

- enforces libpq's ``connect_timeout`` (from the DSN, the keyword arguments
  or ``PGCONNECT_TIMEOUT``), which psycopg2 never passes to a callback; and
- when the waiting greenlet is killed or times out in the middle of a
  query, sends a cancel request to the server (``conn.cancel()``) before
  psycopg2 closes the connection, so the server does not keep running it.

The cancel request runs in gevent's thread pool (``PQcancel`` blocks) and
the callback waits for it to finish, ignoring further kills meanwhile: the
connection must not be freed while the cancel uses it.  On an unreachable
server that wait lasts as long as the kernel's TCP connect timeout.

:func:`install` is what :class:`geventpool.dbapi.ConnectionPool` calls when
given psycopg2 (``green=False`` opts out).  Not thread-safe to install;
the callback itself is safe in every greenlet of the thread that runs it.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable

import gevent
from gevent.socket import wait_read, wait_write

__all__ = [
    "wait_callback",
    "install",
    "uninstall",
    "installed",
    "cancel_query",
    "register_canceller",
    "unregister_canceller",
    "CANCEL_TIMEOUT",
]

logger = logging.getLogger("geventpool.dbapi.psycopg2")

_CONNECTING = 0  # psycopg2.extensions.STATUS_SETUP: the connection is being established
# psycopg2.extensions.POLL_*: fixed by psycopg2's C API; module constants keep the
# callback (run on every wait of every query) free of import statements.
POLL_OK = 0
POLL_READ = 1
POLL_WRITE = 2


def _operational_error(message: str) -> Exception:
    import psycopg2  # noqa: PLC0415 - an optional driver, imported when used

    error: Exception = psycopg2.OperationalError(message)
    return error


def _connect_timeout(conn: Any) -> float | None:
    import psycopg2.extensions  # noqa: PLC0415 - an optional driver, imported when used

    try:
        value = psycopg2.extensions.parse_dsn(conn.dsn).get("connect_timeout")
    except Exception:
        value = None
    if value is None:
        value = os.environ.get("PGCONNECT_TIMEOUT")
    try:
        seconds = float(value) if value is not None else 0.0
    except ValueError:
        return None
    if seconds <= 0:
        return None
    return max(seconds, 2.0)  # libpq's own minimum


def wait_callback(conn: Any) -> None:
    """Wait for psycopg2's connection ``conn`` cooperatively (see the module docstring).

    :raises psycopg2.OperationalError: ``connect_timeout`` expired while connecting.
    """
    deadline = None
    connecting = conn.status == _CONNECTING
    if connecting:
        timeout = _connect_timeout(conn)
        if timeout is not None:
            deadline = time.monotonic() + timeout
    while True:
        state = conn.poll()
        if state == POLL_OK:
            return
        remaining = None
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _operational_error("timeout expired (connect_timeout)")
        try:
            if state == POLL_READ:
                wait_read(conn.fileno(), remaining, _Expired)
            elif state == POLL_WRITE:
                wait_write(conn.fileno(), remaining, _Expired)
            else:
                raise _operational_error(f"unexpected state from poll(): {state!r}")
        except _Expired:
            raise _operational_error("timeout expired (connect_timeout)") from None
        except BaseException:
            if not connecting:
                cancel_query(conn)
            raise


class _Expired(Exception):
    """Internal: the connect deadline passed while waiting for the socket."""


#: Seconds a cancel request may take (its side connection included).
CANCEL_TIMEOUT = 5.0

# id(conn) -> (conn, how to open a side connection to the same server, as the same user, or None;
# None, or a cancel to run instead, before the connection is closed)
_cancellers: dict[int, tuple[Any, Callable[[], Any] | None, Callable[[Any], None] | None]] = {}


def register_canceller(
    conn: Any, connect: Callable[[], Any] | None, cancel: Callable[[Any], None] | None = None
) -> None:
    """Let :func:`cancel_query` cancel ``conn``'s queries through a side connection ``connect()``,
    or by calling ``cancel(conn)`` (in the interrupted greenlet, before the connection closes:
    a cancel that must reach the server while the connection is open, through PgBouncer)."""
    _cancellers[id(conn)] = (conn, connect, cancel)


def unregister_canceller(conn: Any) -> None:
    """Forget ``conn`` (it is being closed)."""
    entry = _cancellers.get(id(conn))
    if entry is not None and entry[0] is conn:
        del _cancellers[id(conn)]


def cancel_query(conn: Any) -> None:
    """Ask the server to cancel the query running on ``conn``: green, bounded, in the background.

    psycopg2's own ``cancel()`` holds the GIL while libpq waits for the
    server, which would freeze the whole process (threads included) for as
    long as the server takes.  So the cancel is sent as ``SELECT
    pg_cancel_backend(pid)`` on a side connection opened the way the pool
    opens its connections, through the wait callback, within
    :data:`CANCEL_TIMEOUT`, by a greenlet of its own: the interrupted caller
    goes on at once (its connection is discarded; the cancel names the
    backend by pid, so it works after that).  Best effort: failures are
    logged at DEBUG; a connection the pool did not register is left to the
    server.
    """
    if conn.closed:
        return
    entry = _cancellers.get(id(conn))
    if entry is None or entry[0] is not conn:
        logger.debug("no side connection known for %r: its query is left to the server", conn)
        return
    if entry[2] is not None:
        entry[2](conn)
        return
    if entry[1] is not None:
        pid = conn.get_backend_pid()  # cached by libpq: no I/O
        gevent.spawn(_send_cancel, entry[1], pid)


def _send_cancel(connect: Callable[[], Any], pid: int) -> None:
    side = None
    try:
        with gevent.Timeout(CANCEL_TIMEOUT, _Expired()):
            side = connect()
            side.autocommit = True
            cursor = side.cursor()
            cursor.execute("SELECT pg_cancel_backend(%s)", (pid,))
            cursor.close()
    except _Expired:
        logger.debug("cancel of backend %s timed out after %g s", pid, CANCEL_TIMEOUT)
    except Exception as error:
        logger.debug("cancel of backend %s failed: %r", pid, error)
    finally:
        if side is not None:
            try:
                side.close()
            except Exception:
                pass


def installed() -> bool:
    """Whether :func:`wait_callback` is psycopg2's current wait callback."""
    import psycopg2.extensions  # noqa: PLC0415 - an optional driver, imported when used

    return psycopg2.extensions.get_wait_callback() is wait_callback


def install() -> None:
    """Make :func:`wait_callback` psycopg2's wait callback (process-wide); idempotent.

    Replaces another callback (psycogreen's, say) with an INFO log line.
    """
    import psycopg2.extensions  # noqa: PLC0415 - an optional driver, imported when used

    current = psycopg2.extensions.get_wait_callback()
    if current is wait_callback:
        return
    if current is not None:
        logger.info("replacing psycopg2 wait callback %r with geventpool's", current)
    psycopg2.extensions.set_wait_callback(wait_callback)


def uninstall() -> None:
    """Remove :func:`wait_callback` (psycopg2 blocks the hub again)."""
    import psycopg2.extensions  # noqa: PLC0415 - an optional driver, imported when used

    if psycopg2.extensions.get_wait_callback() is wait_callback:
        psycopg2.extensions.set_wait_callback(None)
