"""What a DB-API pool must know when it sits in front of PgBouncer.

``ConnectionPool(psycopg2, dsn, pgbouncer="transaction")`` (or
``"session"``) tells the pool what it talks to.  PgBouncer in *transaction*
pooling mode gives each client transaction whichever server session is
free; a setting made outside ``SET LOCAL`` stays on that server session and
reaches every other client of the bouncer.  So a transaction-mode pool

- refuses, before anything is sent, the statements that would leave state
  on a shared session (:func:`breaks_transaction_pooling`): ``SET``/``RESET``
  (``SET LOCAL``, ``SET TRANSACTION``, ``SET CONSTRAINTS`` are fine),
  ``LISTEN``, SQL ``PREPARE``, ``DECLARE ... WITH HOLD``, ``LOAD``,
  temporary tables without ``ON COMMIT DROP``, session advisory locks,
  ``set_config(..., false)``; and WITH HOLD cursors opened through the driver;
- connects psycopg 3 with ``prepare_threshold=None`` (its server-side
  prepared statements would be looked for on another session) and refuses a
  statement run after a borrower turned them back on;
- resets nothing on the server between borrowers: the session is not the
  pool's, and nothing that needs a reset was let through.  Rollback and the
  driver's client-side attributes are restored as always.

In *session* mode the server session belongs to the client connection for
the connection's whole life; PgBouncer's ``server_reset_query`` (``DISCARD
ALL``) runs only when a client disconnects, that is when the pool closes a
connection.  Between two borrowers of one pooled connection nothing resets
it, so the pool keeps its own return hygiene there, exactly as with a
direct PostgreSQL connection.

In both modes the backend pid a client sees is PgBouncer's, not the
server's: ``pg_cancel_backend(pid)`` cannot reach the query.  A psycopg2
query interrupted by a kill or a timeout is cancelled with the protocol's
cancel request instead, which PgBouncer forwards
(:func:`pg2_protocol_cancel`), before the connection is closed.

Everything here is pure data and small functions, safe in every greenlet;
nothing yields.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from ..errors import ConfigurationError, PoolError

__all__ = [
    "MODES",
    "TransactionPoolingError",
    "check_mode",
    "breaks_transaction_pooling",
    "refuse_session_sql",
    "adapt_driver",
    "connect_kwargs",
    "check_reset",
    "check_cursor_args",
    "prepare_connection",
    "pg2_protocol_cancel",
    "CANCEL_TIMEOUT",
]

_logger = logging.getLogger("geventpool.dbapi.pgbouncer")

#: The values ``ConnectionPool(pgbouncer=)`` accepts besides None.
MODES = ("transaction", "session")


class TransactionPoolingError(PoolError):
    """A borrower tried what PgBouncer's transaction pooling breaks; nothing was sent.

    The connection is unchanged and stays usable (inside a transaction, the
    transaction is still open: roll it back or go on).
    """


def check_mode(owner: str, value: Any) -> str | None:
    """Return ``value`` if it is a PgBouncer pooling mode the pool supports, or None.

    :raises ConfigurationError: anything else (``statement`` mode included:
        it forbids multi-statement transactions, which a DB-API pool opens).
    """
    if value is None or (isinstance(value, str) and value in MODES):
        return value
    raise ConfigurationError(
        f"{owner}: pgbouncer must be 'transaction', 'session' or None (PgBouncer's pool_mode), "
        f"got {value!r}"
    )


_START = r"(?:^|;)(?:\s|--[^\n]*(?:\n|$)|/\*.*?\*/)*"

#: (what it is, how to do it instead, pattern) of each statement transaction pooling breaks.
_RULES: tuple[tuple[str, str, str], ...] = (
    ("SET (a session setting)", "use SET LOCAL inside a transaction, or a per-role or per-database "
     "default on the server (ALTER ROLE ... SET)",
     _START + r"SET\b(?!\s+(?:LOCAL|TRANSACTION|CONSTRAINTS)\b)"),
    ("RESET", "settings made with SET LOCAL end with their transaction", _START + r"RESET\b"),
    ("LISTEN", "listen on a direct connection to PostgreSQL or a session-mode bouncer",
     _START + r"(?:UN)?LISTEN\b"),
    ("PREPARE", "run the statement directly (psycopg 3: prepare_threshold=None)",
     _START + r"(?:PREPARE\b(?!\s+TRANSACTION\b)|DEALLOCATE\b)"),
    ("a WITH HOLD cursor", "use a cursor inside one transaction",
     _START + r"DECLARE\b[^;]*?\bWITH\s+HOLD\b"),
    ("LOAD", "load the library through the server's configuration", _START + r"LOAD\b"),
    ("a temporary table that outlives its transaction", "add ON COMMIT DROP",
     r"\bCREATE\s+(?:(?:GLOBAL|LOCAL)\s+)?TEMP(?:ORARY)?\s+TABLE\b(?![^;]*\bON\s+COMMIT\s+DROP\b)"),
    ("a session advisory lock", "use pg_advisory_xact_lock (released at the end of the transaction)",
     r"\bpg_(?:try_)?advisory_lock(?:_shared)?\s*\("),
    ("set_config(..., false) (a session setting)", "pass is_local true inside a transaction",
     r"\bset_config\s*\((?![^;]*?,\s*true\s*\))"),
)
_COMPILED = tuple(
    (what, instead, re.compile(pattern, re.IGNORECASE | re.DOTALL).search,
     re.compile(pattern.encode(), re.IGNORECASE | re.DOTALL).search)
    for what, instead, pattern in _RULES
)


def breaks_transaction_pooling(query: Any) -> tuple[str, str] | None:
    """Return (what, what to do instead) if ``query`` uses something transaction pooling breaks.

    ``query`` is the text a cursor is given (``str`` or ``bytes``; anything
    else, such as ``psycopg2.sql.Composed``, is rendered by the driver and
    not looked at: None).  A statement inside a function or a ``DO`` block
    is not seen.
    """
    if type(query) is str:
        for what, instead, search, _ in _COMPILED:
            if search(query) is not None:
                return what, instead
    elif type(query) is bytes:
        for what, instead, _, search_bytes in _COMPILED:
            if search_bytes(query) is not None:
                return what, instead
    return None


def refuse_session_sql(query: Any) -> None:
    """Raise if ``query`` would leave state on a server session other clients share.

    :raises TransactionPoolingError: it would (see :func:`breaks_transaction_pooling`).
    """
    found = breaks_transaction_pooling(query)
    if found is not None:
        what, instead = found
        raise TransactionPoolingError(
            f"refused before sending: {what} would stay on a PgBouncer server session that other "
            f"clients share (pgbouncer='transaction'); {instead}"
        )


def check_cursor_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse a WITH HOLD cursor (``cursor(name, withhold=True)``: psycopg2 and psycopg 3).

    :raises TransactionPoolingError: ``withhold`` is true.
    """
    withhold = kwargs.get("withhold", args[3] if len(args) >= 4 else False)
    if withhold:
        raise TransactionPoolingError(
            "refused: a WITH HOLD cursor outlives its transaction, and the next transaction may run "
            "on another PgBouncer server session (pgbouncer='transaction'); read it inside one transaction"
        )


def adapt_driver(driver: Any, mode: str | None) -> None:
    """Set the driver up for the bouncer: in transaction mode, no server-side session reset, and
    psycopg2's watched cursors refuse what the mode breaks."""
    if mode is None:
        return
    if mode == "transaction" and hasattr(driver, "reset_session"):
        driver.reset_session = False  # the session is shared: nothing of a borrower's stays on it
    if mode == "transaction" and hasattr(driver, "statement_guard"):
        driver.statement_guard = refuse_session_sql
        driver.cursor_guard = check_cursor_args


def connect_kwargs(owner: str, driver_name: str, kwargs: dict[str, Any], mode: str | None) -> None:
    """Adjust ``connect`` keyword arguments for the bouncer, in place: psycopg 3 in transaction mode
    connects with ``prepare_threshold=None``.

    :raises ConfigurationError: a ``prepare_threshold`` other than None was given for it.
    """
    if mode != "transaction" or driver_name != "psycopg":
        return
    threshold = kwargs.setdefault("prepare_threshold", None)
    if threshold is not None:
        raise ConfigurationError(
            f"{owner}: prepare_threshold={threshold!r} makes psycopg prepare statements on the server "
            "session, which a transaction-pooling PgBouncer shares between clients; pass "
            "prepare_threshold=None (the default with pgbouncer='transaction')"
        )


def check_reset(owner: str, reset: Any, mode: str | None, discard_all: Any) -> None:
    """Refuse :func:`~geventpool.dbapi.discard_all` as the reset of a transaction-mode pool.

    :raises ConfigurationError: it is (it would run on whatever server session is free).
    """
    if mode == "transaction" and reset is discard_all:
        raise ConfigurationError(
            f"{owner}: reset=discard_all with pgbouncer='transaction' would discard whichever server "
            "session PgBouncer hands out, not the borrower's; leave reset out (the pool refuses what "
            "would need it)"
        )


def prepare_connection(conn: Any, driver_name: str, mode: str | None) -> None:
    """Set a new psycopg 3 connection up for transaction mode: its cursors refuse session SQL,
    prepared statements, and WITH HOLD cursors when they execute (psycopg2's cursors are watched
    by the driver)."""
    if mode != "transaction" or driver_name != "psycopg":
        return
    conn.cursor_factory = _guarded(conn.cursor_factory)
    conn.server_cursor_factory = _guarded(conn.server_cursor_factory, server=True)


_GUARDED: dict[tuple[type, bool], type] = {}


def _guarded(cls: type, server: bool = False) -> type:
    """A subclass of psycopg 3 cursor class ``cls`` that refuses what transaction pooling breaks."""
    sub = _GUARDED.get((cls, server))
    if sub is not None:
        return sub

    class Guarded(cls):  # type: ignore[misc]
        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            if server:
                check_cursor_args((), {"withhold": self.withhold})
            _check_psycopg(self, query, kwargs)
            return super().execute(query, params, **kwargs)

        def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> Any:
            _check_psycopg(self, query, kwargs)
            return super().executemany(query, params_seq, **kwargs)

    Guarded.__name__, Guarded.__qualname__ = cls.__name__, cls.__qualname__
    Guarded.__module__ = cls.__module__
    _GUARDED[(cls, server)] = Guarded
    return Guarded


def _check_psycopg(cursor: Any, query: Any, kwargs: dict[str, Any]) -> None:
    if kwargs.get("prepare") or cursor.connection.prepare_threshold is not None:
        raise TransactionPoolingError(
            "refused: psycopg would prepare this statement on a server session that PgBouncer shares "
            "between clients (pgbouncer='transaction'); keep prepare_threshold=None and prepare=False"
        )
    refuse_session_sql(query)


#: Seconds a protocol cancel request may take (PgBouncer forwards it to the server).
CANCEL_TIMEOUT = 5.0

_libpq: Any = None


def _psycopg2_libpq() -> Any:
    """psycopg2's own libpq through ctypes: symbols looked up from psycopg2's extension module
    resolve in the libpq it is linked with (a wheel's bundled copy or the system's)."""
    global _libpq
    if _libpq is None:
        import ctypes  # noqa: PLC0415 - only behind a bouncer

        import psycopg2._psycopg  # noqa: PLC0415 - an optional driver, imported when used

        lib = ctypes.CDLL(psycopg2._psycopg.__file__)
        lib.PQgetCancel.restype = ctypes.c_void_p
        lib.PQgetCancel.argtypes = [ctypes.c_void_p]
        lib.PQcancel.restype = ctypes.c_int
        lib.PQcancel.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        lib.PQfreeCancel.restype = None
        lib.PQfreeCancel.argtypes = [ctypes.c_void_p]
        _libpq = lib
    return _libpq


def pg2_protocol_cancel(conn: Any) -> None:
    """Send the protocol's cancel request for psycopg2 connection ``conn`` and wait for it (green,
    at most :data:`CANCEL_TIMEOUT`); run where psycopg2 is about to close an interrupted connection.

    PgBouncer forwards a cancel request to the server session running the
    client's query, but only while the client is connected: sent after the
    close, it finds no client and is dropped.  libpq's ``PQcancel`` runs in
    gevent's thread pool through ctypes (which releases the GIL), on a cancel
    handle of its own (``PQgetCancel``: a copy, no I/O), freed by that thread.
    Best effort: failures are logged at DEBUG.
    """
    import ctypes  # noqa: PLC0415 - only behind a bouncer

    import gevent  # noqa: PLC0415 - a hub is there whenever this runs

    try:
        lib = _psycopg2_libpq()
        handle = lib.PQgetCancel(conn.pgconn_ptr)
    except Exception as error:
        _logger.debug("no cancel handle for %r: %r", conn, error)
        return
    if not handle:
        return

    def send() -> bytes:
        errbuf = ctypes.create_string_buffer(256)
        try:
            ok = lib.PQcancel(handle, errbuf, 256)
        finally:
            lib.PQfreeCancel(handle)
        return b"" if ok else errbuf.value

    try:
        with gevent.Timeout(CANCEL_TIMEOUT, _CancelExpired):
            message = gevent.get_hub().threadpool.spawn(send).get()
    except _CancelExpired:
        _logger.debug("cancel request not confirmed within %g s", CANCEL_TIMEOUT)
        return
    except Exception as failure:
        _logger.debug("cancel request failed: %r", failure)
        return
    if message:
        _logger.debug("cancel request failed: %s", message.decode(errors="replace"))


class _CancelExpired(Exception):
    """Internal: the cancel request took longer than :data:`CANCEL_TIMEOUT`."""
