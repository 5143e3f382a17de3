"""The core pool's hooks for LDAP: one identity, many connections.

:class:`_LDAPHooks` is a :class:`~geventpool.ConnectionPool` of
:class:`LDAPConnection` all bound as one identity (or all anonymous).  The
public :class:`~geventpool.ldap.LDAPPool` is one; it keeps further
instances for other bind DNs and for :meth:`authenticate`.
"""

from __future__ import annotations

import logging
from typing import Any

import gevent
import gevent.lock
import ldap

from ..errors import ConnectTimeout, PoolError
from ..pool import ConnectionPool
from ..servers import Server
from ._connect import Settings, open_bound, open_connection
from .connection import LOST_CONNECTION_ERRORS, LDAPConnection
from .credentials import Credentials
from .errors import AuthenticationFailed, BindDropped
from .servers import OptionsCache, fetch_info, wants_info

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
    reset_waits = False  # _reset only checks state: no timer on every return
    #: Whether a connection whose bind changed (a user bind, a failed bind) is discarded on return.
    check_identity = True

    _settings: Settings
    _credentials: Credentials
    _options: OptionsCache

    #: With ldappool's contract: how long a caller waits when the pool is full (None: its timeout).
    _full_timeout: float | None = None
    _refused_key: tuple[str, bytes] | None = None  # credentials the server refused
    _proven_key: tuple[str, bytes] | None = None  # credentials the server accepted

    def refuse_if_refused(self) -> None:
        """Raise at once, without a bind, if the server refused the pool's current credentials.

        :raises AuthenticationFailed: it did; nothing is sent until the credentials change.
        """
        refused = self._refused_key
        if refused is not None and refused == self._credentials.key:
            raise AuthenticationFailed({
                "desc": "Invalid credentials",
                "info": f"{self.name}: the server refused the bind as {self._credentials.dn!r}; "
                        "not sent again until the credentials change (set_credentials)",
            })

    def _setup(
        self, settings: Settings, credentials: Credentials, options: OptionsCache | None = None
    ) -> None:
        self._settings = settings
        self._credentials = credentials
        self._first_bind = gevent.lock.Semaphore(1)
        self._options = options if options is not None else OptionsCache(settings.owner, settings)

    # the core calls _new_connection(server) when it has servers= (its base signature has none)
    def _new_connection(self, server: Server) -> LDAPConnection:  # type: ignore[override]
        """Connect to ``server`` (``retry_max`` attempts) and bind; read its info on the first success.

        Runs in a connector greenlet; the core tries the next server on a
        connection error and stops on any other (a refused bind above all).
        """
        settings = self._options.get(server).settings
        for _ in range(3):
            credentials = self._credentials
            if credentials.key == self._proven_key:
                conn, address = self._bind(settings, credentials)
            else:
                # Credentials not yet accepted: one bind at a time, so that a wrong password
                # costs one bind, not one per connector (an account lockout must not be ours).
                with self._first_bind:
                    conn, address = self._bind(settings, credentials)
            if credentials is self._credentials:
                break
            conn.close()  # set_credentials() ran during the bind: never lend the old identity
        else:
            raise ldap.SERVER_DOWN({"desc": f"{self.name}: credentials kept changing during the bind"})
        try:
            conn.__dict__["_identity_key"] = credentials.key
            policy = settings.referrals
            if policy is not None:
                conn.__dict__["_referrals"] = (policy, settings, credentials, open_connection)
            if wants_info(server):
                fetch_info(server, conn, self.name)
            # the server answered (a bind, or the rootDSE read): it serves
            conn.__dict__["_served"] = not credentials.anonymous or getattr(server, "info", None) is not None
            conn.mark_clean()  # from here on, whatever a borrower changes is noted
        except BaseException:
            conn.close()
            raise
        logger.debug("%s: connected to %s as %r", self.name, address.uri, credentials.dn)
        return conn

    def _bind(self, settings: Settings, credentials: Credentials) -> tuple[LDAPConnection, Any]:
        self.refuse_if_refused()
        try:
            conn, address = open_bound(settings, credentials)
        except ldap.INVALID_CREDENTIALS:
            # never again with these credentials: no connector, no monitor, no caller binds
            # with them until they change.  Not for a client-side refusal, nor a password
            # callback (asking it again may change them).
            if credentials.fixed and not credentials.unauthenticated:
                self._refused_key = credentials.key
            raise
        self._proven_key = credentials.key
        return conn, address

    def _check_timeout(self, server: Server) -> float:
        return float(self._options.get(server).settings.connect_timeout)  # one attempt, not retry_max

    def _probe_server(self, server: Server) -> None:
        """Check ``server`` for its circuit breaker: an anonymous connection reads the rootDSE.

        Never a bind (a probe must not count against an account's lockout),
        never a connection of the pool (those are lent or idle): a fresh one,
        closed at once, each step bounded by ``connect_timeout``.

        :raises OSError, ldap.LDAPError, ConnectTimeout: the server did not answer.
        """
        settings = self._options.get(server).settings
        limit = settings.connect_timeout
        expired = ConnectTimeout(f"{self.name}: probe of {server.name} took longer than {limit:g} s")
        with gevent.Timeout(limit, expired):
            conn = open_connection(settings.servers[0], settings)
        try:
            conn.search_ext_s("", ldap.SCOPE_BASE, "(objectClass=*)", ["supportedLDAPVersion"], timeout=limit)
        finally:
            conn.close()

    def _keepalive(self, conn: LDAPConnection) -> None:
        if conn.broken:
            raise _Condemned(f"{self.name}: connection is broken")
        self._check_identity(conn)
        conn.whoami_s()

    def _check_identity(self, conn: LDAPConnection) -> None:
        if self.check_identity and (
            not conn.identity_ok or conn.__dict__.get("_identity_key") != self._credentials.key
        ):
            raise _Condemned(f"{self.name}: connection re-bound during use, or credentials changed")

    def _reset(self, conn: LDAPConnection) -> None:
        """Every return: the connection goes back exactly as it was lent, or not at all.

        Anything a borrower changed that the pool cannot put back (an option of any
        number, server or client controls, referrals, TLS, a bind by any path, an unbind)
        condemns it; the ``timeout`` attribute is restored.
        """
        if conn.broken:
            raise _Condemned(f"{self.name}: connection broken during use")
        changed = conn.changed
        if changed is not None:
            raise _Condemned(f"{self.name}: a borrower changed the connection ({changed}): discarded")
        # (a connection to a server removed from the ServerPool is closed by the core on return)
        self._check_identity(conn)
        conn.restore()
        conn.mark_clean()

    def _close_connection(self, conn: LDAPConnection) -> None:
        conn.close()

    def _has_served(self, conn: LDAPConnection) -> bool:
        # The core counts a connection lost on its first use as a failed connect ("it accepts but
        # does not serve").  One that answered its bind did serve: its loss is a restart or a
        # network fault, which the next connect attempts will judge.
        return bool(conn.__dict__.get("_served"))

    @property
    def credentials_dn(self) -> str:
        """The DN this pool's connections are bound as ("" for anonymous)."""
        return self._credentials.dn

    def _slots(self) -> list[Any]:
        return list(self.snapshot().slots)


class IdentityPool(LDAPHooks):
    """Connections bound as one DN other than the main pool's (``connection(bind, passwd)``).

    The credentials are a caller's: a connection the server dropped during their bind counts
    against them (the caller gets the error, nothing retries), never against the server's
    health, which every pool shares: no caller can open the circuit for the others.
    """

    def _is_connect_error(self, error: BaseException) -> bool:
        return not isinstance(error, BindDropped) and super()._is_connect_error(error)

    def _has_served(self, conn: LDAPConnection) -> bool:
        return True


class AuthPool(LDAPHooks):
    """Connections set apart for :meth:`LDAPPool.authenticate`: anonymous until each check binds them.

    They are never lent to anyone but ``authenticate``, which binds them
    again every time, so their bound identity does not matter.
    """

    check_identity = False
    #: Nothing to reset on a clean return: the only borrower is ``authenticate()``, whose sole
    #: operation is the pool's own bind (no caller code touches the connection), and a bind that
    #: fails on the connection (lost, timed out, interrupted) leaves the block with its error,
    #: which condemns the connection.  Returns thus take the core's inlined path, not ``_reset``.
    reset_on_return = False

    def _has_served(self, conn: LDAPConnection) -> bool:
        return True  # a drop during a caller's bind says nothing of the server (see IdentityPool)

    def _keepalive(self, conn: LDAPConnection) -> None:
        if conn.broken:
            raise _Condemned(f"{self.name}: connection is broken")
        # anonymous WhoAmI works whatever the connection is bound as
        conn.whoami_s()
