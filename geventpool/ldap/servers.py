"""The LDAP side of :mod:`geventpool.servers`: URIs and ``Server`` objects, rootDSE and schema.

:func:`server_pool_of` turns what :class:`~geventpool.ldap.LDAPPool` was given
(ldappool's URI string, a ``Server``, a ``ServerPool`` or a list of them) into
the core's :class:`~geventpool.servers.ServerPool`; a URI string keeps
ldappool's meaning: every URI in order (``POOLING_STRATEGY_FIRST_ACTIVE``).
:class:`ServerOptions` is what one server's connections need beyond the pool's
settings (its TLS policy, its referral policy).  :func:`fetch_info` fills
``server.info`` (the rootDSE) and ``server.schema`` (the subschema entry)
as ``get_info`` asks, once per server, on a connection the pool just opened.

Everything here is greenlet-safe (no shared state is changed across a
greenlet switch without a flag); none of it is thread-safe.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, replace
from typing import Any, Iterable

import ldap
import ldap.schema
from ldapurl import LDAPUrl

from .. import servers as core
from ..errors import ConfigurationError
from ..servers import POOLING_STRATEGY_FIRST_ACTIVE
from ._connect import Settings
from .connection import LDAPConnection
from .referrals import ReferralHosts, ReferralPolicy, referral_hosts
from .tls import TLSPolicy
from .uris import LDAPServer, parse_uris

__all__ = [
    "Server", "ServerPool", "FIRST", "ROUND_ROBIN", "RANDOM", "POOLING_STRATEGY_FIRST",
    "POOLING_STRATEGY_ROUND_ROBIN", "POOLING_STRATEGY_RANDOM",
    "GET_NO_INFO", "GET_DSA_INFO", "GET_SCHEMA_INFO", "GET_ALL_INFO",
    "DSAInfo", "SchemaInfo", "ServerOptions", "server_pool_of", "check_server", "fetch_info",
]

logger = logging.getLogger("geventpool.ldap")

_SCHEMES = ("ldap", "ldaps")
_DEFAULT_PORTS = {"ldap": 389, "ldaps": 636}

#: What ``get_info`` asks an LDAP pool to read into ``server.info`` / ``server.schema`` (ldap3's names).
GET_NO_INFO = "NO_INFO"
GET_DSA_INFO = "DSA"
GET_SCHEMA_INFO = "SCHEMA"
GET_ALL_INFO = "ALL"
_INFO_CHOICES = (GET_NO_INFO, GET_DSA_INFO, GET_SCHEMA_INFO, GET_ALL_INFO)


class Server(core.Server):
    """An LDAP server, with ldap3's first six arguments: ``Server("ldaps://dc1:636")``,
    ``Server("dc1", 636, use_ssl=True, get_info=GET_ALL_INFO)``.

    Beyond the core :class:`geventpool.Server`: ``allowed_referral_hosts``
    (``"*"``, host names, or ``(host, allow_auth)`` pairs: see
    :func:`~geventpool.ldap.referrals.referral_hosts`), ``get_info`` (what
    the pool reads into ``info`` and ``schema`` on its first connection) and
    ``tls`` (a :class:`Tls` or :class:`TLSPolicy` for this server; None: the
    pool's, which verifies certificates).  ``port`` defaults to 389, or 636
    with ``use_ssl`` or ``ldaps://``.

    :raises ConfigurationError: a bad host, port, URI or ``get_info``.
    """

    default_ports = _DEFAULT_PORTS
    tls_schemes = ("ldaps",)

    def __init__(
        self,
        host: str,
        port: int | None = None,
        use_ssl: bool = False,
        allowed_referral_hosts: ReferralHosts | None = None,
        get_info: str = GET_NO_INFO,
        tls: Any = None,
        *,
        priority: int = 0,
        connect_timeout: float | None = None,
        name: str | None = None,
    ) -> None:
        if get_info not in _INFO_CHOICES:
            raise ConfigurationError(
                f"Server {host}: get_info must be one of {_INFO_CHOICES}, got {get_info!r}"
            )
        if port is None and isinstance(host, str) and "://" not in host:
            port = _DEFAULT_PORTS["ldaps" if use_ssl else "ldap"]  # ldap3: 389, or 636 with use_ssl
        super().__init__(host, port, use_ssl, priority=priority, connect_timeout=connect_timeout, name=name)
        self.allowed_referral_hosts = referral_hosts(f"Server {host}", allowed_referral_hosts)
        if tls is not None and not isinstance(tls, TLSPolicy):
            raise ConfigurationError(
                f"Server {host}: tls must be a geventpool.ldap.Tls (or TLSPolicy), got {type(tls).__name__}"
            )
        self.get_info = get_info
        self.tls = tls
        #: The rootDSE, once read (``get_info`` DSA or ALL).
        self.info: DSAInfo | None = None
        #: The subschema entry, once read (``get_info`` SCHEMA or ALL).
        self.schema: SchemaInfo | None = None

    def _default_scheme(self) -> str | None:
        return "ldaps" if self.use_ssl else "ldap"

    def __reduce__(self) -> Any:
        return (Server, (self.host, self.port, self.use_ssl, self.allowed_referral_hosts, self.get_info))


#: ldap3's ``pool_strategy`` values.
FIRST = "FIRST"
ROUND_ROBIN = "ROUND_ROBIN"
RANDOM = "RANDOM"
#: ldap3's older names for the same values.
POOLING_STRATEGY_FIRST = FIRST
POOLING_STRATEGY_ROUND_ROBIN = ROUND_ROBIN
POOLING_STRATEGY_RANDOM = RANDOM
_LDAP3_STRATEGIES = {
    # (pool_strategy, active): the core's strategy
    (FIRST, True): core.POOLING_STRATEGY_FIRST_ACTIVE,
    (FIRST, False): core.POOLING_STRATEGY_NONE,
    (ROUND_ROBIN, True): core.POOLING_STRATEGY_ROUND_ROBIN_ACTIVE,
    (ROUND_ROBIN, False): core.POOLING_STRATEGY_ROUND_ROBIN_PASSIVE,
    (RANDOM, True): core.POOLING_STRATEGY_RANDOM_ACTIVE,
    (RANDOM, False): core.POOLING_STRATEGY_RANDOM_PASSIVE,
}


class ServerPool(core.ServerPool):
    """:class:`geventpool.ServerPool` whose host and URI strings become LDAP :class:`Server` objects,
    with ldap3's keywords too: ``ServerPool([s1, s2], pool_strategy=FIRST, active=True, exhaust=60)``.

    ``pool_strategy``: ``FIRST``, ``ROUND_ROBIN`` (default) or ``RANDOM``.
    ``active``: True (default) skips servers whose circuit is open and
    checks one whose health is unknown or stale with a TCP connect-and-close
    before choosing it (bounded by one connect attempt's ``connect_timeout``);
    a number N goes round the servers N times before a connect fails (ldap3's
    True, "for ever", is one round here: every wait is bounded, and the pool's
    waiters ask again); False tries the servers in order without checks.
    ``exhaust``: seconds a server that failed stays out (True: until it
    answers the circuit's probe); False: the circuit breaker alone decides.
    Health is kept per server address and shared by every pool of the
    process (``single_state=False`` is refused).  The second positional
    argument may also be one of the core's ``POOLING_STRATEGY_*`` names.

    :raises ConfigurationError: an unknown strategy, a bad ``active`` or ``exhaust``.
    """

    server_class = Server

    def __init__(
        self,
        servers: Iterable[core.ServerLike] | core.ServerLike | None = None,
        pool_strategy: str = ROUND_ROBIN,
        active: bool | int = True,
        exhaust: bool | float = False,
        single_state: bool = True,
        *,
        rng: Any = None,
    ) -> None:
        if single_state is not True:
            raise ConfigurationError(
                "ServerPool: single_state=False is not supported: a server's health is kept per address "
                "and shared by every pool of the process"
            )
        if isinstance(active, bool):
            cycles = 1
        elif isinstance(active, int) and active >= 1:
            cycles = active
        else:
            raise ConfigurationError(f"ServerPool: active must be True, False or a number of cycles >= 1, "
                                     f"got {active!r}")
        if pool_strategy in core.STRATEGIES:
            strategy = pool_strategy  # the core's own names
        else:
            strategy = _LDAP3_STRATEGIES.get((pool_strategy, active is not False), "")
            if not strategy:
                raise ConfigurationError(
                    f"ServerPool: pool_strategy must be FIRST, ROUND_ROBIN or RANDOM (or one of "
                    f"{core.STRATEGIES}), got {pool_strategy!r}"
                )
        extra: dict[str, Any] = {} if rng is None else {"rng": rng}
        super().__init__(servers, strategy, cycles=cycles, exhaust=exhaust, **extra)
        self.pool_strategy = pool_strategy


def _ldap_field(server: core.Server, name: str, default: Any) -> Any:
    """An LDAP field of ``server``: a core ``geventpool.Server`` has none (the defaults apply)."""
    return getattr(server, name, default)
#: The subschema attributes read for GET_SCHEMA_INFO (operational: they must be named).
_SCHEMA_ATTRIBUTES = [
    "objectClasses", "attributeTypes", "ldapSyntaxes", "matchingRules", "matchingRuleUse",
    "dITContentRules", "dITStructureRules", "nameForms", "createTimestamp", "modifyTimestamp",
]


def _text(values: Iterable[bytes]) -> list[str]:
    return [v.decode("utf-8", "replace") for v in values]


class _Entry:
    """An LDAP entry read once: ``raw`` maps each attribute to its values as str."""

    def __init__(self, dn: str, attributes: dict[str, list[bytes]]) -> None:
        self.dn = dn
        #: Every attribute read, by its name as the server spelled it; values decoded as UTF-8.
        self.raw: dict[str, list[str]] = {name: _text(values) for name, values in attributes.items()}
        self._lower = {name.lower(): values for name, values in self.raw.items()}

    def get(self, name: str) -> list[str]:
        """The values of attribute ``name`` (case-insensitive); [] when absent."""
        return list(self._lower.get(name.lower(), []))

    def __getitem__(self, name: str) -> list[str]:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._lower


class DSAInfo(_Entry):
    """A server's rootDSE (``server.info`` with ``GET_DSA_INFO`` or ``GET_ALL_INFO``)."""

    @property
    def naming_contexts(self) -> list[str]:
        return self.get("namingContexts")

    @property
    def supported_controls(self) -> list[str]:
        return self.get("supportedControl")

    @property
    def supported_extensions(self) -> list[str]:
        return self.get("supportedExtension")

    @property
    def supported_features(self) -> list[str]:
        return self.get("supportedFeatures")

    @property
    def supported_ldap_versions(self) -> list[str]:
        return self.get("supportedLDAPVersion")

    @property
    def supported_sasl_mechanisms(self) -> list[str]:
        return self.get("supportedSASLMechanisms")

    @property
    def vendor_name(self) -> list[str]:
        return self.get("vendorName")

    @property
    def vendor_version(self) -> list[str]:
        return self.get("vendorVersion")

    @property
    def alt_servers(self) -> list[str]:
        return self.get("altServer")

    @property
    def schema_entry(self) -> str | None:
        values = self.get("subschemaSubentry")
        return values[0] if values else None

    def __repr__(self) -> str:
        return f"<DSAInfo naming_contexts={self.naming_contexts!r} vendor={self.vendor_name!r}>"


class SchemaInfo(_Entry):
    """A server's subschema entry (``server.schema`` with ``GET_SCHEMA_INFO`` or ``GET_ALL_INFO``).

    ``subschema`` is python-ldap's parsed :class:`ldap.schema.SubSchema`.
    """

    def __init__(self, dn: str, attributes: dict[str, list[bytes]]) -> None:
        super().__init__(dn, attributes)
        self.subschema = ldap.schema.SubSchema(attributes, check_uniqueness=0)

    @property
    def object_classes(self) -> list[str]:
        return self.get("objectClasses")

    @property
    def attribute_types(self) -> list[str]:
        return self.get("attributeTypes")

    def __repr__(self) -> str:
        return (
            f"<SchemaInfo {self.dn!r}: {len(self.object_classes)} object classes, "
            f"{len(self.attribute_types)} attribute types>"
        )


@dataclass(frozen=True)
class ServerOptions:
    """One server's address and the settings its connections use (its TLS and referral policies)."""

    address: LDAPServer
    settings: Settings


def check_server(owner: str, server: Any) -> None:
    """Check that ``server`` can be an LDAP server.

    :raises ConfigurationError: not a Server, a scheme other than ldap/ldaps,
        a ``tls`` that is not a TLSPolicy, bad ``allowed_referral_hosts``.
    """
    if not isinstance(server, core.Server):
        raise ConfigurationError(f"{owner}: expected a geventpool.ldap.Server, got {server!r}")
    if server.scheme is not None and server.scheme not in _SCHEMES:
        raise ConfigurationError(
            f"{owner}: server {server.name}: scheme {server.scheme!r} is not ldap or ldaps"
        )
    tls = _ldap_field(server, "tls", None)
    if tls is not None and not isinstance(tls, TLSPolicy):
        raise ConfigurationError(
            f"{owner}: server {server.name}: tls must be a geventpool.ldap.TLSPolicy, "
            f"got {type(tls).__name__}"
        )
    referral_hosts = _ldap_field(server, "allowed_referral_hosts", None)
    if referral_hosts:
        ReferralPolicy(f"{owner}: server {server.name}", referral_hosts)


def _default_uris() -> str:
    """libldap's default URIs (``URI`` in ldap.conf, ``$LDAPURI``; ``ldap://localhost`` when
    neither is set), scheme, host and port only (libldap's own form carries ``/??base``)."""
    default = ldap.get_option(ldap.OPT_URI) or ""
    uris = []
    for entry in str(default).split():
        try:
            url = LDAPUrl(entry)
        except ValueError:
            continue
        uris.append(f"{url.urlscheme}://{url.hostport}")
    return " ".join(uris)


def server_pool_of(owner: str, given: Any) -> tuple[core.ServerPool, bool]:
    """Return the ServerPool for ``given``, and whether it came from ldappool's URI string.

    A str is ldappool's URI list (``POOLING_STRATEGY_FIRST_ACTIVE``, in
    order, each tried ``retry_max`` times: no reachability check, and open
    circuits only report unless the pool says otherwise); a list of ``Server``
    objects or URIs gets the same strategy; a ``ServerPool`` is used as it is
    (shared, so its ``add()``/``remove()`` reach the pool).

    :raises ConfigurationError: a bad URI or server (named in the message).
    """
    if isinstance(given, str):
        if not given.strip():
            given = _default_uris()  # ldappool's uri='': libldap's default
            if not given:
                raise ConfigurationError(
                    f"{owner}: uri is empty, and libldap has no default URI to use in its place "
                    "(URI in ldap.conf, or $LDAPURI): give the servers' URIs"
                )
        servers = [_from_address(a) for a in parse_uris(owner, given)]
        listed = ServerPool(servers, POOLING_STRATEGY_FIRST_ACTIVE)
        # ldappool's meaning: every connect makes retry_max attempts on each URI, in order
        listed.checks_reachability = listed.skips_open_circuits = False
        return listed, True
    pool: core.ServerPool
    if isinstance(given, core.ServerPool):
        pool = given
    elif isinstance(given, core.Server):
        pool = ServerPool([given], POOLING_STRATEGY_FIRST_ACTIVE)
    elif isinstance(given, (list, tuple)):
        items: list[core.Server] = []
        for item in given:
            if isinstance(item, str):
                items.extend(_from_address(a) for a in parse_uris(owner, item))
            else:
                items.append(item)
        for item in items:
            check_server(owner, item)
        try:
            pool = ServerPool(items, POOLING_STRATEGY_FIRST_ACTIVE)
        except ConfigurationError as error:
            raise ConfigurationError(f"{owner}: {error}") from None
    else:
        raise ConfigurationError(
            f"{owner}: uri must be a str of LDAP URIs, a Server, a ServerPool or a list of them, "
            f"got {type(given).__name__}"
        )
    if not len(pool):
        raise ConfigurationError(f"{owner}: no LDAP server given")
    for server in pool:
        check_server(owner, server)
    return pool, False


def _from_address(address: LDAPServer) -> Server:
    return Server(address.uri)


def address_of(server: core.Server) -> LDAPServer:
    """The ``scheme://host:port`` a connection to ``server`` goes to."""
    scheme = server.scheme or ("ldaps" if server.use_ssl else "ldap")
    if scheme == "ldap" and server.use_ssl:
        scheme = "ldaps"
    port = server.port if server.port is not None else _DEFAULT_PORTS[scheme]
    return LDAPServer(scheme, server.host, port)


class OptionsCache:
    """The :class:`ServerOptions` of each server of one pool, made on first use (greenlet-safe)."""

    def __init__(self, owner: str, settings: Settings) -> None:
        self._owner = owner
        self._settings = settings
        self._cache: weakref.WeakKeyDictionary[core.Server, ServerOptions] = weakref.WeakKeyDictionary()

    def get(self, server: core.Server) -> ServerOptions:
        """The options for ``server``.

        :raises ConfigurationError: ``server`` cannot be an LDAP server (added later, say).
        """
        options = self._cache.get(server)
        if options is not None:
            return options
        check_server(self._owner, server)
        address = address_of(server)
        settings = replace(self._settings, servers=(address,))
        tls = _ldap_field(server, "tls", None)
        if isinstance(tls, TLSPolicy):
            if settings.use_tls or address.scheme == "ldaps":
                tls.check(f"{self._owner}: server {server.name}")
            settings = replace(settings, tls=tls)
        referral_hosts = _ldap_field(server, "allowed_referral_hosts", None)
        if referral_hosts:
            settings = replace(settings, referrals=ReferralPolicy(self._owner, referral_hosts))
        if server.connect_timeout is not None:
            timeout = min(settings.connect_timeout, server.connect_timeout)
            settings = replace(settings, connect_timeout=timeout)
        options = self._cache[server] = ServerOptions(address, settings)
        return options


def wants_info(server: core.Server) -> bool:
    """Whether ``server``'s ``get_info`` asks for something not read yet."""
    get_info = _ldap_field(server, "get_info", GET_NO_INFO)
    if get_info in (GET_DSA_INFO, GET_ALL_INFO) and _ldap_field(server, "info", None) is None:
        return True
    return get_info in (GET_SCHEMA_INFO, GET_ALL_INFO) and _ldap_field(server, "schema", None) is None


def fetch_info(server: Any, conn: LDAPConnection, owner: str) -> None:
    """Read the rootDSE (and the subschema entry) on ``conn`` into ``server.info``/``server.schema``.

    Cooperative (the connection's searches wait through the hub).  A server
    that refuses the read is logged and asked again on its next new
    connection; a connection error propagates (the connection is lost).

    :raises ldap.LDAPError: the connection broke during the read.
    """
    holder = server.__dict__
    if holder.get("_info_loading"):
        return  # another greenlet reads it now
    holder["_info_loading"] = True
    try:
        entries = conn.search_ext_s("", ldap.SCOPE_BASE, "(objectClass=*)", ["*", "+"])
        root = next(((dn, attrs) for dn, attrs in entries if dn is not None), None)
        if root is None:
            logger.info("%s: %s returned no rootDSE", owner, server.name)
            return
        info = DSAInfo(root[0], root[1])
        if server.get_info in (GET_DSA_INFO, GET_ALL_INFO):
            server.info = info
        if server.get_info in (GET_SCHEMA_INFO, GET_ALL_INFO) and server.schema is None:
            dn = info.schema_entry
            if dn is None:
                logger.info("%s: %s names no subschemaSubentry", owner, server.name)
                return
            found = conn.search_ext_s(dn, ldap.SCOPE_BASE, "(objectClass=subschema)", _SCHEMA_ATTRIBUTES)
            entry = next(((d, a) for d, a in found if d is not None), None)
            if entry is not None:
                server.schema = SchemaInfo(entry[0], entry[1])
        logger.debug("%s: read %s of %s", owner, server.get_info, server.name)
    except ldap.LDAPError as error:
        if conn.broken:
            raise
        logger.info("%s: reading %s of %s failed: %r", owner, server.get_info, server.name, error)
    finally:
        holder["_info_loading"] = False
