"""Rows D1, D2, D10, D11, E1, E2: server death, restart, failover and broken bytes."""

from __future__ import annotations

import time
from typing import Callable

import gevent
import ldap
import pytest

from geventpool import PoolTimeout, retry
from geventpool.ldap import LOST_CONNECTION_ERRORS, LDAPPool
from geventpool.testing import FaultProxy, HubMonitor, wait_until
from geventpool.testing.slapd import SERVICE_DN, USER_PW, Slapd, free_port, user_dn

from .conftest import assert_hub_ok

MakePool = Callable[..., LDAPPool]


def _whoami_all(cm: LDAPPool, n: int) -> list[str]:
    conns = [cm.connection() for _ in range(n)]
    try:
        return [lease.__enter__().whoami_s() for lease in conns]
    finally:
        for lease in conns:
            lease.__exit__(None, None, None)


def test_restart_costs_at_most_one_failed_call(
    private_slapd: Slapd, make_pool: MakePool, hub: HubMonitor
) -> None:
    """D10 and the pool-wide invalidation: identities survive; one failure at most; @retry hides it."""
    cm = make_pool(private_slapd.uri, size=4, min_size=4)
    cm.wait(5)
    with cm.connection(user_dn(1), USER_PW) as conn:
        conn.whoami_s()
    private_slapd.restart(graceful=False)
    failures = 0
    for _ in range(8):
        try:
            with cm.connection() as conn:
                assert conn.whoami_s() == f"dn:{SERVICE_DN}"
        except LOST_CONNECTION_ERRORS:
            failures += 1
    assert failures <= 1
    assert _whoami_all(cm, 4) == [f"dn:{SERVICE_DN}"] * 4

    @retry(exc_classes=LOST_CONNECTION_ERRORS, max_failures=2)
    def read_user(n: int) -> object:
        with cm.connection(user_dn(1), USER_PW) as conn:
            assert conn.whoami_s() == f"dn:{user_dn(1)}"
            return conn.search_s(user_dn(n), ldap.SCOPE_BASE, attrlist=["uid"])

    private_slapd.restart()
    assert read_user(3) == [(user_dn(3), {"uid": [b"user0003"]})]
    assert_hub_ok(hub)


def test_keepalive_on_borrow_hides_a_restart(private_slapd: Slapd, make_pool: MakePool) -> None:
    """D1 with ping_after: a connection idle past the window is checked first; the caller sees nothing."""
    cm = make_pool(private_slapd.uri, size=2, ping_after=0.05)
    with cm.connection() as conn:
        conn.whoami_s()
    private_slapd.restart(graceful=False)
    gevent.sleep(0.1)
    with cm.connection() as conn:
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"
    assert cm.stats()["connections_lost"] >= 1


def test_killed_server_mid_query(private_slapd: Slapd, make_pool: MakePool) -> None:
    """D2: SIGKILL while a search waits: SERVER_DOWN quickly; the connection is discarded."""
    cm = make_pool(private_slapd.uri, size=1, timeout=10)
    with cm.connection() as conn:
        conn.whoami_s()
    private_slapd.pause()

    def search() -> None:
        with cm.connection() as conn:
            conn.search_s(user_dn(1), ldap.SCOPE_BASE)

    job = gevent.spawn(search)
    wait_until(lambda: cm.stats()["pool_in_use"] == 1, timeout=5)
    gevent.sleep(0.05)
    started = time.monotonic()
    private_slapd.kill()
    job.join(timeout=5)
    assert isinstance(job.exception, ldap.SERVER_DOWN)
    assert time.monotonic() - started < 1.0
    assert cm.stats()["connections_lost"] == 1
    private_slapd.start()
    with cm.connection() as conn:
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"


@pytest.mark.parametrize("fault", ["refuse", "deaf", "paused"])
def test_failover_to_the_second_server(
    slapd: Slapd, private_slapd: Slapd, fault: str, hub: HubMonitor
) -> None:
    """D11: p1 refusing, deaf or frozen: the pool connects to p2 within connect_timeout per attempt."""
    with FaultProxy(upstream=("127.0.0.1", private_slapd.port)) as proxy:
        if fault == "paused":
            private_slapd.pause()
        else:
            proxy.set_mode(fault)
        try:
            cm = LDAPPool(f"ldap://127.0.0.1:{proxy.port} {slapd.uri}", SERVICE_DN, "svcpw", retry_max=2,
                          retry_delay=0.01, connect_timeout=0.2)
            started = time.monotonic()
            with cm.connection() as conn:
                assert conn._uri == slapd.uri
                assert conn.whoami_s() == f"dn:{SERVICE_DN}"
            assert time.monotonic() - started < 2 * 0.2 + 0.5
            cm.close(timeout=1)
        finally:
            private_slapd.resume()
    assert_hub_ok(hub)


def test_unreachable_servers_give_backend_error(make_pool: MakePool) -> None:
    """A3: nothing listens: BackendError (an ldap.SERVER_DOWN and a PoolTimeout) with the cause."""
    cm = make_pool(f"ldap://127.0.0.1:{free_port()}", checkout_timeout=0.3, retry_max=1)
    with pytest.raises(ldap.SERVER_DOWN) as info:
        with cm.connection():
            pass
    assert isinstance(info.value, PoolTimeout)
    assert isinstance(info.value.__cause__, OSError)


@pytest.mark.parametrize("mode, params", [("reset", {}), ("truncate", {"n": 5}), ("corrupt", {"n": 2}),
                                          ("half_close", {})])
def test_broken_bytes_discard_the_connection(
    slapd: Slapd, make_pool: MakePool, mode: str, params: dict[str, int]
) -> None:
    """E1/E2: RST, truncation, corruption, half-close: an LDAP error in time; discarded; refilled."""
    with FaultProxy(upstream=("127.0.0.1", slapd.port)) as proxy:
        cm = make_pool(f"ldap://127.0.0.1:{proxy.port}", size=1, timeout=1)
        with cm.connection() as conn:
            conn.whoami_s()
        proxy.set_mode(mode, **params)
        started = time.monotonic()
        with pytest.raises(ldap.LDAPError):
            with cm.connection() as conn:
                first = conn
                conn.search_s(user_dn(1), ldap.SCOPE_BASE)
        assert time.monotonic() - started < 1.5
        assert first.closed
        proxy.set_mode("pass")
        with cm.connection() as conn:
            found = conn.search_s(user_dn(1), ldap.SCOPE_BASE, attrlist=["uid"])
            assert found[0][1] == {"uid": [b"user0001"]}
