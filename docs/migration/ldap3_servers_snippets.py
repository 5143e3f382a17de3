"""Every snippet of ldap3's "Server" page (Server and ServerPool), run with geventpool.

``python docs/migration/ldap3_servers_snippets.py`` starts two private slapd
instances on 127.0.0.1 and makes the page's host names resolve to them:
``server1`` and ``server2`` go to 127.0.0.1, their ports 389 and 636 to the
instances' own ports (a resolver on the gevent hub, below; nothing leaves the
machine).  Their test CAs are made libldap's default CAs, as ``TLS_CACERT``
in ``ldap.conf`` would: with ``tls=None`` geventpool verifies certificates,
where ldap3 accepts any.  Each snippet runs as the page shows it, only the
import changed, followed by the checks of what the page says it does: one
``ok:`` line per claim, exit status 1 if one fails.
"""
# ruff: noqa: I001 (each snippet's import sits beside it)

from __future__ import annotations

import os
import ssl
import tempfile
from typing import Any

import gevent
import ldap

from geventpool.ldap import BackendError, TLSVerificationError
from geventpool.testing.slapd import SERVICE_DN, SERVICE_PW, SUFFIX, Slapd

PEOPLE = f"ou=people,{SUFFIX}"


def check(condition: object, claim: str) -> None:
    if not condition:
        raise SystemExit(f"FAILED: {claim}")
    print(f"ok: {claim}", flush=True)


class PageNames:
    """The page's host names on 127.0.0.1: ``(name, port)`` -> a local port; the rest as before."""

    def __init__(self, resolver: Any, table: dict[tuple[str, int], int]) -> None:
        self._resolver = resolver
        self.table = table

    def getaddrinfo(self, host: Any, port: Any, *args: Any) -> Any:
        target = self.table.get((host, int(port or 0)))
        if target is not None:
            return self._resolver.getaddrinfo("127.0.0.1", target, *args)
        return self._resolver.getaddrinfo(host, port, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resolver, name)


CA_BUNDLE = os.path.join(tempfile.mkdtemp(prefix="ldap3-page-"), "cas.pem")


def test_cas() -> Any:
    """A Tls trusting both test CAs: with tls=None geventpool verifies against the system's CAs
    (ldap3 accepts any certificate), and these test CAs are not among them."""
    from geventpool.ldap import Tls
    return Tls(ca_certs_file=CA_BUNDLE)


def install_names(s1: Slapd, s2: Slapd) -> PageNames:
    hub = gevent.get_hub()
    names = PageNames(hub.resolver, {
        ("server1", 389): s1.port, ("server1", 636): s1.ldaps_port,
        ("server2", 389): s2.port, ("server2", 636): s2.ldaps_port,
    })
    hub.resolver = names
    with open(CA_BUNDLE, "w") as out:
        for ca in (s1.ca_file, s2.ca_file):
            with open(ca) as f:
                out.write(f.read())
    return names


def accepted_by_a_pool(pool_class: Any, server: Any) -> bool:
    pool_class(server, SERVICE_DN, SERVICE_PW).close()
    return True


def served_by(conn: Any) -> tuple[str, int | None]:
    """Open and bind ``conn``, and return the (host, port) of the server it chose."""
    conn.bind()
    where = (conn.server.host, conn.server.port)
    conn.unbind()
    return where


def server_object(s1: Slapd, s2: Slapd) -> None:
    from geventpool.ldap import Connection, LDAPPool, Server  # was: from ldap3 import Server

    # [page: Server example]
    server = Server('server1', port=636, use_ssl=True,
                    allowed_referral_hosts=[('server2', True), ('server3', False)])
    # [/page]
    check(server.port == 636 and server.use_ssl, "Server('server1', port=636, use_ssl=True, ...): 636, SSL")
    check(server.allowed_referral_hosts == [("server2", True), ("server3", False)]
          and Connection(server, SERVICE_DN, SERVICE_PW).server is server
          and accepted_by_a_pool(LDAPPool, server),
          "a Connection and a pool accept it, (host, allow_auth) tuples included")
    # The same server on the ldaps port of our slapd.  libldap resolves and connects ldaps:// itself,
    # so there the name and port 636 cannot be faked from Python: 127.0.0.1 and the slapd's port instead.
    secure = Server('127.0.0.1', port=s1.ldaps_port, use_ssl=True,
                    allowed_referral_hosts=[('server2', True), ('server3', False)], tls=test_cas())
    with Connection(secure, SERVICE_DN, SERVICE_PW) as conn:
        check(conn.bound and conn.whoami_s() == f"dn:{SERVICE_DN}",
              "bound over ldaps, the certificate verified")
    # the referral: ou=elsewhere on server1 points to ldap://server2/ou=people (plain, resolved by gevent)
    plain = Server('server1', allowed_referral_hosts=[('server2', True), ('server3', False)])
    searches = s2.operation_count("Search")
    with Connection(plain, SERVICE_DN, SERVICE_PW) as conn:
        found = conn.search(f"ou=elsewhere,{SUFFIX}", "(uid=user0001)", "LEVEL", attributes=["uid"])
        check(found and conn.entries and conn.entries[0].entry_dn == f"uid=user0001,{PEOPLE}"
              and s2.operation_count("Search") > searches,
              "a referral to server2, listed as (server2, True), is chased there")
    with Connection(Server('server1'), SERVICE_DN, SERVICE_PW) as conn:
        found = conn.search(f"ou=elsewhere,{SUFFIX}", "(uid=user0001)", "LEVEL")
        check(not found and (conn.result or {}).get("description") == "referral",
              "allowed_referral_hosts=None: the referral is reported, not chased")
    # the forms of other ldap3 versions: host names, and '*' for any server
    for allowed in (['server2', 'server3'], '*'):
        other = Server('server1', allowed_referral_hosts=allowed)
        with Connection(other, SERVICE_DN, SERVICE_PW) as conn:
            found = conn.search(f"ou=elsewhere,{SUFFIX}", "(uid=user0001)", "LEVEL")
        check(found, f"allowed_referral_hosts={allowed!r}: accepted, the referral chased (anonymously)")

    check(Server('server1').port == 389 and Server('server1', use_ssl=True).port == 636,
          "port defaults to 389, or 636 with use_ssl")
    url = Server('ldaps://server1:636')
    check((url.host, url.port, url.use_ssl) == ("server1", 636, True),
          "host as a URL: scheme and port taken from it")
    with Connection(Server(s1.ldaps_uri, tls=test_cas()), SERVICE_DN, SERVICE_PW) as conn:
        check(conn.bound, "a Server given as an ldaps:// URL binds")

    # get_info (ldap3's ALL is geventpool.ldap.GET_ALL_INFO)
    from geventpool.ldap import GET_ALL_INFO as ALL
    informed = Server('server1', get_info=ALL)
    with Connection(informed, SERVICE_DN, SERVICE_PW):
        pass
    check(informed.info is not None and SUFFIX in informed.info.naming_contexts
          and informed.schema is not None and informed.schema.object_classes,
          "get_info=ALL: server.info (rootDSE) and server.schema are read at the first connection")

    # tls: ldap3's Tls object
    from geventpool.ldap import Tls
    tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=s1.ca_file)
    verified = Server('127.0.0.1', s1.ldaps_port, use_ssl=True, tls=tls)
    with Connection(verified, SERVICE_DN, SERVICE_PW) as conn:
        check(conn.bound, "tls=Tls(validate=CERT_REQUIRED, ca_certs_file=...): verified and bound")
    wrong = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=s2.ca_file)
    try:
        Connection(Server('127.0.0.1', s1.ldaps_port, use_ssl=True, tls=wrong), SERVICE_DN, SERVICE_PW,
                   auto_bind=True)
    except TLSVerificationError:
        refused = True
    else:
        refused = False
    check(refused, "a certificate the Tls's CAs did not sign is refused before any credentials are sent")
    loose = Tls(validate=ssl.CERT_NONE)  # the explicit opt-out (a WARNING is logged)
    unverified = Server('127.0.0.1', s1.ldaps_port, use_ssl=True, tls=loose)
    with Connection(unverified, SERVICE_DN, SERVICE_PW) as conn:
        check(conn.bound, "Tls(validate=ssl.CERT_NONE): certificates not checked, as asked")

    # connect_timeout
    timed = Server('server1', connect_timeout=2)
    check(timed.connect_timeout == 2, "connect_timeout=2 is kept on the server")

    # [page: Connection with an implicit server]
    connection = Connection('server1', user='cn=user1,o=test', password='password')
    # [/page]
    binds = s1.operation_count("Bind")  # the count's own query binds too: one more each time
    check(connection.bind() is False and (connection.result or {}).get("description") == "invalidCredentials"
          and s1.operation_count("Bind") == binds + 2,
          "Connection('server1', user=..., password=...): server1 on 389 answered the bind "
          "(invalidCredentials: our directory has no cn=user1,o=test)")
    connection.unbind()


def server_pools(s1: Slapd, s2: Slapd) -> None:
    from geventpool import POOLING_STRATEGY_ROUND_ROBIN_ACTIVE
    from geventpool.ldap import Connection, Server, ServerPool
    # ldap3 names its ROUND_ROBIN also POOLING_STRATEGY_ROUND_ROBIN; geventpool.ldap.servers has ROUND_ROBIN
    from geventpool.ldap.servers import ROUND_ROBIN as POOLING_STRATEGY_ROUND_ROBIN

    # [page: three servers]
    server1 = Server('server1')
    server2 = Server('server2')
    server3 = Server('server1', port=636, use_ssl=True)
    # [/page]
    # libldap connects ldaps:// itself (no gevent resolver): server1's ldaps port as 127.0.0.1
    server3 = Server('127.0.0.1', port=s1.ldaps_port, use_ssl=True, tls=test_cas())
    # [page: ServerPool with Server objects]
    server_pool = ServerPool([server1, server2, server3], POOLING_STRATEGY_ROUND_ROBIN,
                             active=True, exhaust=True)
    # [/page]
    conn = Connection(server_pool, SERVICE_DN, SERVICE_PW)
    order = [served_by(conn) for _ in range(6)]
    expected = [("server1", 389), ("server2", 389), ("127.0.0.1", s1.ldaps_port)] * 2
    check(order == expected, "ROUND_ROBIN: each open() takes the next server of the pool")
    s2.stop()
    order = [served_by(conn) for _ in range(4)]
    check(("server2", 389) not in order and len(order) == 4,
          "active=True, exhaust=True: with server2 stopped, every open() succeeds on the others")
    s2.start()

    # [page: ServerPool filled by add()]
    server_pool = ServerPool(None, POOLING_STRATEGY_ROUND_ROBIN_ACTIVE)
    server_pool.add(server1)
    server_pool.add(server2)
    server_pool.add(server3)
    # [/page]
    check(len(server_pool) == 3, "ServerPool(None, ...) then add() three times: three servers")
    conn = Connection(server_pool, SERVICE_DN, SERVICE_PW)
    check(sorted(served_by(conn) for _ in range(3)) == sorted(expected[:3]),
          "the pool built by add() serves all three")

    # [page: a list of servers in Connection]
    # the ServerPool object is defined with the default pooling strategy
    conn = Connection([server1, server2, server3])
    # [/page]
    anonymous = []
    seen = set()
    for _ in range(3):
        anonymous.append(conn.bind() and conn.whoami_s() == "")
        seen.add((conn.server.host, conn.server.port))
        conn.unbind()
    check(all(anonymous), "Connection([server1, server2, server3]): anonymous binds")
    check(seen == set(expected[:3]), "the list is used round robin, as ldap3's default strategy")

    pooled = Connection(server_pool, SERVICE_DN, SERVICE_PW, auto_bind=True)
    # [page: add and remove while Connections use the pool]
    server4 = Server('server2', port=636, use_ssl=True)
    server4 = Server('127.0.0.1', port=s2.ldaps_port, use_ssl=True, tls=test_cas())  # as server3
    server_pool.remove(server2)
    server_pool.add(server4)
    # [/page]
    check(pooled.bound, "a Connection opened before the change stays bound")
    pooled.unbind()
    used = {served_by(pooled) for _ in range(6)}
    check(("127.0.0.1", s2.ldaps_port) in used and ("server2", 389) not in used,
          "at its next open() the Connection uses server4 (server2:636) and no longer server2")

    # the note on active strategies: a server that does not listen is skipped; active=False does not check
    dead = Server('127.0.0.1', port=dead_port(), connect_timeout=1)
    first_active = ServerPool([dead, server1], 'FIRST', active=True)
    with Connection(first_active, SERVICE_DN, SERVICE_PW) as conn:
        check((conn.server.host, conn.server.port) == ("server1", 389),
              "FIRST, active=True: a server not listening is passed over for the next")
    first_passive = ServerPool([dead, server1], 'FIRST', active=False)
    try:
        Connection(first_passive, SERVICE_DN, SERVICE_PW, auto_bind=True)
    except (BackendError, ldap.SERVER_DOWN):
        failed = True
    else:
        failed = False
    check(failed, "FIRST, active=False: always the first server, even when it is down")
    other_dead = Server('127.0.0.1', port=dead_port(), connect_timeout=1)
    cycles = ServerPool([dead, other_dead], 'ROUND_ROBIN', active=2)
    try:
        Connection(cycles, SERVICE_DN, SERVICE_PW, auto_bind=True)
    except BackendError:
        exhausted = True
    else:
        exhausted = False
    check(exhausted, "active=2 with every server down: BackendError after two cycles "
                     "(ldap3: LDAPServerPoolExhaustedError)")


def dead_port() -> int:
    """A port on 127.0.0.1 nothing listens on."""
    from geventpool.testing.slapd import free_port
    return free_port()


def offline_schema() -> None:
    from geventpool.ldap import DSAInfo, SchemaInfo
    missing = [f"{cls.__name__}.{name}" for cls in (DSAInfo, SchemaInfo)
               for name in ("to_json", "to_file", "from_file") if not hasattr(cls, name)]
    check(missing, "offline schema and info (to_json, to_file, from_file): not offered, as the guide says "
                   f"(missing: {', '.join(missing)})")


def main() -> None:
    hosts = ("server1", "server2", "localhost", "127.0.0.1")
    with Slapd(users=5, cert_hosts=hosts) as s1, Slapd(users=5, cert_hosts=hosts) as s2:
        install_names(s1, s2)
        s1.modify(f"dn: ou=elsewhere,{SUFFIX}\nchangetype: add\nobjectClass: referral\n"
                  f"objectClass: extensibleObject\nou: elsewhere\nref: ldap://server2/{PEOPLE}\n")
        with gevent.Timeout(120):
            server_object(s1, s2)
            server_pools(s1, s2)
            offline_schema()
    print("ldap3_servers_snippets: all checks passed")


if __name__ == "__main__":
    main()
