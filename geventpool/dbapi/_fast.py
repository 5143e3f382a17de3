"""The DB-API pool's C fast paths (``geventpool/dbapi/_speedups.c``), each None without them.

They serve the common case of :meth:`ConnectionPool.get() <geventpool.dbapi.ConnectionPool.get>`,
of a :meth:`~geventpool.dbapi.ConnectionPool.put` with nothing to clean, and of psycopg2's
watched ``cursor()``; anything else, and every call when they are None (no compiler, or
``GEVENTPOOL_PURE_PYTHON=1``), runs the Python code, which behaves the same.  They are used only
with the core's C speedups (their checkout is the core's).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from .. import _accel
from .hygiene import QUERIED, UNTOUCHED
from .wrapper import PooledConnection

__all__ = ["checkout", "wrap", "quiet_return", "watched_cursor", "active"]


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
#: ``watched_cursor(watched, default, proxy)``: a watched psycopg2 cursor, or None.
watched_cursor: Callable[[dict[type, type], type, Any], Any] | None = (
    _module.watched_cursor if _module is not None else None
)


def active() -> bool:
    """Whether the DB-API pool's C fast paths are in use in this process."""
    return _module is not None
