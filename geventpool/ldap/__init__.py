"""geventpool.ldap: a cooperative python-ldap connection pool with ldappool's API.

``from geventpool.ldap import ConnectionManager`` replaces ``from ldappool
import ConnectionManager``; connections are python-ldap ``LDAPObject``
subclasses whose synchronous methods wait through the gevent hub.

ldap_core_shared's documented API (``ConnectionInfo``,
``LDAPConnectionManager``, ``create_ha_cluster``) lives in
:mod:`geventpool.ldap.compat`, which importing this package does not load; its
names are importable from here too (loaded on first use).  Its pool face is
``geventpool.ldap.compat.documented.ConnectionPool`` (not re-exported: the name
would shadow the core's).
"""

from __future__ import annotations

import importlib
from typing import Any

from ._base import DEFAULT_LDAP_EXC_CLASSES
from .connection import LOST_CONNECTION_ERRORS, LDAPConnection
from .credentials import Credentials
from .errors import AuthenticationFailed, BackendError, MaxConnectionReachedError, TLSVerificationError
from .ldap3_connection import Connection
from .pool import ConnectionManager, LDAPPool
from .servers import (
    FIRST,
    GET_ALL_INFO,
    GET_DSA_INFO,
    GET_NO_INFO,
    GET_SCHEMA_INFO,
    POOLING_STRATEGY_FIRST,
    POOLING_STRATEGY_RANDOM,
    POOLING_STRATEGY_ROUND_ROBIN,
    RANDOM,
    ROUND_ROBIN,
    DSAInfo,
    SchemaInfo,
    Server,
    ServerPool,
)
from .tls import Tls, TLSPolicy
from .uris import LDAPServer, parse_uris

__all__ = [
    "LDAPPool",
    "ConnectionManager",
    "Connection",
    "Server",
    "ServerPool",
    "GET_NO_INFO",
    "GET_DSA_INFO",
    "GET_SCHEMA_INFO",
    "GET_ALL_INFO",
    "FIRST",
    "ROUND_ROBIN",
    "RANDOM",
    "POOLING_STRATEGY_FIRST",
    "POOLING_STRATEGY_ROUND_ROBIN",
    "POOLING_STRATEGY_RANDOM",
    "LDAPConnection",
    "TLSPolicy",
    "Tls",
    "LDAPServer",
    "Credentials",
    "parse_uris",
    "AuthenticationFailed",
    "TLSVerificationError",
    "MaxConnectionReachedError",
    "BackendError",
    "DEFAULT_LDAP_EXC_CLASSES",
    "LOST_CONNECTION_ERRORS",
    "DSAInfo",
    "SchemaInfo",
]


#: ldap_core_shared's names, loaded from :mod:`geventpool.ldap.compat` on first use.
_COMPAT = frozenset((
    "ConnectionInfo", "ValidationResult", "LDAPConnectionManager", "ConnectionResult",
    "PerformanceMetrics", "create_ha_cluster", "ConnectionTimeout", "ConnectionUnhealthy",
    "PoolExhausted", "SSLError",
))


def __getattr__(name: str) -> Any:
    if name in _COMPAT:
        return getattr(importlib.import_module(".compat", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
