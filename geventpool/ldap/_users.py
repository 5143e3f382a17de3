"""Connections for ``connection(dn, password)``: one shared set, re-bound as each caller.

ldappool's per-user idiom with thousands of users would open, bind and
unbind a connection per call if each identity had its own connections.  A
:class:`UserPool` keeps one set for all of them instead and re-binds an idle
connection as the caller before lending it.  The rules, in the order they
apply:

- a connection whose last successful bind used the caller's very DN and
  password (compared by their keyed MAC) is preferred and lent without a bind;
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
from types import TracebackType
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
    if pool._refused_key is not None:
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


class KeySet(OrderedDict[Key, None]):
    """A set of identity keys that keeps the ``capacity`` most recently added.  No switch.

    (An ordered dict of keys to None: ``key in keys`` is the dict's own lookup.)
    """

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity

    def add(self, key: Key) -> None:
        self[key] = None
        self.move_to_end(key)
        while len(self) > self.capacity:
            self.popitem(last=False)

    def discard(self, key: Key) -> None:
        self.pop(key, None)

    def discard_dn(self, dn: str) -> None:
        for key in [k for k in self if k[0] == dn]:
            del self[key]


class UserPool(LDAPHooks):
    """The connections lent by ``LDAPPool.connection(dn, password)`` for DNs other than the pool's.

    Opened anonymous; :meth:`lend` binds one as its caller (see the module's
    rules).  Greenlet-safe; not thread-safe.
    """

    check_identity = False  # who a connection is bound as is checked at each lend instead
    #: A clean return takes the core's inlined path: the lease :meth:`lend` gives runs the
    #: checks of ``_reset`` itself first (:class:`CheckedLease`); a return with an error, or
    #: through the core's slow path, runs ``_reset`` as before.
    reset_on_return = False
    #: How many refused and proven identities are remembered (keys only, never passwords).
    remembered = 4096

    def _setup(self, settings: Any, credentials: Credentials, options: Any = None) -> None:
        super()._setup(settings, credentials, options)
        self._refused = KeySet(self.remembered)
        self._proven = KeySet(self.remembered)
        self._binding: dict[Key, list[Any]] = {}  # key -> [semaphore, users]: first binds
        cls = settings.connector_cls
        # whether a clean return may set the connection back inline (CheckedLease.__exit__)
        self._plain_reset = (
            cls.restore is LDAPConnection.restore and cls.mark_clean is LDAPConnection.mark_clean
        )
        # identity key -> how many open connections carry it: the idle ones are searched for a
        # caller's key only when one may have it (a count too high costs a search, one too low
        # a bind: never a connection lent as someone else, which each lend checks on the spot)
        self._bound: dict[Key, int] = {}

    def _new_connection(self, server: Any) -> LDAPConnection:  # type: ignore[override]
        conn = super()._new_connection(server)
        key = conn.__dict__.get("_identity_key")  # (the pool's anonymous bind)
        if key is not None:
            self._bound[key] = self._bound.get(key, 0) + 1
        return conn

    def _close_connection(self, conn: LDAPConnection) -> None:
        self._set_key(conn, None)
        super()._close_connection(conn)

    def _set_key(self, conn: LDAPConnection, key: Key | None) -> None:
        """Record that ``conn`` is bound as ``key`` (None: nobody known).  No switch."""
        d = conn.__dict__
        old = d.get("_identity_key")
        if old == key:
            return
        bound = self._bound
        if old is not None:
            count = bound.get(old, 0) - 1
            if count > 0:
                bound[old] = count
            else:
                bound.pop(old, None)
        if key is not None:
            bound[key] = bound.get(key, 0) + 1
        d["_identity_key"] = key

    def lend(self, credentials: Credentials) -> CheckedLease:
        """Check out a connection bound as ``credentials``: ``with pool.lend(c) as conn:``.

        :raises AuthenticationFailed: the server refused these credentials (now or before:
            then nothing is sent).
        :raises MaxConnectionReachedError: no connection within the checkout timeout.
        :raises BackendError: no server can be reached, or the connection was lost twice
            during the bind.
        :raises ldap.LDAPError: the bind failed otherwise (a timeout...).
        """
        key = credentials.key
        if key in self._refused:
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

    def _lend_bound(self, credentials: Credentials) -> CheckedLease:
        key = credentials.key
        started = self._clock()
        for attempt in (1, 2):
            # already bound as the caller; else a new one while there is room (each identity
            # keeps its own while they fit); else the one idle longest, bound again
            found = key in self._bound and self._table.prefer(
                lambda conn: conn.__dict__.get("_identity_key") == key
            )
            if not found:
                self._table.prefer_coldest()
            lease: Lease[LDAPConnection] = lend(self, new=not found)
            conn = lease.conn
            d = conn.__dict__
            old = d.get("_identity_key")
            if old == key and d["identity_ok"]:
                return _checked(lease, self)
            if old is not None:  # bound as nobody known until the bind succeeds (_set_key)
                bound = self._bound
                count = bound.get(old, 0) - 1
                if count > 0:
                    bound[old] = count
                else:
                    bound.pop(old, None)
                d["_identity_key"] = None
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
            bound = self._bound  # (self._set_key(conn, key), from None)
            bound[key] = bound.get(key, 0) + 1
            d["_identity_key"] = key
            self._proven.add(key)
            checked: CheckedLease = _new_checked(CheckedLease)  # (_checked, inline)
            checked._lease = lease
            checked._pool = self
            checked.conn = conn
            return checked
        raise AssertionError("unreachable")  # pragma: no cover

    def forget(self, dn: str, keep: Credentials | None = None) -> None:
        """Make every connection bound as ``dn`` (but those bound with ``keep``) unfit for reuse
        without a new bind; close the idle ones now.  Proven and refused marks for ``dn`` go."""
        keep_key = None if keep is None else keep.key
        doomed = []
        for slot in self.snapshot().slots:
            key = slot.conn.__dict__.get("_identity_key")
            if key is not None and key[0] == dn and key != keep_key:
                self._set_key(slot.conn, None)
                doomed.append(slot)
        self._proven.discard_dn(dn)
        self._refused.discard_dn(dn)
        self._closer.close_idle(doomed, "purge")

    def _check_identity(self, conn: LDAPConnection) -> None:
        if not conn.identity_ok:
            raise _Condemned(f"{self.name}: connection re-bound by its borrower")

    def _reset(self, conn: LDAPConnection) -> None:
        """:meth:`LDAPHooks._reset`, the clean case first (every ``connection(dn, pw)`` block)."""
        d = conn.__dict__
        if d["_broken"] or d["_changed"] is not None or not d["identity_ok"]:
            super()._reset(conn)  # condemns it, saying why
            return
        conn.restore()
        conn.mark_clean()

    def _keepalive(self, conn: LDAPConnection) -> None:
        if conn.broken:
            raise _Condemned(f"{self.name}: connection is broken")
        self._check_identity(conn)
        conn.whoami_s()  # works whoever the connection is bound as

    def _has_served(self, conn: LDAPConnection) -> bool:
        return True  # a drop during a caller's bind says nothing of the server (see IdentityPool)


class CheckedLease:
    """What :meth:`UserPool.lend` returns: the core's lease, whose clean return is checked here.

    The UserPool's clean returns take the core's inlined path (``reset_on_return`` is off), so
    the checks of :meth:`LDAPHooks._reset` run here first, unchanged: a connection its borrower
    broke, re-bound, or changed (an option, controls, TLS, an unbind) goes back as condemned
    and is discarded; otherwise its ``timeout`` is restored.  Otherwise a :class:`Lease`:
    ``with lease as conn:``, :meth:`release`, ``active``, ``conn``; valid once.
    """

    __slots__ = ("_lease", "_pool", "conn")

    conn: LDAPConnection

    def __init__(self, lease: Lease[LDAPConnection], pool: UserPool) -> None:
        self._lease = lease
        self._pool = pool
        self.conn = lease.conn

    @property
    def active(self) -> bool:
        """Whether this lease still holds its connection."""
        return self._lease.active

    def __enter__(self) -> LDAPConnection:
        return self._lease.__enter__()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        lease = self._lease
        if exc_type is None and lease.active:  # (never a connection lent to someone else since)
            conn = self.conn
            d = conn.__dict__
            if self._pool._plain_reset and not d["_broken"] and d["_changed"] is None and d["identity_ok"]:
                # the clean case of UserPool._reset: restore() and mark_clean() of LDAPConnection
                d["timeout"] = d["_clean_timeout"]
                d["_clean"] = True
            else:
                try:
                    self._pool._reset(conn)  # no switch from here to the return below
                except BaseException as failed:  # _Condemned: unfit for reuse
                    conn.mark_broken()  # the core's _reset condemns it again: discarded
                    lease.__exit__(type(failed), failed, None)
                    if not isinstance(failed, Exception):
                        raise  # as the core's return does
                    return
        lease.__exit__(exc_type, exc, tb)

    def release(self, error: BaseException | None = None) -> None:
        """Return the connection as if the ``with`` block ended with ``error``.

        :raises ValueError: the lease was already returned, or the pool took it back.
        """
        self.__exit__(type(error) if error is not None else None, error, None)

    def __reduce__(self) -> Any:
        raise TypeError("leases cannot be pickled")

    def __repr__(self) -> str:
        return repr(self._lease)


_new_checked = object.__new__


def _checked(lease: Lease[LDAPConnection], pool: UserPool) -> CheckedLease:
    """``CheckedLease(lease, pool)`` without a Python ``__init__`` frame (every lend)."""
    checked: CheckedLease = _new_checked(CheckedLease)
    checked._lease = lease
    checked._pool = pool
    checked.conn = lease.conn
    return checked
