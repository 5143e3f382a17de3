"""Rows H1 and H2 for PostgreSQL: ``sslmode=verify-full`` through the pool, against a private TLS server."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import psycopg2
import pytest

from geventpool.dbapi import ConnectionPool
from geventpool.testing.postgres import PostgresServer
from geventpool.testing.slapd import TestCA

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def tls_server() -> Iterator[tuple[PostgresServer, TestCA, TestCA]]:
    certs = tempfile.mkdtemp(prefix="geventpool-pgtls-ca-")
    ca = TestCA(certs)
    stranger = TestCA(certs, name="stranger")  # a CA the server's certificate does not come from
    cert, key = ca.issue("server", hosts=("localhost", "127.0.0.1"))
    base = tempfile.mkdtemp(prefix="geventpool-pgtls-")
    os.makedirs(os.path.join(base, "tls"))
    for source in (cert, key):
        shutil.copy(source, os.path.join(base, "tls"))
    os.chmod(os.path.join(base, "tls", os.path.basename(key)), 0o600)
    server = PostgresServer(base_dir=base, settings={
        "ssl": "on",
        "ssl_cert_file": f"'{os.path.join(base, 'tls', os.path.basename(cert))}'",
        "ssl_key_file": f"'{os.path.join(base, 'tls', os.path.basename(key))}'",
    })
    server.start()
    try:
        yield server, ca, stranger
    finally:
        server.stop()
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(certs, ignore_errors=True)


def test_h1_verify_full_works_through_the_pool(tls_server: tuple[PostgresServer, TestCA, TestCA]) -> None:
    server, ca, _ = tls_server
    pool = ConnectionPool(psycopg2, host="127.0.0.1", port=server.port, user=server.user,
                          dbname=server.dbname, sslmode="verify-full", sslrootcert=ca.cert_file, max_size=2)
    try:
        with pool.connection() as conn:
            cur = conn.cursor()
            cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert cur.fetchone() == (True,)
            assert conn.info.ssl_in_use
    finally:
        pool.close()


@pytest.mark.parametrize("case", ["unknown CA", "wrong host"])
def test_h2_unverifiable_server_is_refused(
    tls_server: tuple[PostgresServer, TestCA, TestCA], case: str
) -> None:
    server, ca, stranger = tls_server
    # "wrong host": the certificate names localhost and 127.0.0.1, not 127.0.0.2 (still loopback)
    host = "127.0.0.2" if case == "wrong host" else "127.0.0.1"
    root = stranger.cert_file if case == "unknown CA" else ca.cert_file
    pool = ConnectionPool(psycopg2, host=host, hostaddr="127.0.0.1", port=server.port, user=server.user,
                          dbname=server.dbname, sslmode="verify-full", sslrootcert=root, max_size=1,
                          timeout=120, connect_timeout=2)
    try:
        # the refusal itself, at once: not retried until the (long) checkout timeout
        expected = "certificate verify failed" if case == "unknown CA" else "does not match host name"
        with pytest.raises(psycopg2.OperationalError, match=expected):
            pool.get()
        assert pool.stats()["connections_errors"] == 1
    finally:
        pool.close()
