"""ldap3's long-standing ``Connection``, on the pool's cooperative python-ldap connection.

``Connection(server, user, password, auto_bind=...)`` keeps one connection
open for as long as its owner wants (ldap3's "authenticator module in an
application server").  Each :meth:`Connection.open` chooses a server by the
``ServerPool``'s strategy (its circuit breakers fed with the outcome, its
``add()``/``remove()`` followed), then connects exactly as
:class:`~geventpool.ldap.LDAPPool` does: every wait goes through the gevent
hub, every wait is bounded.  Identity, TLS, referral and secrecy rules are the
pool's: no empty-password bind, verified TLS by default, referrals followed
only to the server's ``allowed_referral_hosts``, no readable password.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Callable, NoReturn, Sequence

import gevent.lock
import ldap
from ldap.controls import SimplePagedResultsControl

from .. import _deadline
from ..errors import ConfigurationError, ConnectTimeout, PoolError
from ..servers import POOLING_STRATEGY_ROUND_ROBIN_ACTIVE
from ..servers import Server as CoreServer
from ..servers import ServerPool as CoreServerPool
from ._connect import Settings, open_connection, start_tls
from ._ldap3_response import Attribute, Entry, make_result
from ._ldap3_search import attribute_list, collect, request_controls
from .connection import DEFAULT_OPERATION_TIMEOUT, LOST_CONNECTION_ERRORS, LDAPConnection
from .credentials import Credentials
from .errors import AuthenticationFailed, BackendError
from .servers import OptionsCache, Server, ServerPool, fetch_info, server_pool_of, wants_info
from .tls import TLSPolicy

__all__ = [
    "Connection",
    "Entry",
    "Attribute",
    "ReadOnlyError",
    "BASE",
    "LEVEL",
    "SUBTREE",
    "ALL_ATTRIBUTES",
    "ALL_OPERATIONAL_ATTRIBUTES",
    "NO_ATTRIBUTES",
    "DEREF_NEVER",
    "DEREF_SEARCH",
    "DEREF_BASE",
    "DEREF_ALWAYS",
    "AUTO_BIND_DEFAULT",
    "AUTO_BIND_NONE",
    "AUTO_BIND_NO_TLS",
    "AUTO_BIND_TLS_BEFORE_BIND",
    "AUTO_BIND_TLS_AFTER_BIND",
    "SYNC",
    "ANONYMOUS",
    "SIMPLE",
]

logger = logging.getLogger("geventpool.ldap")

# ldap3's constants, with its values (code that spells them as strings works too)
#: The search base entry only (``search_scope``; python-ldap's ``SCOPE_BASE`` works too).
BASE = "BASE"
#: The base's children (``SCOPE_ONELEVEL``).
LEVEL = "LEVEL"
#: The base and everything under it (``SCOPE_SUBTREE``), the default.
SUBTREE = "SUBTREE"
#: ``attributes=ALL_ATTRIBUTES``: every user attribute.
ALL_ATTRIBUTES = "*"
#: Every operational attribute (also ``get_operational_attributes=True``).
ALL_OPERATIONAL_ATTRIBUTES = "+"
#: No attributes (``attributes=None``, the default).
NO_ATTRIBUTES = "1.1"
#: ``dereference_aliases``: never dereference aliases.
DEREF_NEVER = "NEVER"
#: Dereference aliases below the base only.
DEREF_SEARCH = "SEARCH"
#: Dereference the base only.
DEREF_BASE = "FINDING_BASE"
#: Always dereference aliases (the default).
DEREF_ALWAYS = "ALWAYS"
#: Bind in ``with`` only (``auto_bind=False``).
AUTO_BIND_DEFAULT = "DEFAULT"
#: Never bind automatically, not even in ``with``.
AUTO_BIND_NONE = "NONE"
#: Open and bind at construction (``auto_bind=True``).
AUTO_BIND_NO_TLS = "NO_TLS"
#: Open, StartTLS, then bind at construction.
AUTO_BIND_TLS_BEFORE_BIND = "TLS_BEFORE_BIND"
#: Bind, then StartTLS (anonymous only: a password would cross in clear text).
AUTO_BIND_TLS_AFTER_BIND = "TLS_AFTER_BIND"
#: The only ``client_strategy`` (synchronous calls that wait cooperatively).
SYNC = "SYNC"
#: ``authentication``: no credentials.
ANONYMOUS = "ANONYMOUS"
#: ``authentication``: a DN and its password.
SIMPLE = "SIMPLE"

_SCOPES = {
    BASE: ldap.SCOPE_BASE, LEVEL: ldap.SCOPE_ONELEVEL, SUBTREE: ldap.SCOPE_SUBTREE,
    ldap.SCOPE_BASE: ldap.SCOPE_BASE, ldap.SCOPE_ONELEVEL: ldap.SCOPE_ONELEVEL,
    ldap.SCOPE_SUBTREE: ldap.SCOPE_SUBTREE,
}
_DEREFS = {
    DEREF_NEVER: ldap.DEREF_NEVER, DEREF_SEARCH: ldap.DEREF_SEARCHING,
    DEREF_BASE: ldap.DEREF_FINDING, DEREF_ALWAYS: ldap.DEREF_ALWAYS,
}
_AUTO_BINDS = (
    AUTO_BIND_DEFAULT, AUTO_BIND_NONE, AUTO_BIND_NO_TLS, AUTO_BIND_TLS_BEFORE_BIND, AUTO_BIND_TLS_AFTER_BIND,
)

#: python-ldap's synchronous calls that only read, delegated to the connection.
_READS = frozenset((
    "search_s", "search_st", "search_ext_s", "compare_s", "compare_ext_s", "whoami_s", "read_s",
    "read_rootdse_s", "get_naming_contexts", "find_unique_entry", "read_subschemasubentry_s",
))
#: python-ldap's synchronous calls that change the directory (refused with ``read_only=True``).
_WRITES = frozenset((
    "add_s", "add_ext_s", "modify_s", "modify_ext_s", "delete_s", "delete_ext_s", "modrdn_s",
    "rename_s", "passwd_s", "extop_s",
))



class ReadOnlyError(PoolError, ldap.UNWILLING_TO_PERFORM):  # type: ignore[misc]
    """A write on a ``read_only=True`` connection: refused client-side, nothing sent
    (also an ``ldap.UNWILLING_TO_PERFORM``, what a read-only replica answers)."""


class Connection:
    """ldap3's long-standing connection: ``Connection(server | server_pool | [servers], user,
    password, auto_bind=False, ...)``, cooperative under gevent.

    ``server``: a ``Server``, a host or URI string (one server), a
    ``ServerPool`` (shared: its ``add()``/``remove()`` and strategy apply at
    each :meth:`open`), or a list (ldap3's round robin, ACTIVE).

    Lifecycle: :meth:`open` (choose a server, connect), :meth:`bind`,
    :meth:`rebind`, :meth:`start_tls`, :meth:`unbind` (closes), ``closed``,
    ``bound``, ``server`` (the one in use); ``with Connection(...) as conn:``
    opens and binds (unless ``auto_bind=AUTO_BIND_NONE``) and unbinds when the
    outermost block exits.  ``auto_bind``: False/``AUTO_BIND_DEFAULT`` binds
    only in ``with``; True/``AUTO_BIND_NO_TLS`` opens and binds now;
    ``AUTO_BIND_TLS_BEFORE_BIND`` opens, starts TLS, binds;
    ``AUTO_BIND_TLS_AFTER_BIND`` is refused with a password (it would cross in
    clear text).  A failed auto-bind raises :class:`AuthenticationFailed`.
    Once TLS has been on (:meth:`start_tls`, or ``TLS_BEFORE_BIND``), every
    later :meth:`open` starts it again before anything is sent.

    Operations: ldap3's :meth:`search` (returns a bool; ``response``,
    ``entries``, ``result``), and python-ldap's synchronous calls, run on the
    cooperative :class:`LDAPConnection`: ``search_s``, ``search_ext_s``,
    ``compare_s``, ``whoami_s``, ``read_s``... and the writes ``add_s``,
    ``modify_s``, ``delete_s``, ``rename_s``, ``modrdn_s``, ``passwd_s``,
    ``extop_s`` (refused with :class:`ReadOnlyError` when ``read_only=True``).
    A connection lost, timed out (``receive_timeout``, default 30 s: always
    finite) or interrupted (``gevent.Timeout``, a killed greenlet) mid-operation
    leaves the Connection closed and unbound, never half-used: :meth:`open`
    or :meth:`bind` (or a ``with`` block) connects again.

    ``raise_exceptions=False`` (ldap3's default): :meth:`bind` and
    :meth:`search` return False on a refusal and fill ``result``/``last_error``;
    True: they raise python-ldap's exception (``ldap.INVALID_CREDENTIALS``...).
    Connection errors, bad arguments and python-ldap's calls always raise.

    Beyond ldap3 (keyword-only): ``connect_timeout`` (per server, seconds),
    ``tls`` (the :class:`TLSPolicy` of servers without their own ``tls``;
    default: verified), ``name``.  Accepted with ldap3's meaning: ``version=3``,
    ``authentication`` (``SIMPLE``/``ANONYMOUS``), ``client_strategy=SYNC``,
    ``auto_referrals``, ``check_names`` (no effect), ``lazy=False``,
    ``collect_usage=False``; other values are refused.  ldap3's remaining
    arguments (``auto_range``, ``return_empty_attributes``, ``auto_escape``,
    ``pool_size``...) are accepted at ldap3's default and refused otherwise,
    each with the reason.

    Every wait (connect, TLS, each result) yields to the gevent hub; nothing
    blocks it.  Greenlet-safe: calls are serialised (one at a time on the connection); for
    many concurrent callers use :class:`~geventpool.ldap.LDAPPool`.  ``response``,
    ``entries`` and ``result`` describe the last search.  Not thread-safe.  Its
    ``repr`` shows the user, never the password; it cannot be pickled.

    :raises ConfigurationError: a bad argument (named in the message, never a password's value).
    :raises AuthenticationFailed: ``auto_bind`` was refused.
    :raises BackendError: ``auto_bind`` found no server.
    """

    def __init__(
        self,
        server: str | Server | ServerPool | CoreServerPool | Sequence[str | Server],
        user: str | None = None,
        password: str | bytes | None = None,
        auto_bind: bool | str = AUTO_BIND_DEFAULT,
        version: int = 3,
        authentication: str | None = None,
        client_strategy: str = SYNC,
        auto_referrals: bool = True,
        check_names: bool = True,
        collect_usage: bool = False,
        read_only: bool = False,
        lazy: bool = False,
        raise_exceptions: bool = False,
        receive_timeout: float | None = None,
        *,
        connect_timeout: float = 5.0,
        tls: TLSPolicy | None = None,
        name: str | None = None,
        **ldap3_options: Any,
    ) -> None:
        owner = name or "Connection"
        self.name = owner
        _check_ldap3_options(owner, ldap3_options)
        self.server_pool = _server_pool(owner, server)
        self._credentials = Credentials(
            user, password, owner=owner, dn_argument="user", password_argument="password"
        )
        if self._credentials.unauthenticated:
            raise ConfigurationError(
                f"{owner}: user {user!r} has an empty password (an unauthenticated bind); "
                "give its password, or no user for anonymous access"
            )
        if not self._credentials.dn and password:
            raise ConfigurationError(f"{owner}: password given without a user")
        if auto_bind is False:
            auto_bind = AUTO_BIND_DEFAULT
        elif auto_bind is True:
            auto_bind = AUTO_BIND_NO_TLS
        if auto_bind not in _AUTO_BINDS:
            raise ConfigurationError(f"{owner}: auto_bind must be True, False or one of {_AUTO_BINDS}, "
                                     f"got {auto_bind!r}")
        if auto_bind == AUTO_BIND_TLS_AFTER_BIND and not self._credentials.anonymous:
            raise ConfigurationError(
                f"{owner}: auto_bind=TLS_AFTER_BIND would send the password before TLS starts; "
                "use TLS_BEFORE_BIND (or an ldaps:// server)"
            )
        if version != 3:
            raise ConfigurationError(f"{owner}: version must be 3 (LDAPv3), got {version!r}")
        if authentication is not None and authentication not in (SIMPLE, ANONYMOUS):
            raise ConfigurationError(
                f"{owner}: authentication must be SIMPLE or ANONYMOUS (SASL and NTLM are not "
                f"supported here), got {authentication!r}"
            )
        if authentication == ANONYMOUS and not self._credentials.anonymous:
            raise ConfigurationError(f"{owner}: authentication=ANONYMOUS with a user and password")
        if client_strategy != SYNC:
            raise ConfigurationError(
                f"{owner}: client_strategy must be SYNC, got {client_strategy!r}; for a pool of "
                "connections (ldap3's REUSABLE) use geventpool.ldap.LDAPPool"
            )
        for argument, value in (("lazy", lazy), ("collect_usage", collect_usage)):
            if value:
                raise ConfigurationError(f"{owner}: {argument}=True is not supported")
        for argument, value in (("auto_referrals", auto_referrals), ("check_names", check_names),
                                ("read_only", read_only), ("raise_exceptions", raise_exceptions)):
            if not isinstance(value, bool):
                raise ConfigurationError(f"{owner}: {argument} must be True or False, got {value!r}")
        op_timeout = DEFAULT_OPERATION_TIMEOUT if receive_timeout is None else receive_timeout
        op_timeout = _seconds(owner, "receive_timeout", op_timeout)
        connect_timeout = _seconds(owner, "connect_timeout", connect_timeout)
        if tls is None:
            tls = TLSPolicy()
        elif not isinstance(tls, TLSPolicy):
            raise ConfigurationError(f"{owner}: tls must be a geventpool.ldap.Tls or TLSPolicy, "
                                     f"got {type(tls).__name__}")
        tls.check(owner)
        self._options = OptionsCache(owner, Settings(
            owner=owner, servers=(), tls=tls, use_tls=False, retry_max=1, retry_delay=0.0,
            connect_timeout=connect_timeout, op_timeout=op_timeout, referrals=None,
            connector_cls=LDAPConnection,
        ))
        for each in self.server_pool:
            self._options.get(each)  # each server's TLS and referral options, checked now
        self.auto_bind = auto_bind
        self.auto_referrals = auto_referrals
        self.check_names = check_names
        self.read_only = read_only
        self.raise_exceptions = raise_exceptions
        self.receive_timeout = op_timeout
        self.connect_timeout = connect_timeout
        self.tls = tls
        self.version = 3
        self.authentication = ANONYMOUS if self._credentials.anonymous else SIMPLE
        self.strategy_type = SYNC
        #: The server in use (before the first open(): the pool's first choice).
        self.server: CoreServer = self.server_pool.preferred()[0]
        #: The last search's entries and references (ldap3's dicts), and its result.
        self.response: list[dict[str, Any]] = []
        self.result: dict[str, Any] | None = None
        #: The description of the last refusal (ldap3's ``last_error``), or None.
        self.last_error: str | None = None
        self._entries: tuple[list[dict[str, Any]], list[Entry]] | None = None  # made from response
        self._conn: LDAPConnection | None = None
        self._settings: Settings | None = None  # of the server in use (use_tls once TLS started)
        self._bound = False
        self._tls_started = False
        # once TLS has been on, every later open() starts it before anything is sent
        self._keep_tls = auto_bind == AUTO_BIND_TLS_BEFORE_BIND
        self._depth = 0  # nested ``with`` blocks
        self._lock = gevent.lock.RLock()
        if auto_bind in (AUTO_BIND_NO_TLS, AUTO_BIND_TLS_BEFORE_BIND, AUTO_BIND_TLS_AFTER_BIND):
            self._auto_bind()

    # -- state -------------------------------------------------------------------------------

    @property
    def user(self) -> str | None:
        """The bind DN (None: anonymous)."""
        return self._credentials.dn or None

    @property
    def closed(self) -> bool:
        """True when no connection is open (never opened, unbound, or lost)."""
        conn = self._conn
        return conn is None or conn.closed or conn.broken

    @property
    def bound(self) -> bool:
        """True when the open connection is bound with this Connection's credentials."""
        return self._bound and not self.closed

    @property
    def listening(self) -> bool:
        """ldap3's name: the connection is open."""
        return not self.closed

    @property
    def tls_started(self) -> bool:
        """True when the open connection uses TLS (``ldaps://`` or StartTLS)."""
        return self._tls_started and not self.closed

    @property
    def entries(self) -> list[Entry]:
        """The last search's entries as :class:`Entry` objects (references left out)."""
        cached = self._entries
        if cached is None or cached[0] is not self.response:
            entries = [
                Entry(item["dn"], item["attributes"], item["raw_attributes"])
                for item in self.response if item["type"] == "searchResEntry"
            ]
            cached = self._entries = (self.response, entries)
        return cached[1]

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("bound" if self.bound else "open")
        tls = " tls" if self.tls_started else ""
        return f"<Connection {self.name!r} server={self.server.name} user={self.user!r} {state}{tls}>"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("Connection objects cannot be pickled")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("Connection objects cannot be pickled")

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self, read_server_info: bool = True) -> None:
        """Connect to a server chosen by the ServerPool's strategy (closing any open connection).

        Servers are tried in the strategy's order, each within
        ``connect_timeout``; each outcome feeds the server's circuit breaker
        (servers whose circuit is open are skipped by ACTIVE strategies).
        ``read_server_info`` is accepted for ldap3's signature (the server's
        ``get_info`` says what is read, after the first successful bind).

        Once TLS has been started on this Connection (or ``auto_bind`` is
        ``AUTO_BIND_TLS_BEFORE_BIND``), StartTLS runs here, before anything
        else is sent: a reconnect (a ``bind()`` after a lost connection) never
        downgrades to clear text.

        :raises BackendError: no server could be reached (``__cause__``: the last error).
        :raises TLSVerificationError: the server was not verified (not failed over; closed).
        """
        with self._lock:
            self._drop()
            conn, server, settings = self._connect_any()
            self._conn = conn
            self.server = server
            self._settings = settings
            self._tls_started = settings.servers[0].scheme == "ldaps"
            self._set_referrals()
            logger.debug("%s: connected to %s", self.name, server.name)
            if self._keep_tls and not self._tls_started:
                self.start_tls()

    def bind(self, read_server_info: bool = True, controls: Any = None) -> bool:
        """Bind with this Connection's credentials (opening the connection first if closed).

        Returns True when the server accepted the bind; False when it refused it
        (``result`` and ``last_error`` say why, ``bound`` is False and the
        connection stays open, anonymous), unless ``raise_exceptions``.

        :raises AuthenticationFailed: refused, with ``raise_exceptions=True``.
        :raises BackendError: closed, and no server could be reached.
        :raises ldap.LDAPError: the connection failed (it is then closed).
        """
        if controls:
            raise ConfigurationError(f"{self.name}: bind controls are not supported")
        with self._lock:
            if self.closed:
                self.open()
            conn = self._conn
            assert conn is not None and self._settings is not None
            credentials = self._credentials
            self._bound = False
            try:
                conn._pool_bind(credentials)
            except ldap.INVALID_CREDENTIALS as error:
                info = error.args[0] if error.args and isinstance(error.args[0], dict) else {}
                self.result = make_result(49, str(info.get("info", "")), kind="bindResponse")
                self.last_error = "invalidCredentials"
                logger.info("%s: bind as %r refused by %s", self.name, credentials.dn, self.server.name)
                self._set_referrals()  # anonymous now: a chase must not bind as anyone
                if self.raise_exceptions:
                    if isinstance(error, AuthenticationFailed):
                        raise
                    raise AuthenticationFailed(*error.args) from None
                return False
            finally:
                self._drop_if_broken()
            self._bound = True
            self.result = make_result(0, kind="bindResponse")
            self.last_error = None
            self._set_referrals()
            if wants_info(self.server):
                fetch_info(self.server, conn, self.name)
            return True

    def rebind(self, user: str | None = None, password: str | bytes | None = None,
               authentication: str | None = None, read_server_info: bool = True,
               controls: Any = None) -> bool:
        """Bind again, as ``user`` with ``password`` when given (the current ones otherwise).

        The new credentials are kept even if the server refuses them (as
        ldap3 does); the connection is then unbound (``bound`` False).  A user
        with an empty password is refused client-side: nothing is sent, and
        nothing changes.

        :raises AuthenticationFailed: an empty password for a user (always), or
            refused with ``raise_exceptions=True``.
        :raises ConfigurationError: a bad DN, or a password over the size limit.
        """
        with self._lock:
            if authentication == ANONYMOUS:
                credentials = Credentials(None, None)
            elif authentication not in (None, SIMPLE):
                raise ConfigurationError(f"{self.name}: authentication must be SIMPLE or ANONYMOUS, "
                                         f"got {authentication!r}")
            elif user is None and password is None:
                credentials = self._credentials
            else:
                credentials = Credentials(
                    self._credentials.dn if user is None else user,
                    self._credentials.reveal() if password is None else password,
                    owner=self.name, dn_argument="user", password_argument="password",
                )
            if credentials.unauthenticated or (not credentials.dn and not credentials.anonymous):
                raise AuthenticationFailed({
                    "desc": "Invalid credentials",
                    "info": f"{self.name}: rebind needs a user and its password, or neither "
                            "(an empty password is an unauthenticated bind); refused client-side",
                })
            self._credentials = credentials
            self.authentication = ANONYMOUS if credentials.anonymous else SIMPLE
            return self.bind(read_server_info, controls)

    def start_tls(self, read_server_info: bool = True) -> bool:
        """Start TLS on the connection (opening it first if closed), verified by the server's
        TLS policy (or the Connection's).  True when TLS is on (already, with ``ldaps://``).

        :raises TLSVerificationError: StartTLS was refused or the server not verified; the
            connection is closed (never used in clear text after a failed StartTLS).
        """
        with self._lock:
            if self.closed:
                self.open()
            if self._tls_started:
                return True
            conn, settings = self._conn, self._settings
            assert conn is not None and settings is not None
            try:
                start_tls(conn, settings.servers[0], settings)
            except BaseException:
                self._drop()
                raise
            self._tls_started = True
            self._keep_tls = True
            # a TLS connection follows referrals with StartTLS or not at all (the pool's rule)
            self._settings = replace(settings, use_tls=True)
            self._set_referrals()
            return True

    def unbind(self, controls: Any = None) -> bool:
        """Unbind and close the connection (ldap3: an unbind ends the session); idempotent."""
        with self._lock:
            self._drop()
            return True

    def __enter__(self) -> Connection:
        with self._lock:
            if self.auto_bind != AUTO_BIND_NONE:
                self._auto_bind()
            self._depth += 1
            return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth <= 0:
                self._depth = 0
                self._drop()

    # -- operations ----------------------------------------------------------------------------

    def search(
        self,
        search_base: str,
        search_filter: str,
        search_scope: str | int = SUBTREE,
        dereference_aliases: str = DEREF_ALWAYS,
        attributes: str | Sequence[str] | None = None,
        size_limit: int = 0,
        time_limit: int = 0,
        types_only: bool = False,
        get_operational_attributes: bool = False,
        controls: Sequence[Any] | None = None,
        paged_size: int | None = None,
        paged_criticality: bool = False,
        paged_cookie: bytes | None = None,
    ) -> bool:
        """ldap3's search: True when it found entries (or references); the answer goes to
        ``response`` (dicts with ``dn``, ``attributes``: str values, bytes where not UTF-8,
        always lists; ``raw_attributes``: bytes; ``type``), ``entries`` and ``result``.

        ``attributes`` None reads none (ldap3's default), ``ALL_ATTRIBUTES`` all.  A
        size- or time-limited search keeps the entries received (``result`` says
        ``sizeLimitExceeded``).  Referrals are followed as the pool follows them
        (only to the server's ``allowed_referral_hosts``, with ``auto_referrals``);
        others appear as ``{"uri": [...], "type": "searchResRef"}``.  Paged
        searches: ``paged_size``/``paged_cookie``; the next cookie is
        ``result["controls"]["1.2.840.113556.1.4.319"]["value"]["cookie"]``.

        :raises ldap.LDAPError: the server refused it, with ``raise_exceptions=True``; a
            connection error or timeout (``receive_timeout``) always (the connection is
            then closed); a bad filter (``ldap.FILTER_ERROR``) always.
        :raises TypeError, ValueError: a bad argument, before anything is sent.
        """
        scope = _SCOPES.get(search_scope) if isinstance(search_scope, (str, int)) else None
        if scope is None:
            raise ValueError(
                f"{self.name}: search_scope must be BASE, LEVEL or SUBTREE, got {search_scope!r}"
            )
        if not isinstance(search_base, str) or not isinstance(search_filter, str):
            raise TypeError(f"{self.name}: search_base and search_filter must be str")
        deref = _DEREFS.get(dereference_aliases)
        if deref is None:
            raise ValueError(f"{self.name}: dereference_aliases must be one of {list(_DEREFS)}, "
                             f"got {dereference_aliases!r}")
        attrlist = attribute_list(attributes, get_operational_attributes)
        serverctrls = request_controls(self.name, controls)
        if paged_size is not None:
            serverctrls.append(SimplePagedResultsControl(paged_criticality, paged_size, paged_cookie or b""))
        with self._lock:
            conn = self._require_open("search")
            self.response = []
            self.result = None
            if conn.get_option(ldap.OPT_DEREF) != deref:
                conn.set_option(ldap.OPT_DEREF, deref)
            try:
                raw, result, refusal = collect(
                    conn, search_base, scope, search_filter, attrlist, int(bool(types_only)),
                    serverctrls, time_limit, size_limit, self.receive_timeout,
                )
            finally:
                self._drop_if_broken()
            self.response = raw
            self.result = result
            self.last_error = None if result["result"] == 0 else result["description"]
            if refusal is not None and self.raise_exceptions:
                raise refusal
            return bool(raw)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name in _READS or name in _WRITES:
            def call(*args: Any, **kwargs: Any) -> Any:
                return self._call(name, args, kwargs)
            call.__name__ = name
            return call
        if name == "password":
            raise AttributeError(f"{self.name}: the password is not readable (it is kept masked)")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | _READS | _WRITES)

    def _call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.read_only and name in _WRITES:
            raise ReadOnlyError({
                "desc": "Server is unwilling to perform",
                "info": f"{self.name}: read_only=True: {name} refused client-side (nothing sent)",
            })
        with self._lock:
            conn = self._require_open(name)
            try:
                return getattr(conn, name)(*args, **kwargs)
            finally:
                self._drop_if_broken()

    # -- internals ---------------------------------------------------------------------------

    def _auto_bind(self) -> None:
        """Open (and start TLS) if closed, bind if not bound, as ``auto_bind`` says.

        :raises AuthenticationFailed: the bind was refused (the connection is closed).
        """
        try:
            if self.closed:
                self.open()
            if self.auto_bind == AUTO_BIND_TLS_BEFORE_BIND and not self._tls_started:
                self.start_tls()
            if not self.bound:
                if not self.bind():
                    raise AuthenticationFailed({
                        "desc": "Invalid credentials",
                        "info": f"{self.name}: automatic bind as {self.user!r} refused by {self.server.name}",
                    })
                if self.auto_bind == AUTO_BIND_TLS_AFTER_BIND:
                    self.start_tls()
        except BaseException:
            self._drop()
            raise

    def _set_referrals(self) -> None:
        """Let the connection chase referrals as the server allows, as the identity it has now."""
        conn, settings = self._conn, self._settings
        if conn is None or settings is None:
            return
        policy = settings.referrals if self.auto_referrals else None
        identity = self._credentials if self._bound else Credentials(None, None)
        chase = None if policy is None else (policy, settings, identity, open_connection)
        conn.__dict__["_referrals"] = chase

    def _require_open(self, what: str) -> LDAPConnection:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            self._drop()
            raise ldap.SERVER_DOWN({
                "desc": "Can't contact LDAP server",
                "info": f"{self.name}: {what}: the connection is closed (open() or bind() reconnects)",
            })
        return conn

    def _drop_if_broken(self) -> None:
        conn = self._conn
        if conn is not None and (conn.broken or conn.closed):
            self._drop()

    def _drop(self) -> None:
        """Forget and close the connection (no waiting: the unbind is only written)."""
        conn, self._conn = self._conn, None
        self._bound = False
        self._tls_started = False
        if conn is not None:
            conn.close()

    def _connect_any(self) -> tuple[LDAPConnection, CoreServer, Settings]:
        """Open a connection on the first candidate of the ServerPool that takes it: the core
        pool's failover (``_connector.connect_any``) for one connection, with the same rules.

        ``cycles`` passes over the candidates; with an ACTIVE strategy, servers whose circuit
        is open are skipped and a server unknown or stale is first checked with a TCP
        connect-and-close; every outcome feeds the server's health.  No probe is registered:
        nothing reconnects in the background for a Connection.
        """
        pool = self.server_pool
        if not len(pool):
            raise BackendError(f"{self.name}: the ServerPool has no server (all removed)")
        last: BaseException | None = None
        gated = pool.skips_open_circuits
        for _cycle in range(pool.cycles):
            for server in pool.candidates():
                health = server.health
                if gated and not health.begin_attempt():
                    continue
                try:
                    settings = self._options.get(server).settings
                    limit = settings.connect_timeout
                    if pool.needs_check(server):  # ACTIVE: is anything listening there?
                        try:
                            pool.check_reachable(server, limit)
                        except OSError as error:
                            health.record_unreachable(error)  # its circuit opens at once
                            last = error
                            logger.info("%s: %s is not reachable: %r", self.name, server.name, error)
                            continue
                    what = f"{self.name}: {server.name} did not connect within {limit:g} s"
                    with _deadline.limit(limit, what, ConnectTimeout):
                        conn = open_connection(settings.servers[0], settings)
                except BaseException as error:
                    if isinstance(error, LOST_CONNECTION_ERRORS):
                        health.record_failure(error)
                        last = error
                        logger.info("%s: connect to %s failed: %r", self.name, server.name, error)
                        continue
                    health.end_attempt()
                    raise
                health.record_success()
                return conn, server, settings
        if last is None:
            raise BackendError(f"{self.name}: every server is down ({pool!r})")
        raise BackendError(f"{self.name}: no LDAP server reachable ({pool!r})") from last


#: ldap3's other Connection arguments: accepted at ldap3's default (the reason says what then
#: differs from ldap3), refused otherwise, with the reason.
_LDAP3_OPTIONS: dict[str, tuple[Any, str]] = {
    "auto_range": (True, "no range retrieval: ranged attributes come as the server sends them"),
    "return_empty_attributes": (True, "attributes an entry lacks are left out of its answer"),
    "auto_escape": (True, "filters go as given (an unescaped special character is an "
                          "ldap.FILTER_ERROR): escape values with ldap.filter.escape_filter_chars"),
    "auto_encode": (True, "values go as given (str or bytes)"),
    "fast_decoder": (True, "python-ldap decodes the answers"),
    "use_referral_cache": (False, "a referral's connection is opened for each chase"),
    "sasl_mechanism": (None, "SASL binds are not supported here"),
    "sasl_credentials": (None, "SASL binds are not supported here"),
    "cred_store": (None, "GSSAPI is not supported here"),
    "pool_name": (None, "for a pool of connections use geventpool.ldap.LDAPPool"),
    "pool_size": (None, "for a pool of connections use geventpool.ldap.LDAPPool"),
    "pool_lifetime": (None, "for a pool of connections use geventpool.ldap.LDAPPool"),
    "pool_keepalive": (None, "for a pool of connections use geventpool.ldap.LDAPPool"),
    "source_address": (None, "the local address is the system's choice"),
    "source_port": (None, "the local port is the system's choice"),
    "source_port_list": (None, "the local port is the system's choice"),
}


def _check_ldap3_options(owner: str, options: dict[str, Any]) -> None:
    """Accept ldap3's other arguments at their defaults; refuse other values (and unknown names).

    :raises TypeError: an argument ldap3's Connection does not have either.
    :raises ConfigurationError: a value other than ldap3's default, with the reason.
    """
    for name, value in options.items():
        if name not in _LDAP3_OPTIONS:
            raise TypeError(f"{owner}: Connection() got an unexpected keyword argument {name!r}")
        default, reason = _LDAP3_OPTIONS[name]
        if value != default:
            raise ConfigurationError(f"{owner}: {name}={value!r} is not supported ({reason})")


def _server_pool(owner: str, given: Any) -> CoreServerPool:
    """ldap3's forms: a host or URI string is one server; a list is ROUND_ROBIN (active)."""
    if isinstance(given, str):
        given = Server(given)
    pool, _ = server_pool_of(owner, given)
    if isinstance(given, (list, tuple)):
        pool = ServerPool(list(pool), POOLING_STRATEGY_ROUND_ROBIN_ACTIVE)
    return pool


def _seconds(owner: str, argument: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ConfigurationError(f"{owner}: {argument} must be a positive finite number of seconds, "
                                 f"got {value!r}")
    return float(value)
