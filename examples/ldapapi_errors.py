"""ldap_core_shared's "Error Handling" and the five "Best Practices", working.

``python examples/ldapapi_errors.py`` starts a private slapd and shows each
documented error (reported by ``connect()``, raised by the pool), that an
error in the caller's block propagates unchanged, and the five practices.
"""

from __future__ import annotations

import logging

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
from geventpool.ldap.compat.manager import LDAPConnectionManager
from geventpool.testing.slapd import SERVICE_DN, SERVICE_PW, Slapd, free_port

logging.basicConfig(level=logging.ERROR)
logger = logging.getLogger("example")


def connection_errors(server: Slapd) -> None:
    for label, info in (
        ("wrong password", ConnectionInfo(host="127.0.0.1", port=server.port, bind_dn=SERVICE_DN,
                                          password="not-the-password", timeout=2)),
        ("nobody listening", ConnectionInfo(host="127.0.0.1", port=free_port(), timeout=0.5,
                                            max_retries=1)),
    ):
        manager = LDAPConnectionManager(info, auto_reconnect=False)
        try:
            result = manager.connect()
            if not result.connected:
                if result.connection_error:
                    print(f"{label}: connection_error: {result.connection_error}")
                if result.auth_error:
                    print(f"{label}: auth_error: {result.auth_error}")
        except ConnectionTimeout:
            print("Connection timed out")
        except AuthenticationFailed as e:
            print(f"Authentication failed: {e}")
        except SSLError as e:
            print(f"SSL error: {e}")
        except LDAPException as e:
            print(f"LDAP error: {e}")
        finally:
            manager.disconnect()


def pool_errors(server: Slapd) -> None:
    info = ConnectionInfo(host="127.0.0.1", port=server.port, bind_dn=SERVICE_DN, password=SERVICE_PW)
    with ConnectionPool(info, min_connections=1, max_connections=1, timeout=0.2) as pool:
        held = pool.get_connection()
        for wait in (0, None):
            try:
                with pool.get_connection(timeout=wait):
                    pass
            except PoolExhausted:
                print("PoolExhausted: connection pool exhausted")
            except PoolTimeout:
                print("PoolTimeout: timeout waiting for connection")
            except ConnectionUnhealthy as e:
                print(f"Unhealthy connection: {e}")
        pool.return_connection(held)
        try:
            with pool.get_connection() as conn:
                conn.whoami_s()
                raise ValueError("the caller's own error")
        except ValueError as e:
            print(f"block error propagated: {type(e).__name__}: {e}")


def best_practices(server: Slapd) -> None:
    done = 0
    conn_info = ConnectionInfo(host="127.0.0.1", port=server.port, use_tls=True, validate_cert=True,
                               ca_cert_path=server.ca_file, bind_dn=SERVICE_DN, password=SERVICE_PW)
    # 1. Always use connection pooling
    manager = LDAPConnectionManager(conn_info, use_pool=True)
    done += 1
    # 2. Use context managers
    with manager.get_connection() as conn:
        conn.whoami_s()
    done += 1
    # 3. Enable SSL/TLS (StartTLS here, certificate verified)
    done += manager.connect().encryption == "starttls"
    manager.disconnect()
    # 4. Monitor performance
    manager = LDAPConnectionManager(conn_info, enable_monitoring=True, health_check_interval=30)
    with manager.get_connection() as conn:
        conn.whoami_s()
    metrics = manager.get_metrics()
    if metrics.success_rate < 95:
        logger.warning("Low success rate detected")
    done += metrics.total_operations == 1
    # 5. Handle errors gracefully
    try:
        result = manager.connect()
        if result.connected:
            done += 1
        else:
            logger.error(f"Connection failed: {result.connection_error}")
    except Exception:
        logger.exception("Unexpected error occurred")
    finally:
        manager.disconnect()
    print(f"best practices: {done} of 5")


if __name__ == "__main__":
    with Slapd(users=5) as slapd:
        connection_errors(slapd)
        pool_errors(slapd)
        best_practices(slapd)
