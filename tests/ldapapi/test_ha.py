"""create_ha_cluster / with_failover with two real slapd instances: failover, then failback."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from geventpool.errors import ConfigurationError
from geventpool.ldap.compat._facade import server_of
from geventpool.ldap.compat.info import ConnectionInfo
from geventpool.ldap.compat.manager import LDAPConnectionManager, create_ha_cluster
from geventpool.testing.slapd import SERVICE_DN, Slapd
from geventpool.testing.waiting import wait_until

MakeInfo = Callable[..., ConnectionInfo]


def _where(manager: LDAPConnectionManager) -> tuple[str, int]:
    with manager.get_connection() as conn:
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"
        return server_of(conn)


def test_ha_cluster_fails_over_and_back(
    private_slapd: Slapd, second_slapd: Slapd, make_info: MakeInfo
) -> None:
    primary, secondary = private_slapd, second_slapd
    # two instances have two test CAs: the cluster test runs plain LDAP (one TLS set-up per cluster)
    infos = [
        make_info(secondary, use_tls=False, ca_cert_path=None, priority=2),
        make_info(primary, use_tls=False, ca_cert_path=None, priority=1),
    ]
    manager = create_ha_cluster(infos, failover_timeout=2, health_check_interval=0.05, auto_failback=True)
    try:
        result = manager.connect()
        assert result.connected and (result.host, result.port) == ("127.0.0.1", primary.port)
        assert manager.monitoring  # started by the first use
        assert _where(manager) == ("127.0.0.1", primary.port)

        primary.kill()  # SIGKILL: the pooled connections to it are dead
        for _ in range(5):  # failover is automatic: no caller sees the dead connections
            assert _where(manager) == ("127.0.0.1", secondary.port)
        assert manager.get_metrics().failed_operations == 0

        primary.start()  # back on the same port
        wait_until(lambda: manager.failbacks >= 1, timeout=10)
        wait_until(lambda: _where(manager) == ("127.0.0.1", primary.port), timeout=10)
        metrics = manager.get_metrics()
        assert metrics.failed_operations == 0, metrics
    finally:
        manager.disconnect()
    assert not manager.monitoring


def test_with_failover_orders_by_priority(
    private_slapd: Slapd, second_slapd: Slapd, make_info: MakeInfo
) -> None:
    infos = [make_info(s, use_tls=False, ca_cert_path=None) for s in (private_slapd, second_slapd)]
    manager = LDAPConnectionManager.with_failover(infos)
    try:
        assert _where(manager) == ("127.0.0.1", private_slapd.port)  # same priority: list order
        assert not manager.monitoring  # with_failover alone starts no greenlet
    finally:
        manager.disconnect()


def test_cluster_members_must_agree(slapd: Slapd, make_info: MakeInfo) -> None:
    base = make_info(slapd, use_tls=False, ca_cert_path=None)
    other = make_info(slapd, use_tls=False, ca_cert_path=None,
                      bind_dn="uid=svc2,ou=services,dc=example,dc=com")
    with pytest.raises(ConfigurationError, match="one identity"):
        create_ha_cluster([base, other])
    with pytest.raises(ConfigurationError, match="another password"):
        create_ha_cluster([base, make_info(slapd, use_tls=False, ca_cert_path=None, password="x")])
    with pytest.raises(ConfigurationError, match="port"):
        create_ha_cluster([base, ConnectionInfo(host="h", port=0)])
    with pytest.raises(ConfigurationError):
        LDAPConnectionManager.with_failover([])
