"""TLS with geventpool.ldap: ``python examples/ldap_tls.py [LDAP_URI LDAPS_URI CA_FILE]``.

StartTLS on ``ldap://`` (``use_tls=True``) and ``ldaps://``, verified
against a CA file: certificate and hostname checks are ON by default
(ldap3's ``Tls()`` verifies nothing by default; this pool does).  A pool
given the wrong CA fails with :class:`TLSVerificationError` before any
credentials are sent, and never falls back to plaintext.

Without arguments the script starts a private slapd with a test CA
(geventpool.testing.slapd).
"""

from __future__ import annotations

import sys
import tempfile

import ldap

from geventpool.ldap import LDAPPool, TLSVerificationError

SERVICE_DN = "uid=svc1,ou=services,dc=example,dc=com"


def main(ldap_uri: str, ldaps_uri: str, ca_file: str) -> None:
    starttls = LDAPPool(
        ldap_uri, SERVICE_DN, "svcpw", use_tls=True, tls_ca_file=ca_file, tls_min_version="1.2"
    )
    with starttls.connection() as conn:
        print("StartTLS:", conn.whoami_s(), "verify =", conn.get_option(ldap.OPT_X_TLS_REQUIRE_CERT))
    starttls.close()

    ldaps = LDAPPool(ldaps_uri, SERVICE_DN, "svcpw", tls_ca_file=ca_file)
    with ldaps.connection() as conn:
        print("ldaps:", conn.whoami_s())
    ldaps.close()

    from geventpool.testing.slapd import TestCA

    with tempfile.TemporaryDirectory() as directory:
        stranger = TestCA(directory, "stranger")
        wrong = LDAPPool(ldap_uri, SERVICE_DN, "svcpw", use_tls=True, tls_ca_file=stranger.cert_file,
                         checkout_timeout=5)
        try:
            with wrong.connection():
                raise SystemExit("an unverified server was accepted")
        except TLSVerificationError as error:
            print("wrong CA refused:", error)
        finally:
            wrong.close()


if __name__ == "__main__":
    if len(sys.argv) > 3:
        main(sys.argv[1], sys.argv[2], sys.argv[3])
    else:
        from geventpool.testing.slapd import Slapd

        with Slapd(users=5) as server:
            main(server.uri, server.ldaps_uri, server.ca_file)
