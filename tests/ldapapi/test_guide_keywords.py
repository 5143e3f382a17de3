"""ldap_core_shared's remaining keywords (issue 14, item 5): the recovery keywords, the process
figures of get_metrics(), preload_connections and enable_compression, against a real slapd."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest

from geventpool import ConfigurationError
from geventpool.ldap.compat import _facade
from geventpool.ldap.compat.documented import ConnectionPool
from geventpool.ldap.compat.info import ConnectionInfo
from geventpool.ldap.compat.manager import LDAPConnectionManager
from geventpool.testing.slapd import SERVICE_DN, Slapd, free_port

MakeInfo = Callable[..., ConnectionInfo]


@pytest.fixture
def managers() -> Iterator[list[LDAPConnectionManager]]:
    made: list[LDAPConnectionManager] = []
    yield made
    for manager in made:
        manager.disconnect()


def test_recovery_keywords_are_the_reconnect_settings(
    slapd: Slapd, make_info: MakeInfo, managers: list[LDAPConnectionManager]
) -> None:
    manager = LDAPConnectionManager(
        make_info(slapd), auto_recovery=False, recovery_attempts=2, recovery_delay=0.01,
        circuit_breaker_threshold=4,
    )
    managers.append(manager)
    assert manager.auto_reconnect is False
    result = manager.connect()  # reports, never raises
    assert result.connected, result
    pool = manager.pool
    assert pool is not None and pool.retry_max == 2 and pool.retry_delay == 0.01
    assert pool.server_pool is not None
    assert [s.health.failure_threshold for s in pool.server_pool] == [4]
    with manager.get_connection() as conn:
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"


def test_recovery_keywords_against_a_dead_server_report_and_stop(
    slapd: Slapd, make_info: MakeInfo, managers: list[LDAPConnectionManager]
) -> None:
    info = make_info(slapd, port=free_port(), timeout=0.5, pool_timeout=0.5)
    manager = LDAPConnectionManager(info, auto_recovery=False, recovery_attempts=1, recovery_delay=0.0,
                                    circuit_breaker_threshold=1)
    managers.append(manager)
    result = manager.connect()
    assert not result.connected and result.connection_error
    assert manager.pool is None  # auto_recovery=False: nothing keeps trying


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"auto_recovery": "yes"}, "auto_recovery must be True or False"),
        ({"recovery_attempts": 0}, "reconnect_attempts must be an int >= 1"),
        ({"recovery_attempts": 2, "reconnect_attempts": 3}, "recovery_attempts and reconnect_attempts"),
        ({"recovery_delay": -1}, "reconnect_delay"),
        ({"circuit_breaker_threshold": 0}, "circuit_breaker_threshold"),
        ({"no_such_option": 1}, "unknown keyword arguments: no_such_option"),
    ],
)
def test_bad_guide_keywords_are_refused_at_construction(
    slapd: Slapd, make_info: MakeInfo, kwargs: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named):
        LDAPConnectionManager(make_info(slapd), **kwargs)  # type: ignore[arg-type]


def test_metrics_carry_the_process_figures(
    slapd: Slapd, make_info: MakeInfo, managers: list[LDAPConnectionManager]
) -> None:
    manager = LDAPConnectionManager(make_info(slapd))
    managers.append(manager)
    assert manager.connect().connected
    sum(i * i for i in range(200_000))  # some CPU in the window
    metrics = manager.get_metrics()
    assert metrics.memory_peak_mb > 10  # a Python process with gevent and python-ldap loaded
    assert 0.0 < metrics.cpu_usage_percent <= 100.0 * 64


def test_preload_opens_the_minimum_at_construction(slapd: Slapd, make_info: MakeInfo) -> None:
    pool = ConnectionPool(make_info(slapd), min_connections=3, max_connections=5, preload_connections=True)
    try:
        assert pool.pool.snapshot().idle == 3  # open before any get_connection()
    finally:
        pool.close()
    lazy = ConnectionPool(make_info(slapd), min_connections=3, max_connections=5)
    try:
        assert lazy.pool.snapshot().size == 0
    finally:
        lazy.close()


def test_preload_against_a_dead_server_logs_and_does_not_raise(
    slapd: Slapd, make_info: MakeInfo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="geventpool")
    info = make_info(slapd, port=free_port(), timeout=0.5, pool_timeout=0.5)
    pool = ConnectionPool(info, min_connections=1, max_connections=2, timeout=0.5, preload_connections=True)
    pool.close()
    assert "preloading 1 connections failed" in caplog.text


def test_compression_is_accepted_with_one_warning(
    slapd: Slapd, make_info: MakeInfo, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_facade, "_COMPRESSION_WARNED", False)
    caplog.set_level(logging.WARNING, logger="geventpool")
    for _ in range(2):
        pool = ConnectionPool(make_info(slapd), min_connections=0, max_connections=2, enable_compression=True)
        with pool.get_connection() as conn:
            assert conn.whoami_s() == f"dn:{SERVICE_DN}"
        pool.close()
    assert caplog.text.count("enable_compression has no effect") == 1
