"""ldap_core_shared's documented API, on top of :class:`~geventpool.ldap.LDAPPool`.

``ConnectionInfo``, ``LDAPConnectionManager``, ``create_ha_cluster`` and the
pool face ``geventpool.ldap.compat.documented.ConnectionPool``.  Importing
:mod:`geventpool.ldap` does not load this package; its names are still
importable from there (``from geventpool.ldap import LDAPConnectionManager``
loads it on first use).
"""

from __future__ import annotations

from .apierrors import ConnectionTimeout, ConnectionUnhealthy, PoolExhausted, SSLError
from .info import ConnectionInfo, ValidationResult
from .manager import ConnectionResult, LDAPConnectionManager, PerformanceMetrics, create_ha_cluster

__all__ = [
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
