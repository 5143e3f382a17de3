"""geventpool.dbapi: a pool of DB-API 2.0 connections with eventlet's ``db_pool`` API.

Works with any DB-API 2.0 module; psycopg2 is made cooperative with
geventpool's own wait callback, psycopg 3 is cooperative under gevent
monkey-patching, PyMySQL runs on gevent sockets, sqlite3 writers wait for
locks green, and every other driver (mysqlclient, pyodbc, oracledb...) runs
in thread-pool mode.  The driver modules are imported only when a pool is
given them.
"""

from __future__ import annotations

from ..errors import ConnectTimeout as ConnectTimeout  # eventlet's db_pool.ConnectTimeout, by that name
from .connector import DatabaseConnector
from .drivers import Driver, driver_for
from .pool import ConnectionPool, RawConnectionPool, TpooledConnectionPool, discard_all
from .threaded import ConnectionAbandoned, ConnectionBusy
from .wrapper import (
    ConnectionReturned,
    GenericConnectionWrapper,
    PooledConnection,
    PooledConnectionWrapper,
    unwrap,
)

__all__ = [
    "ConnectionPool",
    "RawConnectionPool",
    "TpooledConnectionPool",
    "ConnectionAbandoned",
    "ConnectionBusy",
    "DatabaseConnector",
    "PooledConnection",
    "PooledConnectionWrapper",
    "GenericConnectionWrapper",
    "ConnectionReturned",
    "Driver",
    "driver_for",
    "discard_all",
    "unwrap",
]
