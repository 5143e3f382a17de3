"""sqlite3 in a gevent process: writers wait for a lock green, not inside C.

sqlite's busy handler sleeps inside ``sqlite3_step`` for up to the
connection's ``timeout`` (5 s by default) when another connection holds the
lock: the whole gevent hub stops for that long.  The pool opens sqlite3
connections with ``timeout=0`` and hands out :class:`SqliteConnection`, whose
``execute``/``executemany``/``commit`` (and those of its cursors) retry
"database is locked" with ``gevent.sleep`` and a growing delay until the
``timeout`` the user asked for has passed, then raise sqlite3's
OperationalError as sqlite would have.

``executescript`` (on the connection and on its cursors) waits green too:
the script is split into its statements (as sqlite splits it) and each runs
with the same green retry, with sqlite3's own transaction rules for scripts
(a pending transaction is committed first in the legacy transaction mode,
no implicit ``BEGIN``).  A statement that fails with "database is locked"
did nothing, so retrying it alone is what sqlite's busy handler does.
Greenlet-safe as far as sqlite3 connections are: one greenlet per
connection at a time, which the pool guarantees.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Callable

import gevent

from .wrapper import PooledConnection

if TYPE_CHECKING:
    from .._lease import Lease
    from .pool import ConnectionPool

__all__ = ["SqliteConnection", "GreenCursor", "is_busy", "retry_busy", "split_script", "green_executescript"]

_BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (primary result codes)
_FIRST_DELAY = 0.001
_MAX_DELAY = 0.05


def is_busy(error: BaseException) -> bool:
    """Tell whether an sqlite3 error means "another connection holds the lock"."""
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in _BUSY_CODES
    text = str(error)
    return "database is locked" in text or "database table is locked" in text


def retry_busy(timeout: float, func: Callable[..., Any], *args: Any) -> Any:
    """Call ``func(*args)``; while it fails with "database is locked", sleep green and retry.

    :raises sqlite3.OperationalError: still locked after ``timeout`` seconds
        (or any other error, at once).
    """
    import sqlite3  # noqa: PLC0415 - optional (a Python built without it, a missing extra)

    try:
        return func(*args)
    except sqlite3.OperationalError as error:
        if not is_busy(error):
            raise
    deadline = time.monotonic() + timeout
    delay = _FIRST_DELAY
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return func(*args)  # last try: its error is the caller's
        gevent.sleep(min(delay, remaining))
        delay = min(delay * 2, _MAX_DELAY)
        try:
            return func(*args)
        except sqlite3.OperationalError as error:
            if not is_busy(error):
                raise


def split_script(script: str) -> list[str]:
    """Split an SQL script into its statements as sqlite reads them (triggers and quoted ``;``
    included); a trailing fragment without ``;`` is the last statement.

    :raises TypeError: ``script`` is not a str (as sqlite3's ``executescript`` raises).
    """
    import sqlite3  # noqa: PLC0415 - optional (a Python built without it, a missing extra)

    if not isinstance(script, str):
        raise TypeError(f"executescript() argument must be str, not {type(script).__name__}")
    statements: list[str] = []
    start = 0
    position = script.find(";")
    while position != -1:
        candidate = script[start:position + 1]
        if sqlite3.complete_statement(candidate):
            if candidate.strip(" \t\r\n;"):
                statements.append(candidate)
            start = position + 1
        position = script.find(";", position + 1)
    rest = script[start:]
    if rest.strip() and not _only_comments(rest):
        statements.append(rest)
    return statements


def _only_comments(text: str) -> bool:
    lines = [line.strip() for line in text.strip().splitlines()]
    return all(not line or line.startswith("--") for line in lines) and "/*" not in text


def green_executescript(conn: Any, cursor: Any, script: str, timeout: float) -> None:
    """Run ``script`` on sqlite3 ``cursor`` of ``conn`` as ``executescript`` does, each statement
    retrying "database is locked" green for up to ``timeout`` seconds.

    :raises sqlite3.OperationalError: a statement still locked after ``timeout``, or any other
        sqlite error (the statements before it have run, as with ``executescript``).
    :raises TypeError: ``script`` is not a str.
    """
    import sqlite3  # noqa: PLC0415 - optional (a Python built without it, a missing extra)

    statements = split_script(script)
    legacy = getattr(conn, "autocommit", -1) == getattr(sqlite3, "LEGACY_TRANSACTION_CONTROL", -1)
    if not legacy:
        for statement in statements:
            retry_busy(timeout, cursor.execute, statement)
        return
    if conn.in_transaction:
        retry_busy(timeout, conn.commit)
    isolation = conn.isolation_level
    conn.isolation_level = None  # a script gets no implicit BEGIN
    try:
        for statement in statements:
            retry_busy(timeout, cursor.execute, statement)
    finally:
        conn.isolation_level = isolation


class GreenCursor:
    """An sqlite3 cursor whose ``execute``/``executemany`` wait for locks green."""

    __slots__ = ("_cursor", "_timeout")

    def __init__(self, cursor: Any, timeout: float) -> None:
        self._cursor = cursor
        self._timeout = timeout

    @property
    def raw(self) -> Any:
        """The sqlite3 cursor itself."""
        return self._cursor

    def execute(self, sql: str, parameters: Any = ()) -> GreenCursor:
        """sqlite3's ``execute``, retrying "database is locked" green."""
        retry_busy(self._timeout, self._cursor.execute, sql, parameters)
        return self

    def executemany(self, sql: str, seq_of_parameters: Any) -> GreenCursor:
        """sqlite3's ``executemany``, retrying "database is locked" green."""
        if not isinstance(seq_of_parameters, Sequence):
            seq_of_parameters = list(seq_of_parameters)  # a retry must see every row again
        retry_busy(self._timeout, self._cursor.executemany, sql, seq_of_parameters)
        return self

    def executescript(self, script: str) -> GreenCursor:
        """sqlite3's ``executescript``, each statement retrying "database is locked" green."""
        green_executescript(self._cursor.connection, self._cursor, script, self._timeout)
        return self

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in GreenCursor.__slots__:
            object.__setattr__(self, name, value)
        else:
            setattr(self._cursor, name, value)


class SqliteConnection(PooledConnection):
    """The proxy for sqlite3 connections: statements wait for locks green (see the module doc)."""

    __slots__ = ("_busy_timeout",)

    def __init__(self, pool: ConnectionPool, lease: Lease[Any]) -> None:
        super().__init__(pool, lease)
        object.__setattr__(self, "_busy_timeout", getattr(pool.driver, "busy_timeout", 5.0))

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        """sqlite3's ``cursor()``, as a :class:`GreenCursor`."""
        return GreenCursor(super().cursor(*args, **kwargs), self._busy_timeout)

    def execute(self, sql: str, parameters: Any = ()) -> GreenCursor:
        """sqlite3's ``execute`` shortcut, retrying "database is locked" green."""
        cursor: GreenCursor = self.cursor()
        return cursor.execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any) -> GreenCursor:
        """sqlite3's ``executemany`` shortcut, retrying "database is locked" green."""
        cursor: GreenCursor = self.cursor()
        return cursor.executemany(sql, seq_of_parameters)

    def commit(self) -> None:
        """sqlite3's ``commit``, retrying "database is locked" green."""
        retry_busy(self._busy_timeout, self.raw.commit)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """sqlite3's ``with conn:``: commit (waiting for the lock green) or roll back; never swallows."""
        if exc_type is None:
            self.commit()
        else:
            self.raw.rollback()

    def executescript(self, script: str) -> GreenCursor:
        """sqlite3's ``executescript`` shortcut, each statement retrying "database is locked" green."""
        cursor: GreenCursor = self.cursor()
        return cursor.executescript(script)
