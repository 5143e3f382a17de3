"""The documented ConnectionPool face over LDAPPool, and the documented errors, against real slapd."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import gevent
import ldap
import pytest

from geventpool import errors as core
from geventpool.ldap import errors as ldaperrors
from geventpool.ldap.compat.apierrors import (
    AuthenticationFailed,
    ConnectionTimeout,
    ConnectionUnhealthy,
    LDAPException,
    PoolExhausted,
    PoolTimeout,
    SSLError,
)
from geventpool.ldap.compat.documented import ConnectionPool
from geventpool.ldap.compat.info import ConnectionInfo
from geventpool.testing import FaultProxy
from geventpool.testing.invariants import check_invariants
from geventpool.testing.slapd import SERVICE_DN, Slapd, free_port
from geventpool.testing.waiting import wait_until

MakeInfo = Callable[..., ConnectionInfo]


@pytest.fixture
def pools() -> Iterator[list[ConnectionPool]]:
    made: list[ConnectionPool] = []
    yield made
    for pool in made:
        check_invariants(pool.pool)
        pool.close(timeout=2)


def test_documented_calls(slapd: Slapd, make_info: MakeInfo, pools: list[ConnectionPool]) -> None:
    pool = ConnectionPool(make_info(slapd), min_connections=2, max_connections=3, timeout=3)
    pools.append(pool)
    with pool.get_connection() as conn:
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"
    conn = pool.get_connection()
    try:
        assert conn.search_s(SERVICE_DN, ldap.SCOPE_BASE, attrlist=["uid"])[0][1]["uid"] == [b"svc1"]
    finally:
        assert pool.return_connection(conn) is True
    assert pool.return_connection(conn) is False
    wait_until(lambda: pool.pool.stats()["pool_available"] == 2, timeout=5)
    health = pool.health_check()
    assert health == {"active_connections": 0, "idle_connections": 2, "healthy_connections": 2,
                      "unhealthy_connections": 0, "opening_connections": 0, "healthy": True}
    metrics = pool.get_metrics()
    assert metrics["pool_size"] == 2 and metrics["created"] == 2 and metrics["utilization"] == 0
    assert metrics["uses"] == 2 and metrics["avg_acquisition_time"] > 0
    assert metrics["reuse_rate"] == pytest.approx(100 * (metrics["checkouts"] - 2) / metrics["checkouts"])
    held = pool.get_connection()
    assert pool.get_metrics()["utilization"] == pytest.approx(100 / 3)
    assert pool.health_check()["active_connections"] == 1
    pool.return_connection(held)
    assert pool.cleanup() == 2  # every idle connection closed
    wait_until(lambda: pool.pool.size == 2 and pool.pool.stats()["pool_opening"] == 0, timeout=5)
    assert pool.get_metrics()["created"] == 4  # refilled to min_connections


def test_health_check_and_cleanup_after_a_restart(private_slapd: Slapd, make_info: MakeInfo,
                                                  pools: list[ConnectionPool]) -> None:
    pool = ConnectionPool(make_info(private_slapd), min_connections=2, max_connections=2, timeout=5)
    pools.append(pool)
    with pool.get_connection() as conn:
        conn.whoami_s()
    wait_until(lambda: pool.pool.stats()["pool_available"] == 2, timeout=5)
    private_slapd.restart(graceful=False)
    health = pool.health_check()
    assert health["unhealthy_connections"] == 2 and not health["healthy"]
    with pool.get_connection() as conn:  # the pool reconnected
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"


def test_pool_errors(slapd: Slapd, make_info: MakeInfo, pools: list[ConnectionPool]) -> None:
    pool = ConnectionPool(make_info(slapd), min_connections=1, max_connections=1, timeout=0.1)
    pools.append(pool)
    held = pool.get_connection()
    with pytest.raises(PoolExhausted) as exhausted:
        pool.get_connection(timeout=0)
    with pytest.raises(PoolTimeout) as waited:
        pool.get_connection()
    assert not isinstance(waited.value, PoolExhausted)
    for error in (exhausted.value, waited.value):
        assert isinstance(error, (core.PoolTimeout, ldaperrors.MaxConnectionReachedError))
    assert pool.get_metrics()["failed_checkouts"] == 2
    pool.return_connection(held)


def test_the_caller_error_propagates_and_a_lost_connection_is_discarded(
    private_slapd: Slapd, make_info: MakeInfo, pools: list[ConnectionPool]
) -> None:
    pool = ConnectionPool(make_info(private_slapd), min_connections=1, max_connections=1, timeout=5)
    pools.append(pool)
    error = KeyError("mine")
    with pytest.raises(KeyError) as caught:
        with pool.get_connection():
            raise error
    assert caught.value is error
    with pytest.raises(gevent.Timeout):
        with gevent.Timeout(0.01):
            with pool.get_connection() as conn:
                gevent.sleep(1)  # killed in the block: the connection is discarded, not lost
    assert pool.pool.stats()["pool_in_use"] == 0
    with pytest.raises(ldap.SERVER_DOWN):
        with pool.get_connection() as conn:
            private_slapd.restart(graceful=False)  # the server goes away under the caller
            conn.whoami_s()
    assert conn.closed  # discarded, not given to the next caller
    with pool.get_connection() as conn:
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"
    assert pool.get_metrics()["failed_uses"] == 3


def test_connection_errors_as_documented(
    slapd: Slapd, make_info: MakeInfo, pools: list[ConnectionPool]
) -> None:
    dead = ConnectionPool(make_info(slapd, port=free_port(), timeout=0.3), min_connections=0,
                          max_connections=1, timeout=1)
    pools.append(dead)
    with pytest.raises(ConnectionUnhealthy) as unhealthy:
        dead.get_connection()
    assert isinstance(unhealthy.value, (ldap.SERVER_DOWN, core.BackendUnavailable, LDAPException))

    with FaultProxy(upstream=("127.0.0.1", slapd.port)) as proxy:
        proxy.set_mode("stall")
        stalled = make_info(slapd, port=proxy.port, use_tls=False, ca_cert_path=None, timeout=0.2)
        slow = ConnectionPool(stalled, min_connections=0, max_connections=1, timeout=1.5)
        pools.append(slow)
        with pytest.raises(ConnectionTimeout) as timed_out:
            slow.get_connection()
        assert isinstance(timed_out.value, (TimeoutError, core.ConnectTimeout, ldap.SERVER_DOWN))

    refused = ConnectionPool(make_info(slapd, password="wrong"), min_connections=0, max_connections=1,
                             timeout=2)
    pools.append(refused)
    with pytest.raises(AuthenticationFailed) as auth:
        refused.get_connection()
    assert isinstance(auth.value, (ldap.INVALID_CREDENTIALS, core.PoolError))

    system_cas = make_info(slapd, ca_cert_path=None)  # the system CAs do not know the test CA
    untrusted = ConnectionPool(system_cas, min_connections=0, max_connections=1, timeout=2)
    pools.append(untrusted)
    with pytest.raises(SSLError) as tls:
        untrusted.get_connection()
    assert isinstance(tls.value, core.PoolError) and "no credentials were sent" in str(tls.value)


def test_bad_arguments(slapd: Slapd, make_info: MakeInfo) -> None:
    info = make_info(slapd)
    with pytest.raises(core.ConfigurationError, match="min_connections"):
        ConnectionPool(info, min_connections=5, max_connections=2)
    with pytest.raises(core.ConfigurationError, match="max_idle_time"):
        ConnectionPool(info, max_idle_time=0)
    with pytest.raises(core.ConfigurationError, match="port"):
        ConnectionPool(ConnectionInfo(host="h", port=-1))
