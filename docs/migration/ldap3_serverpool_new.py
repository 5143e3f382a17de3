"""The new side of the ldap3 ServerPool guide, run by tests/docs against real servers.

``python docs/migration/ldap3_serverpool_new.py`` starts two private slapd
instances (geventpool.testing.slapd) and two TCP echo servers
(geventpool.testing.EchoServer) on 127.0.0.1, runs the code the guide shows,
stops and restarts servers under it, and checks what the guide claims: one
``ok:`` line per claim, exit status 1 if one fails.
"""
# ruff: noqa: I001, E402 (the imports the guide shows come after markers)

from __future__ import annotations

import gevent

from geventpool.testing import EchoServer, wait_until
from geventpool.testing.slapd import SERVICE_DN, SERVICE_PW, Slapd

# [new-ldap]
import ldap

from geventpool import retry
from geventpool.ldap import DEFAULT_LDAP_EXC_CLASSES, LDAPPool

PEOPLE = "ou=people,dc=example,dc=com"


def make_directory_pool(primary_uri, replica_uri):
    # tried in this order for every new connection (ldap3's FIRST)
    return LDAPPool(f"{primary_uri} {replica_uri}",
                    bind=SERVICE_DN, passwd=SERVICE_PW, size=10,
                    connect_timeout=2, retry_max=1, timeout=10)


# idempotent: safe to run again on another connection
@retry(exc_classes=DEFAULT_LDAP_EXC_CLASSES, max_failures=3,
       interval=0.05)
def count_people(pool):
    with pool.connection() as conn:
        found = conn.search_s(PEOPLE, ldap.SCOPE_ONELEVEL,
                              "(objectClass=*)", ["1.1"])
        return len(found)
# [/new-ldap]

# [new-strategies]
from gevent import socket

from geventpool import (POOLING_STRATEGY_FIRST_ACTIVE, ConnectionPool,
                        Server, ServerPool)


class EchoPool(ConnectionPool):
    def _new_connection(self, server):  # the pool chooses the server
        return socket.create_connection(server.address, timeout=2)

    # also the probe of a server whose circuit is open
    def _keepalive(self, conn):
        conn.sendall(b"ping\n")
        if conn.recv(5) != b"ping\n":
            raise socket.error("bad reply")


def make_echo_pool(primary_port, backup_port):
    servers = ServerPool([Server("127.0.0.1", primary_port, priority=0),
                          Server("127.0.0.1", backup_port, priority=1)],
                         POOLING_STRATEGY_FIRST_ACTIVE)
    return EchoPool(4, servers=servers)


@retry(max_failures=3, interval=0.05)
def echo(pool, data):
    with pool.get() as conn:
        conn.sendall(data)
        reply = conn.recv(len(data))
        if not reply:
            raise socket.error("connection closed by the server")
        return reply
# [/new-strategies]


def check(condition: object, claim: str) -> None:
    if not condition:
        raise SystemExit(f"FAILED: {claim}")
    print(f"ok: {claim}", flush=True)


def ldap_failover(primary: Slapd, replica: Slapd) -> None:
    pool = make_directory_pool(primary.uri, replica.uri)
    check(count_people(pool) == 20, "searches go through the first server")
    check(primary.connection_count() >= 1 and replica.connection_count() == 0,
          "connections are opened on the first server only")
    primary.stop()
    jobs = [gevent.spawn(count_people, pool) for _ in range(50)]
    gevent.joinall(jobs, raise_error=True, timeout=60)
    check(all(job.value == 20 for job in jobs), "with the first server stopped, 50 retried searches succeed")
    check(replica.connection_count() >= 1, "new connections went to the second server")
    pool.close()


def strategies(primary: EchoServer, backup: EchoServer) -> None:
    pool = make_echo_pool(primary.port, backup.port)
    # faster than the defaults, for a short run: housekeeping every 0.1 s, a 0.1 s cool-down
    pool.housekeeping_interval = 0.1
    for server in pool.server_pool:
        server.health.cooldown = 0.1
    pool.wait(timeout=10)

    def on(server: EchoServer) -> int:
        stats = pool.server_stats()
        return int(stats[f"127.0.0.1:{server.port}"]["connections"])

    check(on(primary) == 4 and on(backup) == 0, "FIRST_ACTIVE: every connection on the preferred server")
    primary.stop()
    jobs = [gevent.spawn(echo, pool, b"during\n") for _ in range(50)]
    gevent.joinall(jobs, raise_error=True, timeout=60)
    check(all(job.value == b"during\n" for job in jobs), "primary stopped: 50 retried calls succeed")
    wait_until(lambda: on(backup) == 4, timeout=20)
    check(on(backup) == 4, "the pool refilled on the backup server")
    primary.start()  # same port
    wait_until(lambda: on(primary) == 4, timeout=30)
    check(on(primary) == 4 and on(backup) == 0, "primary back: connections failed back to it, one at a time")
    check(echo(pool, b"after\n") == b"after\n", "calls work after the failback")
    pool.close()


def main() -> None:
    with Slapd(users=20, tls=False) as primary, Slapd(users=20, tls=False) as replica:
        ldap_failover(primary, replica)
    with EchoServer() as first, EchoServer() as second:
        strategies(first, second)
    print("ldap3_serverpool_new: all checks passed")


if __name__ == "__main__":
    main()
