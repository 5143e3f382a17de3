"""The core pool's hooks for LDAP: one identity, many connections.

:class:`_LDAPHooks` is a :class:`~geventpool.ConnectionPool` of
:class:`LDAPConnection` all bound as one identity (or all anonymous).  The
public :class:`~geventpool.ldap.LDAPPool` is one; it keeps further
instances for other bind DNs and for :meth:`authenticate`.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import PoolError
from ..pool import ConnectionPool
from ._connect import Settings, open_bound
from .connection import LOST_CONNECTION_ERRORS, LDAPConnection
from .credentials import Credentials

__all__ = ["LDAPHooks", "IdentityPool", "AuthPool", "DEFAULT_LDAP_EXC_CLASSES"]

logger = logging.getLogger("geventpool.ldap")

#: Errors that condemn the connection they were raised on (the core's ``exc_classes``).
DEFAULT_LDAP_EXC_CLASSES = LOST_CONNECTION_ERRORS


class _Condemned(PoolError):
    """Internal: a returned connection is unfit for reuse (raised by _reset)."""


class LDAPHooks(ConnectionPool[LDAPConnection]):
    """The core pool specialised for LDAP connections bound as one identity.

    Greenlet-safe like :class:`~geventpool.ConnectionPool`; not thread-safe.
    """

    reset_on_return = True
    #: Whether a connection whose bind changed (a user bind, a failed bind) is discarded on return.
    check_identity = True

    _settings: Settings
    _credentials: Credentials

    def _setup(self, settings: Settings, credentials: Credentials) -> None:
        self._settings = settings
        self._credentials = credentials

    def _new_connection(self) -> LDAPConnection:
        credentials = self._credentials
        conn, server = open_bound(self._settings, credentials)
        conn.__dict__["_identity_key"] = credentials.key
        policy = self._settings.referrals
        if policy is not None:
            conn.__dict__["_referrals"] = (policy, self._settings, self._credentials)
        logger.debug("%s: connected to %s as %r", self.name, server.uri, credentials.dn)
        return conn

    def _keepalive(self, conn: LDAPConnection) -> None:
        if conn.broken:
            raise _Condemned(f"{self.name}: connection is broken")
        conn.whoami_s()

    def _reset(self, conn: LDAPConnection) -> None:
        if conn.broken:
            raise _Condemned(f"{self.name}: connection broken during use")
        if self.check_identity and (
            not conn.identity_ok or conn.__dict__.get("_identity_key") != self._credentials.key
        ):
            raise _Condemned(f"{self.name}: connection re-bound during use, or credentials changed")

    def _close_connection(self, conn: LDAPConnection) -> None:
        conn.close()

    @property
    def credentials_dn(self) -> str:
        """The DN this pool's connections are bound as ("" for anonymous)."""
        return self._credentials.dn

    def _slots(self) -> list[Any]:
        return sorted([*self._idle, *self._busy.values()], key=lambda s: s.number)


class IdentityPool(LDAPHooks):
    """Connections bound as one DN other than the main pool's (``connection(bind, passwd)``)."""


class AuthPool(LDAPHooks):
    """Connections set apart for :meth:`LDAPPool.authenticate`: anonymous until each check binds them.

    They are never lent to anyone but ``authenticate``, which binds them
    again every time, so their bound identity does not matter.
    """

    check_identity = False

    def _keepalive(self, conn: LDAPConnection) -> None:
        if conn.broken:
            raise _Condemned(f"{self.name}: connection is broken")
        # anonymous WhoAmI works whatever the connection is bound as
        conn.whoami_s()
