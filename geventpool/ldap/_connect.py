"""Open one cooperative LDAP connection: TCP through gevent, TLS in the threadpool, then bind.

Plain ``ldap://``: a gevent socket connects (cooperatively, within the
connect timeout); libldap gets a duplicate of its descriptor through
``ldap.initialize(uri, fileno=...)`` (libldap closes that duplicate on
unbind, the pool closes the socket).  StartTLS then runs in gevent's
threadpool.  ``ldaps://``: libldap must run the handshake on a socket of
its own, so the connect and the handshake both run in the threadpool,
bounded by ``OPT_NETWORK_TIMEOUT``; the hub keeps running either way.

A policy with ``valid_names`` adds the checks of :mod:`._peer` (URI host
switched for StartTLS; Python's ssl and a pinned certificate for
``ldaps://``, ``'*'`` and a late ``start_tls()``).
"""

from __future__ import annotations

import logging
import os
import re
import socket as _stdsocket
from dataclasses import dataclass

import gevent
import gevent.socket
import ldap

from ..errors import ConnectTimeout
from . import _peer
from .connection import WHOAMI_OID, LDAPConnection
from .credentials import Credentials
from .errors import AuthenticationFailed, BindDropped, TLSVerificationError
from .referrals import ReferralPolicy
from .tls import TLSPolicy
from .uris import LDAPServer

__all__ = ["Settings", "open_connection", "open_bound", "start_tls"]

logger = logging.getLogger("geventpool.ldap")

# Errors of a TLS start that mean "not verified / not possible", as opposed to a network failure.
_TLS_FAILURES = (ldap.CONNECT_ERROR, ldap.PROTOCOL_ERROR, ldap.UNAVAILABLE, ldap.OPERATIONS_ERROR)


@dataclass(frozen=True)
class Settings:
    """What every connection of one LDAP pool shares (servers, TLS, timeouts, retries)."""

    owner: str
    servers: tuple[LDAPServer, ...]
    tls: TLSPolicy
    use_tls: bool
    retry_max: int
    retry_delay: float
    connect_timeout: float
    op_timeout: float
    referrals: ReferralPolicy | None
    connector_cls: type[LDAPConnection]


def set_nodelay(sock: gevent.socket.socket) -> None:
    """Send each request at once (an LDAP request is one write)."""
    try:
        sock.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
    except OSError:
        pass


def _configure(conn: LDAPConnection, settings: Settings, tls: bool, pinned: bool = False) -> None:
    set_option = conn.set_option
    set_option(ldap.OPT_PROTOCOL_VERSION, ldap.VERSION3)
    # libldap's own chasing would open blocking connections and could replay binds elsewhere
    set_option(ldap.OPT_REFERRALS, 0)
    set_option(ldap.OPT_NETWORK_TIMEOUT, settings.connect_timeout)
    set_option(ldap.OPT_TIMEOUT, settings.op_timeout)
    if tls:
        settings.tls.apply(conn, pinned=pinned)


def _tls_error(server: LDAPServer, error: ldap.LDAPError, conn: LDAPConnection) -> TLSVerificationError:
    info = error.args[0] if error.args and isinstance(error.args[0], dict) else {}
    reason = info.get("info") or info.get("desc") or type(error).__name__
    try:
        detail = conn._l.get_option(ldap.OPT_DIAGNOSTIC_MESSAGE)
    except Exception:
        detail = None
    if detail and detail not in reason:
        reason = f"{detail} ({reason})"
    return TLSVerificationError(f"TLS with {server.uri} failed (no credentials were sent): {reason}")


_VERSION = re.compile(r"(TLS|SSL)v?(\d)\.(\d)")


def check_negotiated(conn: LDAPConnection, server: LDAPServer, settings: Settings) -> None:
    """After a handshake: refuse a protocol below the policy's ``min_version``, whatever libldap's
    TLS library made of ``OPT_X_TLS_PROTOCOL_MIN`` (GnuTLS builds ignore it).  Nothing was sent yet
    but an anonymous WhoAmI.

    :raises TLSVerificationError: names the version negotiated and the minimum.
    """
    minimum = settings.tls.min_version
    try:
        negotiated = str(conn._l.get_option(ldap.OPT_X_TLS_VERSION) or "")
        cipher = str(conn._l.get_option(ldap.OPT_X_TLS_CIPHER) or "")
    except (ValueError, ldap.LDAPError):
        negotiated, cipher = "", ""
    found = _VERSION.search(negotiated)
    if found is None:
        raise TLSVerificationError(
            f"TLS with {server.uri}: libldap did not report the protocol negotiated ({negotiated!r}); "
            "refused, since tls_min_version cannot be checked (no credentials were sent)"
        )
    version = (0, 0) if found.group(1) == "SSL" else (int(found.group(2)), int(found.group(3)))
    wanted = tuple(int(part) for part in minimum.split("."))
    if version < wanted:
        raise TLSVerificationError(
            f"TLS with {server.uri} negotiated {negotiated} ({cipher}), below tls_min_version {minimum}: "
            "refused (no credentials were sent)"
        )


def open_connection(server: LDAPServer, settings: Settings) -> LDAPConnection:
    """Connect to ``server`` (and start TLS as configured); no bind yet.

    :raises TLSVerificationError: the TLS handshake or StartTLS failed.
    :raises OSError, ldap.LDAPError: the connection failed.
    """
    if server.scheme == "ldaps":
        return _open_ldaps(server, settings)
    names = settings.tls.accepted_names
    if settings.use_tls and names:
        return _open_starttls_by_name(server, settings, names)
    conn = _open_tcp(server, settings)
    try:
        _configure(conn, settings, settings.use_tls, pinned=settings.use_tls and names is None)
        if settings.use_tls:
            try:
                conn.start_tls_s()
            except _TLS_FAILURES as error:
                raise _tls_error(server, error, conn) from None
            _verify_session(conn, server, settings, pinned=names is None)
    except BaseException:
        conn.close()
        raise
    return conn


def _open_tcp(server: LDAPServer, settings: Settings, host: str | None = None) -> LDAPConnection:
    """Connect a gevent socket to ``server`` and give libldap its descriptor; the URI libldap gets
    names ``host`` (default: the server's own), which libldap then neither resolves nor connects
    to: it only checks the certificate against it."""
    sock = gevent.socket.create_connection((server.host, server.port), timeout=settings.connect_timeout)
    try:
        set_nodelay(sock)
        uri = server.uri if host is None else LDAPServer(server.scheme, host, server.port).uri
        fd = os.dup(sock.fileno())
        try:
            conn = settings.connector_cls(uri, fileno=fd, sock=sock, timeout=settings.op_timeout)
        except BaseException:
            os.close(fd)
            raise
    except BaseException:
        sock.close()
        raise
    if host is not None:
        conn.__dict__["_uri"] = server.uri  # logs, repr and the thread budget name the server itself
    return conn


def _open_starttls_by_name(server: LDAPServer, settings: Settings, names: tuple[str, ...]) -> LDAPConnection:
    """StartTLS with libldap checking the certificate against the server's host, then (on a
    certificate that verifies but names another host) each valid name, on a fresh connection
    each; the name that worked is tried first next time (see :mod:`._peer`)."""
    policy = settings.tls
    remembered = _peer.remembered_name(policy, server)
    candidates = [name for name in (remembered, server.host, *names) if name is not None]
    candidates = list(dict.fromkeys(candidates))
    chain_checked = False
    for host in candidates:
        conn = _open_tcp(server, settings, None if host == server.host else host)
        try:
            _configure(conn, settings, True)
            try:
                conn.start_tls_s()
            except _TLS_FAILURES as error:
                failure = _tls_error(server, error, conn)
                conn.close()
                if "hostname does not match" not in str(failure) and not chain_checked:
                    # libldap (GnuTLS) does not say why: a chain that fails ends the attempt here
                    _peer.check_certificate(server, policy, None, settings.connect_timeout)
                    chain_checked = True
                logger.debug("%s: StartTLS with %s as %r: %s", settings.owner, server.uri, host, failure)
                continue
            check_negotiated(conn, server, settings)
        except BaseException:
            conn.close()
            raise
        _peer.remember_name(policy, server, host)
        return conn
    _peer.remember_name(policy, server, None)
    raise _peer.no_name_failure(server, names)


def _verify_session(conn: LDAPConnection, server: LDAPServer, settings: Settings, pinned: bool) -> None:
    """After libldap's handshake: the version negotiated, then (``pinned``: libldap accepted any
    certificate) the certificate shown must be one Python's ssl verified for this server."""
    check_negotiated(conn, server, settings)
    if not pinned:
        return
    policy = settings.tls
    try:
        der = conn._l.get_option(ldap.OPT_X_TLS_PEERCERT)
    except (ValueError, ldap.LDAPError):
        der = None
    if not der:
        raise TLSVerificationError(
            f"TLS with {server.uri}: libldap reports no server certificate; refused (no credentials "
            "were sent)"
        )
    der = bytes(der)
    if _peer.is_pinned(policy, server.host, der):
        return
    with _peer.lock_for(policy, server.host):  # concurrent connects verify once
        if _peer.is_pinned(policy, server.host, der):
            return
        verified = _peer.check_certificate(server, policy, policy.accepted_names, settings.connect_timeout)
        _peer.pin(policy, server.host, verified)
    if verified.der != der:
        raise TLSVerificationError(
            f"TLS with {server.uri}: the certificate libldap was shown is not the one verified on a "
            "separate connection (a server choosing its certificate by SNI, or a certificate changed "
            "in between); refused (no credentials were sent)"
        )


def start_tls(conn: LDAPConnection, server: LDAPServer, settings: Settings) -> None:
    """StartTLS on an open ``ldap://`` connection under ``settings.tls`` (a long-lived
    connection's ``start_tls()``); nothing falls back to plaintext.

    :raises TLSVerificationError: the server refused StartTLS or was not verified.
    :raises OSError, ldap.LDAPError: the connection failed.
    """
    pinned = settings.tls.accepted_names != ()  # the URI's host cannot change on an open connection
    settings.tls.apply(conn, pinned=pinned)
    try:
        conn.start_tls_s()
    except _TLS_FAILURES as error:
        raise _tls_error(server, error, conn) from None
    _verify_session(conn, server, settings, pinned)


def _open_ldaps(server: LDAPServer, settings: Settings) -> LDAPConnection:
    try:
        return _open_ldaps_checked(server, settings)
    except _HandshakeRefused as refused:
        raise TLSVerificationError(*refused.args) from None


def _open_ldaps_checked(server: LDAPServer, settings: Settings) -> LDAPConnection:
    names = settings.tls.accepted_names
    if names is None:  # '*': any name, the chain verified by Python's ssl, the certificate pinned
        return _open_ldaps_once(server, settings, pinned=True)
    if not names:
        return _open_ldaps_once(server, settings, pinned=False)
    policy = settings.tls
    if _peer.remembered_name(policy, server) is not None:  # a valid name verified it before
        return _open_ldaps_once(server, settings, pinned=True)
    try:
        return _open_ldaps_once(server, settings, pinned=False)
    except _HandshakeRefused as refused:
        logger.debug("%s: %s; checking valid_names", settings.owner, refused)
    # libldap cannot check a valid name on ldaps:// (see _peer): Python's ssl checks first (a chain
    # that fails costs no further handshake), then libldap's handshake is pinned to what it verified
    with _peer.lock_for(policy, server.host):
        verified = _peer.check_certificate(server, policy, names, settings.connect_timeout)
        _peer.pin(policy, server.host, verified)
    _peer.remember_name(policy, server, verified.name)
    return _open_ldaps_once(server, settings, pinned=True)


class _HandshakeRefused(TLSVerificationError):
    """libldap's ``ldaps://`` handshake failed verification (not the network, not the version)."""


def _open_ldaps_once(server: LDAPServer, settings: Settings, pinned: bool) -> LDAPConnection:
    conn = settings.connector_cls(server.uri, timeout=settings.op_timeout)
    try:
        _configure(conn, settings, True, pinned=pinned)
        try:
            # connect + handshake + send a WhoAmI, all inside libldap: in a thread
            msgid = conn._in_thread(conn._l.extop, WHOAMI_OID, None, None, None)
        except ldap.SERVER_DOWN as error:
            if _reached(server, settings):
                raise _HandshakeRefused(*_tls_error(server, error, conn).args) from None
            raise
        except _TLS_FAILURES as error:
            raise _HandshakeRefused(*_tls_error(server, error, conn).args) from None
        fd = conn._l.get_option(ldap.OPT_DESC)
        os.set_blocking(fd, False)
        conn._set_fd(fd)
        conn._set_tls()
        _verify_session(conn, server, settings, pinned)
        conn._wait_result(msgid, 1, settings.op_timeout, 0, 0, 1)
    except BaseException:
        conn.close()
        raise
    return conn


def _reached(server: LDAPServer, settings: Settings) -> bool:
    """Tell whether ``server`` accepts TCP connections (so a failure was TLS's, not the network's)."""
    try:
        sock = gevent.socket.create_connection(
            (server.host, server.port), timeout=min(settings.connect_timeout, 2.0)
        )
    except OSError:
        return False
    sock.close()
    return True


def open_bound(settings: Settings, credentials: Credentials) -> tuple[LDAPConnection, LDAPServer]:
    """Open a connection bound as ``credentials``, failing over along ``settings.servers``.

    Each server gets ``retry_max`` attempts, ``retry_delay`` apart, each
    attempt bounded by ``connect_timeout``.  A refused bind is raised at
    once: no retry and no failover, so one wrong password costs one BIND.

    :raises AuthenticationFailed: the server refused the credentials, or they
        are a DN with an empty password (refused client-side, nothing sent).
    :raises TLSVerificationError: TLS failed on every server.
    :raises OSError, ldap.LDAPError: the last connection error, when every attempt failed.
    """
    if credentials.unauthenticated:
        raise AuthenticationFailed({
            "desc": "Invalid credentials",
            "info": f"{settings.owner}: bind DN {credentials.dn!r} has an empty password "
                    "(an unauthenticated bind); refused client-side",
        })
    last: BaseException | None = None
    tls_failure: TLSVerificationError | None = None
    for server in settings.servers:
        for attempt in range(1, settings.retry_max + 1):
            expired = ConnectTimeout(
                f"{settings.owner}: {server.uri} did not connect within {settings.connect_timeout:g} s"
            )
            try:
                with gevent.Timeout(settings.connect_timeout, expired):
                    conn = open_connection(server, settings)
                    try:
                        if not credentials.anonymous:
                            try:
                                conn._pool_bind(credentials)
                            except ldap.SERVER_DOWN as error:
                                raise BindDropped(*error.args) from None
                    except BaseException:
                        conn.close()
                        raise
                return conn, server
            except ldap.INVALID_CREDENTIALS as error:
                logger.error(
                    "%s: bind as %r refused by %s: no retry, no failover", settings.owner, credentials.dn,
                    server.uri,
                )
                if isinstance(error, AuthenticationFailed):
                    raise
                raise AuthenticationFailed(*error.args) from None
            except TLSVerificationError as error:
                logger.error("%s: %s", settings.owner, error)
                tls_failure = error
                break  # the same certificate again would fail again: next server
            except (OSError, ldap.LDAPError) as error:
                if isinstance(error, ConnectTimeout) and error is not expired:
                    raise
                last = error
                logger.info(
                    "%s: connect to %s failed (attempt %d of %d): %r", settings.owner, server.uri, attempt,
                    settings.retry_max, error,
                )
                if attempt < settings.retry_max and settings.retry_delay:
                    gevent.sleep(settings.retry_delay)
    if tls_failure is not None and last is None:
        raise tls_failure
    assert last is not None
    raise last
