"""LDAPConnectionManager against a real slapd: documented calls, metrics, thresholds, rotation, secrets."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import gevent
import ldap
import pytest

from geventpool.errors import PoolError
from geventpool.errors import PoolTimeout as CorePoolTimeout
from geventpool.ldap.compat.apierrors import AuthenticationFailed, PoolTimeout
from geventpool.ldap.compat.info import ConnectionInfo
from geventpool.ldap.compat.manager import LDAPConnectionManager
from geventpool.testing.slapd import SERVICE_DN, SERVICE_PW, Slapd, free_port
from geventpool.testing.waiting import wait_until

MakeInfo = Callable[..., ConnectionInfo]


@pytest.fixture
def managers() -> Any:
    made: list[LDAPConnectionManager] = []
    yield made
    for manager in made:
        manager.disconnect()
        assert not manager.monitoring


def test_connect_reports_and_every_call_works(slapd: Slapd, make_info: MakeInfo, managers: list[Any]) -> None:
    manager = LDAPConnectionManager(make_info(slapd))
    managers.append(manager)
    assert not manager.is_connected()
    result = manager.connect()
    assert result.connected, result
    assert (result.host, result.port) == ("127.0.0.1", slapd.port)
    assert result.auth_method == "simple" and result.encryption == "starttls"
    assert result.connection_time > 0 and result.connection_error is None and result.auth_error is None
    assert manager.is_connected()
    with manager.get_connection() as conn:
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"
        entries = conn.search_s("ou=people,dc=example,dc=com", ldap.SCOPE_ONELEVEL, "(uid=user0001)", ["cn"])
        assert entries[0][1]["cn"] == [b"User 1"]
    health = manager.health_check()
    assert health.connected and health.response_time > 0 and health.last_activity is not None
    assert manager.disconnect() is True
    assert not manager.is_connected()
    assert not manager.health_check().connected


def test_connect_reports_a_refused_bind(slapd: Slapd, make_info: MakeInfo, managers: list[Any]) -> None:
    manager = LDAPConnectionManager(make_info(slapd, password="wrong-password-x"))
    managers.append(manager)
    result = manager.connect()
    assert not result.connected and result.auth_error and "Invalid credentials" in result.auth_error
    assert "wrong-password-x" not in str(result)
    assert not manager.is_connected()


def test_connect_reports_an_unreachable_server(
    make_info: MakeInfo, slapd: Slapd, managers: list[Any]
) -> None:
    info = make_info(slapd, port=free_port(), timeout=0.5, pool_timeout=0.5)
    manager = LDAPConnectionManager(info, auto_reconnect=False)
    managers.append(manager)
    result = manager.connect()
    assert not result.connected and result.connection_error and result.auth_error is None
    assert manager.pool is None  # auto_reconnect=False: nothing keeps trying
    assert manager.get_metrics().failed_operations == 1


def test_an_error_in_the_block_propagates_unchanged(slapd: Slapd, make_info: MakeInfo,
                                                     managers: list[Any]) -> None:
    """ldap_core_shared's retrying context manager raised
    RuntimeError("generator didn't stop after throw()") here."""
    manager = LDAPConnectionManager(make_info(slapd))
    managers.append(manager)

    class Mine(Exception):
        pass

    error = Mine("from the caller")
    with pytest.raises(Mine) as caught:
        with manager.get_connection() as conn:
            conn.whoami_s()
            raise error
    assert caught.value is error
    with pytest.raises(ldap.NO_SUCH_OBJECT):
        with manager.get_connection() as conn:
            conn.search_s("ou=nowhere,dc=example,dc=com", ldap.SCOPE_BASE)
    assert manager.pool is not None and manager.pool.stats()["pool_in_use"] == 0
    metrics = manager.get_metrics()
    assert (metrics.total_operations, metrics.failed_operations) == (2, 2)


def test_manual_checkout_and_return(slapd: Slapd, make_info: MakeInfo, managers: list[Any]) -> None:
    manager = LDAPConnectionManager(make_info(slapd))
    managers.append(manager)
    conn = manager.get_connection()
    try:
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"
    finally:
        assert manager.return_connection(conn) is True
    assert manager.return_connection(conn) is False
    raw = manager.get_connection()
    assert manager.return_connection(raw.conn) is True  # the bare connection works too
    assert manager.pool is not None and manager.pool.stats()["pool_in_use"] == 0


def test_metrics_count_the_operations_run(slapd: Slapd, make_info: MakeInfo, managers: list[Any]) -> None:
    manager = LDAPConnectionManager(make_info(slapd, pool_size=1, max_pool_size=3))
    managers.append(manager)
    assert manager.connect().connected  # 1 ok
    for _ in range(7):  # 7 ok
        with manager.get_connection() as conn:
            conn.whoami_s()
    for _ in range(2):  # 2 failed
        with pytest.raises(ldap.NO_SUCH_OBJECT):
            with manager.get_connection() as conn:
                conn.search_s("ou=nowhere,dc=example,dc=com", ldap.SCOPE_BASE)
    assert manager.health_check().connected  # 1 ok
    metrics = manager.get_metrics()
    assert (metrics.total_operations, metrics.successful_operations, metrics.failed_operations) == (11, 9, 2)
    assert metrics.success_rate == pytest.approx(100 * 9 / 11)
    assert metrics.average_duration > 0
    assert metrics.pool_size == 1 and metrics.connections_opened == 1
    assert metrics.checkouts == 11  # connect, 9 blocks, health check: all on the one connection
    assert metrics.connection_reuse_rate == pytest.approx(100 * 10 / 11)
    assert metrics.pool_utilization == 0
    held = [manager.get_connection(), manager.get_connection()]
    assert manager.get_metrics().pool_utilization == pytest.approx(100 * 2 / 3)
    for lease in held:
        manager.return_connection(lease)
    quiet = LDAPConnectionManager(make_info(slapd), enable_monitoring=False)
    managers.append(quiet)
    with quiet.get_connection() as conn:
        conn.whoami_s()
    assert quiet.get_metrics().total_operations == 0 and quiet.get_metrics().checkouts == 1


def test_thresholds_fire_and_clear(slapd: Slapd, make_info: MakeInfo, managers: list[Any]) -> None:
    manager = LDAPConnectionManager(make_info(slapd, pool_size=1, max_pool_size=2))
    managers.append(manager)
    manager.set_thresholds(max_connection_time=0.0001, min_success_rate=90, max_pool_utilization=50)
    assert manager.connect().connected
    alerts = {a["metric"]: a for a in manager.check_performance()}
    assert set(alerts) == {"max_connection_time"}  # the first connection took more than 0.1 us
    assert alerts["max_connection_time"]["threshold"] == 0.0001
    assert alerts["max_connection_time"]["current_value"] > 0.0001
    assert alerts["max_connection_time"]["message"]
    assert manager.check_performance() == []  # no new connection since: cleared
    with pytest.raises(ldap.NO_SUCH_OBJECT):
        with manager.get_connection() as conn:
            conn.search_s("ou=nowhere,dc=example,dc=com", ldap.SCOPE_BASE)
    lease = manager.get_connection()
    second = manager.get_connection()  # 2 of 2 in use: 100 %, and a second connection was opened
    alerts = {a["metric"]: a for a in manager.check_performance()}
    assert set(alerts) == {"min_success_rate", "max_pool_utilization", "max_connection_time"}
    # the only operation finished since the last check failed (the leases count when returned)
    assert alerts["min_success_rate"]["current_value"] == 0.0
    assert alerts["min_success_rate"]["threshold"] == 90
    assert alerts["max_pool_utilization"]["current_value"] == 100.0
    manager.return_connection(lease)
    manager.return_connection(second)
    assert {a["metric"] for a in manager.check_performance()} == set()  # 2 successes, 0 % in use
    manager.set_thresholds(min_success_rate=None)
    with pytest.raises(PoolError):
        manager.set_thresholds(min_success_rate=150)
    with pytest.raises(ValueError):
        manager.set_thresholds(max_connection_time=-1)


def test_monitoring_greenlet_starts_and_stops(slapd: Slapd, make_info: MakeInfo, managers: list[Any],
                                              caplog: pytest.LogCaptureFixture) -> None:
    manager = LDAPConnectionManager(make_info(slapd), health_check_interval=0.05)
    managers.append(manager)
    manager.set_thresholds(max_pool_utilization=10)
    manager.connect()
    manager.start_monitoring()
    manager.start_monitoring()  # idempotent
    assert manager.monitoring
    wait_until(lambda: manager.monitor_rounds >= 2, timeout=5)
    assert manager.last_health is not None and manager.last_health.connected
    held = manager.get_connection()
    wait_until(lambda: manager.last_alerts, timeout=5)
    assert manager.last_alerts[0]["metric"] == "max_pool_utilization"
    assert "pool utilization above threshold" in caplog.text
    manager.return_connection(held)
    greenlet = manager._monitor
    manager.stop_monitoring()
    assert greenlet is not None and greenlet.dead and not manager.monitoring
    rounds = manager.monitor_rounds
    gevent.sleep(0.15)  # not a race: checks nothing runs any more
    assert manager.monitor_rounds == rounds
    # connect() and the lease; the monitor's checks are not counted
    assert manager.get_metrics().total_operations == 2


def test_unpooled_manager(slapd: Slapd, make_info: MakeInfo, managers: list[Any]) -> None:
    manager = LDAPConnectionManager(make_info(slapd), use_pool=False)
    managers.append(manager)
    for _ in range(3):
        with manager.get_connection() as conn:
            assert conn.whoami_s() == f"dn:{SERVICE_DN}"
    assert manager.get_metrics().successful_operations == 3


def test_pool_timeout_is_catchable_both_ways(slapd: Slapd, make_info: MakeInfo, managers: list[Any]) -> None:
    manager = LDAPConnectionManager(make_info(slapd, pool_size=1, max_pool_size=1))
    managers.append(manager)
    held = manager.get_connection()
    with pytest.raises(PoolTimeout) as caught:
        manager.get_connection(timeout=0.05)
    assert isinstance(caught.value, CorePoolTimeout)
    manager.return_connection(held)
    assert manager.get_metrics().failed_operations == 1


def test_password_callback_rotation_without_a_bind_storm(private_slapd: Slapd, make_info: MakeInfo,
                                                        managers: list[Any]) -> None:
    secret = [SERVICE_PW]
    calls: list[str] = []

    def password() -> str:
        calls.append(secret[0])
        return secret[0]

    info = make_info(private_slapd, password=None, password_callback=password, pool_size=2, max_pool_size=4)
    manager = LDAPConnectionManager(info)
    managers.append(manager)
    assert manager.connect().connected
    pool = manager.pool
    assert pool is not None
    wait_until(lambda: pool.size == 2 and pool.stats()["pool_opening"] == 0, timeout=5)
    assert calls == [SERVICE_PW, SERVICE_PW]  # once per connection bound, never per checkout
    for _ in range(5):
        with manager.get_connection() as conn:
            conn.whoami_s()
    assert len(calls) == 2

    # the secret rotates on the server: open connections stay bound and in service
    private_slapd.set_password(SERVICE_DN, "rotated-1")
    secret[0] = "rotated-1"
    with manager.get_connection() as conn:
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"
    assert len(calls) == 2
    before = private_slapd.operation_count("Bind")
    assert pool.drop_idle() == 2  # new connections: they ask the callback and bind with the new secret
    wait_until(lambda: pool.size == 2 and pool.stats()["pool_opening"] == 0, timeout=5)
    binds = private_slapd.operation_count("Bind") - before - 1  # - the counting search's own bind
    assert binds == 2 and calls[2:] == ["rotated-1", "rotated-1"]
    with manager.get_connection() as conn:
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"

    # a stale secret: refused once per demand, not retried in a loop (account lockout)
    private_slapd.set_password(SERVICE_DN, "rotated-2")
    before = private_slapd.operation_count("Bind")
    pool.drop_idle()
    with pytest.raises(AuthenticationFailed):
        manager.get_connection(timeout=2)
    wait_until(lambda: pool.stats()["pool_opening"] == 0, timeout=5)
    gevent.sleep(0.3)  # not a race: gives a bind storm time to show
    refused = private_slapd.operation_count("Bind") - before - 1
    assert 1 <= refused <= pool.num_workers + 1, refused
    secret[0] = "rotated-2"
    with manager.get_connection(timeout=3) as conn:
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"


def test_no_secret_anywhere(private_slapd: Slapd, make_info: MakeInfo, managers: list[Any],
                            debug_log: pytest.LogCaptureFixture) -> None:
    sentinel = "S3cr3t-SENTINEL-7f3a"
    wrong = "S3cr3t-SENTINEL-wrong"
    private_slapd.set_password(SERVICE_DN, sentinel)
    info = make_info(private_slapd, password=sentinel, pool_size=1, max_pool_size=2)
    manager = LDAPConnectionManager(info, health_check_interval=0.05)
    managers.append(manager)
    manager.set_thresholds(max_connection_time=0.0001, max_pool_utilization=1)
    texts: list[str] = [repr(info), str(info), str(info.to_dict()), str(info.validate())]
    result = manager.connect()
    assert result.connected
    texts += [str(result), repr(manager), repr(manager.pool), str(manager.pool), str(manager.get_metrics())]
    held = manager.get_connection()
    texts += [repr(held), str(manager.check_performance()), str(manager.health_check())]
    manager.monitor_once()
    texts.append(str(manager.last_alerts))
    manager.return_connection(held)
    bad = LDAPConnectionManager(make_info(private_slapd, password=wrong))
    managers.append(bad)
    texts.append(str(bad.connect()))
    with pytest.raises(AuthenticationFailed) as caught:
        bad.get_connection(timeout=2)
    texts += [str(caught.value), repr(caught.value)]
    for obj in (info, manager, manager.pool):
        with pytest.raises(TypeError):
            pickle.dumps(obj)
    texts.append(debug_log.text)
    for text in texts:
        assert sentinel not in text and wrong not in text, text
