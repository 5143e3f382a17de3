"""ldappool's README, with only the import changed: ``python examples/ldap_readme.py [LDAP_URI]``.

Without a URI the script starts a private slapd (geventpool.testing.slapd)
on 127.0.0.1 and stops it at the end.  With one, it binds as
``uid=svc1,ou=services,dc=example,dc=com`` / ``svcpw`` and reads
``uid=user0007,ou=people,...`` (the test directory's layout).
"""

from __future__ import annotations

import sys

import ldap

from geventpool.ldap import ConnectionManager  # was: from ldappool import ConnectionManager

SERVICE_DN = "uid=svc1,ou=services,dc=example,dc=com"
USER_DN = "uid=user0007,ou=people,dc=example,dc=com"


def main(uri: str) -> None:
    cm = ConnectionManager(uri)

    with cm.connection(SERVICE_DN, "svcpw") as conn:
        # conn is a python-ldap LDAPObject, bound to the server
        print("bound as", conn.whoami_s())
        print("entry:", conn.search_s(USER_DN, ldap.SCOPE_BASE, attrlist=["cn", "mail"]))

    # The options of the README: a default identity, pool size, retries, TLS, timeout, pooling.
    cm = ConnectionManager(uri, bind=SERVICE_DN, passwd="svcpw", size=10, retry_max=3, retry_delay=0.1,
                           use_tls=False, timeout=10, use_pool=True)
    with cm.connection() as conn:  # binds with the pool's defaults
        print("default identity:", conn.whoami_s())
    with cm.connection(USER_DN, "userpw") as conn:  # another identity, from its own sub-pool
        print("user identity:", conn.whoami_s())
    print(cm)
    print("connections:", len(cm))
    cm.purge(USER_DN)
    cm.close()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        from geventpool.testing.slapd import Slapd

        with Slapd(users=20, tls=False) as server:
            main(server.uri)
