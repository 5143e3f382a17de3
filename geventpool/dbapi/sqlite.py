"""sqlite3 in a gevent process: writers wait for a lock green, not inside C.

sqlite's busy handler sleeps inside ``sqlite3_step`` for up to the
connection's ``timeout`` (5 s by default) when another connection holds the
lock: the whole gevent hub stops for that long.  The pool opens sqlite3
connections with ``timeout=0`` and hands out :class:`SqliteConnection`, whose
``execute``/``executemany``/``commit`` (and those of its cursors) retry
"database is locked" with ``gevent.sleep`` and a growing delay until the
``timeout`` the user asked for has passed, then raise sqlite3's
OperationalError as sqlite would have.

``executescript`` cannot be retried safely (part of the script may have
run), so it runs with sqlite's own busy wait (``PRAGMA busy_timeout``) and
can stall the hub for up to ``timeout``; prefer ``execute`` for writes that
may contend.  Greenlet-safe as far as sqlite3 connections are: one greenlet
per connection at a time, which the pool guarantees.
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

__all__ = ["SqliteConnection", "GreenCursor", "is_busy", "retry_busy"]

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

    def executescript(self, script: str) -> Any:
        """sqlite3's ``executescript`` with sqlite's own (hub-blocking) busy wait; see the module doc."""
        raw = self.raw
        raw.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        try:
            return raw.executescript(script)
        finally:
            raw.execute("PRAGMA busy_timeout = 0")
