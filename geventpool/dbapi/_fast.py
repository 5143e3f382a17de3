"""The DB-API pool's C fast paths (``geventpool/dbapi/_speedups.c``), each None without them.

They serve the common case of :meth:`ConnectionPool.get() <geventpool.dbapi.ConnectionPool.get>`,
of a :meth:`~geventpool.dbapi.ConnectionPool.put` with nothing to clean, of psycopg2's watched
``cursor()`` and of a watched cursor's ``execute()`` of a statement known not to change the
session; anything else, and every call when they are None (no compiler, or
``GEVENTPOOL_PURE_PYTHON=1``), runs the Python code, which behaves the same.  They are used only
with the core's C speedups (their checkout is the core's).

Where they are bound: ``ConnectionPool.__init__`` binds :data:`get` and :data:`put` to the pool
(unless its class overrides them); a connect gives the pool's own proxy class
:data:`cursor_method` when the driver has a watched cursor to give; a watched cursor class gets
:data:`execute_method` when it is made.  ``dbapi/pool.py`` calls :func:`install` once
``ConnectionPool`` exists.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from .. import _accel
from .hygiene import _VERDICTS, QUERIED, UNTOUCHED, WATCHED_CURSORS
from .wrapper import PooledConnection

__all__ = [
    "checkout", "wrap", "quiet_return", "pg2_clean", "get", "put", "cursor_method",
    "execute_method", "python_get", "python_put", "python_cursor", "install", "served", "active",
]


def _load() -> ModuleType | None:
    core = _accel.load()
    if core is None:
        return None
    return _accel.load_extension(
        f"{__package__}._speedups",
        Path(__file__).with_name("_speedups.c"),
        lambda module: module.setup(PooledConnection, core.take, UNTOUCHED, QUERIED),
    )


_module = _load()

#: ``checkout(table, pool, wrapper, proxies)``: a new proxy, or None (the general path).
checkout: Callable[[Any, Any, type, dict[int, Any]], Any] | None = (
    _module.checkout if _module is not None else None
)
#: ``wrap(lease, wrapper, proxies)``: the proxy of a lease the general path checked out, or None.
wrap: Callable[[Any, type, dict[int, Any]], Any] | None = _module.wrap if _module is not None else None
#: ``quiet_return(proxy, clean, snapshots)``: True if returned with no I/O, else False.
quiet_return: Callable[[Any, Callable[[Any, Any], bool], dict[int, Any]], bool] | None = (
    _module.quiet_return if _module is not None else None
)
#: ``pg2_clean(conn, snapshot)``: ``Psycopg2Driver.clean_after_queries`` in C (a quiet return
#: recognises it and checks the connection without a call).
pg2_clean: Callable[[Any, Any], bool] | None = _module.pg2_clean if _module is not None else None
#: ``get(pool, timeout=None)`` / ``put(pool, conn, cleanup=...)``: ConnectionPool's get and put,
#: the C path first (bound to a pool by its ``__init__``); None until :func:`install`.
get: Callable[..., Any] | None = None
put: Callable[..., Any] | None = None
#: the Python methods the C ones fall back to, as :func:`install` found them: a pool or proxy
#: class whose method is not the one here (a subclass's, a patch) keeps its own
python_get: Callable[..., Any] | None = None
python_put: Callable[..., Any] | None = None
python_cursor: Callable[..., Any] | None = None
#: PooledConnection's ``cursor()`` with the C path first (a method of PooledConnection); None
#: until :func:`install`.
cursor_method: Any = None
#: ``execute_method(cls)``: a watched cursor's ``execute()`` with the C path first, as a method of
#: cursor class ``cls``; None until :func:`install`.
execute_method: Callable[[type], Any] | None = None


def install(pool_get: Callable[..., Any], pool_put: Callable[..., Any]) -> None:
    """Give the C methods the Python code they fall back to (``ConnectionPool.get`` and ``put``,
    ``PooledConnection.cursor``), then publish them.  Called once by ``dbapi/pool.py``."""
    global get, put, cursor_method, execute_method, python_get, python_put, python_cursor
    if _module is None:
        return
    python_get, python_put, python_cursor = pool_get, pool_put, PooledConnection.cursor
    _module.install(pool_get, pool_put, python_cursor, WATCHED_CURSORS, _VERDICTS)
    get, put = _module.get, _module.put
    cursor_method = _module.cursor_method()
    execute_method = _module.execute_method


def served() -> dict[str, int]:
    """How often each C path served a call in this process, by name (empty without them)."""
    return dict(_module.served()) if _module is not None else {}


def active() -> bool:
    """Whether the DB-API pool's C fast paths are in use in this process."""
    return _module is not None
