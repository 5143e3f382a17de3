"""Every snippet of ldap_core_shared's "Connection Management API" guide, run with geventpool.

``python docs/migration/ldap_core_shared_snippets.py`` starts two private
slapd instances on 127.0.0.1 and makes the guide's plain-LDAP host names
reach them: a resolver on the gevent hub answers ``ldap.example.com``,
``ldap1.example.com`` and ``localhost`` (port 389) with the first slapd,
``ldap2.example.com`` with the second, and ``ldap3.example.com`` with a port
nothing listens on.  Where the guide uses TLS, libldap connects or checks the
name itself, so ``127.0.0.1`` and the slapd's ports replace the name (said
where it happens); certificate paths are the test CA's; placeholder passwords
are our directory's.  Everything else runs as the guide shows it, only the
import changed, with one ``ok:`` line per snippet; exit status 1 if one fails.
"""
# ruff: noqa: I001, E402 (each part imports what the guide imports)

from __future__ import annotations

import io
import json
import logging
import os
import sys
import tempfile
from typing import Any

import gevent

from geventpool.testing.slapd import ADMIN_DN, ADMIN_PW, SERVICE_DN, SERVICE_PW, Slapd, free_port

logging.basicConfig(level=logging.ERROR)
logger = logging.getLogger("guide")

# was: from ldap_core_shared.core.connection_manager import (...)
from geventpool.ldap.compat.manager import LDAPConnectionManager
from geventpool.ldap.compat.documented import ConnectionPool
from geventpool.ldap.compat.info import ConnectionInfo
from geventpool.ldap.compat.apierrors import (
    AuthenticationFailed, ConnectionTimeout, ConnectionUnhealthy, LDAPException, PoolExhausted, PoolTimeout,
    SSLError,
)

PEOPLE = "ou=people,dc=example,dc=com"


def check(condition: object, claim: str) -> None:
    if not condition:
        raise SystemExit(f"FAILED: {claim}")
    print(f"ok: {claim}", flush=True)


class GuideNames:
    """The guide's plain-LDAP host names on 127.0.0.1; the rest unchanged."""

    def __init__(self, resolver: Any, table: dict[str, int]) -> None:
        self._resolver = resolver
        self.table = table

    def getaddrinfo(self, host: Any, port: Any, *args: Any) -> Any:
        if host in self.table and int(port or 0) == 389:
            return self._resolver.getaddrinfo("127.0.0.1", self.table[host], *args)
        return self._resolver.getaddrinfo(host, port, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resolver, name)


def connection_info(s1: Slapd) -> None:
    conn_info = ConnectionInfo(
        host="ldap.example.com",
        port=389,
        bind_dn="cn=admin,dc=example,dc=com",
        password="password"
    )

    validation_result = conn_info.validate()
    if validation_result.valid:
        print("Configuration is valid")
    else:
        print(f"Validation errors: {validation_result.schema_errors}")
    check(validation_result.valid, "ConnectionInfo(...).validate(): valid")

    config_dict = conn_info.to_dict()
    check(config_dict["host"] == "ldap.example.com" and "password" not in str(config_dict.values()),
          "to_dict(): the settings, without the password")

    conn_info = ConnectionInfo.from_dict({
        "host": "ldap.example.com",
        "port": 389,
        "bind_dn": "cn=admin,dc=example,dc=com",
        "password": "password"
    })
    check(conn_info.host == "ldap.example.com", "ConnectionInfo.from_dict(...)")

    # Basic connection
    conn_info = ConnectionInfo(
        host="ldap.example.com",
        bind_dn="cn=admin,dc=example,dc=com",
        password="admin_password"
    )

    # Secure connection with SSL
    secure_conn_info = ConnectionInfo(
        host="ldaps.example.com",
        port=636,
        use_ssl=True,
        bind_dn="cn=admin,dc=example,dc=com",
        password="admin_password",
        ca_cert_path=s1.ca_file  # was "/path/to/ca.crt"
    )

    # High-performance configuration
    hp_conn_info = ConnectionInfo(
        host="ldap.example.com",
        bind_dn="cn=admin,dc=example,dc=com",
        password="admin_password",
        pool_size=20,
        max_pool_size=100,
        timeout=60
    )
    check(all(i.validate().valid for i in (conn_info, secure_conn_info, hp_conn_info)),
          "the three example ConnectionInfo objects (basic, SSL, high-performance) are valid")


def manager_methods(s1: Slapd, s2: Slapd) -> None:
    conn_info = ConnectionInfo(host="ldap.example.com", bind_dn="cn=admin,dc=example,dc=com",
                               password=ADMIN_PW)  # was "admin_password"

    manager = LDAPConnectionManager(conn_info)
    result = manager.connect()

    if result.connected:
        print(f"Connected to {result.host}:{result.port}")
        print(f"Connection time: {result.connection_time:.2f}ms")
        print(f"Authentication: {result.auth_method}")
        print(f"Encryption: {result.encryption}")
    else:
        print(f"Connection failed: {result.connection_error}")
    check(result.connected and result.host == "ldap.example.com", "manager.connect(): connected, details")

    if manager.is_connected():
        print("Connection is active")
    else:
        print("No active connection")
    check(manager.is_connected(), "is_connected()")

    with manager.get_connection() as conn:
        # Use connection for LDAP operations
        who = conn.whoami_s()
    check(who == f"dn:{ADMIN_DN}", "with manager.get_connection() as conn: a bound connection")

    health_result = manager.health_check()
    print(f"Health check result: {health_result.connected}")
    print(f"Response time: {health_result.response_time:.2f}ms")
    print(f"Last activity: {health_result.last_activity}")
    check(health_result.connected, "health_check()")

    metrics = manager.get_metrics()
    print(f"Total operations: {metrics.total_operations}")
    print(f"Success rate: {metrics.success_rate:.1f}%")
    print(f"Average response time: {metrics.average_duration:.2f}ms")
    print(f"Pool utilization: {metrics.pool_utilization:.1f}%")
    check(metrics.total_operations >= 1, "get_metrics()")

    success = manager.disconnect()
    if success:
        print("Successfully disconnected")
    check(success and not manager.is_connected(), "disconnect()")

    # Enable automatic reconnection
    manager = LDAPConnectionManager(
        conn_info,
        auto_reconnect=True,
        reconnect_attempts=5,
        reconnect_delay=2.0
    )
    check(manager.connect().connected, "auto_reconnect=True, reconnect_attempts=5, reconnect_delay=2.0")
    manager.disconnect()

    # Multiple LDAP servers for failover (ldap1 -> first slapd, ldap2 -> second, ldap3 -> nothing)
    failover_config = [
        ConnectionInfo(host="ldap1.example.com"),
        ConnectionInfo(host="ldap2.example.com"),
        ConnectionInfo(host="ldap3.example.com"),
    ]

    manager = LDAPConnectionManager.with_failover(failover_config)
    check(manager.connect().connected, "LDAPConnectionManager.with_failover([...]): connected (anonymously)")
    s1.stop()
    with manager.get_connection() as conn:
        conn.whoami_s()
    check(s2.connection_count() >= 1, "with ldap1 stopped, the next connection comes from ldap2")
    s1.start()
    manager.disconnect()


def connection_pool(s1: Slapd) -> None:
    conn_info = ConnectionInfo(host="ldap.example.com", bind_dn="cn=admin,dc=example,dc=com",
                               password=ADMIN_PW)  # was "admin_password"
    pool = ConnectionPool(conn_info)

    # Using context manager (recommended)
    with pool.get_connection() as conn:
        # Connection automatically returned to pool
        result = conn.search_s(PEOPLE, 1, "(uid=user0001)")  # was conn.search(...)
    check(len(result) == 1, "with pool.get_connection() as conn: a search")

    # Manual management (not recommended)
    conn = pool.get_connection()
    try:
        result = conn.search_s(PEOPLE, 1, "(uid=user0002)")  # was conn.search(...)
    finally:
        pool.return_connection(conn)
    check(len(result) == 1, "conn = pool.get_connection() ... pool.return_connection(conn)")

    conn = pool.get_connection()
    success = pool.return_connection(conn)
    check(success, "return_connection(conn) returns True")

    health_status = pool.health_check()
    print(f"Active connections: {health_status['active_connections']}")
    print(f"Idle connections: {health_status['idle_connections']}")
    print(f"Healthy connections: {health_status['healthy_connections']}")
    check(health_status["healthy_connections"] >= 1, "pool.health_check()")

    metrics = pool.get_metrics()
    print(f"Pool size: {metrics['pool_size']}")
    print(f"Utilization: {metrics['utilization']:.1f}%")
    print(f"Connection reuse rate: {metrics['reuse_rate']:.1f}%")
    print(f"Average acquisition time: {metrics['avg_acquisition_time']:.2f}ms")
    check(metrics["pool_size"] >= 1, "pool.get_metrics()")

    cleaned_count = pool.cleanup()
    print(f"Cleaned up {cleaned_count} connections")
    check(cleaned_count >= 0, "pool.cleanup()")
    pool.close()

    dev_pool = ConnectionPool(
        conn_info,
        min_connections=2,
        max_connections=5,
        timeout=10,
        max_idle_time=60
    )
    prod_pool = ConnectionPool(
        conn_info,
        min_connections=10,
        max_connections=100,
        timeout=60,
        max_idle_time=300,
        health_check_interval=30
    )
    hp_pool = ConnectionPool(
        conn_info,
        min_connections=25,
        max_connections=200,
        timeout=90,
        max_idle_time=600,
        preload_connections=True,
        enable_compression=True
    )
    for label, each in (("development", dev_pool), ("production", prod_pool), ("high-performance", hp_pool)):
        with each.get_connection() as conn:
            conn.whoami_s()
        check(True, f"the {label} pool configuration serves")
    check(hp_pool.get_metrics()["pool_size"] >= 25,
          "preload_connections=True opened min_connections=25 (enable_compression: accepted, a WARNING)")
    for each in (dev_pool, prod_pool, hp_pool):
        each.close()


def security(s1: Slapd) -> None:
    # ldaps: libldap connects by itself, so 127.0.0.1 and the slapd's ldaps port replace ldaps.example.com:636
    ssl_conn_info = ConnectionInfo(
        host="127.0.0.1",
        port=s1.ldaps_port,
        use_ssl=True,
        validate_cert=True,
        ca_cert_path=s1.ca_file  # was "/path/to/ca.crt"
    )
    # StartTLS: libldap checks the name, and the test CA is no system CA: 127.0.0.1 and the CA given
    tls_conn_info = ConnectionInfo(
        host="127.0.0.1",
        port=s1.port,
        use_tls=True,
        validate_cert=True,
        ca_cert_path=s1.ca_file,
    )
    assert s1.ca is not None
    client_cert, client_key = s1.ca.issue("client", ("client.example.com",))
    cert_conn_info = ConnectionInfo(
        host="127.0.0.1",
        port=s1.ldaps_port,
        use_ssl=True,
        client_cert_path=client_cert,  # was "/path/to/client.crt"
        client_key_path=client_key,  # was "/path/to/client.key"
        ca_cert_path=s1.ca_file  # was "/path/to/ca.crt"
    )
    for label, info in (("SSL", ssl_conn_info), ("StartTLS", tls_conn_info),
                        ("client certificate", cert_conn_info)):
        manager = LDAPConnectionManager(info)
        result = manager.connect()
        check(result.connected, f"{label}: connected ({result.encryption})")
        manager.disconnect()

    os.environ["LDAP_PASSWORD"] = ADMIN_PW
    secure_conn_info = ConnectionInfo(
        host="127.0.0.1",  # was ldap.example.com (StartTLS: see above)
        port=s1.port,
        bind_dn="cn=admin,dc=example,dc=com",
        password=os.getenv("LDAP_PASSWORD"),  # From environment
        use_tls=True,
        ca_cert_path=s1.ca_file,
    )

    # Using password callback
    def get_password():
        return input("Enter LDAP password: ")

    conn_info = ConnectionInfo(
        host="ldap.example.com",
        bind_dn="cn=admin,dc=example,dc=com",
        password_callback=get_password
    )
    sys.stdin = io.StringIO(ADMIN_PW + "\n")  # what the user types
    for label, info in (("password from the environment", secure_conn_info),
                        ("password_callback", conn_info)):
        manager = LDAPConnectionManager(info)
        check(manager.connect().connected, f"{label}: bound")
        manager.disconnect()
    print()


def monitoring() -> LDAPConnectionManager:
    conn_info = ConnectionInfo(host="ldap.example.com", bind_dn=SERVICE_DN, password=SERVICE_PW)
    manager = LDAPConnectionManager(conn_info, enable_monitoring=True)
    manager.connect()

    metrics = manager.get_metrics()

    print(f"Connection Statistics:")  # noqa: F541
    print(f"  Total connections: {metrics.total_operations}")
    print(f"  Successful connections: {metrics.successful_operations}")
    print(f"  Failed connections: {metrics.failed_operations}")
    print(f"  Success rate: {metrics.success_rate:.1f}%")
    print(f"  Average connection time: {metrics.average_duration:.2f}ms")

    print(f"Pool Statistics:")  # noqa: F541
    print(f"  Pool size: {metrics.pool_size}")
    print(f"  Pool utilization: {metrics.pool_utilization:.1f}%")
    print(f"  Connection reuse rate: {metrics.connection_reuse_rate:.1f}%")

    print(f"Resource Usage:")  # noqa: F541
    print(f"  Memory usage: {metrics.memory_peak_mb:.1f} MB")
    print(f"  CPU usage: {metrics.cpu_usage_percent:.1f}%")
    check(metrics.memory_peak_mb > 0 and metrics.cpu_usage_percent >= 0,
          "get_metrics(): every figure printed, memory_peak_mb and cpu_usage_percent included")

    manager.set_thresholds(
        max_connection_time=100,  # milliseconds
        min_success_rate=95,      # percentage
        max_pool_utilization=80   # percentage
    )
    alerts = manager.check_performance()
    for alert in alerts:
        print(f"Performance Alert: {alert['message']}")
        print(f"  Current value: {alert['current_value']}")
        print(f"  Threshold: {alert['threshold']}")
    check(isinstance(alerts, list), "set_thresholds(...) and check_performance()")
    return manager


def usage_examples(s1: Slapd) -> None:
    conn_info = ConnectionInfo(
        host="ldap.example.com",
        port=389,
        bind_dn="cn=admin,dc=example,dc=com",
        password=ADMIN_PW  # was "password"
    )
    manager = LDAPConnectionManager(conn_info)
    result = manager.connect()
    if result.connected:
        print("Connected successfully!")
        with manager.get_connection() as conn:  # noqa: F841 (the guide's block does nothing)
            # Perform LDAP operations
            pass
        manager.disconnect()
    check(result.connected, "Basic Connection")

    os.environ["LDAP_SERVICE_PASSWORD"] = SERVICE_PW
    prod_conn_info = ConnectionInfo(
        host="127.0.0.1",  # was ldap.example.com: ldaps, libldap connects by itself
        port=s1.ldaps_port,  # was 636
        use_ssl=True,
        bind_dn=SERVICE_DN,  # was cn=service-account,ou=services,dc=example,dc=com
        password=os.getenv("LDAP_SERVICE_PASSWORD"),
        timeout=30,
        max_retries=3,
        pool_size=20,
        max_pool_size=100,
        validate_cert=True,
        ca_cert_path=s1.ca_file  # was "/etc/ssl/certs/ldap-ca.crt"
    )
    manager = LDAPConnectionManager(
        prod_conn_info,
        use_pool=True,
        health_check_interval=30,
        enable_monitoring=True
    )
    manager.start_monitoring()
    try:
        result = manager.connect()
        # Your application code here
    finally:
        manager.stop_monitoring()
        manager.disconnect()
    check(result.connected, "Production Configuration (monitoring started and stopped)")

    ha_config = [
        ConnectionInfo(host="ldap1.example.com", priority=1),
        ConnectionInfo(host="ldap2.example.com", priority=2),
        ConnectionInfo(host="ldap3.example.com", priority=3),
    ]
    ha_manager = LDAPConnectionManager.create_ha_cluster(
        ha_config,
        failover_timeout=5,
        health_check_interval=10,
        auto_failback=True
    )
    result = ha_manager.connect()
    print(f"served by {result.host}")
    check(result.connected, "High-Availability Setup: create_ha_cluster(...).connect() connected")
    ha_manager.disconnect()


def configuration(s1: Slapd) -> None:
    os.environ["LDAP_BIND_DN"] = ADMIN_DN  # the development environment: LDAP_PASSWORD set above
    dev_config = ConnectionInfo(
        host=os.getenv("LDAP_HOST", "localhost"),
        port=int(os.getenv("LDAP_PORT", "389")),
        bind_dn=os.getenv("LDAP_BIND_DN"),
        password=os.getenv("LDAP_PASSWORD"),
        pool_size=5,
        max_pool_size=10
    )
    os.environ.update(LDAP_HOST="127.0.0.1", LDAP_PORT=str(s1.ldaps_port),
                      LDAP_CA_CERT_PATH=s1.ca_file)  # the production environment's variables
    prod_config = ConnectionInfo(
        host=os.getenv("LDAP_HOST"),
        port=int(os.getenv("LDAP_PORT", "636")),
        use_ssl=True,
        bind_dn=os.getenv("LDAP_BIND_DN"),
        password=os.getenv("LDAP_PASSWORD"),
        pool_size=20,
        max_pool_size=100,
        timeout=60,
        ca_cert_path=os.getenv("LDAP_CA_CERT_PATH")
    )
    for label, info in (("development (LDAP_HOST unset: localhost)", dev_config),
                        ("production (from LDAP_* variables)", prod_config)):
        manager = LDAPConnectionManager(info)
        check(manager.connect().connected, f"Environment-Based Configuration, {label}")
        manager.disconnect()

    os.chdir(tempfile.mkdtemp(prefix="lcs-guide-"))
    with open("ldap_config.json", "w") as f:
        json.dump({"ldap": {"host": "ldap.example.com", "bind_dn": SERVICE_DN, "password": SERVICE_PW}}, f)

    with open("ldap_config.json") as f:
        config_data = json.load(f)

    conn_info = ConnectionInfo.from_dict(config_data["ldap"])
    manager = LDAPConnectionManager(conn_info)
    check(manager.connect().connected, "Configuration from File")
    manager.disconnect()


def error_handling() -> None:
    messages = []
    for info in (ConnectionInfo(host="ldap.example.com", bind_dn=SERVICE_DN, password="wrong", timeout=2),
                 ConnectionInfo(host="ldap3.example.com", timeout=0.5, max_retries=1)):
        manager = LDAPConnectionManager(info)
        try:
            result = manager.connect()
            if not result.connected:
                if result.connection_error:
                    print(f"Connection failed: {result.connection_error}")
                if result.auth_error:
                    print(f"Authentication failed: {result.auth_error}")
                messages.append(result.auth_error or result.connection_error)
        except ConnectionTimeout:
            print("Connection timed out")
        except AuthenticationFailed as e:
            print(f"Authentication failed: {e}")
        except SSLError as e:
            print(f"SSL error: {e}")
        except LDAPException as e:
            print(f"LDAP error: {e}")
    check(len(messages) == 2 and all(messages),
          "Connection Errors: a wrong password and a dead server are reported by connect(), not raised")

    conn_info = ConnectionInfo(host="ldap.example.com", bind_dn=SERVICE_DN, password=SERVICE_PW)
    pool = ConnectionPool(conn_info, min_connections=1, max_connections=1, timeout=0.2)
    caught = []
    with pool.get_connection():
        try:
            with pool.get_connection() as conn:  # noqa: F841 (the guide's block does nothing)
                # Use connection
                pass
        except PoolExhausted:
            print("Connection pool exhausted")
            caught.append("PoolExhausted")
        except PoolTimeout:
            print("Timeout waiting for connection")
            caught.append("PoolTimeout")
        except ConnectionUnhealthy as e:
            print(f"Unhealthy connection: {e}")
    pool.close()
    check(caught, f"Pool Errors: a full pool raises {caught[0] if caught else 'nothing'}")

    manager = LDAPConnectionManager(
        conn_info,
        auto_recovery=True,
        recovery_attempts=3,
        recovery_delay=5.0,
        circuit_breaker_threshold=5
    )
    check(manager.connect().connected, "Automatic Error Recovery keywords: accepted, connect() works")
    manager.disconnect()


def best_practices(conn_info: ConnectionInfo) -> None:
    manager = LDAPConnectionManager(conn_info, use_pool=True)
    unpooled = LDAPConnectionManager(conn_info, use_pool=False)
    for each in (manager, unpooled):
        with each.get_connection() as conn:
            conn.whoami_s()
        each.disconnect()
    check(True, "1. use_pool=True and use_pool=False both serve")

    with manager.get_connection() as conn:
        result = conn.search_s(PEOPLE, 1, "(uid=user0001)")  # was conn.search(...)
    conn = manager.get_connection()
    try:
        result = conn.search_s(PEOPLE, 1, "(uid=user0001)")  # was conn.search(...)
    finally:
        manager.return_connection(conn)
    check(len(result) == 1, "2. context manager and manual return")

    secure = ConnectionInfo(host="ldap.example.com", use_ssl=True, validate_cert=True)
    insecure = ConnectionInfo(host="ldap.example.com", use_ssl=False)
    check(secure.port == 389 and insecure.validate().valid,
          "3. both ConnectionInfo forms are accepted (port stays 389 with use_ssl, as the guide's default)")

    manager = LDAPConnectionManager(conn_info, enable_monitoring=True, health_check_interval=30)
    manager.connect()
    metrics = manager.get_metrics()
    if metrics.success_rate < 95:
        logger.warning("Low success rate detected")
    check(metrics.success_rate == 100, "4. monitoring: success_rate")

    try:
        result = manager.connect()
        if result.connected:
            pass
        else:
            logger.error(f"Connection failed: {result.connection_error}")
    except Exception:
        logger.exception("Unexpected error occurred")
    check(result.connected, "5. errors handled around connect()")
    manager.disconnect()


def main() -> None:
    with Slapd(users=5) as s1, Slapd(users=5) as s2:
        hub = gevent.get_hub()
        dead = free_port()
        hub.resolver = GuideNames(hub.resolver, {
            "ldap.example.com": s1.port, "ldap1.example.com": s1.port, "localhost": s1.port,
            "ldap2.example.com": s2.port, "ldap3.example.com": dead,
        })
        with gevent.Timeout(150):
            connection_info(s1)
            manager_methods(s1, s2)
            connection_pool(s1)
            security(s1)
            monitoring().disconnect()
            usage_examples(s1)
            configuration(s1)
            error_handling()
            best_practices(ConnectionInfo(host="ldap.example.com", bind_dn=SERVICE_DN, password=SERVICE_PW))
    print("ldap_core_shared_snippets: all checks passed")


if __name__ == "__main__":
    main()
