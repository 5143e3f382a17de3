"""MySQL and MariaDB: PyMySQL on gevent sockets, query cancel, session reset.

- :func:`green_pymysql_connect` opens a PyMySQL connection over a gevent
  socket, so every query yields to the hub without monkey-patching; the
  whole connect (TCP and login) is bounded by ``connect_timeout``.  TLS,
  asked for or PyMySQL's "preferred" default, goes through gevent's
  ``ssl`` with PyMySQL's own context; the preferred mode's context (no
  verification, loading it costs tens of milliseconds of CPU) is made once
  per process instead of once per connection.
- :func:`kill_query` asks the server to stop the statement a connection is
  running (``KILL QUERY <thread id>`` on a side connection), in a greenlet
  of its own, bounded by :data:`CANCEL_TIMEOUT`.
- :func:`reset_session` sends ``COM_RESET_CONNECTION``: one round trip that
  rolls back and brings the session back to the server's defaults (session
  variables, isolation level, user variables, temporary tables, prepared
  statements, locks).  mysqlclient (MySQLdb) has no method for it, so the
  C library's ``mysql_reset_connection`` is called on its native handle.

Greenlet-safe as far as the connections are: one greenlet per connection.
"""

from __future__ import annotations

import ctypes
import logging
import socket
from typing import Any, Callable

import gevent
import gevent.socket

__all__ = [
    "green_pymysql_connect",
    "kill_query",
    "reset_session",
    "can_reset_session",
    "CANCEL_TIMEOUT",
]

logger = logging.getLogger("geventpool.dbapi.mysql")

#: Seconds a KILL QUERY may take (its side connection included).
CANCEL_TIMEOUT = 5.0
_COM_RESET_CONNECTION = 0x1F
_CR_CONN_HOST_ERROR = 2003  # "Can't connect to MySQL server": PyMySQL's own code for a failed connect


def green_pymysql_connect(*args: Any, **kwargs: Any) -> Any:
    """``pymysql.connect(*args, **kwargs)`` over a gevent socket (see the module doc).

    :raises pymysql.OperationalError: the server cannot be reached, refuses
        the login, or the connect took longer than ``connect_timeout`` (10 s
        by default, as in PyMySQL).
    """
    import pymysql  # noqa: PLC0415 - an optional driver, imported when used

    connection_class = pymysql.connections.Connection
    preferred = (
        not args
        and not any(name in kwargs for name in _TLS_KWARGS)
        and "ssl_disabled" in connection_class.__init__.__code__.co_varnames
    )
    if preferred:  # PyMySQL would build a new TLS context for each connection, in the hub
        kwargs = {**kwargs, "ssl_disabled": True}
    conn = connection_class(*args, defer_connect=True, **kwargs)
    if preferred and hasattr(conn, "_ssl_required") and getattr(pymysql.connections, "SSL_ENABLED", False):
        conn.ssl, conn._ssl_required = True, False
        conn.ctx = _preferred_context(conn)
    context = getattr(conn, "ctx", None)
    if conn.ssl and context is not None and not isinstance(context, _GreenTLS):
        conn.ctx = _GreenTLS(context)
    timeout = conn.connect_timeout
    sock: Any = None
    try:
        with gevent.Timeout(timeout, _Expired()):
            if conn.unix_socket:
                sock = gevent.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(conn.unix_socket)
                conn.host_info = "Localhost via UNIX socket"
            else:
                sock = gevent.socket.create_connection((conn.host, conn.port))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                conn.host_info = f"socket {conn.host}:{conn.port}"
            conn.connect(sock)
    except _Expired:
        if sock is not None:
            sock.close()
        message = f"Can't connect to MySQL server on {conn.host!r} (timed out after {timeout:g} s)"
        raise pymysql.OperationalError(_CR_CONN_HOST_ERROR, message) from None
    except OSError as error:
        if sock is not None:
            sock.close()
        raise pymysql.OperationalError(
            _CR_CONN_HOST_ERROR, f"Can't connect to MySQL server on {conn.host!r} ({error})"
        ) from error
    return conn


class _Expired(Exception):
    """Internal: a deadline of this module passed."""


#: Keywords by which a caller chooses PyMySQL's TLS (or its option files, which may).
_TLS_KWARGS = ("ssl", "ssl_ca", "ssl_cert", "ssl_key", "ssl_key_password", "ssl_verify_cert",
               "ssl_verify_identity", "ssl_disabled", "read_default_file", "read_default_group")
_preferred: list[Any] = []


def _preferred_context(conn: Any) -> Any:
    """PyMySQL's context for its "preferred" TLS mode (no verification), made once."""
    if not _preferred:
        _preferred.append(conn._create_ssl_ctx({}))
    return _preferred[0]


class _GreenTLS:
    """Wraps PyMySQL's socket with gevent's ``ssl`` (and the caller's, or PyMySQL's, context)."""

    __slots__ = ("context",)

    def __init__(self, context: Any) -> None:
        self.context = context

    def wrap_socket(self, sock: Any, server_hostname: str | None = None) -> Any:
        import gevent.ssl  # noqa: PLC0415 - loads ssl: only when a server offers TLS

        return gevent.ssl.SSLSocket(sock=sock, server_hostname=server_hostname, _context=self.context)


def kill_query(connect: Callable[[], Any], thread_id: int, run: Callable[..., Any] | None = None) -> None:
    """Send ``KILL QUERY thread_id`` on a side connection ``connect()``, in a greenlet of its own.

    ``run(func, *args)`` runs the blocking steps (a thread pool's ``apply``
    for a driver that blocks); None runs them in the greenlet (a green
    driver).  Returns at once; failures are logged at DEBUG.
    """
    gevent.spawn(_send_kill, connect, int(thread_id), run)


def _send_kill(connect: Callable[[], Any], thread_id: int, run: Callable[..., Any] | None) -> None:
    try:
        with gevent.Timeout(CANCEL_TIMEOUT, _Expired()):
            if run is None:
                failure = _kill_on_side_connection(connect, thread_id)
            else:
                failure = run(_kill_on_side_connection, connect, thread_id)
        if failure is not None:  # the statement ended meanwhile ("Unknown thread id"), say
            logger.debug("KILL QUERY %d failed: %r", thread_id, failure)
    except _Expired:
        logger.debug("KILL QUERY %d timed out after %g s", thread_id, CANCEL_TIMEOUT)
    except Exception as error:
        logger.debug("KILL QUERY %d failed: %r", thread_id, error)


def _kill_on_side_connection(connect: Callable[[], Any], thread_id: int) -> Exception | None:
    """Send the KILL; return the driver's error rather than raise it (a thread pool would print
    the traceback of a task that raised, though the caller logs it)."""
    try:
        side = connect()
        try:
            cursor = side.cursor()
            try:
                cursor.execute(f"KILL QUERY {thread_id:d}")
            finally:
                cursor.close()
        finally:
            side.close()
    except Exception as error:
        return error
    return None


def can_reset_session(conn: Any) -> bool:
    """Whether :func:`reset_session` works on ``conn`` (PyMySQL, or MySQLdb with the C function)."""
    if hasattr(conn, "_execute_command") and hasattr(conn, "_read_ok_packet"):
        return True
    return hasattr(conn, "_get_native_connection") and _mysql_reset_connection(conn) is not None


def reset_session(conn: Any) -> None:
    """Send ``COM_RESET_CONNECTION`` on ``conn`` (see the module doc); one round trip.

    The session's ``autocommit`` goes back to the server's default too; the
    pool restores the connection's own afterwards.

    :raises NotImplementedError: the driver offers no way to send it.
    :raises Exception: the driver's error when the server fails it (the
        connection is then discarded by the pool).
    """
    if hasattr(conn, "_execute_command") and hasattr(conn, "_read_ok_packet"):  # PyMySQL
        conn._execute_command(_COM_RESET_CONNECTION, b"")
        conn._read_ok_packet()
        return
    function = _mysql_reset_connection(conn) if hasattr(conn, "_get_native_connection") else None
    if function is None:
        raise NotImplementedError(f"no way to reset the session of {type(conn).__name__}")
    handle = _native_handle(conn)
    if function(handle) != 0:
        import MySQLdb  # noqa: PLC0415 - an optional driver, imported when used

        raise MySQLdb.OperationalError(conn.errno(), conn.error())


_reset_function: dict[str, Any] = {}


def _mysql_reset_connection(conn: Any) -> Any:
    """libmysqlclient's / libmariadb's ``mysql_reset_connection`` as loaded by MySQLdb (or None)."""
    base = type(conn).__mro__[-2]  # MySQLdb._mysql.connection, whose __module__ says "_mysql"
    module = f"{type(conn).__module__.split('.')[0]}.{base.__module__}"
    if module in _reset_function:
        return _reset_function[module]
    function = None
    try:
        import sys  # noqa: PLC0415

        library = ctypes.CDLL(sys.modules[module].__file__)  # its C library is among its dependencies
        function = library.mysql_reset_connection
        function.argtypes = [ctypes.c_void_p]
        function.restype = ctypes.c_int
    except (AttributeError, KeyError, OSError, TypeError):
        function = None
    _reset_function[module] = function
    return function


def _native_handle(conn: Any) -> int:
    capsule = conn._get_native_connection()
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype = ctypes.c_char_p
    get_name.argtypes = [ctypes.py_object]
    pointer: int = get_pointer(capsule, get_name(capsule))
    return pointer
