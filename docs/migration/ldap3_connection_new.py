"""The new side of the ldap3 guide's Connection section, run by tests/docs against real servers.

``python docs/migration/ldap3_connection_new.py`` starts two private slapd
instances with TLS (geventpool.testing.slapd) on 127.0.0.1, runs the code the
guide shows (a long-lived, read-only service connection and a password
check, both over verified StartTLS), stops the first server under it, and
checks what the guide claims: one ``ok:`` line per claim, exit status 1 if
one fails.
"""
# ruff: noqa: I001 (the imports the guide shows come after markers)

from __future__ import annotations

import os
import tempfile

import gevent

from geventpool.testing import HubMonitor
from geventpool.testing.slapd import SERVICE_DN, SERVICE_PW, USER_PW, Slapd, user_dn

# [new-connection]
from ldap.filter import escape_filter_chars

from geventpool import POOLING_STRATEGY_FIRST_ACTIVE, retry
from geventpool.ldap import (LOST_CONNECTION_ERRORS, Connection, Server,
                             ServerPool, Tls)
from geventpool.ldap.ldap3_connection import SUBTREE

PEOPLE = "ou=people,dc=example,dc=com"


def make_servers(primary_uri, replica_uri, ca_file):
    tls = Tls(ca_certs_file=ca_file)  # verified: also the default
    return ServerPool(
        [Server(primary_uri, tls=tls, connect_timeout=2),
         Server(replica_uri, tls=tls, connect_timeout=2)],
        POOLING_STRATEGY_FIRST_ACTIVE)


def make_directory(servers):
    # one connection for the process's lifetime; each greenlet
    # waits its turn on it, none blocks the others
    return Connection(servers, SERVICE_DN, SERVICE_PW,
                      auto_bind="TLS_BEFORE_BIND",
                      receive_timeout=10, read_only=True)


@retry(exc_classes=LOST_CONNECTION_ERRORS, max_failures=2,
       interval=0.05)
def find_person(conn, uid):
    if conn.closed:  # lost: reopen (next server, TLS first) and bind
        conn.bind()
    conn.search(PEOPLE, f"(uid={escape_filter_chars(uid)})", SUBTREE,
                attributes=["cn", "mail"])
    return conn.entries


def check_password(servers, dn, password):
    if not password:  # an empty password would bind anonymously
        return False
    conn = Connection(servers, dn, password)
    try:
        conn.start_tls()  # before the password crosses
        return conn.bind()
    finally:
        conn.unbind()
# [/new-connection]


def check(condition: object, claim: str) -> None:
    if not condition:
        raise SystemExit(f"FAILED: {claim}")
    print(f"ok: {claim}", flush=True)


def run(primary: Slapd, replica: Slapd, ca_bundle: str) -> None:
    servers = make_servers(primary.uri, replica.uri, ca_bundle)
    directory = make_directory(servers)
    entries = find_person(directory, "user0007")
    check(directory.tls_started and directory.server.port == primary.port,
          "the long-lived connection is bound over verified StartTLS, on the first server")
    check([e.entry_dn for e in entries] == [user_dn(7)] and entries[0].cn.value == "User 7",
          "search() fills entries: entry_dn, attribute access")
    check(find_person(directory, "nobody*)(uid=*") == [], "a filter value is escaped, not injected")
    try:
        directory.modify_s(user_dn(7), [(2, "description", [b"x"])])
        refused = ""
    except Exception as error:
        refused = str(error)
    check("read_only=True" in refused, "read_only refuses a write before sending it")
    check(check_password(servers, user_dn(3), USER_PW), "a right password binds")
    check(not check_password(servers, user_dn(3), "wrong"), "a wrong password is False")
    check(not check_password(servers, user_dn(3), ""), "an empty password is never sent")
    check(SERVICE_PW not in repr(directory) and SERVICE_PW not in str(vars(directory)),
          "the password is in no repr")

    stalls = []
    for _ in range(3):  # the best of three: a loaded machine's scheduling adds to the stalls
        with HubMonitor(interval=0.005) as hub:
            jobs = [gevent.spawn(check_password, servers, user_dn(n), USER_PW) for n in range(100)]
            gevent.joinall(jobs, raise_error=True, timeout=60)
        check(all(job.value for job in jobs), "100 concurrent password checks all bound")
        stalls.append(hub.max_stall)
        if hub.max_stall < 0.1:
            break
    check(min(stalls) < 0.1,
          f"100 greenlets checked passwords concurrently, hub's longest stall {min(stalls) * 1000:.0f} ms")

    primary.stop()
    entries = find_person(directory, "user0008")
    check([e.entry_dn for e in entries] == [user_dn(8)] and directory.server.port == replica.port
          and directory.tls_started,
          "primary stopped: the next search reconnected to the replica, TLS first")
    directory.unbind()
    check(directory.closed, "unbind() closes the connection")


def main() -> None:
    with Slapd(users=100) as primary, Slapd(users=100) as replica:
        fd, ca_bundle = tempfile.mkstemp(suffix=".pem")
        try:
            with os.fdopen(fd, "w") as bundle:  # the test CAs of both instances
                for server in (primary, replica):
                    with open(server.ca_file) as ca:
                        bundle.write(ca.read())
            run(primary, replica, ca_bundle)
        finally:
            os.unlink(ca_bundle)
    print("ldap3_connection_new: all checks passed")


if __name__ == "__main__":
    main()
