"""Connections for ``connection(dn, password)``: one shared set, re-bound as each caller.

ldappool's per-user idiom with thousands of users would open, bind and
unbind a connection per call if each identity had its own connections.  A
:class:`UserPool` keeps one set for all of them instead and re-binds an idle
connection as the caller before lending it.  The rules, in the order they
apply:

- a connection whose last successful bind used the caller's very DN and
  password (compared by their HMAC key) is preferred and lent without a bind;
- any other one is bound as the caller first, and the bind's result checked,
  before the caller gets it: no connection is ever lent bound as someone else;
- a bind that fails (refused, dropped, timed out, interrupted) discards the
  connection: it is anonymous or half-bound, never lent again;
- credentials the server refused are remembered (by key: never the password)
  and refused again at once with no bind on the wire, until they change; the
  first bind of credentials not yet proven runs one at a time per identity, so
  a wrong password sent by many greenlets at once costs one bind, not one each;
- a borrower's own bind, option or control condemns the connection on return
  (the rules of :meth:`LDAPHooks._reset`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

import gevent.lock
import ldap

from .._lease import Lease
from ..errors import BackendUnavailable, PoolTimeout
from ._base import LDAPHooks, _Condemned
from .connection import LOST_CONNECTION_ERRORS, LDAPConnection
from .credentials import Credentials
from .errors import AuthenticationFailed, BackendError, MaxConnectionReachedError

__all__ = ["UserPool", "KeySet", "lend"]

logger = logging.getLogger("geventpool.ldap")

Key = tuple[str, bytes]


def lend(pool: LDAPHooks, new: bool = False) -> Any:
    """``pool.get()`` with ldappool's errors: BackendError, MaxConnectionReachedError; a refused
    identity is refused again at once, with no bind on the wire.  ``new``: a new connection if
    the pool has room (``_get_new``)."""
    pool.refuse_if_refused()
    try:
        full = pool._full_timeout
        if full is not None and not pool._table.idle and pool._table.size >= pool.max_size:
            return pool.get(full)  # ldappool's contract: full for retry_max x retry_delay, refused
        return pool._get_new() if new else pool.get()
    except BackendUnavailable as error:
        raise BackendError(str(error)) from error.__cause__
    except PoolTimeout as error:
        raise MaxConnectionReachedError(str(error)) from error.__cause__


class KeySet:
    """A set of identity keys that keeps the ``capacity`` most recently added.  No switch."""

    __slots__ = ("_keys", "capacity")

    def __init__(self, capacity: int) -> None:
        self._keys: OrderedDict[Key, None] = OrderedDict()
        self.capacity = capacity

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: Key) -> None:
        keys = self._keys
        keys[key] = None
        keys.move_to_end(key)
        while len(keys) > self.capacity:
            keys.popitem(last=False)

    def discard(self, key: Key) -> None:
        self._keys.pop(key, None)

    def discard_dn(self, dn: str) -> None:
        for key in [k for k in self._keys if k[0] == dn]:
            del self._keys[key]


class UserPool(LDAPHooks):
    """The connections lent by ``LDAPPool.connection(dn, password)`` for DNs other than the pool's.

    Opened anonymous; :meth:`lend` binds one as its caller (see the module's
    rules).  Greenlet-safe; not thread-safe.
    """

    check_identity = False  # who a connection is bound as is checked at each lend instead
    #: How many refused and proven identities are remembered (keys only, never passwords).
    remembered = 4096

    def _setup(self, settings: Any, credentials: Credentials, options: Any = None) -> None:
        super()._setup(settings, credentials, options)
        self._refused = KeySet(self.remembered)
        self._proven = KeySet(self.remembered)
        self._binding: dict[Key, list[Any]] = {}  # key -> [semaphore, users]: first binds

    def lend(self, credentials: Credentials) -> Lease[LDAPConnection]:
        """Check out a connection bound as ``credentials``: ``with pool.lend(c) as conn:``.

        :raises AuthenticationFailed: the server refused these credentials (now or before:
            then nothing is sent).
        :raises MaxConnectionReachedError: no connection within the checkout timeout.
        :raises BackendError: no server can be reached, or the connection was lost twice
            during the bind.
        :raises ldap.LDAPError: the bind failed otherwise (a timeout...).
        """
        key = credentials.key
        self._refuse_if_refused(credentials)
        if key in self._proven:
            return self._lend_bound(credentials)
        entry = self._binding.get(key)
        if entry is None:
            entry = self._binding[key] = [gevent.lock.Semaphore(1), 0]
        entry[1] += 1
        try:
            if not entry[0].acquire(timeout=self.timeout):
                raise MaxConnectionReachedError(
                    f"{self.name}: the first bind as {credentials.dn!r} took longer than {self.timeout:g} s"
                )
            try:
                self._refuse_if_refused(credentials)  # the bind we waited for may have been refused
                return self._lend_bound(credentials)
            finally:
                entry[0].release()
        finally:
            entry[1] -= 1
            if not entry[1] and self._binding.get(key) is entry:
                del self._binding[key]

    def _refuse_if_refused(self, credentials: Credentials) -> None:
        if credentials.key in self._refused:
            raise AuthenticationFailed({
                "desc": "Invalid credentials",
                "info": f"{self.name}: the server refused the bind as {credentials.dn!r}; "
                        "not sent again with the same password",
            })

    def _lend_bound(self, credentials: Credentials) -> Lease[LDAPConnection]:
        key = credentials.key
        started = self._clock()
        for attempt in (1, 2):
            # already bound as the caller; else a new one while there is room (each identity
            # keeps its own while they fit); else the one idle longest, bound again
            found = self._table.prefer(lambda conn: conn.__dict__.get("_identity_key") == key)
            if not found:
                self._table.prefer_coldest()
            lease: Lease[LDAPConnection] = lend(self, new=not found)
            conn = lease.conn
            d = conn.__dict__
            if d.get("_identity_key") == key and conn.identity_ok:
                return lease
            d["_identity_key"] = None  # bound as nobody known until the bind succeeds
            try:
                conn._pool_bind(credentials)
            except ldap.INVALID_CREDENTIALS as error:
                conn.mark_broken()
                lease.release(error)
                if credentials.fixed and not credentials.unauthenticated:
                    self._refused.add(key)
                if isinstance(error, AuthenticationFailed):
                    raise
                raise AuthenticationFailed(*error.args) from None
            except LOST_CONNECTION_ERRORS as error:
                # a connection the server dropped while it was idle: not the caller's fault, so
                # once more on another; a new one lost during the bind is final
                reused = lease._slot.created < started  # it sat idle (lent before or not)
                conn.mark_broken()
                lease.release(error)
                self._check_all_before_reuse()  # a restart drops them all: check the others first
                if attempt == 2 or not reused:
                    raise BackendError(
                        f"{self.name}: the connection was lost during the bind as {credentials.dn!r}"
                    ) from error
                continue
            except BaseException as error:
                conn.mark_broken()
                lease.release(error)
                raise
            d["_identity_key"] = key
            self._proven.add(key)
            return lease
        raise AssertionError("unreachable")  # pragma: no cover

    def forget(self, dn: str, keep: Credentials | None = None) -> None:
        """Make every connection bound as ``dn`` (but those bound with ``keep``) unfit for reuse
        without a new bind; close the idle ones now.  Proven and refused marks for ``dn`` go."""
        keep_key = None if keep is None else keep.key
        doomed = []
        for slot in self.snapshot().slots:
            key = slot.conn.__dict__.get("_identity_key")
            if key is not None and key[0] == dn and key != keep_key:
                slot.conn.__dict__["_identity_key"] = None
                doomed.append(slot)
        self._proven.discard_dn(dn)
        self._refused.discard_dn(dn)
        self._close_idle(doomed, reason="purge")

    def _check_identity(self, conn: LDAPConnection) -> None:
        if not conn.identity_ok:
            raise _Condemned(f"{self.name}: connection re-bound by its borrower")

    def _keepalive(self, conn: LDAPConnection) -> None:
        if conn.broken:
            raise _Condemned(f"{self.name}: connection is broken")
        self._check_identity(conn)
        conn.whoami_s()  # works whoever the connection is bound as

    def _has_served(self, conn: LDAPConnection) -> bool:
        return True  # a drop during a caller's bind says nothing of the server (see IdentityPool)
