"""DatabaseConnector: a pool per (host, database), per-host credentials and the 'default' entry."""

from __future__ import annotations

import psycopg2
import pytest

from geventpool import ConfigurationError
from geventpool.dbapi import ConnectionPool, DatabaseConnector
from geventpool.testing.postgres import PostgresServer


def test_pools_per_host_and_database(pg: PostgresServer) -> None:
    pg.execute("SELECT 1")
    if not pg.execute("SELECT 1 FROM pg_database WHERE datname = 'other'"):
        pg.execute("CREATE DATABASE other")
    connector = DatabaseConnector(
        psycopg2,
        {"default": {"user": "postgres", "port": pg.port}, "localhost": {"user": "nobody"}},
        max_size=2,
    )
    try:
        a = connector.get("127.0.0.1", "postgres")
        b = connector.get("127.0.0.1", "other")
        assert a is connector.get("127.0.0.1", "postgres") and a is not b
        assert isinstance(a, ConnectionPool) and len(connector) == 2
        for pool, name in ((a, "postgres"), (b, "other")):
            with pool.item() as conn:
                cur = conn.cursor()
                cur.execute("SELECT current_database()")
                assert cur.fetchone()[0] == name
        assert connector.credentials_for("localhost") == {"user": "nobody"}
        assert connector.credentials_for("db.example") == {"user": "postgres", "port": pg.port}
    finally:
        connector.close()
    assert a.closed and b.closed and len(connector) == 0


def test_unknown_host_without_default_is_refused() -> None:
    connector = DatabaseConnector(psycopg2, {"h1": {"user": "u", "password": "S3cr3t-x"}})
    with pytest.raises(ConfigurationError, match="no credentials for host 'h2'") as info:
        connector.get("h2", "db")
    assert "S3cr3t" not in str(info.value) and "S3cr3t" not in repr(connector)


@pytest.mark.parametrize("credentials", [None, {"h": "user=x"}, ["h"]])
def test_bad_credentials_refused(credentials: object) -> None:
    with pytest.raises(ConfigurationError, match="credentials"):
        DatabaseConnector(psycopg2, credentials)  # type: ignore[arg-type]


def test_custom_pool_class() -> None:
    class Mine(ConnectionPool):
        pass

    connector = DatabaseConnector(psycopg2, {"default": {}}, conn_pool=Mine)
    assert isinstance(connector.get("127.0.0.1", "x"), Mine)
    connector.close()
    with pytest.raises(ConfigurationError, match="conn_pool"):
        DatabaseConnector(psycopg2, {}, conn_pool=dict)  # type: ignore[arg-type]
