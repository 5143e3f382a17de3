"""TLS policy of an LDAP pool: verified by default, applied per connection.

A :class:`TLSPolicy` is a frozen value: two pools with different policies
never share a connection, and a pool keys its connections by its policy.
Options are set on each connection, then ``OPT_X_TLS_NEWCTX`` builds that
connection's own TLS context; ``ldap.set_option`` (process-wide) is never
called.  Unlike ldap3's ``Tls()`` (``CERT_NONE`` by default), the default
here is to require a certificate signed by a trusted CA and to check the
server's hostname against it (libldap's ``demand``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import ldap

from ..errors import ConfigurationError

__all__ = ["TLSPolicy", "TLS_VERSIONS"]

logger = logging.getLogger("geventpool.ldap")

#: Accepted ``min_version`` values and libldap's protocol numbers for them.
TLS_VERSIONS = {
    "1.0": ldap.OPT_X_TLS_PROTOCOL_TLS1_0,
    "1.1": ldap.OPT_X_TLS_PROTOCOL_TLS1_1,
    "1.2": ldap.OPT_X_TLS_PROTOCOL_TLS1_2,
    "1.3": ldap.OPT_X_TLS_PROTOCOL_TLS1_3,
}


@dataclass(frozen=True)
class TLSPolicy:
    """How to verify the server and present ourselves: CA, client certificate, minimum version.

    ``verify=False`` turns certificate and hostname checks off (logged as a
    WARNING when a pool is built with it).  ``ca_file``/``ca_dir`` default to
    libldap's own (``/etc/ldap/ldap.conf``, the system store).  ``require_san``
    refuses certificates without a subjectAltName (``OPT_X_TLS_REQUIRE_SAN``).
    """

    verify: bool = True
    ca_file: str | None = None
    ca_dir: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    min_version: str = "1.2"
    require_san: bool = False

    def check(self, owner: str) -> None:
        """Raise :class:`ConfigurationError` naming the first bad field."""
        if not isinstance(self.verify, bool):
            raise ConfigurationError(f"{owner}: tls verify must be True or False, got {self.verify!r}")
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
        if not self.verify:
            logger.warning(
                "%s: TLS certificate verification is OFF (tls_verify=False): "
                "the server is not authenticated and credentials may reach an impostor",
                owner,
            )

    def apply(self, conn: Any) -> None:
        """Set this policy's options on one connection, then give it its own TLS context."""
        set_option = conn.set_option
        set_option(
            ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND if self.verify else ldap.OPT_X_TLS_NEVER
        )
        if self.ca_file is not None:
            set_option(ldap.OPT_X_TLS_CACERTFILE, self.ca_file)
        if self.ca_dir is not None:
            set_option(ldap.OPT_X_TLS_CACERTDIR, self.ca_dir)
        if self.cert_file is not None:
            set_option(ldap.OPT_X_TLS_CERTFILE, self.cert_file)
            set_option(ldap.OPT_X_TLS_KEYFILE, self.key_file)
        set_option(ldap.OPT_X_TLS_PROTOCOL_MIN, TLS_VERSIONS[self.min_version])
        if self.require_san and self.verify:
            set_option(ldap.OPT_X_TLS_REQUIRE_SAN, ldap.OPT_X_TLS_DEMAND)
        set_option(ldap.OPT_X_TLS_NEWCTX, 0)
