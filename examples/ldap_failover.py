"""LDAP failover and failback: ``python examples/ldap_failover.py``.

Starts two private slapd instances (geventpool.testing.slapd) on 127.0.0.1:
a primary and a replica, given to one :class:`LDAPPool` as a
:class:`~geventpool.servers.ServerPool` (``POOLING_STRATEGY_FIRST_ACTIVE``:
the primary while it is healthy).  Fifty greenlets read entries under
``@retry`` while the script kills the primary (SIGKILL), waits for the
traffic to move to the replica, starts the primary again and waits for the
connections to come back to it, one at a time.  Each claim it checks is
printed as an ``ok:`` line; it exits 1 if one fails.
"""

from __future__ import annotations

import collections
import logging
import sys
import time

import gevent
import gevent.event
import ldap

from geventpool import retry
from geventpool.ldap import GET_DSA_INFO, LOST_CONNECTION_ERRORS, LDAPPool, Server, ServerPool
from geventpool.servers import POOLING_STRATEGY_FIRST_ACTIVE
from geventpool.testing.slapd import SERVICE_DN, SERVICE_PW, Slapd, user_dn


def check(condition: object, claim: str) -> None:
    if not condition:
        print(f"FAILED: {claim}", flush=True)
        sys.exit(1)
    print(f"ok: {claim}", flush=True)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with Slapd(users=20, tls=False) as primary, Slapd(users=20, tls=False) as replica:
        servers = ServerPool(
            [Server(primary.uri, get_info=GET_DSA_INFO), Server(replica.uri, priority=1)],
            POOLING_STRATEGY_FIRST_ACTIVE,
        )
        pool = LDAPPool(servers, SERVICE_DN, SERVICE_PW, size=8, min_size=8, connect_timeout=1, timeout=2,
                        retry_max=1)
        pool.housekeeping_interval = 0.2  # a failback step every 0.2 s (default: 1 s)
        for server in servers:
            server.health.cooldown = 0.3  # probe a failed server every 0.3 s at first (default: 1 s)
        pool.wait(10)
        first = servers.preferred()[0]
        check(first.info is not None and first.info.naming_contexts == ["dc=example,dc=com"],
              f"the primary's rootDSE was read: naming contexts {first.info.naming_contexts}")

        served: collections.Counter[str] = collections.Counter()
        failures: list[BaseException] = []
        stop = gevent.event.Event()

        @retry(exc_classes=LOST_CONNECTION_ERRORS, max_failures=5, interval=0.02)
        def read(n: int) -> str:
            with pool.connection() as conn:
                conn.search_s(user_dn(n % 20), ldap.SCOPE_BASE, attrlist=["uid"])
                return str(conn.__dict__["_uri"])

        def caller(n: int) -> None:
            while not stop.is_set():
                try:
                    served[read(n)] += 1
                except Exception as error:  # counted, and reported below
                    failures.append(error)
                gevent.sleep(0.005)

        def on(slapd: Slapd) -> int:
            return int(pool.server_stats()[f"127.0.0.1:{slapd.port}"]["connections"])

        def wait_for(condition: object, timeout: float) -> float:
            started = time.monotonic()
            while not condition():  # type: ignore[operator]
                if time.monotonic() - started > timeout:
                    return -1.0
                gevent.sleep(0.01)
            return time.monotonic() - started

        callers = [gevent.spawn(caller, n) for n in range(50)]
        gevent.sleep(0.5)
        check(served[primary.uri] > 0 and served[replica.uri] == 0, "every call goes to the primary")

        primary.kill()
        before = served[replica.uri]
        moved = wait_for(lambda: served[replica.uri] > before, timeout=10)
        check(0 <= moved < 2.0, f"primary killed: the replica served a call {moved * 1000:.0f} ms later")
        check(wait_for(lambda: on(replica) == 8, timeout=10) >= 0, "all 8 connections are on the replica")
        print(pool, flush=True)

        primary.start()  # the same port
        back = wait_for(lambda: on(primary) == 8, timeout=20)
        check(back >= 0, f"primary back: the connections failed back to it, one per housekeeping pass "
                         f"({back:.1f} s)")
        stop.set()
        gevent.joinall(callers, timeout=10)
        check(not failures, f"{sum(served.values())} calls, {len(failures)} failed")
        print(pool, flush=True)
        pool.close()
    print("ldap_failover: all checks passed")


if __name__ == "__main__":
    main()
