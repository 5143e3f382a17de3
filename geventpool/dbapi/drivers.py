"""What the DB-API pool knows about each driver.

A :class:`Driver` answers the questions the pool asks a connection: is this
error a disconnect, in what transaction state is the connection, which
session attributes did a user change, how to ping it and how to cancel a
query in flight.  :func:`driver_for` picks one by the module's name; unknown
modules get :class:`GenericDriver`, which follows DB-API 2.0 alone.

Drivers hold no per-connection state and never yield on their own; the
pings and rollbacks they run yield only if the driver itself is cooperative
(psycopg2 with the wait callback, psycopg 3 under gevent).
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Mapping
from typing import Any, Callable, ClassVar

from ..errors import ConfigurationError
from . import _fast
from .hygiene import (
    PSYCOPG2_LEVELS,
    PSYCOPG_LEVELS,
    QUERIED,
    USED,
    Usage,
    pg2_close_cursors,
    pg2_open_cursor,
    pg2_restore,
    pg2_snapshot,
    pg_close_cursors,
    pg_restore,
    pg_snapshot,
    watched_cursor_class,
)
from .mysql import can_reset_session, green_pymysql_connect, kill_query, reset_session
from .psycopg2 import cancel_query
from .threaded import cancel_in_thread

__all__ = [
    "Driver",
    "GenericDriver",
    "Psycopg2Driver",
    "PsycopgDriver",
    "MySQLdbDriver",
    "PyMySQLDriver",
    "SqliteDriver",
    "driver_for",
    "IDLE",
    "INTRANS",
    "INERROR",
    "ACTIVE",
    "UNKNOWN",
    "CLOSED",
]

logger = logging.getLogger("geventpool.dbapi")

#: Transaction states, as :meth:`Driver.state` reports them.
IDLE = "idle"
INTRANS = "intrans"
INERROR = "inerror"
ACTIVE = "active"
UNKNOWN = "unknown"
CLOSED = "closed"
_PG_STATES = (IDLE, ACTIVE, INTRANS, INERROR, UNKNOWN)  # libpq's PQtransactionStatus order

#: PostgreSQL SQLSTATEs that mean the session is gone (class 08 is matched by prefix).
PG_DISCONNECT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "57P04", "57P05"})
#: PostgreSQL SQLSTATEs of a refused login: invalid authorization, invalid password, unknown database.
PG_REFUSED_SQLSTATES = frozenset({"28000", "28P01", "3D000"})
#: libpq's messages (English) for a connect that no retry can fix; libpq gives psycopg2 no SQLSTATE
#: on a failed connect, so the message is all there is.
PG_REFUSED_MESSAGES = (
    "password authentication failed",
    "no pg_hba.conf entry",
    "no password supplied",
    "does not exist",  # role or database
    "certificate verify failed",
    "does not match host name",
    "server does not support ssl",
    "root certificate file",
)


_PG2_STATUS_READY = 1  # psycopg2.extensions.STATUS_READY: no transaction begun

class Driver:
    """Knowledge about one DB-API 2.0 module; subclass to teach the pool a new driver."""

    #: Name used in pool names and messages.
    name: ClassVar[str] = "dbapi"
    #: Keyword that ``DatabaseConnector`` uses to pass the database name.
    database_kwarg: ClassVar[str] = "database"
    #: Whether the driver talks to a server (a pre-ping makes sense).
    networked: ClassVar[bool] = True
    #: Whether :meth:`state` reports the real transaction state (not just "roll back to be sure").
    tracks_state: ClassVar[bool] = False
    #: Whether the driver's I/O yields to the gevent hub by itself; a pool runs the calls of a
    #: driver that does not in OS threads (thread-pool mode), unless told otherwise.
    green: ClassVar[bool] = False
    #: Connection methods that do no I/O: thread-pool mode calls them in the calling greenlet.
    local_calls: ClassVar[frozenset[str]] = frozenset()
    #: The ``connect`` keyword that bounds a connect in the driver itself; the pool passes its own
    #: ``connect_timeout`` there unless the caller did (a thread running a connect cannot be stopped).
    connect_timeout_kwarg: ClassVar[str | None] = None

    def __init__(self, module: Any) -> None:
        self.module = module
        classes = [getattr(module, n, None) for n in ("OperationalError", "InterfaceError")]
        #: The module's disconnect-class errors (also the core pool's ``exc_classes``).
        self.disconnect_classes: tuple[type[BaseException], ...] = tuple(
            c for c in classes if isinstance(c, type) and issubclass(c, BaseException)
        )

    def is_disconnect(self, exc: BaseException) -> bool:
        """Tell whether ``exc`` means the connection is unusable (it is then discarded)."""
        return isinstance(exc, self.disconnect_classes)

    def state(self, conn: Any) -> str:
        """Return the connection's transaction state (one of the module constants)."""
        if getattr(conn, "closed", False) is True or getattr(conn, "open", True) is False:
            return CLOSED
        return INTRANS  # unknown to DB-API 2.0: roll back to be sure

    def snapshot(self, conn: Any) -> tuple[Any, ...]:
        """Return the session attributes a user may change, to restore them on return."""
        value = getattr(conn, "autocommit", None)
        return (value,) if isinstance(value, bool) else ()

    def restore(self, conn: Any, snapshot: tuple[Any, ...]) -> None:
        """Set back the attributes of ``snapshot`` (the connection is not in a transaction)."""
        if snapshot:
            conn.autocommit = snapshot[0]

    #: How deeply reaching each connection attribute uses the connection (see
    #: :mod:`~geventpool.dbapi.hygiene`); names not listed count as ``USED``.
    attribute_levels: ClassVar[Mapping[str, int]] = {}
    #: How deeply opening a cursor uses the connection: ``USED``, unless :meth:`open_cursor`
    #: watches the statements (then ``QUERIED``).
    cursor_level: ClassVar[int] = USED

    def open_cursor(self, conn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], flag: list[bool]) -> Any:
        """Open a cursor that sets ``flag[0]`` when a statement may change the session
        (only called when :attr:`cursor_level` is below ``USED``)."""
        return conn.cursor(*args, **kwargs)

    def fast_cursor(self) -> type | None:
        """None, or the cursor class whose watched subclass :meth:`open_cursor` with no arguments
        gives: the pool's proxies then open those cursors in C (``dbapi/_speedups.c``), and
        call :meth:`open_cursor` for anything else."""
        return None

    def clean_after_queries(self, conn: Any, snapshot: tuple[Any, ...] | None) -> bool:
        """Tell, with no I/O, whether ``conn`` needs nothing on return after a borrower that only ran
        watched statements that cannot change the session (``QUERIED``): out of any transaction,
        nothing to restore or empty.  False (the default) sends the return the whole way."""
        return False

    def close_cursors(self, conn: Any, cursors: tuple[Any, ...], io: Callable[[str], Any]) -> None:
        """Close the named (server-side) cursors a borrower opened; runs before the rollback.

        ``io(what)`` bounds a round trip.  Raise if one stays usable (the connection is discarded).
        """
        for cursor in cursors:
            with io("closing a named cursor"):
                cursor.close()

    def restore_session(
        self, conn: Any, snapshot: tuple[Any, ...], usage: Usage, io: Callable[[str], Any]
    ) -> None:
        """Undo what the borrower changed (after the rollback): by default the :meth:`snapshot`
        attributes, set back by :meth:`restore` if they differ.  ``io(what)`` bounds a round trip.

        :raises Exception: the connection cannot be made clean (it is discarded).
        """
        if usage.level >= QUERIED and self.snapshot(conn) != snapshot:
            with io("restoring session attributes"):
                self.restore(conn, snapshot)

    def is_green(self, kwargs: dict[str, Any]) -> bool:
        """Tell whether connections opened with ``kwargs`` yield to the hub (default: :attr:`green`)."""
        return self.green

    def clean(self, conn: Any) -> None:
        """End whatever transaction the borrower left open (one round trip: ``rollback()``)."""
        conn.rollback()

    def connect_function(self, connect: Callable[..., Any]) -> Callable[..., Any] | None:
        """Return the callable the pool opens connections with outside thread-pool mode
        (default: ``connect`` itself); None: connections that ``connect`` opens would not be
        cooperative (the pool then uses thread-pool mode)."""
        return connect

    def cursor_local_calls(self, cursor: Any) -> frozenset[str]:
        """Cursor methods that do no I/O on this cursor (thread-pool mode calls them in the
        calling greenlet); default none."""
        return frozenset()

    def canceller(
        self, conn: Any, side_connect: Callable[[], Any], run: Callable[..., Any] | None
    ) -> Callable[[], None] | None:
        """Return a function that stops the statement ``conn`` runs (None: the driver cannot).

        ``side_connect()`` opens a connection like the pool's, outside it;
        ``run(func, *args)`` runs blocking steps in a thread (None: the
        driver is green).  The function must return at once.
        """
        return None

    def ping(self, conn: Any) -> None:
        """Check the connection with one round trip; raise if it is broken."""
        cur = conn.cursor()
        try:
            cur.execute("SELECT 1")
            cur.fetchall()
        finally:
            cur.close()
        conn.rollback()

    def cancel(self, conn: Any) -> None:
        """Ask the server to stop the query running on ``conn`` (best effort)."""

    def is_refused_connect(self, exc: BaseException) -> bool:
        """Tell whether a failed connect is a refusal no retry can fix (default: never).

        The pool hands such an error to the caller at once instead of
        retrying until the checkout timeout: wrong credentials, a server
        certificate that cannot be verified, an unknown database.
        """
        return False

    def check_args(self, args: tuple[Any, ...], kwargs: dict[str, Any], max_size: int) -> None:
        """Refuse or warn about connect arguments that cannot work in a pool (ConfigurationError)."""

    def prepare_args(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], threaded: bool = False
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Return the connect arguments the pool actually passes to ``connect`` (``threaded``: the
        connections will be used from the threads of thread-pool mode)."""
        return args, kwargs

    def describe(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """A short, password-free description of the target, for the pool's name."""
        host = kwargs.get("host")
        db = kwargs.get(self.database_kwarg) or kwargs.get("db") or kwargs.get("database")
        port = kwargs.get("port")
        where = f"{host}:{port}" if host and port else str(host or "")
        return f"{where}/{db}" if db else where


class GenericDriver(Driver):
    """Any DB-API 2.0 module: roll back on every return, OperationalError/InterfaceError discard."""


class _PostgresDriver(Driver):
    database_kwarg = "dbname"
    tracks_state = True
    green = True  # psycopg2 with the pool's wait callback; psycopg 3 under gevent's monkey-patching

    def canceller(
        self, conn: Any, side_connect: Callable[[], Any], run: Callable[..., Any] | None
    ) -> Callable[[], None] | None:
        """Thread-pool mode only: libpq's cancel request, from another thread (green connections
        cancel by themselves: psycopg2's wait callback, psycopg 3 under gevent)."""
        if run is None:
            return None
        return cancel_in_thread(getattr(conn, "wrapped", conn).cancel, run)

    def _sqlstate(self, exc: BaseException) -> str | None:
        raise NotImplementedError

    def is_disconnect(self, exc: BaseException) -> bool:
        """InterfaceError, an OperationalError from the client side, or SQLSTATE 08xxx/57P0x."""
        mod = self.module
        if isinstance(exc, mod.InterfaceError):
            return True
        if isinstance(exc, mod.Error):
            code = self._sqlstate(exc)
            if code is None:
                return isinstance(exc, mod.OperationalError)
            return code.startswith("08") or code in PG_DISCONNECT_SQLSTATES
        return False

    def is_refused_connect(self, exc: BaseException) -> bool:
        """Wrong credentials, an unverifiable certificate or an unknown role or database."""
        if not isinstance(exc, self.module.Error):
            return False
        code = self._sqlstate(exc)
        if code is not None:
            return code in PG_REFUSED_SQLSTATES
        message = str(exc).lower()
        return any(text in message for text in PG_REFUSED_MESSAGES)

    def _conninfo(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], strict: bool = False
    ) -> dict[str, Any]:
        """The connection parameters; ``strict``: a connection string libpq cannot parse raises
        ConfigurationError (without libpq's message: it quotes the text around the fault, which
        may be part of the password)."""
        params: dict[str, Any] = {}
        dsn = args[0] if args else kwargs.get("dsn", kwargs.get("conninfo"))
        if isinstance(dsn, str) and dsn:
            parsed = True
            try:
                params.update(self._parse_dsn(dsn))
            except Exception:
                parsed = False
                logger.debug("could not parse the connection string")
            if strict and not parsed:  # raised outside the handler: no __context__ quoting it
                raise ConfigurationError(
                    f"{self.name}: the connection string cannot be parsed (libpq's message is not "
                    "shown: it may quote the password); quote values that hold spaces or quotes, "
                    "as in password='a b'"
                )
        params.update({k: v for k, v in kwargs.items() if k not in ("dsn", "conninfo")})
        return params

    def _parse_dsn(self, dsn: str) -> dict[str, Any]:
        raise NotImplementedError

    def check_args(self, args: tuple[Any, ...], kwargs: dict[str, Any], max_size: int) -> None:
        params = self._conninfo(args, kwargs, strict=True)
        sslmode = params.get("sslmode") or os.environ.get("PGSSLMODE")
        if sslmode in ("allow", "prefer", "require"):
            raise _WeakTLS(str(sslmode))

    def describe(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        params = self._conninfo(args, kwargs)
        host, port, db = params.get("host", ""), params.get("port"), params.get("dbname")
        where = f"{host}:{port}" if port else str(host)
        return f"{where}/{db}" if db else where


class _WeakTLS(Exception):
    """Internal: the connect arguments ask for TLS without server verification."""


class Psycopg2Driver(_PostgresDriver):
    """psycopg2: libpq's transaction status, session attributes, cancel, return hygiene.

    On return (see :mod:`~geventpool.dbapi.hygiene`): WITH HOLD cursors are
    closed; ``autocommit``, isolation level, ``readonly``, ``deferrable``,
    ``cursor_factory``, ``notices``, ``notifies``, the client encoding and
    the typecasters of ``string_types``/``binary_types`` are set back; after
    SQL, the session is reset in one round trip.
    """

    name = "psycopg2"
    attribute_levels = PSYCOPG2_LEVELS
    cursor_level = QUERIED
    #: After a borrower ran SQL, reset the session in one round trip: ``DISCARD ALL``, or, when
    #: ``configure`` made settings of its own, ``DEALLOCATE ALL``,
    #: :data:`~geventpool.dbapi.hygiene.PG_RESET_SQL` and those settings again.  False (set it
    #: on ``pool.driver`` before the first connect): only the attributes are set back, and a
    #: borrower's ``SET``, ``LISTEN``, ``PREPARE``, temporary tables... stay.
    reset_session: bool = True
    #: None, or ``guard(statement)``, run before a watched statement that may change the session
    #: (it raises to refuse it; set by ``ConnectionPool(pgbouncer="transaction")``).
    statement_guard: Callable[[Any], None] | None = None
    #: None, or ``guard(args, kwargs)``, run before ``cursor(*args, **kwargs)`` (raises to refuse).
    cursor_guard: Callable[[tuple[Any, ...], dict[str, Any]], None] | None = None

    def __init__(self, module: Any) -> None:
        super().__init__(module)
        own = type(self).clean_after_queries is Psycopg2Driver.clean_after_queries  # not a subclass's
        if _fast.pg2_clean is not None and own:
            # the same check in C: a quiet return in C then checks the connection without a call
            self.clean_after_queries = _fast.pg2_clean  # type: ignore[method-assign,assignment]

    def _sqlstate(self, exc: BaseException) -> str | None:
        return getattr(exc, "pgcode", None)

    def _parse_dsn(self, dsn: str) -> dict[str, Any]:
        parsed: dict[str, Any] = self.module.extensions.parse_dsn(dsn)
        return parsed

    def state(self, conn: Any) -> str:
        if conn.closed:
            return CLOSED
        status = conn.get_transaction_status()
        if status == 0:
            return IDLE
        if status == 1 or conn.isexecuting():
            return ACTIVE
        return _PG_STATES[status] if 0 <= status < len(_PG_STATES) else UNKNOWN

    def snapshot(self, conn: Any) -> tuple[Any, ...]:
        """The attributes, and the session's own settings (one round trip, when resetting)."""
        return pg2_snapshot(conn, self.reset_session)

    def restore(self, conn: Any, snapshot: tuple[Any, ...]) -> None:
        # client-side flags in psycopg2 >= 2.7: no round trip
        conn.autocommit, conn.isolation_level, conn.readonly, conn.deferrable = snapshot[:4]

    def clean_after_queries(self, conn: Any, snapshot: tuple[Any, ...] | None) -> bool:
        # what _reset() and pg2_restore() would find at the QUERIED level: nothing to do
        return (
            not conn.closed
            and conn.status == _PG2_STATUS_READY
            and conn.get_transaction_status() == 0
            and (snapshot is None or (not snapshot.notices and not snapshot.notifies))  # type: ignore[attr-defined]
        )

    def fast_cursor(self) -> type | None:
        # the C watched cursor (dbapi/_speedups.c), when nothing is guarded and statements are watched
        if _fast.cursor_method is None or not self.reset_session:
            return None
        if self.cursor_guard is not None or self.statement_guard is not None:
            return None
        if type(self).open_cursor is not Psycopg2Driver.open_cursor or self.cursor_level != QUERIED:
            return None  # a subclass's own cursors: the C code would bypass them
        if "open_cursor" in vars(self):
            return None  # patched on this driver
        default: type = self.module.extensions.cursor
        watched_cursor_class(default)  # made now: the C code only looks it up
        return default

    def open_cursor(self, conn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], flag: list[bool]) -> Any:
        if self.cursor_guard is not None:
            self.cursor_guard(args, kwargs)
        if not self.reset_session and self.statement_guard is None:
            flag[1] = True  # not watched: its connection may be reached, so compare the attributes
            return conn.cursor(*args, **kwargs)  # no session reset to earn: nothing to watch for
        return pg2_open_cursor(conn, args, kwargs, flag, self.module.extensions.cursor, self.statement_guard)

    def close_cursors(self, conn: Any, cursors: tuple[Any, ...], io: Callable[[str], Any]) -> None:
        pg2_close_cursors(conn, cursors, io)

    def restore_session(
        self, conn: Any, snapshot: tuple[Any, ...], usage: Usage, io: Callable[[str], Any]
    ) -> None:
        pg2_restore(conn, snapshot, usage, io)  # type: ignore[arg-type]

    def ping(self, conn: Any) -> None:
        autocommit = conn.autocommit
        if not autocommit:
            conn.autocommit = True  # one round trip, no BEGIN/ROLLBACK
        try:
            cur = conn.cursor()
            try:
                cur.execute("SELECT 1")
            finally:
                cur.close()
        finally:
            if not autocommit and not conn.closed:
                conn.autocommit = False

    def cancel(self, conn: Any) -> None:
        cancel_query(conn)


class PsycopgDriver(_PostgresDriver):
    """psycopg 3 (cooperative under gevent monkey-patching), with return hygiene.

    On return: server cursors are closed; ``autocommit``, isolation level,
    ``read_only``, ``deferrable``, ``row_factory``, ``cursor_factory``,
    ``server_cursor_factory``, ``prepare_threshold`` and ``prepared_max``
    are set back; after SQL, the session is reset in one round trip and the
    notifications nobody read are dropped.  A borrower who reached
    ``conn.adapters`` or added a notice or notify handler gets the connection
    discarded on return: psycopg gives no way to take those back.
    """

    name = "psycopg"
    attribute_levels = PSYCOPG_LEVELS
    #: As :attr:`Psycopg2Driver.reset_session` (without ``DEALLOCATE ALL``: psycopg's own
    #: prepared statements stay).
    reset_session: bool = True

    def _sqlstate(self, exc: BaseException) -> str | None:
        return getattr(exc, "sqlstate", None)

    def _parse_dsn(self, dsn: str) -> dict[str, Any]:
        parsed: dict[str, Any] = self.module.conninfo.conninfo_to_dict(dsn)
        return parsed

    def state(self, conn: Any) -> str:
        if conn.closed:
            return CLOSED
        status = int(conn.pgconn.transaction_status)
        return _PG_STATES[status] if 0 <= status < len(_PG_STATES) else UNKNOWN

    def snapshot(self, conn: Any) -> tuple[Any, ...]:
        """The attributes, and the session's own settings (one round trip, when resetting)."""
        return pg_snapshot(conn, self.reset_session)

    def restore(self, conn: Any, snapshot: tuple[Any, ...]) -> None:
        conn.autocommit, conn.isolation_level, conn.read_only, conn.deferrable = snapshot[0][:4]

    def close_cursors(self, conn: Any, cursors: tuple[Any, ...], io: Callable[[str], Any]) -> None:
        pg_close_cursors(conn, cursors, io)

    def restore_session(
        self, conn: Any, snapshot: tuple[Any, ...], usage: Usage, io: Callable[[str], Any]
    ) -> None:
        pg_restore(conn, snapshot, usage, io)  # type: ignore[arg-type]

    def ping(self, conn: Any) -> None:
        autocommit = conn.autocommit
        if not autocommit:
            conn.autocommit = True
        try:
            conn.execute("")
        finally:
            if not autocommit and not conn.closed:
                conn.autocommit = False

    def cancel(self, conn: Any) -> None:
        cancel_safe = getattr(conn, "cancel_safe", None)
        if cancel_safe is not None:
            cancel_safe(timeout=5.0)
        else:
            conn.cancel()


class SqliteDriver(Driver):
    """sqlite3: no server, so no ping; "database is locked" is not a disconnect."""

    name = "sqlite3"
    networked = False
    tracks_state = True
    green = True  # its waits for locks are (see sqlite.py); its queries run in C, in the hub

    def is_disconnect(self, exc: BaseException) -> bool:
        """Only a closed database: sqlite's OperationalError is about locks and SQL."""
        return isinstance(exc, self.module.ProgrammingError) and "closed" in str(exc)

    def state(self, conn: Any) -> str:
        try:
            return INTRANS if conn.in_transaction else IDLE
        except self.module.ProgrammingError:
            return CLOSED

    def snapshot(self, conn: Any) -> tuple[Any, ...]:
        return (conn.isolation_level, conn.row_factory, conn.text_factory, getattr(conn, "autocommit", None))

    def restore(self, conn: Any, snapshot: tuple[Any, ...]) -> None:
        conn.isolation_level, conn.row_factory, conn.text_factory = snapshot[:3]
        if snapshot[3] is not None:
            conn.autocommit = snapshot[3]

    def check_args(self, args: tuple[Any, ...], kwargs: dict[str, Any], max_size: int) -> None:
        database = args[0] if args else kwargs.get("database")
        if max_size > 1 and _private_memory_db(database, bool(kwargs.get("uri"))):
            raise _PrivateMemory(str(database))

    def check_threaded(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Refuse ``check_same_thread=True`` in thread-pool mode (each call may run in another thread)."""
        same_thread = args[4] if len(args) >= 5 else kwargs.get("check_same_thread", False)
        if same_thread:
            raise ConfigurationError(
                "sqlite3: check_same_thread=True cannot work in thread-pool mode (each call may run "
                "in another thread; the pool lends a connection to one greenlet at a time): leave it out"
            )

    def prepare_args(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], threaded: bool = False
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        kwargs = dict(kwargs)
        if threaded:
            self.check_threaded(args, kwargs)
            if len(args) < 5:
                kwargs["check_same_thread"] = False
            self.busy_timeout = float(args[1] if len(args) >= 2 else kwargs.get("timeout", 5.0))
            return args, kwargs  # sqlite's own busy wait blocks a worker thread only
        if len(args) >= 2:
            busy, args = args[1], (args[0], 0.0, *args[2:])
        else:
            busy = kwargs.get("timeout", 5.0)
            kwargs["timeout"] = 0.0  # sqlite's own busy wait would freeze the hub
        #: Seconds a statement retries "database is locked", waiting green (the user's ``timeout``).
        self.busy_timeout = float(busy)
        return args, kwargs

    def describe(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        return str(args[0] if args else kwargs.get("database", ""))


class _PrivateMemory(Exception):
    """Internal: an sqlite in-memory database that each connection would see separately."""


def _private_memory_db(database: Any, uri: bool) -> bool:
    if isinstance(database, bytes):
        database = database.decode(errors="replace")
    if not isinstance(database, str):
        return False
    if database in ("", ":memory:"):
        return True
    if uri and database.startswith("file:"):
        query = database.partition("?")[2]
        memory = database.startswith("file::memory:") or re.search(r"(^|&)mode=memory(&|$)", query)
        return bool(memory) and not re.search(r"(^|&)cache=shared(&|$)", query)
    return False


def _query_one(conn: Any, sql: str) -> Any:
    """Run ``sql`` on a MySQL connection; the first column of its first row (None without one)."""
    cursor = conn.cursor()
    try:
        cursor.execute(sql)
        row = cursor.fetchone() if cursor.description else None
    finally:
        cursor.close()
    return row[0] if row else None


class _MySQLDriver(Driver):
    """What MySQLdb and PyMySQL share: server-gone codes, session reset, KILL QUERY."""

    #: Client error codes of a connection that is gone (CR_* 2002-2055) and the server's
    #: ER_CLIENT_INTERACTION_TIMEOUT; a lock wait timeout or deadlock is not among them.
    _GONE = frozenset({2002, 2003, 2006, 2013, 2014, 2045, 2055, 4031})
    connect_timeout_kwarg = "connect_timeout"
    #: The session's autocommit after a session reset (the server's default), once known.
    _reset_autocommit: bool | None = None

    def prepare_args(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], threaded: bool = False
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        #: Statements that set up a session, run again after each session reset.
        self.session_setup = [f"SET sql_mode = '{kwargs['sql_mode']}'"] if kwargs.get("sql_mode") else []
        if kwargs.get("init_command"):
            self.session_setup.append(str(kwargs["init_command"]))
        return args, kwargs

    def is_disconnect(self, exc: BaseException) -> bool:
        if isinstance(exc, self.module.InterfaceError):
            return True
        if isinstance(exc, self.module.OperationalError):
            code = exc.args[0] if exc.args else None
            return not isinstance(code, int) or code in self._GONE or code < 1000
        return False

    def state(self, conn: Any) -> str:
        return INTRANS if conn.open else CLOSED

    def snapshot(self, conn: Any) -> tuple[Any, ...]:
        return (bool(conn.get_autocommit()),)  # the client's copy of the server status: no I/O

    def restore(self, conn: Any, snapshot: tuple[Any, ...]) -> None:
        conn.autocommit(snapshot[0])

    def clean(self, conn: Any) -> None:
        """``COM_RESET_CONNECTION`` (rollback, session variables, isolation, user variables,
        temporary tables, locks), then the connect's ``sql_mode``/``init_command`` again; a plain
        rollback where the driver cannot reset."""
        raw = getattr(conn, "wrapped", conn)
        if not can_reset_session(raw):
            conn.rollback()
            return
        run = getattr(conn, "run", None)  # thread-pool mode: the reset blocks
        if run is not None:
            run(self._reset, raw)
        else:
            self._reset(raw)

    def _reset(self, conn: Any) -> None:
        autocommit = bool(conn.get_autocommit())  # the reset sets the server's default
        reset_session(conn)
        for sql in getattr(self, "session_setup", ()):
            cursor = conn.cursor()
            try:
                cursor.execute(sql)
            finally:
                cursor.close()
        # After mysql_reset_connection the session's autocommit is the server's default, but
        # MySQLdb's copy of the server status may still say the value before (and its autocommit()
        # trusts that copy): where the two differ, set it in SQL, which refreshes the copy too.
        default = self._reset_autocommit
        if default is None:  # once per pool: what a reset (and the setup after it) leaves
            default = self._reset_autocommit = bool(_query_one(conn, "SELECT @@autocommit"))
        if autocommit != default:
            _query_one(conn, "SET autocommit=1" if autocommit else "SET autocommit=0")

    def canceller(
        self, conn: Any, side_connect: Callable[[], Any], run: Callable[..., Any] | None
    ) -> Callable[[], None] | None:
        thread_id = int(getattr(conn, "wrapped", conn).thread_id())  # known since the login: no I/O
        return lambda: kill_query(side_connect, thread_id, run)


_STORED_RESULT_CALLS = frozenset({"fetchone", "fetchmany", "fetchall", "scroll"})


class MySQLdbDriver(_MySQLDriver):
    """mysqlclient (MySQLdb): blocking C calls, so thread-pool mode; KILL QUERY on abandon."""

    name = "MySQLdb"
    local_calls = frozenset({
        "get_autocommit", "thread_id", "character_set_name", "get_server_info", "get_host_info",
        "get_proto_info", "escape", "escape_string", "string_literal", "literal", "affected_rows",
        "insert_id", "warning_count", "field_count", "errno", "error", "sqlstate", "info", "fileno",
    })

    def ping(self, conn: Any) -> None:
        conn.ping()

    def cursor_local_calls(self, cursor: Any) -> frozenset[str]:
        """A cursor that stores its result (``mysql_store_result``, the default) fetches without
        I/O; an unbuffered one (SSCursor) reads from the server."""
        if isinstance(cursor, self.module.cursors.CursorUseResultMixIn):
            return frozenset()
        return _STORED_RESULT_CALLS


class PyMySQLDriver(_MySQLDriver):
    """PyMySQL: green on gevent sockets (the pool connects it that way); KILL QUERY on a kill."""

    name = "pymysql"
    green = True
    local_calls = frozenset({
        "get_autocommit", "thread_id", "character_set_name", "get_server_info", "get_host_info",
        "get_proto_info", "escape", "escape_string", "literal", "insert_id",
    })

    def connect_function(self, connect: Callable[..., Any]) -> Callable[..., Any] | None:
        """PyMySQL's own ``connect`` (or a ``functools.partial`` of it) becomes
        :func:`~geventpool.dbapi.mysql.green_pymysql_connect`; any other callable: None (its
        sockets would block the hub)."""
        module = self.module
        own = (module.connect, getattr(module, "Connect", None), module.connections.Connection)
        if connect in own:
            return green_pymysql_connect
        if isinstance(connect, functools.partial) and connect.func in own:
            return functools.partial(green_pymysql_connect, *connect.args, **(connect.keywords or {}))
        return None

    def ping(self, conn: Any) -> None:
        conn.ping(reconnect=False)


_DRIVERS: dict[str, type[Driver]] = {
    "psycopg2": Psycopg2Driver,
    "psycopg": PsycopgDriver,
    "sqlite3": SqliteDriver,
    "pymysql": PyMySQLDriver,
    "MySQLdb": MySQLdbDriver,
}


def driver_for(module: Any) -> Driver:
    """Return the :class:`Driver` for a DB-API module (GenericDriver when unknown)."""
    name = getattr(module, "__name__", "").split(".")[0].lstrip("_")
    return _DRIVERS.get(name, GenericDriver)(module)
