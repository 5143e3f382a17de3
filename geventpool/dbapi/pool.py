"""ConnectionPool: eventlet's ``db_pool`` API for gevent, on top of the core pool.

``pool = ConnectionPool(psycopg2, dsn, max_size=10)``; ``conn = pool.get()``
... ``pool.put(conn)``, or ``with pool.item() as conn:``.  The arguments not
named below go to ``db_module.connect``; eventlet's positional order
(``ConnectionPool(psycopg2, 0, 10, host=...)``) works too.
"""

from __future__ import annotations

import itertools
import logging
import math
import sys
import time
import types
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any, ClassVar

import gevent

from .. import _deadline
from .._config import check_seconds
from .._lease import Lease
from ..errors import ConfigurationError
from ..pool import ConnectionPool as CorePool
from . import _fast
from . import pgbouncer as _pgbouncer
from . import psycopg2 as green_psycopg2
from .drivers import ACTIVE, CLOSED, IDLE, INERROR, INTRANS, Driver, _PrivateMemory, _WeakTLS, driver_for
from .hygiene import CONDEMNED, QUERIED, UNKNOWN_USAGE, UNTOUCHED, Condemned, Usage
from .sqlite import SqliteConnection
from .threaded import ConnectionAbandoned, ThreadedConnection, ThreadRunner, close_when_done
from .wrapper import PooledConnection, _set_cursors
from .wrapper import _set_base as _kill_base
from .wrapper import _set_lease as _kill_lease

__all__ = ["ConnectionPool", "RawConnectionPool", "TpooledConnectionPool", "discard_all"]

logger = logging.getLogger("geventpool.dbapi")
_numbers = itertools.count(1)


class _Unclean(Exception):
    """Internal: a returned connection could not be made clean (it is discarded)."""


class _CloseOnReturn(Exception):
    """Internal: ``max_idle=0`` or ``max_age=0``: close every connection on return."""


_CLOSE_ON_RETURN = _CloseOnReturn("max_idle=0 or max_age=0: closed on return")


def _resolve(owner: str, db_module: Any) -> tuple[Any, Callable[..., Any]]:
    """Return (DB-API module or None, connect callable); refuse what is not DB-API 2.0."""
    if isinstance(db_module, types.ModuleType):
        _check_module(owner, db_module, db_module.__name__)
        connect: Callable[..., Any] = db_module.connect
        return db_module, connect
    if not callable(db_module) and callable(getattr(db_module, "connect", None)):
        # an object standing for a module (eventlet accepts one): DB-API checked if it claims it,
        # otherwise the driver is learnt from its first connection
        if hasattr(db_module, "apilevel"):
            _check_module(owner, db_module, type(db_module).__name__)
            return db_module, db_module.connect
        return None, db_module.connect
    if callable(db_module):
        inner = getattr(db_module, "func", db_module)  # functools.partial
        name = (getattr(inner, "__module__", None) or "").split(".")[0]
        module = sys.modules.get(name) or sys.modules.get(name.lstrip("_"))
        try:
            _check_module(owner, module, name)
        except ConfigurationError:
            module = None  # a user's own connect function: the driver is found on first connect
        return module, db_module
    raise ConfigurationError(
        f"{owner}: db_module must be a DB-API 2.0 module (psycopg2, psycopg, sqlite3, pymysql) "
        f"or a connect callable, got {type(db_module).__name__}"
    )


def _check_module(owner: str, module: Any, name: str) -> None:
    if module is None or not callable(getattr(module, "connect", None)):
        raise ConfigurationError(
            f"{owner}: db_module {name!r} has no connect(): pass a DB-API 2.0 module "
            "such as psycopg2 or sqlite3, or a connect callable"
        )
    apilevel = getattr(module, "apilevel", None)
    if apilevel != "2.0":
        raise ConfigurationError(f"{owner}: db_module {name!r} has apilevel {apilevel!r}, not '2.0'")
    threadsafety = getattr(module, "threadsafety", None)
    if isinstance(threadsafety, bool) or not isinstance(threadsafety, int) or threadsafety < 1:
        raise ConfigurationError(
            f"{owner}: db_module {name!r} has threadsafety {threadsafety!r}: its connections "
            "cannot be shared by a pool (DB-API threadsafety >= 1 is needed)"
        )
    for cls in ("Error", "OperationalError", "InterfaceError"):
        value = getattr(module, cls, None)
        if not (isinstance(value, type) and issubclass(value, Exception)):
            raise ConfigurationError(f"{owner}: db_module {name!r} has no DB-API exception class {cls}")


def discard_all(conn: Any) -> None:
    """A ``reset`` for PostgreSQL: ``DISCARD ALL`` (roles, settings, temp tables, locks, LISTEN, plans).

    Runs outside a transaction, as PostgreSQL requires; works with psycopg2
    and psycopg 3 connections.
    """
    autocommit = conn.autocommit
    conn.autocommit = True
    try:
        cur = conn.cursor()
        try:
            cur.execute("DISCARD ALL")
        finally:
            cur.close()
    finally:
        conn.autocommit = autocommit


#: "not given" (``None`` is a value: no cleanup)
_MISSING: Any = object()

#: eventlet's positional parameters after ``db_module``, in its order, with their defaults
_EVENTLET_ORDER: tuple[tuple[str, Any], ...] = (
    ("min_size", 0), ("max_size", 4), ("max_idle", 10), ("max_age", 30), ("connect_timeout", 5),
    ("cleanup", _MISSING),
)


def _eventlet_positionals(
    owner: str, args: tuple[Any, ...], keywords: tuple[Any, ...]
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Split ``args`` by eventlet's order when it starts with a number (``min_size``).

    Returns the six values (positional ones replacing ``keywords``) and the
    arguments left for ``connect``; otherwise ``keywords`` and ``args`` unchanged.
    """
    if not args or isinstance(args[0], bool) or not isinstance(args[0], (int, float)):
        return keywords, args
    values = list(keywords)
    for index, value in enumerate(args[: len(_EVENTLET_ORDER)]):
        name, default = _EVENTLET_ORDER[index]
        given = keywords[index]
        if given is not default and given != default:
            raise ConfigurationError(f"{owner}: {name} given by position (eventlet's order) and by keyword")
        values[index] = value
    return tuple(values), args[len(_EVENTLET_ORDER):]


class ConnectionPool(CorePool[Any]):
    """A pool of DB-API 2.0 connections with eventlet's ``db_pool`` API.

    Greenlet-safe, not thread-safe (one pool per hub); ``get()`` yields only
    while it waits for a connection or checks one.  It keeps every guarantee
    of :class:`geventpool.ConnectionPool`: slots never leak (whatever kills
    a greenlet), FIFO waiters, background refill with backoff, expiry.

    Drivers known to be cooperative (psycopg2 with the pool's wait callback,
    psycopg 3, PyMySQL on gevent sockets, sqlite3's lock waits) are used as
    they are; any other driver (mysqlclient, pyodbc, oracledb...) runs in
    thread-pool mode: every call on its connections and cursors runs in one
    of the pool's ``threads`` OS threads (see :mod:`geventpool.dbapi.threaded`).
    :class:`RawConnectionPool` and :class:`TpooledConnectionPool` force one mode.

    :param db_module: a DB-API 2.0 module (psycopg2, psycopg, sqlite3,
        pymysql...), an object with a ``connect`` method, or a callable
        returning a connection.  Modules without ``connect``, with
        ``apilevel != "2.0"`` or ``threadsafety < 1`` are refused here with
        :class:`~geventpool.ConfigurationError`.
    :param args: positional arguments of ``connect`` (a DSN, a file name).
        When the first is a number, they follow eventlet's order instead:
        ``min_size, max_size, max_idle, max_age, connect_timeout, cleanup``,
        then ``connect``'s (``ConnectionPool(psycopg2, 0, 10, host=...)``).
    :param min_size: connections kept open.
    :param max_size: connections at most.
    :param max_idle: seconds an idle connection above ``min_size`` is kept;
        0 closes every connection on return, as eventlet does.
    :param max_age: seconds a connection lives (a little less: jittered);
        0 closes every connection on return.
    :param connect_timeout: seconds one connect may take; a waiting
        ``get()`` then raises :class:`~geventpool.ConnectTimeout`.
    :param timeout: seconds ``get()`` waits at most (``PoolTimeout``).
    :param ping_after: check a connection on checkout when it was idle for
        longer than this (seconds; None: never); a broken one is replaced.
    :param check: ``check(raw_conn)`` used for that check instead of the
        driver's ping (raise if the connection is unusable).
    :param configure: ``configure(raw_conn)`` run once on every new connection.
    :param reset: ``reset(raw_conn)`` run on every return after the
        rollback, e.g. :func:`discard_all`; a failure discards.
    :param cleanup: eventlet's name for ``reset`` (``put()`` and ``item()``
        take one per return too); ``None``: nothing beyond the rollback,
        which is never skipped.
    :param green: install geventpool's psycopg2 wait callback (psycopg2 only).
    :param threads: OS threads of thread-pool mode (default ``max_size``); a
        call abandoned by a killed greenlet holds its thread until it ends.
    :param allow_unverified_tls: accept ``sslmode`` allow/prefer/require
        (encryption without server verification) without a warning.
    :param pgbouncer: ``"transaction"`` or ``"session"``: the pool talks to a
        PgBouncer in that pooling mode (see :mod:`geventpool.dbapi.pgbouncer`:
        in transaction mode, what would leave state on a shared server
        session raises :class:`~geventpool.dbapi.pgbouncer.TransactionPoolingError`).
    :param name: the pool's name in logs and errors (default: driver and
        target, never a password).
    :param pool_options: more keyword arguments of the core pool
        (``max_waiting``, ``leak_threshold``, ``keepalive``, ``max_connecting``...).
    :param kwargs: keyword arguments of ``connect``.
    """

    def __init__(
        self,
        db_module: Any,
        *args: Any,
        min_size: int = 0,
        max_size: int = 4,
        max_idle: float = 10,
        max_age: float = 30,
        connect_timeout: float = 5,
        timeout: float = 30.0,
        ping_after: float | None = 0.5,
        check: Callable[[Any], Any] | None = None,
        configure: Callable[[Any], Any] | None = None,
        reset: Callable[[Any], Any] | None = None,
        cleanup: Any = _MISSING,
        green: bool = True,
        threads: int | None = None,
        allow_unverified_tls: bool = False,
        pgbouncer: str | None = None,
        name: str | None = None,
        pool_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        owner = type(self).__name__
        (min_size, max_size, max_idle, max_age, connect_timeout, cleanup), args = _eventlet_positionals(
            owner, args, (min_size, max_size, max_idle, max_age, connect_timeout, cleanup)
        )
        #: None, or the pooling mode of the PgBouncer the pool talks to
        self.pgbouncer = _pgbouncer.check_mode(owner, pgbouncer)
        module, connect = _resolve(owner, db_module)
        if cleanup is not _MISSING:
            if reset is not None:
                raise ConfigurationError(f"{owner}: pass reset or cleanup (its eventlet name), not both")
            reset = cleanup
        _pgbouncer.check_reset(owner, reset, self.pgbouncer, discard_all)
        for label, hook in (("check", check), ("configure", configure), ("reset", reset)):
            if hook is not None and not callable(hook):
                raise ConfigurationError(f"{owner}: {label} must be callable, got {type(hook).__name__}")
        max_idle_s = check_seconds(owner, "max_idle", max_idle)
        max_age_s = check_seconds(owner, "max_age", max_age)
        timeout_s = check_seconds(owner, "timeout", timeout)
        if ping_after is not None:
            check_seconds(owner, "ping_after", ping_after)
        self.driver: Driver = driver_for(module) if module is not None else driver_for(None)
        self._driver_known = module is not None
        _pgbouncer.adapt_driver(self.driver, self.pgbouncer)
        _pgbouncer.connect_kwargs(owner, self.driver.name, kwargs, self.pgbouncer)
        if isinstance(max_size, int) and not isinstance(max_size, bool):
            try:
                self.driver.check_args(args, kwargs, max_size)
            except _PrivateMemory as error:
                raise ConfigurationError(
                    f"{owner}: sqlite3 database {str(error) or repr('')} is private to each connection, "
                    f"so max_size={max_size} connections would see {max_size} different databases; use "
                    "max_size=1, a file, or a shared-cache URI such as "
                    "'file:NAME?mode=memory&cache=shared' with uri=True"
                ) from None
            except _WeakTLS as error:
                if not allow_unverified_tls:
                    logger.warning(
                        "%s: sslmode=%s encrypts without verifying the server (man-in-the-middle "
                        "possible); use sslmode=verify-full, or pass allow_unverified_tls=True",
                        owner, error,
                    )
        if name is None:
            name = f"{self.driver.name}:{self.driver.describe(args, kwargs)}#{next(_numbers)}"
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ConfigurationError(f"{owner}: threads must be an int >= 1, got {threads!r}")
        self._threads = threads
        #: Whether calls run in OS threads (None: decided by the driver at the first connect).
        self._threaded: bool | None = self.thread_mode
        green_connect = self.driver.connect_function(connect)
        if self._threaded is None and module is not None:
            self._threaded = green_connect is None or not self.driver.is_green(kwargs)
        self._runner: ThreadRunner | None = None
        self._connect = connect if self._threaded or green_connect is None else green_connect
        self._connect_args, self._connect_kwargs = self.driver.prepare_args(
            args, kwargs, threaded=bool(self._threaded)
        )
        timeout_kwarg = self.driver.connect_timeout_kwarg
        if timeout_kwarg and isinstance(connect_timeout, (int, float)) and connect_timeout > 0:
            self._connect_kwargs.setdefault(timeout_kwarg, max(1, math.ceil(connect_timeout)))
        self._interrupted: set[int] = set()
        #: the return path's deadlines: stopped timers kept for reuse, messages by step
        self._io_seconds: float | None = None
        self._io_timers: list[Any] = []
        self._io_messages: dict[str, str] = {}
        self._check = check
        self._configure = configure
        self._reset_hook = reset
        self._close_on_return = max_idle_s == 0 or max_age_s == 0
        #: a return of an untouched connection does nothing (no close on return, no reset hook)
        self._quiet_return = reset is None and not self._close_on_return
        self._snapshots: dict[int, tuple[Any, ...]] = {}
        #: id(conn) -> what its last borrower did (recorded by put(), used by _reset())
        self._borrowed: dict[int, Usage] = {}
        #: id(conn) -> the proxy last lent with it, weakly (so that a raw connection returned kills
        #: its proxy, and put(None) finds the caller's)
        self._proxies: dict[int, weakref.ref[PooledConnection]] = {}
        self._wrapper = _wrapper_class(self.driver, bool(self._threaded), self)
        #: the C checkout (dbapi/_speedups.c) when the proxy class is made by PooledConnection.__init__
        self._fast_checkout = _fast_checkout_for(self._wrapper)
        # get() and put() in C (their common case; the methods below for the rest), unless a
        # subclass has its own
        if _fast.get is not None and type(self).get is _fast.python_get:
            self.__dict__["get"] = types.MethodType(_fast.get, self)
        if _fast.put is not None and type(self).put is _fast.python_put:
            self.__dict__["put"] = types.MethodType(_fast.put, self)
        self.max_age = max_age_s
        # nothing to ping in sqlite (unless a check is given)
        core_ping = ping_after if self.driver.networked or check is not None else None
        options = dict(pool_options or {})
        for reserved in ("size", "min_size", "max_size", "name", "timeout", "connect_timeout",
                         "max_idle", "max_lifetime", "ping_after", "exc_classes"):
            if reserved in options:
                raise ConfigurationError(f"{owner}: pass {reserved} as an argument, not in pool_options")
        options.setdefault("keepalive_timeout", min(5.0, timeout_s) if timeout_s else 5.0)
        super().__init__(
            min_size=min_size,
            max_size=max_size,
            name=name,
            timeout=timeout_s,
            connect_timeout=connect_timeout,
            max_idle=max_idle_s or 600.0,
            max_lifetime=max_age_s or 1800.0,
            ping_after=core_ping,
            exc_classes=(*self.driver.disconnect_classes, OSError),
            **options,
        )
        self.green = bool(green) and self.driver.name == "psycopg2" and not self._threaded
        if self.green:
            green_psycopg2.install()
        elif self.driver.name == "psycopg2" and not green_psycopg2.installed():
            logger.warning("%s: psycopg2 without a gevent wait callback blocks the hub", self.name)

    #: eventlet's contract: a get() that waits on a hanging connect raises ConnectTimeout.
    fail_waiter_on_connect_timeout = True
    #: True: thread-pool mode always; False: never; None: for drivers not known to be cooperative.
    thread_mode: ClassVar[bool | None] = None

    @property
    def threaded(self) -> bool:
        """Whether this pool runs its driver's calls in OS threads (thread-pool mode)."""
        return bool(self._threaded)

    def _thread_runner(self) -> ThreadRunner:
        runner = self._runner
        if runner is None:
            runner = self._runner = ThreadRunner(self._threads or self.max_size, self.name)
        return runner

    # -- eventlet's API --------------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> PooledConnection:  # type: ignore[override]
        """Check out a connection (a :class:`PooledConnection`); give it back with :meth:`put`.

        :raises PoolTimeout: none free within ``timeout`` (default: the pool's).
        :raises ConnectTimeout: the connect this call waited for took longer
            than ``connect_timeout``.
        :raises PoolClosed: the pool is closed.
        :raises ConfigurationError: ``connect()`` returned something that is not a connection.
        """
        if timeout is None and self._fast_checkout is not None:  # C: the checkout, the proxy made
            fast = self._fast_checkout(self._table, self, self._wrapper, self._proxies)
            if fast is not None:
                return fast  # type: ignore[no-any-return]
        lease = CorePool.get(self, timeout)
        if self._fast_checkout is not None and _fast.wrap is not None:  # C: the proxy made
            made = _fast.wrap(lease, self._wrapper, self._proxies)
            if made is not None:
                return made  # type: ignore[no-any-return]
        proxy = self._wrapper(self, lease)
        self._proxies[id(lease.conn)] = weakref.ref(proxy)
        return proxy

    def put(self, conn: Any, cleanup: Any = _MISSING) -> None:
        """Return a connection: rolled back, attributes restored, ``reset`` run; or discarded.

        Returns quietly; a connection that cannot be cleaned is closed and
        replaced.  The proxy is dead afterwards, and putting it again does
        nothing.  ``cleanup`` (eventlet's argument): run this callable instead
        of the pool's ``reset`` for this return (``None``: none); the rollback
        happens either way.

        As in eventlet, ``put(None)`` says "the connection I checked out is
        lost": the one connection the calling greenlet holds from this pool is
        discarded, and :meth:`free` counts its slot again.  A proxy of another
        pool is closed and its slot freed in that pool (with a warning):
        neither pool then counts a connection it does not hold.

        :raises ValueError: a raw connection not checked out from this pool;
            ``put(None)`` from a greenlet that holds no connection of this
            pool, or several.
        :raises ConfigurationError: ``cleanup`` is neither callable nor None.
        """
        if type(conn) is self._wrapper:  # a proxy of this pool (the class is the pool's own)
            if (cleanup is _MISSING and self._quiet_return and _fast.quiet_return is not None
                    and _fast.quiet_return(conn, self.driver.clean_after_queries, self._snapshots)):
                return  # C: the two quiet returns below
            lease = conn._lease
            if lease is not None:
                if conn._use is UNTOUCHED and cleanup is _MISSING and self._quiet_return:
                    # nothing done with it (no cursor either) and no hook to run: no work at all
                    _kill_lease(conn, None)
                    _kill_base(conn, None)
                    lease.__exit__(None, None, None)
                    return
                if conn._use == QUERIED and cleanup is _MISSING and self._quiet_return and lease.active:
                    # only watched statements that cannot change the session, through client-side
                    # cursors: if the driver says the connection is out of any transaction with
                    # nothing to empty, the return is the cursors' close and the lease's
                    sql = conn._sql
                    cursors = conn._cursors
                    base = lease.conn
                    if (sql is not None and not sql[0] and not sql[1] and cursors is not None
                            and self.driver.clean_after_queries(base, self._snapshots.get(id(base)))):
                        for cursor in cursors:
                            if cursor.name is not None:
                                break  # a server-side cursor: closing it is I/O
                        else:
                            for cursor in cursors:
                                cursor.close()  # client-side: no I/O
                            _set_cursors(conn, None)
                            _kill_lease(conn, None)
                            _kill_base(conn, None)
                            lease.__exit__(None, None, None)
                            return
                if cleanup is not _MISSING:
                    self._check_cleanup(cleanup)
                usage = conn._detach()
                if not lease.active:
                    raise ValueError(f"{self.name}: connection returned after the pool took it back")
                self._hand_back(lease, None, cleanup, usage)
                return
        self._check_cleanup(cleanup)
        if type(conn) is not self._wrapper or conn._pool is not self or conn._lease is None:
            if conn is None:
                self._put_lost()
                return
            if isinstance(conn, PooledConnection) and (conn._lease is None or conn._pool is not self):
                self._put_foreign(conn)
                return
        self._hand_back(self._take_lease(conn), None, cleanup)

    def _put_lost(self) -> None:
        """``put(None)``: discard the one checkout of the calling greenlet."""
        mine = []
        for ref in list(self._proxies.values()):
            proxy = ref()
            if proxy is None or proxy._base is None:
                continue
            base = proxy._base
            try:
                if self._lease_of(base) is not None:
                    mine.append(proxy)
            except ValueError:
                continue  # another greenlet's checkout
        if len(mine) != 1:
            raise ValueError(
                f"{self.name}: put(None) gives back the one connection the calling greenlet checked "
                f"out and lost, but it holds {len(mine)} of this pool's connections; put() them instead"
            )
        self._hand_back(self._take_lease(mine[0]), _Unclean("put(None): the borrower lost it"))

    def _put_foreign(self, conn: PooledConnection) -> None:
        """``put()`` of a proxy returned already (nothing to do) or of another pool (closed there)."""
        owner = conn._pool
        if conn._lease is None:
            return  # returned already: harmless, as in eventlet
        logger.warning(
            "%s: put() of a connection of pool %s: closed (its slot there is free again)",
            self.name, owner.name,
        )
        owner._hand_back(owner._take_lease(conn), _Unclean(f"put() into pool {self.name}"))

    def _take_lease(self, conn: Any) -> Lease[Any]:
        """The lease behind ``conn`` (a proxy of this pool, or its raw connection); the proxy dies.

        :raises ValueError: returned already, or not from this pool.
        """
        if isinstance(conn, PooledConnection):
            if conn._pool is not self:
                raise ValueError(f"{self.name}: {conn!r} is not from this pool")
            lease = conn._lease
            usage = conn._detach()
            if lease is None or usage is None or not lease.active:
                raise ValueError(f"{self.name}: connection returned twice")
            self._borrowed[id(lease.conn)] = usage
            return lease
        lease = self._lease_of(conn)
        if lease is None:
            raise ValueError(f"{self.name}: {conn!r} is not checked out from this pool")
        ref = self._proxies.pop(id(conn), None)
        proxy = ref() if ref is not None else None
        if proxy is not None and proxy._lease is lease:
            usage = proxy._detach()  # the raw connection came back: its proxy is dead from now on
            if usage is not None:
                self._borrowed[id(conn)] = usage
        return lease

    def _check_cleanup(self, cleanup: Any) -> None:
        if cleanup is not _MISSING and cleanup is not None and not callable(cleanup):
            raise ConfigurationError(
                f"{self.name}: cleanup must be callable or None, got {type(cleanup).__name__}"
            )

    def item(self, cleanup: Any = _MISSING, *, timeout: float | None = None) -> _Checkout:
        """``with pool.item() as conn:`` — get, then put (uncommitted work is rolled back).

        ``cleanup`` as in :meth:`put` (eventlet's argument).
        """
        self._check_cleanup(cleanup)
        return _Checkout(self, timeout, False, cleanup)

    def connection(self, timeout: float | None = None) -> _Checkout:
        """``with pool.connection() as conn:`` — a transaction: commit on success, roll back on error."""
        return _Checkout(self, timeout, True)

    def acquire(self, timeout: float | None = None) -> PooledConnection:
        """Same as :meth:`get`."""
        return self.get(timeout)

    def release(self, conn: Any, error: BaseException | None = None) -> None:
        """Return ``conn`` as if the block using it ended with ``error`` (the discard rule applies)."""
        if error is None:
            self.put(conn)
            return
        self._hand_back(self._take_lease(conn), error)

    def free(self) -> int:
        """How many ``get()`` calls would not wait: idle connections plus room to open more."""
        state = self.snapshot()
        return state.idle + max(self.max_size - state.size, 0)

    def waiting(self) -> int:
        """How many greenlets wait in ``get()``."""
        return self.snapshot().waiting

    @property
    def current_size(self) -> int:
        """Connections counted against ``max_size``: idle, in use, opening or closing (eventlet's name)."""
        return self.snapshot().size

    @property
    def free_items(self) -> list[tuple[float, float, Any]]:
        """The idle connections as eventlet lists them: ``(last_used, created_at, raw_conn)``, times
        in :func:`time.time` seconds, most recently used first (a copy: changing it changes nothing)."""
        offset = time.time() - self._clock()
        slots = sorted(self.snapshot().idle_slots, key=lambda slot: slot.last_used, reverse=True)
        return [(slot.last_used + offset, slot.created + offset, slot.conn) for slot in slots]

    def clear(self) -> None:
        """Close every idle connection now (the pool stays open; checked-out ones are untouched)."""
        self.drop_idle()

    def resize(  # type: ignore[override]
        self, new_size: int | None = None, *, min_size: int | None = None, max_size: int | None = None
    ) -> None:
        """``resize(new_size)`` sets ``max_size`` (eventlet); the keywords work as in the core pool."""
        if new_size is not None:
            max_size = new_size
            if min_size is None and isinstance(new_size, int) and self.min_size > new_size:
                min_size = new_size
        super().resize(min_size=min_size, max_size=max_size)
        if self._runner is not None and self._threads is None:
            self._runner.resize(self.max_size)

    # -- return hygiene -----------------------------------------------------------------------

    def _hand_back(
        self,
        lease: Lease[Any],
        error: BaseException | None,
        cleanup: Any = _MISSING,
        usage: Usage | None = None,
    ) -> None:
        if error is not None:
            if not isinstance(error, Exception) and not self._threaded:
                self._interrupted.add(id(lease.conn))  # a kill or timeout: maybe mid-statement
            lease.release(error)  # the discard rule; _reset() runs for ordinary errors
            return
        if self._close_on_return:
            lease.release(_CLOSE_ON_RETURN)
            return
        try:
            self._reset(lease.conn, cleanup, usage)  # its I/O is bounded by _io_deadline
        except BaseException as reset_error:
            lease.release(reset_error if self._is_broken(reset_error) else _Unclean(repr(reset_error)))
            if not isinstance(reset_error, (Exception, _deadline.Expired)):
                raise
            return
        lease.__exit__(None, None, None)

    def _reset(self, conn: Any, cleanup: Any = _MISSING, usage: Usage | None = None) -> None:
        """Make ``conn`` clean: roll back, restore session attributes, run ``reset`` (or ``cleanup``,
        when given); raise if impossible.  ``usage``: what the borrower did (hygiene.py; default:
        as put() recorded it, or unknown)."""
        driver = self.driver
        if type(conn) is ThreadedConnection and conn.abandoned:
            raise _Unclean("a call was interrupted while it ran in a thread")
        if usage is None:
            usage = self._borrowed.pop(id(conn), UNKNOWN_USAGE)
        if usage.level >= CONDEMNED:
            raise Condemned("the borrower changed what the driver cannot take back")
        if usage.named_cursors:  # before the rollback: WITH HOLD cursors outlive it
            driver.close_cursors(conn, usage.named_cursors, self._io_deadline)
        state = driver.state(conn)  # local: no I/O
        if state is not IDLE:
            if state is INTRANS or state is INERROR:
                with self._io_deadline("rollback"):
                    driver.clean(conn)
            else:
                raise _Unclean(f"connection returned in state {state!r}")
        snapshot = self._snapshots.get(id(conn))
        if usage.level and snapshot is not None:  # an untouched connection needs nothing
            driver.restore_session(conn, snapshot, usage, self._io_deadline)
        hook = self._reset_hook if cleanup is _MISSING else cleanup
        if hook is not None:
            with self._io_deadline("reset"):
                hook(conn)
            after = driver.state(conn)
            if after is not IDLE and driver.tracks_state:
                raise _Unclean(f"reset left the connection in state {after!r}")

    def _io_deadline(self, what: str) -> Any:
        """Bound the return path's I/O by ``keepalive_timeout``; overrunning it condemns the connection
        (with an internal timeout that the driver's own ``except Exception`` cannot swallow)."""
        seconds = self.keepalive_timeout
        if seconds != self._io_seconds:  # a new value: new timers and messages
            self._io_seconds = seconds
            self._io_timers = []
            self._io_messages = {}
        message = self._io_messages.get(what)
        if message is None:
            message = self._io_messages[what] = f"{what} took longer than {seconds:g} s"
        return _deadline.limit(seconds, message, timers=self._io_timers)

    def is_disconnect(self, exc: BaseException) -> bool:
        """Tell whether ``exc`` means the connection is unusable; override to add your own cases.

        The default asks the driver (psycopg2/psycopg: InterfaceError,
        client-side OperationalError, SQLSTATE 08xxx/57P0x; sqlite3: a
        closed database; others: OperationalError and InterfaceError).
        """
        return self.driver.is_disconnect(exc)

    def _is_connect_error(self, error: BaseException) -> bool:
        # a refusal no retry can fix (credentials, certificate, database name) reaches the caller now
        return super()._is_connect_error(error) and not self.driver.is_refused_connect(error)

    def _is_broken(self, error: BaseException) -> bool:
        if not isinstance(error, Exception):
            return True
        if isinstance(error, (_Unclean, _CloseOnReturn, OSError, ConnectionAbandoned)):
            return True
        return self.is_disconnect(error)

    # -- hooks of the core pool ----------------------------------------------------------------

    def _new_connection(self) -> Any:
        if self._threaded:
            conn = self._thread_runner().call(
                self._connect, *self._connect_args, on_abandon=close_when_done, **self._connect_kwargs
            )
        else:
            conn = self._connect(*self._connect_args, **self._connect_kwargs)
        if conn is None:
            raise ConfigurationError(f"{self.name}: connect() returned None, not a DB-API connection")
        try:
            if not self._driver_known:
                self._learn_driver(conn)
            if self._threaded:
                runner = self._thread_runner()
                canceller = self.driver.canceller(conn, self._side_connection, _in_hub_threads)
                conn = ThreadedConnection(
                    conn, runner, canceller, self.driver.local_calls, self.driver.cursor_local_calls
                )
            if self.driver.name == "psycopg":
                conn._pool = self  # psycopg 3: `with conn:` must not close a pooled connection
            if self._configure is not None:
                self._configure(conn)
                if self.driver.state(conn) is INTRANS:
                    conn.commit()
            _pgbouncer.prepare_connection(conn, self.driver.name, self.pgbouncer)
            self._snapshots[id(conn)] = self.driver.snapshot(conn)
            # the driver's settings as of this connect (reset_session, guards) pick the cursor path
            _use_fast_cursor(self._wrapper, None if self._threaded else self.driver.fast_cursor())
            if self.green and self.pgbouncer is None:
                green_psycopg2.register_canceller(conn, self._side_connection)
            elif self.green:  # the pid a bouncer reports is not the server's: the protocol's cancel
                green_psycopg2.register_canceller(conn, None, _pgbouncer.pg2_protocol_cancel)
        except BaseException:
            self._close_half_built(conn)
            raise
        return conn

    def _side_connection(self) -> Any:
        """A connection opened like the pool's, outside the pool (for cancel requests)."""
        return self._connect(*self._connect_args, **self._connect_kwargs)

    def _cancel_interrupted(self, conn: Any) -> None:
        """A green connection whose borrower was killed or timed out: stop its statement, if any."""
        try:
            cancel = self.driver.canceller(conn, self._side_connection, None)
            if cancel is not None:
                cancel()
        except Exception as error:
            logger.debug("%s: cancel failed: %r", self.name, error)

    def _learn_driver(self, conn: Any) -> None:
        name = type(conn).__module__.split(".")[0]
        module = sys.modules.get(name) or sys.modules.get(name.lstrip("_"))
        try:
            _check_module(self.name, module, name)
        except ConfigurationError:
            pass
        else:
            self.driver = driver_for(module)
            _pgbouncer.adapt_driver(self.driver, self.pgbouncer)
            self.exc_classes = (*self.driver.disconnect_classes, OSError)
        if self._threaded is None:
            # a connect callable of an unknown module: this first connect ran in the hub
            green = self.driver.connect_function(self._connect) is self._connect
            self._threaded = not green or not self.driver.is_green(self._connect_kwargs)
        self._wrapper = _wrapper_class(self.driver, self._threaded, self)
        self._fast_checkout = _fast_checkout_for(self._wrapper)
        self._driver_known = True

    def _keepalive(self, conn: Any) -> None:
        if self._check is not None:
            self._check(conn)
        else:
            self.driver.ping(conn)

    def _close_connection(self, conn: Any) -> None:
        self._proxies.pop(id(conn), None)
        self._snapshots.pop(id(conn), None)
        self._borrowed.pop(id(conn), None)
        if type(conn) is ThreadedConnection and conn.abandoned:
            return  # closed by its reaper once the abandoned call has ended
        if self._interrupted:
            interrupted = id(conn) in self._interrupted
            self._interrupted.discard(id(conn))
            if interrupted:  # even if the driver closed it (PyMySQL does): the server goes on
                self._cancel_interrupted(conn)
        if self.green:
            green_psycopg2.unregister_canceller(conn)
        try:
            state = self.driver.state(conn)
        except Exception:
            state = CLOSED
        if state is CLOSED:
            return
        if state is ACTIVE:
            try:
                self.driver.cancel(conn)  # the server would go on running the query
            except Exception as error:
                logger.debug("%s: cancel failed: %r", self.name, error)
        conn.close()

    def _close_half_built(self, conn: Any) -> None:
        try:
            conn.close()
        except Exception:
            logger.debug("%s: closing a half-configured connection failed", self.name)


class _Checkout:
    """The context manager of :meth:`ConnectionPool.item` and :meth:`ConnectionPool.connection`."""

    __slots__ = ("_pool", "_timeout", "_commit", "_conn", "_cleanup")

    def __init__(
        self, pool: ConnectionPool, timeout: float | None, commit: bool, cleanup: Any = _MISSING
    ) -> None:
        self._pool = pool
        self._timeout = timeout
        self._commit = commit
        self._cleanup = cleanup
        self._conn: PooledConnection | None = None

    def __enter__(self) -> PooledConnection:
        if self._conn is not None:
            raise ValueError("this checkout is already in use")
        self._conn = self._pool.get(self._timeout)
        return self._conn

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn = self._conn
        self._conn = None
        if conn is None or conn.returned:
            return  # the block returned it itself (conn.close())
        if exc is None and self._commit:
            try:
                conn.commit()
            except BaseException as error:
                self._pool.release(conn, error)
                raise
        if exc is None:
            self._pool.put(conn, self._cleanup)
        else:
            self._pool.release(conn, exc)


def _wrapper_class(driver: Driver, threaded: bool, pool: ConnectionPool) -> type[PooledConnection]:
    """The pool's own subclass of the proxy class for ``driver``: it holds the pool as a class
    attribute, so that a checkout sets one slot less and ``type(conn) is pool._wrapper`` says
    whose proxy ``conn`` is."""
    base = SqliteConnection if driver.name == "sqlite3" and not threaded else PooledConnection
    return type(base.__name__, (base,), {"__slots__": (), "_pool": pool, "__module__": base.__module__})


def _fast_checkout_for(wrapper: type[PooledConnection]) -> Callable[..., Any] | None:
    """The C checkout, if it can make proxies of class ``wrapper`` (it inlines PooledConnection's
    ``__init__``), else None."""
    return _fast.checkout if wrapper.__init__ is PooledConnection.__init__ else None


def _use_fast_cursor(wrapper: type[PooledConnection], default: type | None) -> None:
    """Give the pool's proxy class the C ``cursor()`` (dbapi/_speedups.c) while the driver has a
    watched cursor to give (``default``: its cursor class), or take it away."""
    if wrapper._fast_cursor is default:
        return  # unchanged: leave the class (and the interpreter's method caches) alone
    wrapper._fast_cursor = default
    method = _fast.cursor_method
    inherited = getattr(wrapper.__mro__[1], "cursor", None)  # the proxy class the pool's own extends
    if default is not None and method is not None and inherited is _fast.python_cursor:
        wrapper.cursor = method  # type: ignore[method-assign]
    elif "cursor" in wrapper.__dict__:
        del wrapper.cursor


def _in_hub_threads(func: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking side task (a cancel's side connection) in the hub's own thread pool."""
    return gevent.get_hub().threadpool.apply(func, args)


class RawConnectionPool(ConnectionPool):
    """A :class:`ConnectionPool` that never uses threads: the driver's calls run in the calling
    greenlet (eventlet's name; for drivers that are cooperative by themselves)."""

    thread_mode = False


class TpooledConnectionPool(ConnectionPool):
    """A :class:`ConnectionPool` in thread-pool mode for every driver (eventlet's name): each call
    on a connection or cursor runs in one of the pool's ``threads`` OS threads."""

    thread_mode = True


_fast.install(ConnectionPool.get, ConnectionPool.put)
