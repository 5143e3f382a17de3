"""An application authenticator under load: ``python examples/ldap_authenticator.py [LDAP_URI]``.

A web application checks logins: it looks the user up by ``uid`` with its
service account, then checks the password with :meth:`LDAPPool.authenticate`,
which binds on connections set apart for that (the service connections are
never re-bound).  300 greenlets log in concurrently, a third with a wrong
password; a heartbeat greenlet shows that the hub never stalls.

Without a URI the script starts a private slapd (geventpool.testing.slapd).
"""

from __future__ import annotations

import sys
import time

import gevent
import ldap
from ldap.filter import escape_filter_chars

from geventpool.ldap import LDAPPool
from geventpool.testing import HubMonitor

SERVICE_DN = "uid=svc1,ou=services,dc=example,dc=com"
PEOPLE = "ou=people,dc=example,dc=com"


class Authenticator:
    """Check a uid/password pair; greenlet-safe (one pool, shared)."""

    def __init__(self, uri: str) -> None:
        self.pool = LDAPPool(uri, SERVICE_DN, "svcpw", size=5, auth_size=5, timeout=5, checkout_timeout=10)

    def login(self, uid: str, password: str) -> bool:
        with self.pool.connection() as conn:
            found = conn.search_s(PEOPLE, ldap.SCOPE_ONELEVEL, f"(uid={escape_filter_chars(uid)})", ["1.1"])
        if len(found) != 1:
            return False
        return self.pool.authenticate(found[0][0], password)


def main(uri: str, logins: int = 300) -> None:
    auth = Authenticator(uri)
    with HubMonitor() as hub:
        started = time.monotonic()
        jobs = [
            gevent.spawn(auth.login, f"user{n % 20:04d}", "userpw" if n % 3 else "wrong")
            for n in range(logins)
        ]
        gevent.joinall(jobs, raise_error=True)
        elapsed = time.monotonic() - started
    accepted = sum(1 for job in jobs if job.value)
    assert accepted == sum(1 for n in range(logins) if n % 3), accepted
    print(f"{logins} logins in {elapsed:.2f} s: {accepted} accepted, {logins - accepted} refused")
    print(f"longest hub stall: {hub.max_stall * 1000:.1f} ms")
    stats = auth.pool.stats()
    print(f"service connections: {stats['pool_size']:.0f}, auth connections: {stats['auth_pool_size']:.0f}")
    auth.pool.close()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        from geventpool.testing.slapd import Slapd

        with Slapd(users=20, tls=False) as server:
            main(server.uri)
