"""geventpool.ldap: a cooperative python-ldap connection pool with ldappool's API.

``from geventpool.ldap import ConnectionManager`` replaces ``from ldappool
import ConnectionManager``; connections are python-ldap ``LDAPObject``
subclasses whose synchronous methods wait through the gevent hub.
"""

from __future__ import annotations

from ._base import DEFAULT_LDAP_EXC_CLASSES
from .connection import LOST_CONNECTION_ERRORS, LDAPConnection
from .credentials import Credentials
from .errors import AuthenticationFailed, BackendError, MaxConnectionReachedError, TLSVerificationError
from .pool import ConnectionManager, LDAPPool
from .servers import DSAInfo, SchemaInfo
from .tls import TLSPolicy
from .uris import LDAPServer, parse_uris

__all__ = [
    "LDAPPool",
    "ConnectionManager",
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
]
