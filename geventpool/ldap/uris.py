"""Parse and check ldappool's ``uri`` argument: one URI or a comma/whitespace-separated list."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigurationError

__all__ = ["LDAPServer", "parse_uris", "redact_uri"]

_SPLIT = re.compile(r"[\s,]+")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")
_DEFAULT_PORTS = {"ldap": 389, "ldaps": 636}


@dataclass(frozen=True)
class LDAPServer:
    """One LDAP server: scheme (``ldap`` or ``ldaps``), host and port."""

    scheme: str
    host: str
    port: int

    @property
    def uri(self) -> str:
        """The server's URI, as given to libldap (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def __str__(self) -> str:
        return self.uri


def redact_uri(text: str) -> str:
    """Return ``text`` with any ``user:password@`` part of a URI replaced by ``***@``."""
    return re.sub(r"(//)[^/@\s]*@", r"\1***@", text)


def parse_uris(owner: str, uri: Any) -> tuple[LDAPServer, ...]:
    """Return the servers named by ``uri``, in order.

    :raises ConfigurationError: ``uri`` is not a str, is empty, or an entry is not
        ``ldap://host[:port][/]`` or ``ldaps://...`` (the message names the entry,
        with any credentials in it redacted).
    """
    if not isinstance(uri, str):
        raise ConfigurationError(f"{owner}: uri must be a str of LDAP URIs, got {type(uri).__name__}")
    entries = [e for e in _SPLIT.split(uri.strip()) if e]
    if not entries:
        raise ConfigurationError(f"{owner}: uri is empty")
    return tuple(_parse_one(owner, entry) for entry in entries)


def _parse_one(owner: str, entry: str) -> LDAPServer:
    shown = redact_uri(entry)

    def bad(why: str) -> ConfigurationError:
        return ConfigurationError(f"{owner}: bad LDAP URI {shown!r}: {why}")

    if "://" not in entry:
        raise bad("expected ldap://host[:port] or ldaps://host[:port]")
    try:
        parts = urlsplit(entry)
    except ValueError as error:
        raise bad(str(error)) from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise bad(f"scheme {parts.scheme!r} is not ldap or ldaps")
    if "@" in parts.netloc:
        raise bad("credentials in the URI are not supported; pass bind= and passwd=")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise bad("only scheme, host and port are allowed (no DN, attributes or extensions)")
    host = parts.hostname
    if not host:
        raise bad("no host")
    if ":" not in host and not _HOSTNAME.match(host):
        raise bad(f"invalid host {host!r}")
    try:
        port = parts.port
    except ValueError:
        raise bad("port must be a number in 1..65535") from None
    if port is None:
        if parts.netloc.endswith(":"):
            raise bad("empty port")
        port = _DEFAULT_PORTS[scheme]
    if not 1 <= port <= 65535:
        raise bad("port must be a number in 1..65535")
    return LDAPServer(scheme, host, port)
