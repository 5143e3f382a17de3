"""TLS policy of an LDAP pool: verified by default, applied per connection.

A :class:`TLSPolicy` is a frozen value: two pools with different policies
never share a connection, and a pool keys its connections by its policy.
Options are set on each connection, then ``OPT_X_TLS_NEWCTX`` builds that
connection's own TLS context; ``ldap.set_option`` (process-wide) is never
called.  Unlike ldap3's ``Tls()`` (``CERT_NONE`` by default), the default
here is to require a certificate signed by a trusted CA and to check the
server's hostname against it (libldap's ``demand``).

``valid_names`` (ldap3's meaning) widens the names accepted, never the chain
check: how each case is verified is described in ``geventpool/ldap/_peer.py``
and in the ldap3 migration guide (:ref:`ldap3-valid-names`).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import ssl
from dataclasses import dataclass
from typing import Any

import ldap

from ..errors import ConfigurationError

__all__ = ["TLSPolicy", "Tls", "TLS_VERSIONS", "MAX_VALID_NAMES", "ANY_NAME"]

logger = logging.getLogger("geventpool.ldap")

#: Accepted ``min_version`` values and libldap's protocol numbers for them.
TLS_VERSIONS = {
    "1.0": ldap.OPT_X_TLS_PROTOCOL_TLS1_0,
    "1.1": ldap.OPT_X_TLS_PROTOCOL_TLS1_1,
    "1.2": ldap.OPT_X_TLS_PROTOCOL_TLS1_2,
    "1.3": ldap.OPT_X_TLS_PROTOCOL_TLS1_3,
}

#: The ``valid_names`` entry that accepts a certificate for any name (its chain is still verified).
ANY_NAME = "*"
#: Most ``valid_names`` entries: a connect may try each of them in turn (one handshake each).
MAX_VALID_NAMES = 16
_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?)*$")


def check_valid_names(owner: str, names: Any) -> tuple[str, ...]:
    """Return ``names`` (None, or a list/tuple of host names, IP addresses and ``'*'``) as a tuple
    of distinct lower-case names, in the order given.

    :raises ConfigurationError: not a list or tuple (a bare str is refused: ldap3 would read it
        letter by letter), more than :data:`MAX_VALID_NAMES` entries, or an entry that is not
        a host name, an IP address or ``'*'`` (wildcard patterns such as ``*.example.com`` are
        the certificate's business, not a name to connect by).
    """
    if names is None:
        return ()
    if isinstance(names, (str, bytes)):
        raise ConfigurationError(
            f"{owner}: valid_names must be a list of host names, not a {type(names).__name__} "
            f"(got {names!r}: write [{names!r}])"
        )
    if not isinstance(names, (list, tuple)):
        raise ConfigurationError(
            f"{owner}: valid_names must be a list of host names, got {type(names).__name__}"
        )
    if len(names) > MAX_VALID_NAMES:
        raise ConfigurationError(
            f"{owner}: valid_names has {len(names)} entries, at most {MAX_VALID_NAMES} are accepted "
            "(a connect may try each of them)"
        )
    result: list[str] = []
    for name in names:
        if not isinstance(name, str):
            raise ConfigurationError(
                f"{owner}: valid_names entries must be str host names, got {type(name).__name__} {name!r}"
            )
        value = name.strip().lower()
        if value != ANY_NAME:
            try:
                value = str(ipaddress.ip_address(value.strip("[]")))
            except ValueError:
                if len(value) > 253 or not _HOSTNAME.match(value.rstrip(".")):
                    raise ConfigurationError(
                        f"{owner}: valid_names entry {name!r} is not a host name, an IP address or '*'"
                    ) from None
                value = value.rstrip(".")
        if value not in result:
            result.append(value)
    return tuple(result)


@dataclass(frozen=True)
class TLSPolicy:
    """How to verify the server and present ourselves: CA, client certificate, minimum version.

    ``verify=False`` turns certificate and hostname checks off (logged as a
    WARNING when a pool is built with it).  ``ca_file``/``ca_dir`` default to
    libldap's own (``/etc/ldap/ldap.conf``, the system store).  ``require_san``
    refuses certificates without a subjectAltName (``OPT_X_TLS_REQUIRE_SAN``).
    ``ciphers``: libldap's cipher suite string (``OPT_X_TLS_CIPHER_SUITE``).
    ``valid_names``: names the certificate may carry instead of the server's
    host name (a tuple; ``'*'``: any name, the chain still verified); ignored
    when ``verify`` is False.  Pools whose policies differ in any field, the
    names included, never share a connection.
    """

    verify: bool = True
    ca_file: str | None = None
    ca_dir: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    min_version: str = "1.2"
    require_san: bool = False
    ciphers: str | None = None
    valid_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names: Any = self.valid_names
        if isinstance(names, list):  # a policy is a dict key: keep it hashable
            object.__setattr__(self, "valid_names", tuple(names))

    @property
    def accepted_names(self) -> tuple[str, ...] | None:
        """The names accepted besides the server's host: None when ``valid_names`` has ``'*'``
        (any name), ``()`` when there are none or nothing is verified."""
        if not self.verify:
            return ()
        if ANY_NAME in self.valid_names:
            return None
        return self.valid_names

    def check(self, owner: str) -> None:
        """Raise :class:`ConfigurationError` naming the first bad field."""
        if not isinstance(self.verify, bool):
            raise ConfigurationError(f"{owner}: tls verify must be True or False, got {self.verify!r}")
        if check_valid_names(owner, self.valid_names) != self.valid_names:
            raise ConfigurationError(
                f"{owner}: tls valid_names must be a tuple of distinct lower-case host names, IP "
                f"addresses or '*', got {self.valid_names!r}"
            )
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and os.path.isfile(value)):
                raise ConfigurationError(f"{owner}: tls {name} {value!r} is not a readable file")
        if self.ca_dir is not None and not (isinstance(self.ca_dir, str) and os.path.isdir(self.ca_dir)):
            raise ConfigurationError(f"{owner}: tls ca_dir {self.ca_dir!r} is not a directory")
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigurationError(f"{owner}: tls cert_file and key_file go together")
        if self.min_version not in TLS_VERSIONS:
            raise ConfigurationError(
                f"{owner}: tls min_version must be one of {sorted(TLS_VERSIONS)}, got {self.min_version!r}"
            )
        if self.ciphers is not None:
            if not (isinstance(self.ciphers, str) and self.ciphers.strip()):
                raise ConfigurationError(
                    f"{owner}: tls ciphers must be a non-empty str, got {self.ciphers!r}"
                )
            unconnected = ldap.initialize("ldap://127.0.0.1")  # nothing is sent
            try:
                unconnected.set_option(ldap.OPT_X_TLS_CIPHER_SUITE, self.ciphers)
                unconnected.set_option(ldap.OPT_X_TLS_NEWCTX, 0)  # where the TLS library reads it
            except (ValueError, ldap.LDAPError):
                raise ConfigurationError(
                    f"{owner}: tls ciphers {self.ciphers!r} is not a cipher suite libldap's TLS library "
                    "accepts (GnuTLS priority strings such as 'NORMAL:-VERS-TLS1.2', or OpenSSL cipher "
                    "lists, as libldap was built)"
                ) from None
        if not self.verify:
            logger.warning(
                "%s: TLS certificate verification is OFF (tls_verify=False, or validate=ssl.CERT_NONE): "
                "the server is not authenticated and credentials may reach an impostor",
                owner,
            )

    def apply(self, conn: Any, pinned: bool = False) -> None:
        """Set this policy's options on one connection, then give it its own TLS context.

        ``pinned``: libldap accepts whatever certificate the server shows (``allow``), because
        the caller compares it with one it verified itself before any credentials are sent
        (``geventpool/ldap/_peer.py``).
        """
        set_option = conn.set_option
        if pinned:
            require = ldap.OPT_X_TLS_ALLOW
        else:
            require = ldap.OPT_X_TLS_DEMAND if self.verify else ldap.OPT_X_TLS_NEVER
        set_option(ldap.OPT_X_TLS_REQUIRE_CERT, require)
        if self.ca_file is not None:
            set_option(ldap.OPT_X_TLS_CACERTFILE, self.ca_file)
        if self.ca_dir is not None:
            set_option(ldap.OPT_X_TLS_CACERTDIR, self.ca_dir)
        if self.cert_file is not None:
            set_option(ldap.OPT_X_TLS_CERTFILE, self.cert_file)
            set_option(ldap.OPT_X_TLS_KEYFILE, self.key_file)
        set_option(ldap.OPT_X_TLS_PROTOCOL_MIN, TLS_VERSIONS[self.min_version])
        if self.ciphers is not None:
            set_option(ldap.OPT_X_TLS_CIPHER_SUITE, self.ciphers)
        if self.require_san and self.verify and not pinned:
            set_option(ldap.OPT_X_TLS_REQUIRE_SAN, ldap.OPT_X_TLS_DEMAND)
        set_option(ldap.OPT_X_TLS_NEWCTX, 0)


# ldap3's ``version`` (an ``ssl.PROTOCOL_*`` or ``ssl.TLSVersion``) as a minimum version: libldap
# negotiates the highest version both sides speak, from this one up.
_PROTOCOL_VERSIONS: dict[Any, str] = {
    ssl.TLSVersion.TLSv1: "1.0", ssl.TLSVersion.TLSv1_1: "1.1", ssl.TLSVersion.TLSv1_2: "1.2",
    ssl.TLSVersion.TLSv1_3: "1.3", ssl.TLSVersion.MINIMUM_SUPPORTED: "1.2",
    ssl.PROTOCOL_TLS_CLIENT: "1.2", ssl.PROTOCOL_TLS: "1.2",
}
for _name, _version in (("PROTOCOL_TLSv1", "1.0"), ("PROTOCOL_TLSv1_1", "1.1"), ("PROTOCOL_TLSv1_2", "1.2")):
    if hasattr(ssl, _name):  # deprecated names, still ldap3's documented values
        _PROTOCOL_VERSIONS[getattr(ssl, _name)] = _version

#: ldap3 ``Tls`` arguments libldap has no option for, and why they are refused.
_UNSUPPORTED = {
    "ca_certs_data": "libldap reads CA certificates from files: give ca_certs_file or ca_certs_path",
    "local_private_key_password": "libldap cannot read an encrypted private key: decrypt it to a "
                                  "file readable by this process only",
    "ssl_options": "libldap is not configured through ssl.SSLContext options",
    "sni": "libldap sends the URI's host name as SNI",
}


class Tls(TLSPolicy):
    """ldap3's ``Tls``, for ``Server(..., tls=Tls(...))`` and ``LDAPPool(tls=...)``.

    ``validate`` (``ssl.CERT_REQUIRED`` by default, unlike ldap3's
    ``CERT_NONE``: accepting any certificate by default is the insecure
    choice; ``ssl.CERT_OPTIONAL`` verifies too, since a server always
    presents one; ``ssl.CERT_NONE`` is the explicit opt-out, logged as a
    WARNING), ``version`` (an ``ssl.PROTOCOL_*`` or ``ssl.TLSVersion``: the
    lowest version accepted), ``ca_certs_file``, ``ca_certs_path``,
    ``local_certificate_file``, ``local_private_key_file`` and ``ciphers``
    map onto :class:`TLSPolicy`'s fields.  ``ca_certs_data``,
    ``local_private_key_password``, ``ssl_options`` and ``sni`` are refused:
    libldap has no option for them.

    ``valid_names`` has ldap3's meaning: the certificate must chain to the
    trusted CAs (always) and name the server's host *or* any of these names;
    ``'*'`` accepts any name (the chain is still verified).  A list or tuple
    of host names or IP addresses (at most :data:`MAX_VALID_NAMES`); it is
    ignored with ``validate=ssl.CERT_NONE``, as in ldap3.  How each case is
    verified, and what it costs (one handshake per connect once a server's
    certificate is known): :ref:`ldap3-valid-names`.

    :raises ConfigurationError: a bad or unsupported argument (named, with the reason).
    """

    def __init__(
        self,
        local_private_key_file: str | None = None,
        local_certificate_file: str | None = None,
        validate: int = ssl.CERT_REQUIRED,
        version: Any = None,
        ssl_options: Any = None,
        ca_certs_file: str | None = None,
        valid_names: Any = None,
        ca_certs_path: str | None = None,
        ca_certs_data: Any = None,
        local_private_key_password: Any = None,
        ciphers: str | None = None,
        sni: Any = None,
    ) -> None:
        names = check_valid_names("Tls", valid_names)
        given = {
            "ca_certs_data": ca_certs_data,
            "local_private_key_password": local_private_key_password, "ssl_options": ssl_options,
            "sni": sni,
        }
        for name, value in given.items():
            if value not in (None, [], ()):
                raise ConfigurationError(f"Tls: {name} is not supported: {_UNSUPPORTED[name]}")
        if validate not in (ssl.CERT_NONE, ssl.CERT_OPTIONAL, ssl.CERT_REQUIRED):
            raise ConfigurationError(
                "Tls: validate must be ssl.CERT_NONE, ssl.CERT_OPTIONAL or ssl.CERT_REQUIRED, "
                f"got {validate!r}"
            )
        if version is None:
            min_version = "1.2"
        elif isinstance(version, str) and version in TLS_VERSIONS:
            min_version = version
        else:
            try:
                min_version = _PROTOCOL_VERSIONS[version]
            except (KeyError, TypeError):
                raise ConfigurationError(
                    f"Tls: version must be an ssl.PROTOCOL_TLS* or ssl.TLSVersion value, got {version!r}"
                ) from None
        super().__init__(
            verify=validate != ssl.CERT_NONE, ca_file=ca_certs_file, ca_dir=ca_certs_path,
            cert_file=local_certificate_file, key_file=local_private_key_file, min_version=min_version,
            ciphers=ciphers, valid_names=names,
        )
        try:
            self.check("Tls")
        except ConfigurationError as error:  # name ldap3's arguments, not TLSPolicy's fields
            message = str(error).replace(
                "tls cert_file and key_file", "local_certificate_file and local_private_key_file"
            )
            for ours, theirs in (
                ("ca_file", "ca_certs_file"), ("ca_dir", "ca_certs_path"),
                ("cert_file", "local_certificate_file"), ("key_file", "local_private_key_file"),
            ):
                message = message.replace(f"tls {ours} ", f"{theirs} ")
            raise ConfigurationError(message) from None

    def __repr__(self) -> str:
        return (
            f"Tls(validate={'CERT_REQUIRED' if self.verify else 'CERT_NONE'}, "
            f"min_version={self.min_version!r}, "
            f"ca_certs_file={self.ca_file!r}, ca_certs_path={self.ca_dir!r}, "
            f"local_certificate_file={self.cert_file!r}"
            + (f", valid_names={list(self.valid_names)!r})" if self.valid_names else ")")
        )
