"""Referral chasing, off by default, allowed only towards listed hosts.

libldap's own chasing (``OPT_REFERRALS``) is always off: it would open
blocking connections and could send the bind credentials to any host a
server names.  With ``allowed_referral_hosts`` (as in ldap3's ``Server``:
``"*"``, host names, or ``(host, allow_auth)`` pairs), a search that meets a
referral follows it with a cooperative connection of the same TLS policy,
bound with the pool's credentials only where ``allow_auth`` is True
(anonymously otherwise); other referrals are left to the caller as
python-ldap reports them.  A pool that uses TLS (``ldaps://`` or StartTLS)
never follows a referral in clear text: an ``ldap://`` one is followed with
StartTLS under the pool's TLS policy, or not at all.  One hop only: a referral found while chasing is
not chased again.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Sequence, Union

import ldap
from ldapurl import LDAPUrl

from ..errors import ConfigurationError
from .errors import TLSVerificationError
from .uris import LDAPServer

if TYPE_CHECKING:
    from ._connect import Settings
    from .credentials import Credentials

__all__ = ["ReferralPolicy", "ReferralHosts", "referral_hosts", "referral_urls", "collect_with_referrals"]

logger = logging.getLogger("geventpool.ldap")

#: How a referral's server is connected to: ``_connect.open_connection(server, settings)``.
Opener = Callable[[LDAPServer, "Settings"], Any]


def referral_urls(error: ldap.REFERRAL) -> list[str]:
    """Return the URLs of a REFERRAL error (python-ldap puts them in ``info``)."""
    info = error.args[0].get("info", "") if error.args and isinstance(error.args[0], dict) else ""
    return [line.strip() for line in str(info).splitlines() if "://" in line]


#: What ``allowed_referral_hosts`` accepts: ``"*"``, or host names and ``(host, allow_auth)`` pairs.
ReferralHosts = Union[str, Sequence[Union[str, tuple[str, bool]]]]


def referral_hosts(owner: str, allowed: ReferralHosts | None) -> list[tuple[str, bool]]:
    """``allowed_referral_hosts`` in every form ldap3 documents, as ``(host, allow_auth)`` pairs.

    ``"*"`` (any host) or a list of host names allow chasing without
    credentials; a ``(host, allow_auth)`` pair (later ldap3's form) says
    whether the pool's credentials may be sent there; host ``"*"`` matches any.

    :raises ConfigurationError: anything else (named in the message).
    """
    if allowed is None:
        return []
    if isinstance(allowed, str):
        allowed = [allowed]  # ldap3: '*' for every server; one name is one host, not its letters
    if not isinstance(allowed, (list, tuple)):
        raise ConfigurationError(
            f"{owner}: allowed_referral_hosts must be '*', a list of host names or of (host, allow_auth) "
            f"tuples, got {type(allowed).__name__}"
        )
    checked: list[tuple[str, bool]] = []
    for item in allowed:
        if isinstance(item, str) and item.strip():
            checked.append((item.strip().lower(), False))
        elif (
            isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and item[0].strip()
            and isinstance(item[1], bool)
        ):
            checked.append((item[0].strip().lower(), item[1]))
        else:
            raise ConfigurationError(
                f"{owner}: allowed_referral_hosts entries must be host names or (host, allow_auth) tuples "
                f"(allow_auth True or False), got {item!r}"
            )
    return checked


class ReferralPolicy:
    """Which referral hosts may be followed, and with which credentials (greenlet-safe)."""

    def __init__(self, owner: str, allowed: ReferralHosts) -> None:
        self.allowed = tuple(referral_hosts(owner, allowed))

    def lookup(self, host: str) -> bool | None:
        """Return allow_auth for ``host``, or None when it may not be followed."""
        host = host.lower()
        for allowed, allow_auth in self.allowed:
            if allowed in ("*", host):
                return allow_auth
        return None

    def chase(
        self, urls: Sequence[str], settings: Settings, credentials: Credentials, scope: int,
        filterstr: str, attrlist: Any, attrsonly: int, timeout: float, opener: Opener,
    ) -> list[Any] | None:
        """Follow the first allowed URL (opened with ``opener``: ``_connect.open_connection``,
        passed in, since that module imports this one); return its entries, or None when none is
        allowed."""
        for url in urls:
            try:
                parsed = LDAPUrl(url)
            except ValueError:
                continue
            scheme = parsed.urlscheme.lower()
            host, _, port_text = parsed.hostport.rpartition(":") if ":" in parsed.hostport else (
                parsed.hostport, "", "")
            if scheme not in ("ldap", "ldaps") or not host:
                continue
            allow_auth = self.lookup(host)
            if allow_auth is None:
                logger.info("%s: referral to %s not followed (host not allowed)", settings.owner, url)
                continue
            port = int(port_text) if port_text else (636 if scheme == "ldaps" else 389)
            secure = settings.use_tls or any(s.scheme == "ldaps" for s in settings.servers)
            if secure and scheme == "ldap" and not settings.use_tls:
                # never a downgrade: a TLS pool follows an ldap:// referral with StartTLS (its own
                # TLS policy, verified), or not at all; nothing is sent in clear text first
                settings = replace(settings, use_tls=True)
            try:
                conn = opener(LDAPServer(scheme, host, port), settings)
            except TLSVerificationError as error:
                logger.warning("%s: referral to %s not followed: %s", settings.owner, url, error)
                continue
            try:
                if allow_auth and not credentials.anonymous:
                    conn._pool_bind(credentials)
                logger.debug("%s: following referral to %s", settings.owner, url)
                entries: list[Any] = conn.search_ext_s(
                    parsed.dn, scope, filterstr, attrlist, attrsonly, timeout=timeout
                )
                return entries
            finally:
                conn.close()
        return None


def collect_with_referrals(
    conn: Any, msgid: int, referrals: tuple[ReferralPolicy, Settings, Credentials, Opener], scope: int,
    filterstr: str, attrlist: Any, attrsonly: int, timeout: float,
) -> list[Any]:
    """Wait for a search's entries on ``conn``; follow the referrals ``referrals`` allows.

    A REFERRAL result (the base is a referral) is replaced by the referred
    search's entries; continuation references ``(None, [urls])`` in the
    entries are replaced by theirs.  Referrals that may not be followed are
    left as python-ldap reports them.
    """
    policy, settings, credentials, opener = referrals
    if timeout is None or timeout < 0:
        timeout = conn.timeout
    try:
        entries: list[Any] = conn._wait_result(msgid, 1, timeout, 0, 0, 0, True)[1]
    except ldap.REFERRAL as error:
        chased = policy.chase(
            referral_urls(error), settings, credentials, scope, filterstr, attrlist, attrsonly, timeout,
            opener,
        )
        if chased is None:
            raise
        return chased
    if not any(dn is None for dn, _ in entries):
        return entries
    result: list[Any] = []
    for dn, value in entries:
        if dn is not None:
            result.append((dn, value))
            continue
        urls = [u.decode() if isinstance(u, bytes) else u for u in value]
        sub_scope = ldap.SCOPE_SUBTREE if scope != ldap.SCOPE_BASE else scope
        chased = policy.chase(
            urls, settings, credentials, sub_scope, filterstr, attrlist, attrsonly, timeout, opener
        )
        result.extend(chased if chased is not None else [(dn, value)])
    return result
