"""The errors of ldap_core_shared's documented API, each inside geventpool's own hierarchy.

Every class is both a :class:`~geventpool.PoolError` and the error its
callers already catch, so either ``except`` clause works:

- :class:`ConnectionTimeout`: connecting took too long -- a
  :class:`~geventpool.ldap.BackendError` (so ``ldap.SERVER_DOWN``) and a
  :class:`~geventpool.ConnectTimeout` (so ``TimeoutError``).
- :class:`AuthenticationFailed`: the bind was refused (the LDAP pool's own
  class; also ``ldap.INVALID_CREDENTIALS``).
- :class:`SSLError`: TLS failed (the LDAP pool's ``TLSVerificationError``).
- :class:`PoolTimeout`: no free connection within the timeout (a
  :class:`geventpool.PoolTimeout` and ldappool's ``MaxConnectionReachedError``).
- :class:`PoolExhausted`: every connection is in use and the caller would
  not wait (``timeout=0``), or the waiting queue is full (also a
  :class:`~geventpool.TooManyWaiters`, and a :class:`PoolTimeout`).
- :class:`ConnectionUnhealthy`: no server answers (a ``BackendError``).

``LDAPException`` is python-ldap's ``ldap.LDAPError``, the base of the LDAP
errors above.  Messages never contain a password.
"""

from __future__ import annotations

import ldap

from ...errors import ConnectTimeout, TooManyWaiters
from ..errors import AuthenticationFailed, BackendError, MaxConnectionReachedError, TLSVerificationError

__all__ = [
    "ConnectionTimeout",
    "AuthenticationFailed",
    "SSLError",
    "PoolTimeout",
    "PoolExhausted",
    "ConnectionUnhealthy",
    "LDAPException",
]

#: python-ldap's base class (the documentation's ``LDAPException``).
LDAPException = ldap.LDAPError

#: TLS failed before any credentials were sent (the documentation's ``SSLError``).
SSLError = TLSVerificationError


class ConnectionTimeout(BackendError, ConnectTimeout):
    """Connecting to the server(s) did not finish in time (``__cause__``: the last attempt's error)."""


class PoolTimeout(MaxConnectionReachedError):
    """No connection became free within the timeout (every one is in use)."""


class PoolExhausted(PoolTimeout, TooManyWaiters):
    """Every connection is in use and the caller did not wait (or too many already wait)."""


class ConnectionUnhealthy(BackendError):
    """No server answered: connecting keeps failing (``__cause__``: the last connect error)."""
