"""geventpool: greenlet-safe connection pools for gevent applications.

``import geventpool`` needs gevent only; the LDAP and DB-API pools live in
``geventpool.ldap`` and ``geventpool.dbapi`` and import their drivers there.
"""

from __future__ import annotations

from ._slot import Slot, SlotState
from .errors import (
    BackendUnavailable,
    ConfigurationError,
    ConnectTimeout,
    PoolClosed,
    PoolError,
    PoolTimeout,
    TooManyWaiters,
)
from .pool import DEFAULT_EXC_CLASSES, ConnectionPool
from .retry import backoff_delay, retry

__version__ = "0.1.0"

__all__ = [
    "ConnectionPool",
    "Slot",
    "SlotState",
    "retry",
    "backoff_delay",
    "DEFAULT_EXC_CLASSES",
    "PoolError",
    "PoolTimeout",
    "BackendUnavailable",
    "ConnectTimeout",
    "PoolClosed",
    "TooManyWaiters",
    "ConfigurationError",
    "__version__",
]
