"""LDAPConnection: a python-ldap ``LDAPObject`` whose synchronous calls never block the hub.

python-ldap's ``*_s`` methods wait for the server inside libldap's C code,
which freezes every greenlet of the process.  This subclass keeps their
signatures and results, but every wait goes through the gevent hub:

- requests are sent with python-ldap's asynchronous calls (they only write
  to a non-blocking socket);
- :meth:`LDAPConnection.result4`, which all ``result*`` and ``*_s`` methods
  end in, polls libldap with a zero timeout and waits for the socket to be
  readable in between (``gevent``'s io watcher); an operation the pool or
  this class has just sent (a bind, a search, WhoAmI) waits for the socket
  before its first poll, since its answer cannot be there yet: one wait and
  one poll is the common case of a bind or a WhoAmI;
- ``whoami_s`` is sent as an asynchronous extended operation;
- the C calls that must stay blocking (the StartTLS/``ldaps`` handshake and
  SASL binds) run in worker threads (gevent's ThreadPool, at a lower
  priority than the hub), bounded by libldap's timeouts.

Every wait has a finite deadline (the connection's ``timeout`` attribute
when a call does not give one).  An operation that times out or is
interrupted (``gevent.Timeout``, ``GreenletExit``) is abandoned and the
connection marked broken, so a pool discards it: a late answer can never
reach the next user.

A connection is meant for one greenlet at a time (a pool lends it so); it
is not thread-safe.  It cannot be pickled.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any, Callable, NoReturn, TypeVar

import gevent
import gevent.socket
import ldap
from gevent.hub import Waiter
from ldap import LDAPError
from ldap.controls import DecodeControlTuples, RequestControlTuples
from ldap.ldapobject import SimpleLDAPObject

from ._threads import spawn_blocking
from .credentials import Credentials
from .errors import AuthenticationFailed
from .referrals import collect_with_referrals

__all__ = ["LDAPConnection", "LOST_CONNECTION_ERRORS", "WHOAMI_OID"]

logger = logging.getLogger("geventpool.ldap")

#: The errors after which a connection is not reused (its protocol state is unknown).
LOST_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    ldap.SERVER_DOWN,
    ldap.CONNECT_ERROR,
    ldap.TIMEOUT,
    ldap.PROTOCOL_ERROR,
    ldap.DECODING_ERROR,
    ldap.ENCODING_ERROR,
    ldap.LOCAL_ERROR,
    ldap.UNAVAILABLE,
    OSError,
)

#: RFC 4532 "Who am I?" extended operation.
WHOAMI_OID = "1.3.6.1.4.1.4203.1.11.3"

#: Seconds a connection waits for a result when neither the call nor ``timeout`` says.
DEFAULT_OPERATION_TIMEOUT = 30.0

# Between two polls, wait for the socket at most this long, doubling up to the cap:
# a safety net for data libldap has read ahead (TLS records) or a request it has not
# finished writing, neither of which makes the socket readable.
_RECHECK_FIRST = 0.05
_RECHECK_MAX = 1.0
# Polls after a wake-up that found nothing, before waiting on the socket again.
_EXTRA_POLLS = 2
# Messages of one result set processed before yielding to the other greenlets.
_YIELD_EVERY = 32
_sleep = gevent.sleep

_T = TypeVar("_T")
_monotonic = time.monotonic
_RES_INTERMEDIATE = ldap.RES_INTERMEDIATE
# Messages that come before the final one of an operation.
_PARTIAL_TYPES = frozenset((ldap.RES_SEARCH_ENTRY, ldap.RES_SEARCH_REFERENCE, ldap.RES_INTERMEDIATE))


#: Calls on the C object that change what the next borrower would get: an option (controls,
#: referrals, timeouts, TLS...), the bound identity, TLS, the session itself.
_CHANGING_CALLS = frozenset((
    "set_option", "simple_bind", "simple_bind_s", "sasl_bind_s", "sasl_interactive_bind_s",
    "start_tls_s", "unbind", "unbind_s", "unbind_ext", "unbind_ext_s",
))


def _wait_on(hub: Any, watcher: Any, seconds: float) -> None:
    """Sleep until ``watcher`` (a started-when-needed io watcher) fires or ``seconds`` pass."""
    timer = hub.loop.timer(seconds)
    waiter = Waiter(hub)
    switch = waiter.switch
    watcher.start(switch, None)
    timer.start(switch, None)
    try:
        waiter.get()
    finally:
        watcher.stop()
        timer.close()


class _GuardedLDAP:
    """The C LDAP object of a pooled connection, as ``conn._l``.

    Every call goes through unchanged; a call that changes the connection's
    state (:data:`_CHANGING_CALLS`, any option whatever its number) made by a
    borrower marks the connection, which its pool then discards on return.
    """

    __slots__ = ("_raw", "_conn")

    def __init__(self, raw: Any, conn: LDAPConnection) -> None:
        self._raw = raw
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        if name in _CHANGING_CALLS:
            self._conn._note_change(f"_l.{name}")
        return getattr(self._raw, name)


class LDAPConnection(SimpleLDAPObject):  # type: ignore[misc]
    """A python-ldap ``SimpleLDAPObject`` that waits cooperatively (see the module docstring).

    Built by the pool (:func:`geventpool.ldap.pool.LDAPPool`), not directly:
    ``uri`` is the server's URI; ``fileno`` a connected socket's descriptor
    (libldap takes ownership of it and closes it on unbind); ``sock`` the
    gevent socket the pool keeps (it is closed by :meth:`close`).
    """

    #: Whether a failed or foreign bind made the connection unfit for its pool.
    identity_ok: bool

    def __init__(
        self,
        uri: str,
        fileno: int | None = None,
        sock: gevent.socket.socket | None = None,
        timeout: float = DEFAULT_OPERATION_TIMEOUT,
    ) -> None:
        SimpleLDAPObject.__init__(self, uri, fileno=fileno)
        d = self.__dict__  # SimpleLDAPObject.__setattr__ maps some names to options
        d["_l"] = _GuardedLDAP(d["_l"], self)
        d["_clean"] = False  # set by mark_clean(): from then on, changes are noted
        d["_changed"] = None  # what a borrower changed since, if anything
        d["_clean_timeout"] = timeout
        d["timeout"] = timeout
        d["_default_timeout"] = timeout if timeout > 0 else DEFAULT_OPERATION_TIMEOUT
        d["_sock"] = sock
        d["_fd"] = sock.fileno() if sock is not None else -1
        d["_watcher"] = None
        d["_hub"] = None
        d["_tls"] = False
        d["_broken"] = False
        d["_closed"] = False
        d["bound_dn"] = None  # DN of the last successful bind; "" = anonymous bind
        d["identity_ok"] = True
        d["_pool_binding"] = False
        d["_thread_pending"] = None
        d["_referrals"] = None  # (ReferralPolicy, Settings, Credentials, opener) when chasing is allowed
        d["_close_requested"] = False
        d["created"] = time.monotonic()

    # -- state -----------------------------------------------------------------------------

    def mark_clean(self) -> None:
        """The pool's setup is done (or a return was accepted): note any change from here on."""
        d = self.__dict__
        d["_clean"] = True
        d["_changed"] = None
        d["_clean_timeout"] = d["timeout"]

    @property
    def changed(self) -> str | None:
        """What a borrower changed since :meth:`mark_clean` that cannot be restored (an option,
        a bind, TLS, an unbind), or None."""
        changed: str | None = self.__dict__["_changed"]
        return changed

    def restore(self) -> None:
        """Put back what a borrower may change and the pool can restore (the ``timeout`` attribute)."""
        d = self.__dict__
        d["timeout"] = d["_clean_timeout"]

    def _note_change(self, what: str) -> None:
        d = self.__dict__
        if d.get("_clean") and not d.get("_pool_binding") and d.get("_changed") is None:
            d["_changed"] = what

    def __setattr__(self, name: str, value: Any) -> None:
        if name != "timeout":  # restored on return; anything else may be an option or state
            self._note_change(f"attribute {name}")
        SimpleLDAPObject.__setattr__(self, name, value)

    def set_option(self, option: int, invalue: Any) -> None:
        """python-ldap's ``set_option``; on a pooled connection, it condemns the connection to be
        discarded on return (the next borrower must not inherit the option)."""
        self._note_change(f"set_option({option})")
        SimpleLDAPObject.set_option(self, option, invalue)

    @property
    def broken(self) -> bool:
        """True once an operation timed out, was interrupted, or lost the connection."""
        return bool(self.__dict__["_broken"])

    def mark_broken(self) -> None:
        """Condemn the connection: its pool will close it instead of reusing it."""
        self.__dict__["_broken"] = True

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return bool(self.__dict__["_closed"])

    def _set_fd(self, fd: int) -> None:
        self.__dict__["_fd"] = fd

    def _set_tls(self) -> None:
        self.__dict__["_tls"] = True

    def close(self) -> None:
        """Unbind (best effort, no waiting) and close the socket; idempotent."""
        d = self.__dict__
        if d["_closed"]:
            return
        d["_broken"] = True
        pending = d["_thread_pending"]
        if pending is not None and not pending.ready():
            d["_close_requested"] = True  # closed by _thread_done
            return
        d["_closed"] = True
        d["_broken"] = True
        watcher = d["_watcher"]
        d["_watcher"] = None
        if watcher is not None:
            watcher.close()
        try:
            self._l.unbind_ext(None, None)
        except Exception as error:
            logger.debug("unbind of %s failed: %r", self._uri, error)
        sock = d["_sock"]
        d["_sock"] = None
        if sock is not None:
            sock.close()

    def __repr__(self) -> str:
        d = self.__dict__
        state = "closed" if d.get("_closed") else ("broken" if d.get("_broken") else "open")
        return f"<LDAPConnection {d.get('_uri')!r} {state} bound_dn={d.get('bound_dn')!r}>"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("LDAPConnection objects cannot be pickled")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("LDAPConnection objects cannot be pickled")

    # -- the C calls ---------------------------------------------------------------------------

    def _ldap_call(self, func: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Call into libldap (never waiting on the network); a lost connection marks it broken."""
        lock = self._ldap_object_lock
        lock.acquire()
        try:
            return func(*args, **kwargs)
        except LDAPError as error:
            self._call_failed(error)
            raise
        finally:
            lock.release()

    def _call_failed(self, error: LDAPError) -> None:
        """A C call raised ``error``: a lost connection marks it broken; an errno gets its text."""
        if isinstance(error, LOST_CONNECTION_ERRORS):
            self.__dict__["_broken"] = True
        info = error.args[0] if error.args else None
        if isinstance(info, dict) and "info" not in info and "errno" in info:
            info["info"] = os.strerror(info["errno"])

    def _in_thread(self, func: Callable[..., _T], *args: Any) -> _T:
        """Run a blocking libldap call in a worker thread (``_threads``); wait for it cooperatively.

        If the wait is interrupted, the connection is condemned and closed only
        once the thread is done with it.
        """
        pending = spawn_blocking(func, *args, key=self.__dict__.get("_uri") or "")
        try:
            failed, value = pending.get()
            if failed:
                raise value
            return value  # type: ignore[no-any-return]
        except LDAPError as error:
            if isinstance(error, LOST_CONNECTION_ERRORS):
                self.__dict__["_broken"] = True
            raise
        except BaseException:
            self.__dict__["_broken"] = True
            if not pending.ready():
                # the thread still uses the C object: close only when it is done with it
                self.__dict__["_thread_pending"] = pending
                pending.rawlink(self._thread_done)
                sock = self.__dict__["_sock"]
                if sock is not None:
                    # cut the call short: on a socket we own (StartTLS, SASL), libldap's blocked read
                    # returns at once, and the thread is free for other servers' handshakes
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            raise

    def _thread_done(self, _result: Any) -> None:
        self.__dict__["_thread_pending"] = None
        if self.__dict__["_close_requested"]:
            self.close()

    # -- waiting for results -----------------------------------------------------------------

    def result4(
        self,
        msgid: int = ldap.RES_ANY,
        all: int = 1,
        timeout: float | None = None,
        add_ctrls: int = 0,
        add_intermediates: int = 0,
        add_extop: int = 0,
        resp_ctrl_classes: Any = None,
    ) -> tuple[Any, Any, Any, Any, Any, Any]:
        """Wait for a result like python-ldap's ``result4``, cooperatively.

        ``timeout`` None or negative means the connection's ``timeout``
        attribute (itself finite by default); 0 polls once.  On timeout the
        operation is abandoned, the connection marked broken, and
        ``ldap.TIMEOUT`` raised.
        """
        result = self._wait_result(msgid, all, timeout, add_ctrls, add_intermediates, add_extop)
        if result is None:
            return None, None, None, [], None, None
        if len(result) == 4:
            resp_type, resp_data, resp_msgid, resp_ctrls = result
            resp_name = resp_value = None
        else:
            resp_type, resp_data, resp_msgid, resp_ctrls, resp_name, resp_value = result
        if add_ctrls:
            resp_data = [(t, r, DecodeControlTuples(c, resp_ctrl_classes)) for t, r, c in resp_data]
        decoded = DecodeControlTuples(resp_ctrls, resp_ctrl_classes) if resp_ctrls else []
        return resp_type, resp_data, resp_msgid, decoded, resp_name, resp_value

    def _wait_result(
        self, msgid: int, all: int, timeout: float | None,
        add_ctrls: int, add_intermediates: int, add_extop: int, sent: bool = False,
        deadline: float = 0.0, recheck: float = _RECHECK_FIRST,
    ) -> Any:
        """Return libldap's raw result tuple for ``msgid`` (None only when polling).

        With ``all`` and a given ``msgid`` (a search), the messages libldap
        holds are taken one per call (each poll returns at once; never a whole
        buffered result parsed in one C call), the entries gathered here with a
        yield every ``_YIELD_EVERY``, and the socket waited on only when libldap
        has nothing left.  ``sent``: the request
        was just written, so the first poll is skipped (nothing can have
        arrived yet).  ``deadline`` and ``recheck``: where :meth:`_wait_sent`
        left off (a monotonic time, the next wait's cap).
        """
        d = self.__dict__
        if timeout is None or timeout < 0:
            timeout = d["timeout"]
            if timeout is None or timeout < 0:
                timeout = d["_default_timeout"]
        l_result4 = d["_l"]._raw.result4  # (not a changing call: no need of the guard's lookup)
        gather = all and msgid != ldap.RES_ANY
        # Gathering (a search's entries): one message per call, _YIELD_EVERY between yields, so that
        # libldap never parses a whole buffered result in one C call; else the whole result at once.
        mode = 0 if gather else all
        gathered: list[Any] = []
        extra_polls = _EXTRA_POLLS if d["_tls"] else 0
        retries = extra_polls
        burst = 0
        try:
            while True:
                if sent:
                    sent = False
                else:
                    result = l_result4(msgid, mode, 0, add_ctrls, add_intermediates, add_extop)
                    rtype = result[0]
                    if rtype is not None:
                        if not gather or rtype not in _PARTIAL_TYPES:
                            if gathered:
                                result = (rtype, gathered + result[1], *result[2:])
                            return result
                        if rtype != _RES_INTERMEDIATE or add_intermediates:
                            gathered.extend(result[1])
                        burst += 1
                        if burst >= _YIELD_EVERY:
                            # a long result set must not monopolize the hub: let others run
                            burst = 0
                            _sleep(0)
                        continue
                    if timeout == 0:
                        return None
                    if retries:
                        # Over TLS a read can consume records that carry no LDAP message
                        # (session tickets) and leave the answer buffered inside libldap,
                        # where the socket's readiness cannot show it: poll again first.
                        retries -= 1
                        continue
                now = _monotonic()
                if not deadline:
                    deadline = now + timeout
                remaining = deadline - now
                if remaining <= 0:
                    self._give_up(msgid, timeout)
                if recheck < remaining:
                    self._wait_readable(recheck)
                    recheck = min(recheck * 2, _RECHECK_MAX)
                else:
                    self._wait_readable(remaining)
                retries = extra_polls
        except LDAPError as error:
            if isinstance(error, LOST_CONNECTION_ERRORS):
                d["_broken"] = True
            raise
        except BaseException:
            # Interrupted (gevent.Timeout, GreenletExit...): a late answer must not reach anyone.
            d["_broken"] = True
            self._abandon_quietly(msgid)
            raise

    def _wait_readable(self, seconds: float) -> None:
        """Sleep until the socket is readable or ``seconds`` have passed (no exception)."""
        d = self.__dict__
        hub = d["_hub"]
        if hub is None:
            hub = d["_hub"] = gevent.get_hub()
        watcher = d["_watcher"]
        if watcher is None:
            fd = d["_fd"]
            if fd < 0:
                fd = d["_fd"] = self._l.get_option(ldap.OPT_DESC)
            watcher = d["_watcher"] = hub.loop.io(fd, 1)
        elif watcher.callback is not None:
            # another greenlet waits on this connection too: give this one its own watcher
            watcher = hub.loop.io(d["_fd"], 1)
        _wait_on(hub, watcher, seconds)

    def _wait_sent(self, msgid: int, add_extop: int = 0) -> Any:
        """Return libldap's raw result of an operation just sent whose answer is one message (a
        bind, an extended operation), within the connection's ``timeout``.

        The common case in full: one wait for the socket (at most ``_RECHECK_FIRST``), then one
        poll that takes the whole answer.  Anything else (no answer yet, TLS, a first
        operation, another greenlet waiting on the connection) goes on in :meth:`_wait_result`,
        with the same deadline; an interrupted wait abandons the operation and condemns the
        connection there as here.
        """
        d = self.__dict__
        timeout = d["timeout"]
        if timeout is None or timeout < 0:
            timeout = d["_default_timeout"]
        hub = d["_hub"]
        watcher = d["_watcher"]
        if (
            d["_tls"] or hub is None or watcher is None or watcher.callback is not None
            or not timeout > _RECHECK_FIRST
        ):
            return self._wait_result(msgid, 1, None, 0, 0, add_extop, True)
        deadline = _monotonic() + timeout
        try:
            _wait_on(hub, watcher, _RECHECK_FIRST)
            result = d["_l"]._raw.result4(msgid, 1, 0, 0, 0, add_extop)
        except LDAPError as error:
            if isinstance(error, LOST_CONNECTION_ERRORS):
                d["_broken"] = True
            raise
        except BaseException:
            d["_broken"] = True  # interrupted: a late answer must not reach anyone
            self._abandon_quietly(msgid)
            raise
        if result[0] is not None:
            return result
        # (just polled: the socket first)
        return self._wait_result(msgid, 1, None, 0, 0, add_extop, True, deadline, _RECHECK_FIRST * 2)

    def _give_up(self, msgid: int, timeout: float) -> NoReturn:
        self.__dict__["_broken"] = True
        self._abandon_quietly(msgid)
        raise ldap.TIMEOUT({
            "desc": "Timed out",
            "info": f"no result within {timeout:g} s; operation abandoned, connection discarded",
        })

    def _abandon_quietly(self, msgid: int) -> None:
        if msgid == ldap.RES_ANY or self.__dict__["_closed"]:
            return
        try:
            self._l.abandon_ext(msgid, None, None)
        except Exception as error:
            logger.debug("abandon of message %d failed: %r", msgid, error)

    # -- the methods whose python-ldap versions block in C ----------------------------------------

    def search_ext_s(
        self, base: str, scope: int, filterstr: str | None = None, attrlist: Any = None,
        attrsonly: int = 0, serverctrls: Any = None, clientctrls: Any = None,
        timeout: float = -1, sizelimit: int = 0,
    ) -> Any:
        """Search and return all entries, like python-ldap's, waiting cooperatively."""
        if filterstr is None:
            filterstr = "(objectClass=*)"
        msgid = self._ldap_call(
            self._l.search_ext, base, scope, filterstr, attrlist, attrsonly,
            RequestControlTuples(serverctrls) if serverctrls else None,
            RequestControlTuples(clientctrls) if clientctrls else None,
            timeout, sizelimit,
        )
        referrals = self.__dict__["_referrals"]
        if referrals is None:
            return self._wait_result(msgid, 1, timeout, 0, 0, 0, True)[1]
        return collect_with_referrals(self, msgid, referrals, scope, filterstr, attrlist, attrsonly, timeout)

    def whoami_s(self, serverctrls: Any = None, clientctrls: Any = None) -> str:
        """Return the server's "Who am I?" answer (``dn:...``, ``u:...`` or ``""``)."""
        msgid = self._ldap_call(
            self._l.extop, WHOAMI_OID, None, RequestControlTuples(serverctrls),
            RequestControlTuples(clientctrls),
        )
        result = self._wait_sent(msgid, 1)
        value = result[5]
        return value.decode("utf-8") if value else ""

    def simple_bind(
        self, who: str | None = None, cred: str | bytes | None = None,
        serverctrls: Any = None, clientctrls: Any = None,
    ) -> int:
        """Send a simple bind; a DN with an empty password is refused here.

        :raises AuthenticationFailed: ``who`` is set and ``cred`` is empty
            (RFC 4513 §5.1.2: the server could accept it without checking).
        """
        if who and not cred:
            raise AuthenticationFailed({
                "desc": "Invalid credentials",
                "info": "a DN with an empty password is an unauthenticated bind; refused client-side",
            })
        if not self.__dict__["_pool_binding"]:
            # a bind the pool did not ask for: the connection may not be what its pool thinks
            self.__dict__["identity_ok"] = False
        msgid: int = self._ldap_call(
            self._l.simple_bind, who, cred, RequestControlTuples(serverctrls),
            RequestControlTuples(clientctrls),
        )
        return msgid

    def simple_bind_s(
        self, who: str | None = None, cred: str | bytes | None = None,
        serverctrls: Any = None, clientctrls: Any = None,
    ) -> Any:
        """Bind and wait for the answer cooperatively; remember the DN on success."""
        d = self.__dict__
        d["bound_dn"] = None
        msgid = self.simple_bind(who, cred, serverctrls, clientctrls)
        resp_type, resp_data, resp_msgid, resp_ctrls, _, _ = self.result4(msgid, 1, None)
        d["bound_dn"] = who or ""
        return resp_type, resp_data, resp_msgid, resp_ctrls

    def bind_as(self, who: str, cred: str) -> None:
        """Bind as ``who`` (python-ldap's ``simple_bind_s``): on a pooled connection, the pool
        discards it on return, since it is no longer bound as the pool's identity."""
        self.simple_bind_s(who, cred)

    def _pool_bind(self, credentials: Credentials) -> None:
        """Bind on the pool's behalf (the connection stays fit for its pool on success).

        The password is revealed inside the C call's own expression only: no Python frame
        keeps it in a local, so a traceback (a timeout while the server answers, say) shown
        by a locals-capturing formatter holds the masked ``Credentials``, never the secret.
        The call skips python-ldap's object lock (``_ldap_call``): the pool's bind runs in
        the greenlet holding the connection, and a C call that never waits cannot be entered
        by another greenlet meanwhile.
        """
        d = self.__dict__
        if credentials.unauthenticated:
            raise AuthenticationFailed({
                "desc": "Invalid credentials",
                "info": "a DN with an empty password is an unauthenticated bind; refused client-side",
            })
        raw = d["_l"]._raw
        d["_pool_binding"] = True
        d["bound_dn"] = None
        try:
            try:
                msgid = raw.simple_bind(credentials.dn, credentials.reveal(), None, None)
            except LDAPError as error:
                self._call_failed(error)
                raise
            self._wait_sent(msgid)  # (nothing can have arrived yet: the socket first)
        finally:
            d["_pool_binding"] = False
        d["bound_dn"] = credentials.dn

    def start_tls_s(self) -> None:
        """Negotiate TLS; the handshake runs in gevent's threadpool (libldap does it in C)."""
        self._in_thread(self._l.start_tls_s)
        self.__dict__["_tls"] = True

    def sasl_interactive_bind_s(
        self, who: str, auth: Any, serverctrls: Any = None, clientctrls: Any = None,
        sasl_flags: int = ldap.SASL_QUIET,
    ) -> Any:
        """SASL bind, run in gevent's threadpool (libldap's SASL exchange blocks in C)."""
        self.__dict__["identity_ok"] = False
        self.__dict__["bound_dn"] = None
        return self._in_thread(
            self._l.sasl_interactive_bind_s, who, auth, RequestControlTuples(serverctrls),
            RequestControlTuples(clientctrls), sasl_flags,
        )

    def sasl_bind_s(
        self, dn: str, mechanism: str, cred: Any, serverctrls: Any = None, clientctrls: Any = None
    ) -> Any:
        """One SASL bind step, run in gevent's threadpool."""
        self.__dict__["identity_ok"] = False
        self.__dict__["bound_dn"] = None
        return self._in_thread(
            self._l.sasl_bind_s, dn, mechanism, cred, RequestControlTuples(serverctrls),
            RequestControlTuples(clientctrls),
        )

    def unbind_ext(self, serverctrls: Any = None, clientctrls: Any = None) -> Any:
        """Unbind: the connection is closed afterwards (its pool will not reuse it)."""
        d = self.__dict__
        d["_broken"] = True
        watcher = d["_watcher"]
        d["_watcher"] = None
        if watcher is not None:
            watcher.close()
        result = SimpleLDAPObject.unbind_ext(self, serverctrls, clientctrls)
        d["_closed"] = True
        sock = d["_sock"]
        d["_sock"] = None
        if sock is not None:
            sock.close()
        return result
