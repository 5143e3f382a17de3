"""PooledConnection: the transparent proxy a DB-API pool hands out.

Every attribute, method and property of the driver's connection is reached
through the proxy (``conn.autocommit = True``, ``conn.set_session(...)``,
``conn.notifies``, ``conn.info``, ``conn.cursor(name="c")``), and ``with
conn:`` keeps the driver's own meaning.  ``conn.raw`` is the driver's
connection itself, for code that type-checks it or passes it to C
functions.  Once the connection is returned (``pool.put(conn)`` or
``conn.close()``) the proxy is dead: it is falsy, a second ``close()`` or
``put()`` does nothing, and any other use raises :class:`ConnectionReturned`
(an :class:`AttributeError` too, as eventlet's dead wrapper raises).

A proxy belongs to the greenlet that checked it out; it is not meant to be
shared.  A proxy dropped without being returned (or held only by the
traceback of a greenlet that died) is noticed by the pool's next
housekeeping pass: its connection is discarded and a warning is logged.

The proxy also records how deeply its borrower used the connection (see
:mod:`geventpool.dbapi.hygiene`), so that the return does only the work the
use calls for: none for a connection nobody touched.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..errors import PoolError
from .hygiene import CONDEMNED, TOUCHED, UNTOUCHED, USED, Usage

if TYPE_CHECKING:
    from .._lease import Lease
    from .pool import ConnectionPool

__all__ = [
    "PooledConnection",
    "PooledConnectionWrapper",
    "GenericConnectionWrapper",
    "ConnectionReturned",
    "unwrap",
]

_set = object.__setattr__


class ConnectionReturned(PoolError, AttributeError):
    """A pooled connection was used after it went back to its pool.

    Also an :class:`AttributeError`: code written for eventlet's ``db_pool``
    (whose dead wrapper has lost its attributes) catches it unchanged.
    """


class GenericConnectionWrapper:
    """A transparent proxy of a DB-API connection: every attribute read, set or deleted reaches
    ``_base`` (eventlet's name; the base class of :class:`PooledConnection`)."""

    __slots__ = ("_base",)
    _base: Any

    def __init__(self, baseconn: Any) -> None:
        _set(self, "_base", baseconn)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._base, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._base, name)

    def __enter__(self) -> Any:
        return self._base.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any:
        return self._base.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._base!r}>"


class PooledConnection(GenericConnectionWrapper):
    """A checked-out connection of a :class:`~geventpool.dbapi.ConnectionPool` (see the module doc)."""

    # _sql is set with the first cursor, and _pool is a class attribute of the pool's own
    # subclass (see ConnectionPool._wrapper): a checkout sets four slots
    __slots__ = ("_lease", "_cursors", "_use", "_sql", "__weakref__")
    _lease: Lease[Any] | None
    _pool: ConnectionPool
    _use: int
    #: [a watched cursor ran a statement that may change the session, a cursor's connection was
    #: reached], once a cursor is opened.
    _sql: list[bool] | None
    #: None, or the cursor class of the driver's watched ``cursor()`` with no arguments
    #: (``Driver.fast_cursor``), served in C: a class attribute of the pool's own subclass,
    #: which then has the C ``cursor()`` (``dbapi/_fast.py``).
    _fast_cursor: type | None = None

    def __init__(self, pool: ConnectionPool, lease: Lease[Any]) -> None:
        # the slots' own setters: a checkout makes one proxy, and these are its cost
        _set_lease(self, lease)
        _set_base(self, lease.conn)
        _set_cursors(self, None)  # a list once a cursor is opened
        _set_use(self, UNTOUCHED)

    # -- the proxy ----------------------------------------------------------------------------

    def _dead(self) -> ConnectionReturned:
        return ConnectionReturned(
            f"this connection was returned to pool {self._pool.name!r}; check out another with get()"
        )

    def __getattr__(self, name: str) -> Any:
        base = self._base
        if base is None:
            raise self._dead()
        level = self._pool.driver.attribute_levels.get(name, USED)
        if level > self._use:
            _set(self, "_use", level)
        return getattr(base, name)

    def __setattr__(self, name: str, value: Any) -> None:
        base = self._base
        if base is None:
            raise self._dead()
        level = max(self._pool.driver.attribute_levels.get(name, USED), TOUCHED)
        if level > self._use:
            _set(self, "_use", level)
        setattr(base, name, value)

    def __delattr__(self, name: str) -> None:
        base = self._base
        if base is None:
            raise self._dead()
        _set(self, "_use", max(self._use, USED))
        delattr(base, name)

    @property
    def raw(self) -> Any:
        """The driver's own connection object (``isinstance`` works on it).

        :raises ConnectionReturned: the connection went back to the pool.
        """
        base = self._base
        if base is None:
            raise self._dead()
        _set(self, "_use", max(self._use, USED))  # anything may happen to it now
        return base

    @property
    def pool(self) -> ConnectionPool:
        """The pool this connection came from."""
        return self._pool

    @property
    def returned(self) -> bool:
        """Whether the connection went back to its pool (the proxy is dead)."""
        return self._base is None

    # The methods every DB-API connection has, spelled out: faster than __getattr__.

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        """The driver's ``cursor()``; closed when the connection goes back to the pool.

        (A cursor kept past ``put()`` would otherwise run its next statement on
        the connection of whoever borrowed it next.)
        """
        base = self._base
        if base is None:
            raise self._dead()
        driver = self._pool.driver
        level = driver.cursor_level
        if level >= USED:
            if self._use < USED:
                _set(self, "_use", USED)
            cursor = base.cursor(*args, **kwargs)
            flag = None
        else:  # the driver watches the statements: a session reset only if one may change it
            if self._use < level:
                _set(self, "_use", level)
            flag = self._sql if self._cursors is not None else None
            if flag is None:
                flag = [False, False]  # [a statement may change the session, connection reached]
            cursor = driver.open_cursor(base, args, kwargs, flag)
        cursors = self._cursors
        if cursors is None:
            _set(self, "_sql", flag)
            _set(self, "_cursors", [cursor])
        else:
            cursors.append(cursor)
        return cursor

    def commit(self) -> None:
        """The driver's ``commit()``."""
        base = self._base
        if base is None:
            raise self._dead()
        base.commit()

    def rollback(self) -> None:
        """The driver's ``rollback()``."""
        base = self._base
        if base is None:
            raise self._dead()
        base.rollback()

    def close(self) -> None:
        """Return the connection to its pool (eventlet's meaning); once returned, does nothing."""
        if self._lease is not None:
            self._pool.put(self)

    def __enter__(self) -> PooledConnection:
        base = self._base
        if base is None:
            raise self._dead()
        if self._use < USED:
            _set(self, "_use", USED)
        base.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any:
        base = self._base
        if base is None:
            raise self._dead()
        return base.__exit__(exc_type, exc, tb)

    def _detach(self) -> Usage | None:
        """Kill the proxy, close its client-side cursors, and return what its borrower did (None if
        it was already returned).  Server-side (named) cursors go into the usage: the pool
        closes them on return (closing them is I/O)."""
        lease = self._lease
        cursors = self._cursors
        named = []
        sql = None
        if cursors is not None:
            sql = self._sql
            for cursor in cursors:
                if getattr(cursor, "name", None) is None:
                    try:
                        cursor.close()
                    except Exception:  # a cursor of a broken connection: nothing to protect
                        pass
                else:
                    named.append(cursor)
            _set(self, "_cursors", None)
        _set_lease(self, None)
        _set_base(self, None)
        if lease is None:
            return None
        use = self._use
        if sql is not None and use < USED:
            if sql[0]:
                use = USED
            elif sql[1] and use < TOUCHED:
                use = TOUCHED
        return Usage(use, tuple(named)) if named else _USAGES[use]

    def __reduce__(self) -> Any:
        raise TypeError("pooled connections cannot be pickled")

    def __repr__(self) -> str:
        state = "returned" if self._base is None else "in use"
        return f"<PooledConnection of {self._pool.name!r} {state}>"

    def __bool__(self) -> bool:
        """True while checked out; False once returned (as eventlet's wrapper)."""
        return self._base is not None


#: the usage of each level without named cursors (made once, not per return)
_USAGES = tuple(Usage(level) for level in range(CONDEMNED + 1))
_set_lease = PooledConnection.__dict__["_lease"].__set__
_set_base = GenericConnectionWrapper.__dict__["_base"].__set__
_set_cursors = PooledConnection.__dict__["_cursors"].__set__
_set_use = PooledConnection.__dict__["_use"].__set__

#: eventlet's name for the proxy its pools hand out.
PooledConnectionWrapper = PooledConnection


def unwrap(conn: Any) -> Any:
    """Return the driver's connection behind ``conn`` (``conn`` itself if it is not a proxy)."""
    return conn.raw if isinstance(conn, PooledConnection) else conn
