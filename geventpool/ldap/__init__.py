"""geventpool.ldap: a cooperative python-ldap connection pool with ldappool's API.

``from geventpool.ldap import ConnectionManager`` replaces ``from ldappool
import ConnectionManager``; connections are python-ldap ``LDAPObject``
subclasses whose synchronous methods wait through the gevent hub.

ldap_core_shared's documented API lives here too (``ConnectionInfo``,
``LDAPConnectionManager``, ``create_ha_cluster``); its pool face is
``geventpool.ldap.documented.ConnectionPool`` (not re-exported: the name
would shadow the core's).
"""

from __future__ import annotations

from ._base import DEFAULT_LDAP_EXC_CLASSES
from .apierrors import ConnectionTimeout, ConnectionUnhealthy, PoolExhausted, SSLError
from .connection import LOST_CONNECTION_ERRORS, LDAPConnection
from .credentials import Credentials
from .errors import AuthenticationFailed, BackendError, MaxConnectionReachedError, TLSVerificationError
from .info import ConnectionInfo, ValidationResult
from .manager import ConnectionResult, LDAPConnectionManager, PerformanceMetrics, create_ha_cluster
from .pool import ConnectionManager, LDAPPool
from .servers import (
    GET_ALL_INFO,
    GET_DSA_INFO,
    GET_NO_INFO,
    GET_SCHEMA_INFO,
    DSAInfo,
    SchemaInfo,
    Server,
    ServerPool,
)
from .tls import TLSPolicy
from .uris import LDAPServer, parse_uris

__all__ = [
    "LDAPPool",
    "ConnectionManager",
    "Server",
    "ServerPool",
    "GET_NO_INFO",
    "GET_DSA_INFO",
    "GET_SCHEMA_INFO",
    "GET_ALL_INFO",
    "LDAPConnection",
    "TLSPolicy",
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
    "ConnectionInfo",
    "ValidationResult",
    "LDAPConnectionManager",
    "ConnectionResult",
    "PerformanceMetrics",
    "create_ha_cluster",
    "ConnectionTimeout",
    "ConnectionUnhealthy",
    "PoolExhausted",
    "SSLError",
]
