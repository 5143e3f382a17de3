"""DatabaseConnector: a pool per (host, database), credentials per host or under 'default'.

Run: python examples/dbapi_connector.py
It starts a private PostgreSQL with two databases.
"""

from __future__ import annotations

import psycopg2

from geventpool.dbapi import DatabaseConnector
from geventpool.testing.postgres import PostgresServer


def main(server: PostgresServer) -> None:
    server.execute("CREATE DATABASE shop")
    server.execute("CREATE DATABASE blog")
    credentials = {
        "default": {"user": "postgres", "port": server.port},  # any host without its own entry
        "db.internal": {"user": "app", "password": "not-used-here"},
    }
    connector = DatabaseConnector(psycopg2, credentials, max_size=3)
    for dbname in ("shop", "blog"):
        pool = connector.get("127.0.0.1", dbname)
        with pool.item() as conn:
            cur = conn.cursor()
            cur.execute("SELECT current_database()")
            print(dbname, "->", cur.fetchone()[0], "via", pool.name)
    print(connector)
    connector.close()


if __name__ == "__main__":
    with PostgresServer() as pg:
        main(pg)
