"""ldap_core_shared's "High-Availability Setup", working, with two private slapd instances.

``python examples/ldapapi_ha.py``: a cluster prefers the priority-1 server;
the script kills it (callers keep working on the other), starts it again
and waits for the cluster to come back to it (failback).
"""

from __future__ import annotations

import time

import gevent

from geventpool.ldap.compat.info import ConnectionInfo
from geventpool.ldap.compat.manager import LDAPConnectionManager
from geventpool.testing.slapd import SERVICE_DN, SERVICE_PW, Slapd


def serving_port(manager: LDAPConnectionManager) -> int:
    with manager.get_connection() as conn:
        conn.whoami_s()
        return int(conn._uri.rsplit(":", 1)[1])


def main(ldap1: Slapd, ldap2: Slapd) -> None:
    ha_config = [
        ConnectionInfo(host="127.0.0.1", port=ldap1.port, bind_dn=SERVICE_DN, password=SERVICE_PW,
                       priority=1),
        ConnectionInfo(host="127.0.0.1", port=ldap2.port, bind_dn=SERVICE_DN, password=SERVICE_PW,
                       priority=2),
    ]
    ha_manager = LDAPConnectionManager.create_ha_cluster(
        ha_config, failover_timeout=5, health_check_interval=0.2, auto_failback=True
    )
    result = ha_manager.connect()
    print(f"connected to the primary: {result.port == ldap1.port}")
    ldap1.kill()
    ports = {serving_port(ha_manager) for _ in range(5)}
    print(f"primary killed: served by the secondary: {ports == {ldap2.port}}")
    ldap1.start()
    deadline = time.monotonic() + 20
    while serving_port(ha_manager) != ldap1.port and time.monotonic() < deadline:
        gevent.sleep(0.1)
    print(f"primary back: failback done: {serving_port(ha_manager) == ldap1.port}")
    print(f"failed operations: {ha_manager.get_metrics().failed_operations}")
    ha_manager.disconnect()


if __name__ == "__main__":
    with Slapd(users=5) as one, Slapd(users=5) as two:
        main(one, two)
