"""Thread-pool mode: a blocking DB-API driver's calls run in OS threads, the hub keeps running.

For drivers with no cooperative I/O (mysqlclient/MySQLdb, pyodbc, oracledb
in thick mode, sqlite3's queries), a pool in thread-pool mode opens every
connection in a thread of its own :class:`ThreadRunner` (a gevent
``ThreadPool`` bounded by the pool's ``threads``) and hands out a
:class:`ThreadedConnection`: every method call on it, and on the cursors it
makes, runs in one of those threads while the calling greenlet waits green.
Attribute reads and assignments stay in the calling greenlet.

A greenlet killed or timed out while its call runs cannot stop the thread.
The call is then *abandoned*: the thread finishes on its own, the
connection refuses every further call (:class:`ConnectionAbandoned`), the
pool discards it, and it is closed (in a thread) only once that call has
ended, so nobody ever uses it concurrently.  Where the driver allows, the
statement is cancelled server-side meanwhile (MySQL: ``KILL QUERY``;
PostgreSQL: libpq's cancel request).  The cancel and that late close run in
the hub's own thread pool, so a pool whose threads are all busy can still
cancel.  Idle worker threads exit after :data:`IDLE_THREAD_SECONDS`.

Greenlet-safe for one greenlet per connection at a time (the pool's
guarantee); a second greenlet calling while a call runs gets
:class:`ConnectionBusy`.  The threads never touch gevent objects.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any, Callable

import gevent
from gevent.threadpool import ThreadPool

from ..errors import PoolError

__all__ = [
    "ThreadRunner",
    "ThreadedConnection",
    "ThreadedCursor",
    "ConnectionAbandoned",
    "ConnectionBusy",
    "cancel_in_thread",
]

logger = logging.getLogger("geventpool.dbapi")

#: Seconds an idle worker thread lingers before it exits.
IDLE_THREAD_SECONDS = 10.0
_ITER_BATCH = 100  # rows per thread hop when a cursor is iterated


class ConnectionAbandoned(PoolError):
    """A call on this connection was interrupted while its thread ran; the connection is unusable."""


class ConnectionBusy(PoolError):
    """Another greenlet's call is running on this connection (connections are not shared)."""


class ThreadRunner:
    """The bounded thread pool of one DB-API pool; created lazily, renewed after ``fork()``.

    Greenlet-safe; use it from the thread that owns the hub it was made in.
    """

    def __init__(self, threads: int, name: str) -> None:
        self.threads = threads
        self.name = name
        self._pool: ThreadPool | None = None
        self._pid = 0

    def spawn(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Start ``func(*args, **kwargs)`` in a thread; return its ``AsyncResult`` (may wait for a thread)."""
        pool = self._pool
        if pool is None or self._pid != os.getpid():
            pool = self._pool = ThreadPool(self.threads, idle_task_timeout=IDLE_THREAD_SECONDS)
            self._pid = os.getpid()
        return pool.spawn(_capture, func, args, kwargs)

    def call(self, func: Callable[..., Any], *args: Any, on_abandon: Callable[[Any], None] | None = None,
             **kwargs: Any) -> Any:
        """Run ``func`` in a thread and wait green for its result.

        When the wait is interrupted (``gevent.Timeout``, a kill) the thread
        goes on; ``on_abandon(result)`` is then called with its pending
        ``AsyncResult`` and the interruption propagates.
        """
        result = self.spawn(func, *args, **kwargs)
        try:
            ok, value = result.get()
        except BaseException:
            if not result.ready() and on_abandon is not None:
                on_abandon(result)
            raise
        if ok:
            return value
        try:
            raise value
        finally:
            value = None  # no reference cycle through this frame

    def resize(self, threads: int) -> None:
        """Allow ``threads`` threads from now on."""
        self.threads = threads
        if self._pool is not None and self._pid == os.getpid():
            self._pool.maxsize = threads

    def __repr__(self) -> str:
        return f"<ThreadRunner {self.name!r} threads={self.threads}>"


def cancel_in_thread(cancel: Callable[[], Any], run: Callable[..., Any]) -> Callable[[], None]:
    """A canceller for drivers whose own ``cancel()`` is safe from another thread (libpq's):
    calling it runs ``run(cancel)`` in a greenlet of its own and returns at once."""

    def send() -> None:
        try:
            run(cancel)
        except Exception as error:
            logger.debug("cancelling an abandoned call failed: %r", error)

    def start() -> None:
        gevent.spawn(send)

    return start


def _capture(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[bool, Any]:
    """In the thread: the call's outcome as a value (gevent would print a raised error to stderr)."""
    try:
        return True, func(*args, **kwargs)
    except Exception as error:
        return False, error


def _close_after(result: Any, conn: Any, close_in: Callable[..., Any]) -> None:
    """Background: wait for an abandoned call's thread to end, then close ``conn`` in a thread."""
    try:
        result.wait()
        close_in(_capture, conn.close, (), {}).wait()
    except Exception as error:  # a broken connection may fail to close: nothing else to do
        logger.debug("closing an abandoned connection failed: %r", error)


def close_when_done(result: Any) -> None:
    """Close the connection an abandoned ``connect`` call returns, once it returns."""

    def reap() -> None:
        try:
            outcome = result.get()
            conn = outcome[1] if outcome[0] else None
            if conn is not None:
                gevent.get_hub().threadpool.spawn(_capture, conn.close, (), {}).wait()
        except Exception as error:
            logger.debug("closing an abandoned connect's connection failed: %r", error)

    gevent.spawn(reap)


class ThreadedConnection:
    """A driver connection whose method calls run in a :class:`ThreadRunner` (see the module doc)."""

    __slots__ = ("_conn", "_runner", "_busy", "_abandoned", "_canceller", "_local", "_cursor_local",
                 "__weakref__")

    def __init__(
        self,
        conn: Any,
        runner: ThreadRunner,
        canceller: Callable[[], None] | None = None,
        local_calls: frozenset[str] = frozenset(),
        cursor_local_calls: Callable[[Any], frozenset[str]] | None = None,
    ) -> None:
        object.__setattr__(self, "_conn", conn)
        object.__setattr__(self, "_runner", runner)
        object.__setattr__(self, "_busy", False)
        object.__setattr__(self, "_abandoned", False)
        object.__setattr__(self, "_canceller", canceller)
        object.__setattr__(self, "_local", local_calls)
        object.__setattr__(self, "_cursor_local", cursor_local_calls)

    @property
    def wrapped(self) -> Any:
        """The driver's own connection (calling its methods directly blocks the hub)."""
        return self._conn

    @property
    def abandoned(self) -> bool:
        """Whether a call was abandoned: the connection must never be used again."""
        return bool(self._abandoned)

    def run(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``func(*args, **kwargs)`` (which uses this connection) in a thread; wait green.

        :raises ConnectionAbandoned: an earlier call was abandoned.
        :raises ConnectionBusy: another greenlet's call is running.
        """
        if self._abandoned:
            raise ConnectionAbandoned(
                "a call on this connection was interrupted while it ran in a thread: the connection "
                "is discarded"
            )
        if self._busy:
            raise ConnectionBusy("another greenlet's call is running on this connection")
        object.__setattr__(self, "_busy", True)
        try:
            return self._runner.call(func, *args, on_abandon=self._abandon, **kwargs)
        finally:
            if not self._abandoned:
                object.__setattr__(self, "_busy", False)

    def _abandon(self, result: Any) -> None:
        object.__setattr__(self, "_abandoned", True)
        canceller = self._canceller
        if canceller is not None:
            try:
                canceller()
            except Exception as error:
                logger.debug("cancelling an abandoned call failed: %r", error)
        gevent.spawn(_close_after, result, self._conn, gevent.get_hub().threadpool.spawn)

    def close(self) -> None:
        """Close the driver's connection in a thread; an abandoned one is closed when its call ends."""
        if self._abandoned:
            return  # _close_after closes it once the running call has ended
        self.run(self._conn.close)

    def cursor(self, *args: Any, **kwargs: Any) -> ThreadedCursor:
        """The driver's ``cursor()`` (made in the calling greenlet: no I/O), as a :class:`ThreadedCursor`."""
        if self._abandoned:
            self.run(lambda: None)  # raises ConnectionAbandoned
        return self._wrap_cursor(self._conn.cursor(*args, **kwargs))

    def _wrap_cursor(self, cursor: Any) -> ThreadedCursor:
        find = self._cursor_local
        return ThreadedCursor(cursor, self, find(cursor) if find is not None else frozenset())

    def commit(self) -> None:
        """The driver's ``commit()``, in a thread."""
        self.run(self._conn.commit)

    def rollback(self) -> None:
        """The driver's ``rollback()``, in a thread."""
        self.run(self._conn.rollback)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._conn, name)
        if not callable(value) or name in self._local or isinstance(value, type):
            return value

        def threaded(*args: Any, **kwargs: Any) -> Any:
            result = self.run(value, *args, **kwargs)
            if callable(getattr(result, "fetchone", None)) and not isinstance(result, ThreadedCursor):
                return self._wrap_cursor(result)  # sqlite3's conn.execute() returns a cursor
            return result

        threaded.__name__ = name
        return threaded

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._conn, name, value)

    def __enter__(self) -> ThreadedConnection:
        self.run(self._conn.__enter__)
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        return self.run(self._conn.__exit__, *exc_info)

    def __repr__(self) -> str:
        state = "abandoned" if self._abandoned else ("busy" if self._busy else "ready")
        return f"<ThreadedConnection {state} {self._conn!r}>"


class ThreadedCursor:
    """A driver cursor whose method calls run in its connection's threads (but ``local`` ones:
    methods the driver does without I/O, such as fetching from a result read whole by ``execute``)."""

    __slots__ = ("_cursor", "_owner", "_local")

    def __init__(self, cursor: Any, owner: ThreadedConnection, local: frozenset[str] = frozenset()) -> None:
        object.__setattr__(self, "_cursor", cursor)
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_local", local)

    def _call(self, name: str, *args: Any) -> Any:
        method = getattr(self._cursor, name)
        if name in self._local:
            return method(*args)
        return self._owner.run(method, *args)

    @property
    def wrapped(self) -> Any:
        """The driver's own cursor (calling its methods directly blocks the hub)."""
        return self._cursor

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        """The driver's ``execute``, in a thread (returns what the driver returns)."""
        result = self._owner.run(self._cursor.execute, *args, **kwargs)
        return self if result is self._cursor else result

    def executemany(self, *args: Any, **kwargs: Any) -> Any:
        """The driver's ``executemany``, in a thread."""
        result = self._owner.run(self._cursor.executemany, *args, **kwargs)
        return self if result is self._cursor else result

    def fetchone(self) -> Any:
        """The driver's ``fetchone``, in a thread (unless local)."""
        return self._call("fetchone")

    def fetchmany(self, *args: Any) -> Any:
        """The driver's ``fetchmany``, in a thread (unless local)."""
        return self._call("fetchmany", *args)

    def fetchall(self) -> Any:
        """The driver's ``fetchall``, in a thread (unless local)."""
        return self._call("fetchall")

    def close(self) -> None:
        """The driver's ``close``, in a thread unless local (nothing on an abandoned connection)."""
        if not self._owner.abandoned:
            self._call("close")

    def __iter__(self) -> Iterator[Any]:
        while True:
            rows = self._call("fetchmany", _ITER_BATCH)
            if not rows:
                return
            yield from rows

    def __enter__(self) -> ThreadedCursor:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._cursor, name)
        if not callable(value) or isinstance(value, type):
            return value

        def threaded(*args: Any, **kwargs: Any) -> Any:
            return self._owner.run(value, *args, **kwargs)

        threaded.__name__ = name
        return threaded

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._cursor, name, value)

    def __repr__(self) -> str:
        return f"<ThreadedCursor {self._cursor!r}>"
