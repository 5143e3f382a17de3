"""geventpool: greenlet-safe connection pools for gevent applications.

``import geventpool`` needs gevent only; the LDAP and DB-API pools live in
``geventpool.ldap`` and ``geventpool.dbapi`` and import their drivers there.
"""

from __future__ import annotations

from ._lease import Lease
from ._slot import Slot, SlotState
from ._state import Snapshot
from .backoff import backoff_delay
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
from .retry import retry
from .servers import (
    POOLING_STRATEGY_FIRST_ACTIVE,
    POOLING_STRATEGY_NONE,
    POOLING_STRATEGY_RANDOM_ACTIVE,
    POOLING_STRATEGY_RANDOM_PASSIVE,
    POOLING_STRATEGY_ROUND_ROBIN_ACTIVE,
    POOLING_STRATEGY_ROUND_ROBIN_PASSIVE,
    CircuitState,
    Server,
    ServerHealth,
    ServerPool,
)

__version__ = "0.1.0"

__all__ = [
    "ConnectionPool",
    "Lease",
    "Snapshot",
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
    "Server",
    "ServerPool",
    "ServerHealth",
    "CircuitState",
    "POOLING_STRATEGY_NONE",
    "POOLING_STRATEGY_FIRST_ACTIVE",
    "POOLING_STRATEGY_ROUND_ROBIN_PASSIVE",
    "POOLING_STRATEGY_ROUND_ROBIN_ACTIVE",
    "POOLING_STRATEGY_RANDOM_PASSIVE",
    "POOLING_STRATEGY_RANDOM_ACTIVE",
    "__version__",
]
