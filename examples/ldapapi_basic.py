"""ldap_core_shared's documented API, working: basic connection and production configuration.

``python examples/ldapapi_basic.py`` starts a private slapd (geventpool.testing.slapd)
on 127.0.0.1, runs the documentation's "Basic Connection" and "Production
Configuration" snippets against it (the host names replaced by the test
server), and stops it.
"""

from __future__ import annotations

import os

import ldap

from geventpool.ldap.compat.documented import ConnectionPool
from geventpool.ldap.compat.info import ConnectionInfo
from geventpool.ldap.compat.manager import LDAPConnectionManager
from geventpool.testing.slapd import SERVICE_DN, SERVICE_PW, Slapd


def basic_connection(server: Slapd) -> None:
    conn_info = ConnectionInfo(host="127.0.0.1", port=server.port, bind_dn=SERVICE_DN, password=SERVICE_PW)
    manager = LDAPConnectionManager(conn_info)
    result = manager.connect()
    if result.connected:
        print("Connected successfully!", f"{result.host}:{result.port} in {result.connection_time:.2f} ms")
        with manager.get_connection() as conn:
            print("basic: bound as", conn.whoami_s())
        manager.disconnect()


def production_configuration(server: Slapd) -> None:
    os.environ.setdefault("LDAP_SERVICE_PASSWORD", SERVICE_PW)
    prod_conn_info = ConnectionInfo(
        host="127.0.0.1",
        port=server.ldaps_port,
        use_ssl=True,
        bind_dn=SERVICE_DN,
        password=os.getenv("LDAP_SERVICE_PASSWORD"),
        timeout=30,
        max_retries=3,
        pool_size=20,
        max_pool_size=100,
        validate_cert=True,
        ca_cert_path=server.ca_file,  # was /etc/ssl/certs/ldap-ca.crt
    )
    manager = LDAPConnectionManager(prod_conn_info, use_pool=True, health_check_interval=30,
                                    enable_monitoring=True)
    manager.start_monitoring()
    try:
        result = manager.connect()
        print(f"production: connected={result.connected} encryption={result.encryption} "
              f"auth={result.auth_method}")
        with manager.get_connection() as conn:
            dn = "uid=user0003,ou=people,dc=example,dc=com"
            entry = conn.search_s(dn, ldap.SCOPE_BASE, attrlist=["mail"])
            print("production: mail", entry[0][1]["mail"][0].decode())
        metrics = manager.get_metrics()
        print(f"production: {metrics.total_operations} operations, success rate {metrics.success_rate:.1f}%, "
              f"pool size {metrics.pool_size}")
    finally:
        manager.stop_monitoring()
        manager.disconnect()

    # the documented pool, development settings
    with ConnectionPool(prod_conn_info, min_connections=2, max_connections=5, timeout=10,
                        max_idle_time=60) as dev_pool:
        with dev_pool.get_connection() as conn:
            conn.whoami_s()
        health = dev_pool.health_check()
        print(f"pool: {health['healthy_connections']} healthy, cleaned up {dev_pool.cleanup()}")


if __name__ == "__main__":
    with Slapd(users=10) as slapd:
        basic_connection(slapd)
        production_configuration(slapd)
