"""DatabaseConnector: one pool per (host, database), with per-host credentials.

eventlet's ``DatabaseConnector``, finished: credentials are looked up by
host, then under the ``'default'`` entry; a host with neither is refused
with a clear error; pools are created on first use and :meth:`close` closes
them all.  Greenlet-safe (creating a pool does no I/O and does not yield);
not thread-safe.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import ConfigurationError
from .drivers import driver_for
from .pool import ConnectionPool, _resolve

__all__ = ["DatabaseConnector"]


class DatabaseConnector:
    """A pool of pools: ``connector.get(host, dbname)`` returns that database's pool.

    :param module: the DB-API module (as for :class:`ConnectionPool`).
    :param credentials: host -> mapping of connect keyword arguments
        (``user``, ``password``...); the ``'default'`` entry serves every
        host without its own.
    :param conn_pool: the pool class (default :class:`ConnectionPool`).
    :param args: positional arguments of every pool.
    :param kwargs: keyword arguments of every pool (pool options and
        connect arguments alike).
    :raises ConfigurationError: ``module`` is not DB-API 2.0, or
        ``credentials`` is not a mapping of mappings.
    """

    def __init__(
        self,
        module: Any,
        credentials: Mapping[str, Mapping[str, Any]],
        conn_pool: type[ConnectionPool] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        owner = type(self).__name__
        resolved, _ = _resolve(owner, module)
        if not isinstance(credentials, Mapping) or not all(
            isinstance(v, Mapping) for v in credentials.values()
        ):
            raise ConfigurationError(
                f"{owner}: credentials must map each host to a mapping of connect arguments"
            )
        if conn_pool is not None and not (
            isinstance(conn_pool, type) and issubclass(conn_pool, ConnectionPool)
        ):
            raise ConfigurationError(
                f"{owner}: conn_pool must be a ConnectionPool subclass, got {conn_pool!r}"
            )
        self._module = module
        self._database_kwarg = driver_for(resolved).database_kwarg if resolved is not None else "database"
        self._credentials = {str(k): dict(v) for k, v in credentials.items()}
        self._pool_class = conn_pool or ConnectionPool
        self._args = args
        self._kwargs = kwargs
        self._pools: dict[tuple[str, str], ConnectionPool] = {}

    def credentials_for(self, host: str) -> dict[str, Any]:
        """Return the connect arguments for ``host`` (its own entry, else ``'default'``).

        :raises ConfigurationError: neither exists (the message names the host only).
        """
        found = self._credentials.get(host)
        if found is None:
            found = self._credentials.get("default")
        if found is None:
            raise ConfigurationError(
                f"{type(self).__name__}: no credentials for host {host!r} and no 'default' entry"
            )
        return dict(found)

    def get(self, host: str, dbname: str) -> ConnectionPool:
        """Return the pool for (``host``, ``dbname``), creating it on first use."""
        key = (host, dbname)
        pool = self._pools.get(key)
        if pool is None:
            kwargs = dict(self._kwargs)
            kwargs[self._database_kwarg] = dbname
            kwargs["host"] = host
            kwargs.update(self.credentials_for(host))
            pool = self._pool_class(self._module, *self._args, **kwargs)
            self._pools[key] = pool  # no yield since the lookup: no duplicate pools
        return pool

    def __iter__(self) -> Iterator[tuple[tuple[str, str], ConnectionPool]]:
        return iter(list(self._pools.items()))

    def __len__(self) -> int:
        return len(self._pools)

    def close(self, timeout: float = 5.0) -> None:
        """Close every pool (each waits up to ``timeout`` for its checked-out connections)."""
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close(timeout)

    def __repr__(self) -> str:
        return f"<DatabaseConnector {len(self._pools)} pools, hosts {sorted(self._credentials)}>"
