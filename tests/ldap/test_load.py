"""Rows J1, J2: steady load and load with chaos; every request succeeds or fails typed; nothing leaks."""

from __future__ import annotations

import random
import time
from typing import Callable

import gevent
import ldap

from geventpool import PoolError, retry
from geventpool.ldap import LOST_CONNECTION_ERRORS, LDAPPool
from geventpool.testing import FaultProxy, HubMonitor, fd_count, wait_until
from geventpool.testing.invariants import check_invariants
from geventpool.testing.slapd import Slapd, user_dn

from .conftest import assert_hub_ok

MakePool = Callable[..., LDAPPool]


def test_steady_load(slapd: Slapd, make_pool: MakePool, hub: HubMonitor) -> None:
    """J1: 200 greenlets, pool of 10, 10k base searches: all succeed, at most 10 sessions."""
    before = fd_count()
    cm = make_pool(slapd.uri, size=10)
    waits: list[float] = []
    peak = [0]

    def work(start: int) -> None:
        for i in range(start, 10_000, 200):
            t = time.monotonic()
            with cm.connection() as conn:
                waits.append(time.monotonic() - t)
                peak[0] = max(peak[0], cm.size)
                dn = user_dn(i % 1000)
                assert conn.search_s(dn, ldap.SCOPE_BASE, attrlist=["uid"])[0][0] == dn

    gevent.joinall([gevent.spawn(work, n) for n in range(200)], raise_error=True)
    assert len(waits) == 10_000
    assert peak[0] <= 10
    assert cm.stats()["pool_in_use"] == 0
    waits.sort()
    print(f"checkout wait p50 {waits[5000] * 1e3:.2f} ms, p99 {waits[9900] * 1e3:.2f} ms, "
          f"max {waits[-1] * 1e3:.2f} ms")
    assert_hub_ok(hub)
    cm.close()
    wait_until(lambda: fd_count() <= before, timeout=5)


def test_load_with_chaos(private_slapd: Slapd) -> None:
    """J2: resets, stalls, a restart and killed greenlets: successes + typed errors + kills == requests."""
    before = fd_count()
    rng = random.Random(7)
    outcomes = {"ok": 0, "error": 0, "killed": 0}
    with FaultProxy(upstream=("127.0.0.1", private_slapd.port)) as proxy:
        cm = LDAPPool(f"ldap://127.0.0.1:{proxy.port}", "uid=svc1,ou=services,dc=example,dc=com", "svcpw",
                      size=10, timeout=0.5, connect_timeout=0.5, checkout_timeout=2, retry_max=1)
        # the server's circuit opens during the restart and the stalls; callers then fail fast until
        # the next trial: a short cool-down keeps that window in proportion to this 1-second run
        assert cm.server_pool is not None
        for server in cm.server_pool:
            server.health.cooldown = 0.1

        def request(i: int) -> None:
            try:
                with cm.connection() as conn:
                    conn.search_s(user_dn(i % 50), ldap.SCOPE_BASE, attrlist=["uid"])
            except (ldap.LDAPError, PoolError, OSError):
                outcomes["error"] += 1
            else:
                outcomes["ok"] += 1

        def chaos() -> None:
            faults = ["reset_all", "stall", "restart", "reset_all", "stall"]
            for fault in faults:
                gevent.sleep(0.25)
                if fault == "reset_all":
                    proxy.reset_all()
                elif fault == "stall":
                    proxy.set_mode("stall")
                    gevent.sleep(0.3)
                    proxy.set_mode("pass")
                else:
                    private_slapd.restart(graceful=False)

        chaos_job = gevent.spawn(chaos)
        jobs: list[gevent.Greenlet] = []
        total = 3000
        for i in range(total):
            jobs.append(gevent.spawn(request, i))
            if i % 100 == 99:
                gevent.sleep(0.02)
                for victim in rng.sample(jobs[-100:], 5):
                    if not victim.dead:
                        victim.kill(block=False)
        gevent.joinall(jobs)
        chaos_job.join()
        outcomes["killed"] = sum(1 for j in jobs if isinstance(j.value, gevent.GreenletExit))
        assert outcomes["ok"] + outcomes["error"] + outcomes["killed"] == total, outcomes
        assert outcomes["ok"] > total / 5, outcomes  # faults every few hundred ms: a share must get through
        check_invariants(cm)
        assert cm.stats()["pool_in_use"] == 0

        @retry(exc_classes=LOST_CONNECTION_ERRORS, max_failures=1)
        def whoami() -> str:
            with cm.connection() as conn:
                return str(conn.whoami_s())

        # the chaos may have left the server's circuit open: callers fail fast until the probe
        # (or the end of the cool-down) lets them in again
        assert cm.server_pool is not None
        wait_until(lambda: not cm.server_pool.all_down(), timeout=35)
        assert whoami().startswith("dn:")  # a reset idle connection costs at most one failure
        cm.close(timeout=2)
        check_invariants(cm)
    print(outcomes)
    wait_until(lambda: fd_count() <= before, timeout=5)
