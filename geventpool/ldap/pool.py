"""LDAPPool: ldappool's ``ConnectionManager`` API on the core pool, cooperative under gevent.

``with pool.connection() as conn:`` lends an :class:`LDAPConnection` (a
python-ldap ``LDAPObject``) bound as the pool's DN; ``connection(dn, pw)``
lends one bound as ``dn``, from a sub-pool kept for that identity (DN and
password), so a connection bound as one identity is never lent to a caller
who asked for another.  :meth:`LDAPPool.authenticate` checks a user's
password on connections set apart for it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import gevent
import gevent.lock
import ldap

from .. import _deadline
from .._config import check_count, check_seconds
from .._state import Snapshot
from ..errors import ConfigurationError, ConnectTimeout, PoolClosed
from ..servers import Server, ServerPool
from ._base import DEFAULT_LDAP_EXC_CLASSES, AuthPool, IdentityPool, LDAPHooks
from ._connect import Settings, open_bound
from ._table import status_table
from ._users import UserPool, lend
from .connection import DEFAULT_OPERATION_TIMEOUT, LDAPConnection
from .credentials import Credentials
from .errors import BackendError, MaxConnectionReachedError
from .referrals import ReferralHosts, ReferralPolicy
from .servers import address_of, server_pool_of
from .tls import TLSPolicy
from .uris import LDAPServer

__all__ = ["LDAPPool", "ConnectionManager"]

logger = logging.getLogger("geventpool.ldap")


class LDAPPool(LDAPHooks):
    """A pool of cooperative python-ldap connections with ldappool's API.

    ``uri``: one or more ``ldap://``/``ldaps://`` URIs (comma or whitespace
    separated), tried in order with ``retry_max`` attempts each,
    ``retry_delay`` seconds apart.  ``bind``/``passwd``: the default identity
    (None: anonymous).  ``size``: the most connections for that identity.
    ``use_tls``: StartTLS on ``ldap://`` (``ldaps://`` always uses TLS);
    verification is on unless ``tls_verify=False``.  ``timeout``: seconds an
    operation may take (ldappool's ``-1`` means the default, 30 s: every wait
    is finite).  ``use_pool=False``: open and unbind a connection per use.
    ``max_lifetime``: seconds before a connection is replaced.

    ``retry_in_background`` chooses between two contracts.  False (the
    default with ldappool's URI string) is ldappool's: each connect makes one
    round of ``retry_max`` attempts on each URI in order, then the caller gets
    :class:`BackendError`, and nothing connects in the background until a
    caller asks again; a full pool raises :class:`MaxConnectionReachedError`
    after ``retry_max`` x ``retry_delay`` seconds unless ``checkout_timeout``
    is given.  True (the default with ``Server``/``ServerPool`` objects) is
    geventpool's failover: servers whose circuit is open are skipped (callers
    fail fast when all are), ``min_size`` is refilled and failed servers are
    probed in the background (failback), and callers wait
    ``checkout_timeout`` (default 30 s).  ``uri=""`` means libldap's default
    URI (``URI`` in ldap.conf, or ``$LDAPURI``), as in ldappool.

    Beyond ldappool: ``connect_timeout`` (per attempt), ``checkout_timeout``
    (waiting for a free connection), the TLS options, ``allowed_referral_hosts``
    (``"*"``, host names, or ``(host, allow_auth)`` pairs: referrals are not chased unless listed here;
    see :mod:`geventpool.ldap.referrals`), ``per_user`` (how ``connection(dn,
    password)`` serves DNs other than ``bind``: ``"rebind"``, the default, keeps
    one set of ``user_size`` connections, default ``size``, and binds one as each
    caller unless it is bound with the caller's credentials already, as ldappool
    does; ``"subpools"`` keeps ``identity_size`` connections for each of at most
    ``max_identities`` identities), ``auth_size`` (connections for
    :meth:`authenticate`), and the core pool's keyword arguments
    (``min_size``, ``keepalive``, ``ping_after``, ``max_idle``...).

    Every method is greenlet-safe and none is thread-safe (one pool per
    thread).  ``connection()`` yields to other greenlets while it waits for
    a connection or opens one; nothing in it blocks the hub.

    :raises ConfigurationError: a bad argument (named in the message).
    """

    def __init__(
        self,
        uri: str | Server | ServerPool | Sequence[str | Server],
        bind: str | None = None,
        passwd: str | None = None,
        size: int = 10,
        retry_max: int = 3,
        retry_delay: float = 0.1,
        use_tls: bool = False,
        timeout: float = DEFAULT_OPERATION_TIMEOUT,
        connector_cls: type[LDAPConnection] | None = None,
        use_pool: bool = True,
        max_lifetime: float = 600,
        *,
        connect_timeout: float = 5.0,
        checkout_timeout: float | None = None,
        tls: TLSPolicy | None = None,
        tls_verify: bool = True,
        tls_ca_file: str | None = None,
        tls_ca_dir: str | None = None,
        tls_cert_file: str | None = None,
        tls_key_file: str | None = None,
        tls_min_version: str = "1.2",
        min_size: int = 1,
        per_user: str = "rebind",
        user_size: int | None = None,
        identity_size: int | None = None,
        max_identities: int | None = None,
        auth_size: int | None = None,
        allowed_referral_hosts: ReferralHosts | None = None,
        retry_in_background: bool | None = None,
        name: str | None = None,
        **core_options: Any,
    ) -> None:
        owner = name or type(self).__name__
        server_pool, from_uri = server_pool_of(owner, uri)
        if bind is not None and not isinstance(bind, str):
            raise ConfigurationError(f"{owner}: bind must be a DN (str) or None, got {type(bind).__name__}")
        if passwd is not None and not isinstance(passwd, (str, bytes)):
            raise ConfigurationError(f"{owner}: passwd must be a str or None")
        credentials = Credentials(bind, passwd, owner=owner)
        if credentials.unauthenticated:
            raise ConfigurationError(
                f"{owner}: bind DN {bind!r} has an empty password (an unauthenticated bind); "
                "give its password, or no DN for anonymous access"
            )
        if not credentials.dn and passwd:
            raise ConfigurationError(f"{owner}: passwd given without a bind DN")
        size = check_count(owner, "size", size, 1)
        retry_max = check_count(owner, "retry_max", retry_max, 1)
        retry_delay = check_seconds(owner, "retry_delay", retry_delay)
        if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout == -1:
            timeout = DEFAULT_OPERATION_TIMEOUT  # ldappool's "no timeout": we keep a finite one
        op_timeout = check_seconds(owner, "timeout", timeout, allow_zero=False)
        connect_timeout = check_seconds(owner, "connect_timeout", connect_timeout, allow_zero=False)
        if not isinstance(use_tls, bool):
            raise ConfigurationError(f"{owner}: use_tls must be True or False, got {use_tls!r}")
        if connector_cls is None:
            connector_cls = LDAPConnection
        elif not (isinstance(connector_cls, type) and issubclass(connector_cls, LDAPConnection)):
            raise ConfigurationError(
                f"{owner}: connector_cls must be a subclass of geventpool.ldap.LDAPConnection "
                f"(the cooperative connection), got {connector_cls!r}"
            )
        if tls is None:
            tls = TLSPolicy(
                verify=tls_verify, ca_file=tls_ca_file, ca_dir=tls_ca_dir, cert_file=tls_cert_file,
                key_file=tls_key_file, min_version=tls_min_version,
            )
        elif not isinstance(tls, TLSPolicy):
            raise ConfigurationError(f"{owner}: tls must be a TLSPolicy, got {type(tls).__name__}")
        if use_tls or any(
            address_of(s).scheme == "ldaps" and getattr(s, "tls", None) is None for s in server_pool
        ):
            tls.check(owner)
        min_size = check_count(owner, "min_size", min_size)
        if per_user not in ("rebind", "subpools"):
            raise ConfigurationError(f"{owner}: per_user must be 'rebind' or 'subpools', got {per_user!r}")
        if per_user == "rebind":
            for argument, value in (("identity_size", identity_size), ("max_identities", max_identities)):
                if value is not None:
                    raise ConfigurationError(
                        f"{owner}: {argument} applies to per_user='subpools' only (per_user='rebind' "
                        "shares user_size connections among all identities)"
                    )
        elif user_size is not None:
            raise ConfigurationError(f"{owner}: user_size applies to per_user='rebind' only")
        self.per_user = per_user
        self.user_size = size if user_size is None else check_count(owner, "user_size", user_size, 1)
        self.identity_size = (
            2 if identity_size is None else check_count(owner, "identity_size", identity_size, 1)
        )
        self.max_identities = (
            64 if max_identities is None else check_count(owner, "max_identities", max_identities, 1)
        )
        self.auth_size = size if auth_size is None else check_count(owner, "auth_size", auth_size, 1)
        assert retry_delay is not None and op_timeout is not None and connect_timeout is not None
        if "servers" in core_options:
            raise ConfigurationError(f"{owner}: give the servers as uri (a Server, a ServerPool or a list)")
        self._core_options = dict(core_options)
        self._core_options.setdefault("exc_classes", DEFAULT_LDAP_EXC_CLASSES)
        # the core bounds one server's connect: retry_max attempts and the delays between them
        self._connect_bound = retry_max * (connect_timeout + retry_delay) + 1.0
        super().__init__(
            min_size=min(min_size, size),
            max_size=size,
            name=name,
            timeout=30.0 if checkout_timeout is None else checkout_timeout,
            connect_timeout=self._connect_bound,
            max_lifetime=max_lifetime,
            servers=server_pool,
            **self._core_options,
        )
        settings = Settings(
            owner=self.name, servers=tuple(address_of(s) for s in server_pool), tls=tls, use_tls=use_tls,
            retry_max=retry_max, retry_delay=retry_delay, connect_timeout=connect_timeout,
            op_timeout=op_timeout,
            referrals=None if not allowed_referral_hosts else ReferralPolicy(owner, allowed_referral_hosts),
            connector_cls=connector_cls,
        )
        self._setup(settings, credentials)
        if retry_in_background is None:
            retry_in_background = not from_uri
        elif not isinstance(retry_in_background, bool):
            raise ConfigurationError(
                f"{owner}: retry_in_background must be True, False or None, got {retry_in_background!r}"
            )
        if from_uri:
            server_pool.skips_open_circuits = retry_in_background
        if not retry_in_background:
            # ldappool's contract: one round of retry_max attempts per URI, then BackendError; no
            # connects nobody asked for; a full pool refuses after retry_max x retry_delay
            self.retry_in_background = False
            self.fail_waiter_on_connect_error = True
            if checkout_timeout is None:
                self._full_timeout = retry_max * retry_delay
        for server in server_pool:
            self._options.get(server)  # check each server's TLS and referral options now
        # ldappool's attributes
        self.uri = uri if from_uri else ", ".join(s.uri for s in server_pool)
        self.bind = bind
        self.retry_max = retry_max
        self.retry_delay = retry_delay
        self.use_tls = use_tls
        self.use_pool = bool(use_pool)
        self.operation_timeout = op_timeout
        self.tls = tls
        self.connector_cls = connector_cls
        self._identities: OrderedDict[tuple[str, bytes], IdentityPool] = OrderedDict()
        self._auth: AuthPool | None = None
        self._users: UserPool | None = None
        self._retiring: set[IdentityPool] = set()  # evicted sub-pools being closed in the background
        self._unpooled = gevent.lock.BoundedSemaphore(size)

    @property
    def ldap_servers(self) -> tuple[LDAPServer, ...]:
        """The servers' addresses, in the pool's order of preference (as now: add()/remove() show)."""
        assert self.server_pool is not None
        return tuple(address_of(s) for s in self.server_pool.preferred())

    # -- ldappool's API ------------------------------------------------------------------------

    def connection(self, bind: str | None = None, passwd: str | None = None) -> Any:
        """Lend a connection bound as ``bind`` (default: the pool's DN): ``with pool.connection() as c:``.

        Leaving the block returns the connection; it is discarded instead if
        the block raised a connection error, a ``BaseException`` (timeout,
        kill), or re-bound the connection.

        :raises MaxConnectionReachedError: no connection within ``checkout_timeout``.
        :raises BackendError: the servers cannot be reached (an ``ldap.SERVER_DOWN`` too).
        :raises AuthenticationFailed: the bind was refused (also ``ldap.INVALID_CREDENTIALS``).
        :raises PoolClosed: the pool is closed.
        """
        if bind is None and passwd is None and self.use_pool:
            return lend(self)  # the common case first: the pool's own identity
        if bind is not None and not isinstance(bind, str):
            raise TypeError(
                f"{self.name}: connection(bind=...) must be a DN string or None, got {type(bind).__name__}"
            )
        if passwd is not None and not isinstance(passwd, (str, bytes)):
            raise TypeError(f"{self.name}: connection(passwd=...) must be str, bytes or None, "
                            f"got {type(passwd).__name__}")
        if bind is None:
            bind = self.bind
            credentials = self._credentials if passwd is None else Credentials(bind, passwd, owner=self.name)
        else:
            credentials = Credentials(
                bind, self._credentials.reveal() if passwd is None else passwd, owner=self.name
            )
        if not self.use_pool:
            return self._unpooled_connection(credentials)
        if credentials.dn == self._credentials.dn and credentials.matches(self._credentials):
            return lend(self)
        if self.per_user == "subpools":
            return lend(self._identity(credentials))
        users = self._users
        if users is None:
            if self.closed:
                raise PoolClosed(f"{self.name} is closed")
            users = self._users = self._subpool(UserPool, Credentials(None, None), self.user_size, "users")
        return users.lend(credentials)

    def purge(self, bind: str, passwd: str | None = None) -> None:
        """Close the idle connections bound as ``bind`` (only those with another password, if given).

        Connections in use are closed when they come back (with ``per_user="rebind"``: bound
        again before their next use); the identity's refused and proven marks are forgotten.
        """
        keep = None if passwd is None else Credentials(bind, passwd)
        if self._users is not None:
            self._users.forget(bind, keep)
        doomed = [
            (key, pool) for key, pool in self._identities.items()
            if key[0] == bind and (keep is None or not pool._credentials.matches(keep))
        ]
        for key, pool in doomed:
            if self._identities.get(key) is pool:  # closing yields: it may be gone already
                del self._identities[key]
                pool.close(timeout=0)
        if self._credentials.dn == bind and (keep is None or not self._credentials.matches(keep)):
            self.drop_idle()

    def set_credentials(self, bind: str | None, passwd: str | None) -> None:
        """Replace the pool's default identity (a rotated service password, say).

        Idle connections bound with the old credentials are closed now, those
        in use when they come back; a connect that was binding with the old
        ones is redone with the new ones; every connection is checked before
        its next checkout, so nobody who asks after this call gets the old
        identity.  (A password changed on the server keeps working for the
        connections already bound with it until they expire, ``max_lifetime``;
        :meth:`purge` closes them now.)

        :raises ConfigurationError: a DN with an empty password, or a password without a DN.
        """
        credentials = Credentials(bind, passwd, owner=self.name)
        if credentials.unauthenticated or (not credentials.dn and passwd):
            raise ConfigurationError(f"{self.name}: set_credentials needs a DN and its password, or neither")
        self._credentials = credentials
        self.bind = bind
        self._check_all_before_reuse()  # before anything yields: no checkout skips the identity check
        self.drop_idle()
        logger.info("%s: credentials replaced; now binding as %r", self.name, credentials.dn)

    def authenticate(self, dn: str, password: str | bytes) -> bool:
        """Check a user's password with a bind, on connections set apart for it.

        Returns True if the server accepted the bind, False if it refused it
        (``INVALID_CREDENTIALS``, never retried) or if ``password`` is empty
        (refused client-side: nothing is sent).  The service connections are
        never re-bound by this.

        :raises MaxConnectionReachedError: no connection within ``checkout_timeout``.
        :raises BackendError: no server can be reached (an ``ldap.SERVER_DOWN`` too).
        :raises TypeError: ``dn`` is not a str, or ``password`` neither str nor bytes.
        :raises ConfigurationError: ``dn`` has a NUL character or is not a DN, or ``password``
            is longer than ``Credentials.max_password_bytes`` (refused client-side: nothing is sent).
        :raises ldap.LDAPError: any other failure (a timeout...).
        """
        if not isinstance(dn, str):
            raise TypeError(f"{self.name}: authenticate(dn=...) must be a str, got {type(dn).__name__}")
        if not isinstance(password, (str, bytes)):
            raise TypeError(
                f"{self.name}: authenticate(password=...) must be str or bytes, got {type(password).__name__}"
            )
        if not dn or not password:
            logger.info("%s: authenticate(%r) refused client-side: empty DN or password", self.name, dn)
            return False
        checked = Credentials(
            dn, password, owner=self.name, dn_argument="dn", password_argument="password", keyed=False
        )
        pool = self._auth
        if pool is None:
            pool = self._auth = self._subpool(AuthPool, Credentials(None, None), self.auth_size, "auth")
        with lend(pool) as conn:
            try:
                conn._pool_bind(checked)
            except ldap.INVALID_CREDENTIALS:
                logger.info("%s: authenticate(%r): invalid credentials", self.name, dn)
                return False
        return True

    # -- sub-pools ---------------------------------------------------------------------------------

    def _subpool(self, cls: type[LDAPHooks], credentials: Credentials, size: int, label: str) -> Any:
        pool = cls(
            min_size=0, max_size=size, name=f"{self.name}[{label}]", timeout=self.timeout,
            connect_timeout=self.connect_timeout, max_lifetime=self.max_lifetime, servers=self.server_pool,
            **self._core_options,
        )
        pool._setup(self._settings, credentials, self._options)
        pool._listeners = self._listeners  # on() reaches the identity and auth connections too
        pool.retry_in_background = self.retry_in_background
        pool.fail_waiter_on_connect_error = self.fail_waiter_on_connect_error
        pool._full_timeout = self._full_timeout
        return pool

    def on(self, event: str, callback: Callable[..., None]) -> None:
        """As :meth:`ConnectionPool.on`, for every connection of this pool, its identity
        sub-pools and its ``authenticate()`` connections (``pool`` is then the sub-pool)."""
        super().on(event, callback)
        for pool in self._all_pools():
            pool._refresh_fast()

    def _identity(self, credentials: Credentials) -> IdentityPool:
        # No greenlet switch in here: two greenlets must never both create a
        # sub-pool for one identity (the loser's would be orphaned, its
        # connections open for good), nor see theirs evicted before use.
        identities = self._identities
        pool = identities.get(credentials.key)
        if pool is not None:
            identities.move_to_end(credentials.key)
            return pool
        if self.closed:
            raise PoolClosed(f"{self.name} is closed")
        victim = self._detach_idle_identity() if len(identities) >= self.max_identities else None
        new: IdentityPool = self._subpool(IdentityPool, credentials, self.identity_size, credentials.dn)
        identities[credentials.key] = new
        if victim is not None:
            self._retiring.add(victim)
            gevent.spawn(self._retire, victim)  # closing yields: not in the caller's checkout
        return new

    def _retire(self, pool: IdentityPool) -> None:
        try:
            pool.close(timeout=0)
        finally:
            self._retiring.discard(pool)

    def run_housekeeping(self) -> None:
        """The core's pass, then trim the identity sub-pools back to ``max_identities``.

        A burst of users may exceed the cap while every sub-pool is busy; the
        pass closes the least recently used idle ones once the burst is over.
        """
        super().run_housekeeping()
        while len(self._identities) > self.max_identities:
            victim = self._detach_idle_identity()
            if victim is None:
                break
            victim.close(timeout=0)

    def _detach_idle_identity(self) -> IdentityPool | None:
        """Take out the least recently used identity sub-pool that nobody uses or waits for.

        Returns it for the caller to close (no switch in here), or None when
        every sub-pool is busy: the cap is exceeded until one falls idle
        (closing a busy sub-pool would fail its waiters), and housekeeping
        trims it then.
        """
        identities = self._identities
        victim = next(
            (key for key, p in identities.items() if _unused(p.snapshot())), None
        )
        if victim is None:
            logger.debug("%s: %d identities, all busy: max_identities exceeded for now", self.name,
                         len(identities))
            return None
        logger.debug("%s: closing the sub-pool of %r (max_identities reached)", self.name, victim[0])
        return identities.pop(victim)

    def _all_pools(self) -> list[LDAPHooks]:
        pools: list[LDAPHooks] = [self, *self._identities.values()]
        if self._users is not None:
            pools.append(self._users)
        if self._auth is not None:
            pools.append(self._auth)
        return pools

    @contextmanager
    def _unpooled_connection(self, credentials: Credentials) -> Iterator[LDAPConnection]:
        # use_pool=False keeps the pool's promises: at most ``size`` at once, a bounded wait, closed
        if self.closed:
            raise PoolClosed(f"{self.name} is closed")
        if not self._unpooled.acquire(timeout=self.timeout):
            raise MaxConnectionReachedError(
                f"{self.name}: no connection within {self.timeout:g} s (all in use; use_pool=False)"
            )
        try:
            if self.closed:
                raise PoolClosed(f"{self.name} is closed")
            conn = self._open_unpooled(credentials)
            try:
                yield conn
            finally:
                conn.close()
        finally:
            self._unpooled.release()

    def _open_unpooled(self, credentials: Credentials) -> LDAPConnection:
        """Open one connection for ``use_pool=False``: the servers' candidates in order, health fed.

        :raises BackendError: no server could be reached (``__cause__``: the last error).
        :raises AuthenticationFailed: the bind was refused (no failover).
        """
        limit = self._connect_bound

        def open_one(server: Server) -> LDAPConnection:
            settings = self._options.get(server).settings
            what = f"{self.name}: {server.name}: no connection within {limit:g} s"
            with _deadline.limit(limit, what, ConnectTimeout):
                return open_bound(settings, credentials)[0]

        try:
            conn, _server = self._open_on_any_server(open_one)
        except BaseException as error:
            if self._is_connect_error(error):
                raise BackendError(f"{self.name}: no LDAP server reachable ({self.server_pool!r})") from error
            raise
        return conn

    # -- lifecycle and reporting --------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """Close this pool and its sub-pools (see :meth:`ConnectionPool.close`)."""
        others = [p for p in self._all_pools() if p is not self]
        others.extend(self._retiring)
        self._identities.clear()
        super().close(timeout)
        for pool in others:
            pool.close(timeout=0)

    def __len__(self) -> int:
        return sum(pool.size for pool in self._all_pools())

    def __str__(self) -> str:
        return status_table(self, self._all_pools())

    def __repr__(self) -> str:
        """The core's summary of the pool's own identity, then the other connections' counts (the
        users', the identities' and ``authenticate()``'s), which ``str()`` lists one by one."""
        others = (
            f" users={self._users.size if self._users is not None else 0}"
            f" identities={sum(p.size for p in self._identities.values())}"
            f" auth={self._auth.size if self._auth is not None else 0}"
        )
        return super().__repr__()[:-1] + others + ">"

    def stats(self) -> dict[str, float]:
        """The core's counters for the main identity, plus ``identities`` and ``auth_size``."""
        stats = super().stats()
        stats["identities"] = len(self._identities)
        stats["identities_size"] = sum(p.size for p in self._identities.values())
        stats["users_pool_size"] = self._users.size if self._users is not None else 0
        stats["auth_pool_size"] = self._auth.size if self._auth is not None else 0
        return stats


#: ldappool's name for the same class.
ConnectionManager = LDAPPool


def _unused(state: Snapshot) -> bool:
    """Whether a sub-pool has nothing lent, checked, opening or waited for."""
    return not (state.in_use or state.checking or state.opening or state.waiting)
