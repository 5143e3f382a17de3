"""Every snippet and option of ldappool's README, run with geventpool.

``python docs/migration/ldappool_snippets.py`` starts a private slapd on
127.0.0.1 and makes the README's ``ldap://localhost`` reach it: a resolver
on the gevent hub answers ``localhost``, port 389, with 127.0.0.1 and the
slapd's port (nothing else changes; no DNS, no port 389).  Each snippet runs
as the README shows it, only the import changed, then every option of
``ConnectionManager`` and of ``connection()`` is checked for what the README
(and ldappool's code) says it does: one ``ok:`` line per claim, exit status 1
if one fails.
"""

from __future__ import annotations

import time
from typing import Any

import gevent
import ldap
from gevent.server import StreamServer

from geventpool.testing.slapd import SERVICE_DN, SERVICE_PW, USER_PW, Slapd, user_dn


def check(condition: object, claim: str) -> None:
    if not condition:
        raise SystemExit(f"FAILED: {claim}")
    print(f"ok: {claim}", flush=True)


class Localhost:
    """``localhost:389`` on the hub's resolver -> 127.0.0.1 and the slapd's port; the rest unchanged."""

    def __init__(self, resolver: Any, port: int) -> None:
        self._resolver = resolver
        self.port = port

    def getaddrinfo(self, host: Any, port: Any, *args: Any) -> Any:
        if host == "localhost" and int(port or 0) == 389:
            return self._resolver.getaddrinfo("127.0.0.1", self.port, *args)
        return self._resolver.getaddrinfo(host, port, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resolver, name)


class Refuser:
    """A server that accepts and closes at once: an LDAP server that is down, counting attempts."""

    def __init__(self) -> None:
        self.attempts = 0
        self.server = StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()
        self.uri = f"ldap://127.0.0.1:{self.server.server_port}"

    def _handle(self, sock: Any, address: Any) -> None:
        self.attempts += 1
        sock.close()


def quickstart(server: Slapd) -> None:
    # [readme: quickstart]
    from geventpool.ldap import ConnectionManager  # was: from ldappool import ConnectionManager

    cm = ConnectionManager('ldap://localhost')

    try:
        with cm.connection('uid=adminuser,ou=logins,dc=mozilla', 'password') as conn:
            pass  # .. do something with conn ..
    # [/readme]
    except ldap.INVALID_CREDENTIALS:
        refused = True
    else:
        refused = False
    check(refused, "the README's DN and password reach slapd on ldap://localhost "
                   "(refused: our directory has no uid=adminuser,ou=logins,dc=mozilla)")
    # the same with a DN our directory holds
    with cm.connection(user_dn(1), USER_PW) as conn:
        check(conn.whoami_s() == f"dn:{user_dn(1)}", "with cm.connection(dn, password) as conn: bound as dn")
    check(isinstance(conn, ldap.ldapobject.SimpleLDAPObject),
          "the connector is a python-ldap LDAPObject, as the README says")
    cm.close()

    # [readme: status table]
    cm = ConnectionManager('ldap://localhost', size=2)
    # [/readme]
    with cm.connection(SERVICE_DN, SERVICE_PW):  # .. do something with cm ..
        pass
    table = str(cm)
    # [readme: status table]
    print(cm)
    # [/readme]
    check(all(head in table for head in ("Slot (2 max)", "Connected", "Active", "URI", "Lifetime (600 max)",
                                         "Bind DN")) and SERVICE_DN in table,
          "print(cm): the README's table (Slot (2 max), Connected, Active, URI, Lifetime (600 max), Bind DN)")
    cm.close()


def options(server: Slapd) -> None:
    from geventpool.ldap import BackendError, ConnectionManager, LDAPConnection, MaxConnectionReachedError

    # uri: several URIs, tried in order; retry_max attempts per URI, retry_delay apart
    down = Refuser()
    cm = ConnectionManager(f"{down.uri} ldap://localhost", SERVICE_DN, SERVICE_PW,
                           retry_max=3, retry_delay=0.1)
    started = time.monotonic()
    with cm.connection() as conn:
        took = time.monotonic() - started
        check(conn.whoami_s() == f"dn:{SERVICE_DN}" and down.attempts == 3,
              "uri with two URIs: retry_max=3 attempts on the first, then the second serves")
    check(took >= 0.2, f"retry_delay=0.1 between attempts (the first URI took {took:.2f} s)")
    cm.close()

    down = Refuser()
    cm = ConnectionManager(down.uri, SERVICE_DN, SERVICE_PW, retry_max=5, retry_delay=0.05)
    try:
        with cm.connection():
            pass
    except BackendError:
        failed = True
    else:
        failed = False
    check(failed and down.attempts == 5, "every URI down: BackendError after exactly retry_max=5 attempts")
    gevent.sleep(0.5)  # what follows a BackendError when nobody asks: nothing
    check(down.attempts == 5, "no connect in the background after the BackendError")
    cm.close()

    # uri='': libldap's default URI (ldap://localhost)
    cm = ConnectionManager('', SERVICE_DN, SERVICE_PW)
    with cm.connection() as conn:
        check(conn.whoami_s() == f"dn:{SERVICE_DN}", "uri='': libldap's default URI, as in ldappool")
    cm.close()

    # bind / passwd: the default identity of connection(); connection(bind, passwd) another
    cm = ConnectionManager('ldap://localhost', bind=SERVICE_DN, passwd=SERVICE_PW)
    with cm.connection() as conn:
        default = conn.whoami_s()
    with cm.connection(user_dn(2), USER_PW) as conn:
        other = conn.whoami_s()
    check(default == f"dn:{SERVICE_DN}" and other == f"dn:{user_dn(2)}",
          "bind/passwd are connection()'s defaults; connection(bind, passwd) binds as another DN")
    cm.close()
    cm = ConnectionManager('ldap://localhost')
    with cm.connection() as conn:
        check(conn.whoami_s() == "", "bind=None: anonymous connections")
    cm.close()

    # size, and a full pool: MaxConnectionReachedError after retry_max x retry_delay
    cm = ConnectionManager('ldap://localhost', SERVICE_DN, SERVICE_PW, size=1, retry_max=3, retry_delay=0.1)
    with cm.connection():
        started = time.monotonic()
        try:
            with cm.connection():
                pass
        except MaxConnectionReachedError:
            waited = time.monotonic() - started
        else:
            waited = -1.0
    check(0.25 <= waited < 5, f"size=1, in use: MaxConnectionReachedError after retry_max x retry_delay "
                              f"({waited:.2f} s)")
    cm.close()

    # use_tls: StartTLS, verified (the test CA given).  By address: this machine's libldap fails the
    # TLS handshake for the name localhost (ldapwhoami -ZZ too), not for 127.0.0.1.
    cm = ConnectionManager(server.uri, SERVICE_DN, SERVICE_PW, use_tls=True, tls_ca_file=server.ca_file)
    with cm.connection() as conn:
        check(str(conn.get_option(ldap.OPT_X_TLS_VERSION)).startswith("TLS"),
              "use_tls=True: StartTLS before the bind")
    cm.close()

    # timeout: an operation waits at most timeout seconds
    cm = ConnectionManager('ldap://localhost', SERVICE_DN, SERVICE_PW, timeout=1)
    with cm.connection() as conn:
        server.pause()
        try:
            started = time.monotonic()
            conn.search_s("ou=people,dc=example,dc=com", ldap.SCOPE_ONELEVEL, "(uid=user0001)")
        except ldap.TIMEOUT:
            waited = time.monotonic() - started
        else:
            waited = -1.0
        finally:
            server.resume()
    check(0.9 <= waited < 5, f"timeout=1: a search on a stalled server raises ldap.TIMEOUT ({waited:.2f} s)")
    cm.close()

    # use_pool=False: a new connection for every use, unbound after it
    binds = server.operation_count("Bind")
    cm = ConnectionManager('ldap://localhost', SERVICE_DN, SERVICE_PW, use_pool=False)
    for _ in range(2):
        with cm.connection() as conn:
            conn.whoami_s()
    check(server.operation_count("Bind") == binds + 3 and len(cm) == 0,  # +1: the count's own bind
          "use_pool=False: one connection, one bind per use, none kept")
    cm.close()

    # max_lifetime: a connection older than this is replaced
    cm = ConnectionManager('ldap://localhost', SERVICE_DN, SERVICE_PW, max_lifetime=0.3)
    with cm.connection() as first:
        pass
    gevent.sleep(0.4)
    with cm.connection() as second:
        pass
    check(second is not first, "max_lifetime=0.3: an older connection is not lent again")
    cm.close()

    # connector_cls: the connections' class (a subclass of geventpool's LDAPConnection)
    class Connector(LDAPConnection):
        pass

    cm = ConnectionManager('ldap://localhost', SERVICE_DN, SERVICE_PW, connector_cls=Connector)
    with cm.connection() as conn:
        check(isinstance(conn, Connector), "connector_cls: connections are of that class")
    cm.close()


def main() -> None:
    with Slapd(users=5) as server:
        hub = gevent.get_hub()
        hub.resolver = Localhost(hub.resolver, server.port)
        with gevent.Timeout(120):
            quickstart(server)
            options(server)
    print("ldappool_snippets: all checks passed")


if __name__ == "__main__":
    main()
